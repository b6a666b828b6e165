"""Identity loss: the restored face should keep the identity (ArcFace embedding) of the ground truth.

`ResNetArcFace` is the ArcFace ResNet that GFP-GAN trains with (IR blocks (2, 2, 2, 2), no SE,
128x128 grey input, 512-d embedding), laid out like its released `arcface_resnet18.pth`, so that
file loads strictly. The weights come from a local file or download (see `losses.weights`);
tests use random weights.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import hub
from .weights import loss_weights_path

ARCFACE_FILE = "arcface_resnet18.pth"
ARCFACE_URL = "https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth"


class SEBlock(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.PReLU(),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(self.avg_pool(x).flatten(1))
        return x * gate[:, :, None, None]


class IRBlock(nn.Module):
    """Improved residual block: BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN (-> SE) + shortcut -> PReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None,
                 use_se: bool = True) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample
        self.se = SEBlock(channels) if use_se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.prelu(out + shortcut)


class ResNetArcFace(nn.Module):
    """ArcFace ResNet: (N, 1, 128, 128) grey face in [-1, 1] -> (N, 512) embedding."""

    def __init__(self, block: str = "IRBlock", layers: Sequence[int] = (2, 2, 2, 2), use_se: bool = False) -> None:
        super().__init__()
        if block != "IRBlock":
            raise ValueError(f"only block='IRBlock' is implemented, got {block!r}")
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        in_channels = 64
        for i, (channels, n_blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stride = 1 if i == 1 else 2
            downsample = None
            if stride != 1 or in_channels != channels:
                downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                           nn.BatchNorm2d(channels))
            blocks = [IRBlock(in_channels, channels, stride, downsample, use_se)]
            blocks += [IRBlock(channels, channels, use_se=use_se) for _ in range(1, n_blocks)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            in_channels = channels
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))


def gray_resize(img: torch.Tensor, size: int = 128) -> torch.Tensor:
    """RGB (N, 3, H, W) -> grey (N, 1, size, size) with ITU-R 601 luma weights, bilinear resize."""
    gray = 0.2989 * img[:, 0:1] + 0.5870 * img[:, 1:2] + 0.1140 * img[:, 2:3]
    return F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False)


class IdentityLoss(nn.Module):
    """L1 between ArcFace embeddings of the restored and the ground-truth face (GFP-GAN's L_id),
    times `loss_weight`. Inputs are RGB in [-1, 1]; the network is fixed and in eval mode."""

    def __init__(self, loss_weight: float = 1.0, pretrained: bool = True,
                 weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.net = ResNetArcFace()
        if pretrained:
            path = loss_weights_path(ARCFACE_FILE, ARCFACE_URL, weights)
            state = hub.extract_state_dict(hub.read_checkpoint(path))
            # The released file was saved from a DataParallel model on some setups.
            state = {k.removeprefix("module."): v for k, v in state.items()}
            self.net.load_state_dict(state, strict=True)
        self.net.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> "IdentityLoss":
        super().train(mode)
        self.net.eval()  # BatchNorm statistics and dropout stay fixed
        return self

    def forward(self, restored: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        emb = self.net(gray_resize(restored))
        with torch.no_grad():
            emb_gt = self.net(gray_resize(gt))
        return self.loss_weight * F.l1_loss(emb, emb_gt)
