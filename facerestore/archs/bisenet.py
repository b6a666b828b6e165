"""BiSeNet face parsing (Yu et al., ECCV 2018; the face-parsing.PyTorch model), as shipped by facexlib
(`parsing_bisenet.pth`, 19 classes).

Context path: a ResNet-18 (built here, no torchvision download; ImageNet weights only matter for
training) whose 1/16 and 1/32 features pass through attention refinement modules, with a global
average context added at 1/32; each level is upsampled (nearest) and refined by a 3x3 conv. The
1/8 ResNet feature stands in for the spatial path; a feature fusion module merges it with the
upsampled context; three heads (main, 1/8 context, 1/16 context) give logits, bilinearly resized
(align_corners=True) to the input size. Official call: `net(x)` -> (out, out16, out32); the parse
is `out.argmax(1)`. x: RGB, ImageNet-normalised ((x/255 - mean) / std), 512 x 512.

Labels (face-parsing.PyTorch order, NOT ParseNet's): 0 background, 1 skin, 2 left brow, 3 right brow,
4 left eye, 5 right eye, 6 eyeglasses, 7 left ear, 8 right ear, 9 earring, 10 nose, 11 mouth,
12 upper lip, 13 lower lip, 14 neck, 15 necklace, 16 cloth, 17 hair, 18 hat.

Module names reproduce facexlib's `BiSeNet(num_class=19)` key for key.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the (1x1 conv + BN when needed) shortcut, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18(nn.Module):
    """ResNet-18 trunk without the classifier; returns the 1/8, 1/16 and 1/32 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class ConvBNReLU(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _global_average(x: torch.Tensor) -> torch.Tensor:
    # avg_pool2d over the whole map, as the official model does (bit-identical to its outputs)
    return F.avg_pool2d(x, x.shape[2:])


class AttentionRefinementModule(nn.Module):
    """3x3 ConvBNReLU, then reweight channels by sigmoid(BN(1x1 conv(global average)))."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(_global_average(feat))))


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = F.interpolate(self.conv_avg(_global_average(feat32)), feat32.shape[2:], mode="nearest")
        up32 = F.interpolate(self.arm32(feat32) + context, feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, feat8.shape[2:], mode="nearest")
        up16 = self.conv_head16(up16)
        return feat8, up16, up32  # 1/8, 1/8, 1/16


class FeatureFusionModule(nn.Module):
    """Concatenate, 1x1 ConvBNReLU, then add a channel-attention-weighted copy of the result."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, kernel_size=1, padding=0)
        self.conv1 = nn.Conv2d(out_channels, out_channels // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels // 4, out_channels, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_average(feat)))))
        return feat * attention + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, num_class: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels)
        self.conv_out = nn.Conv2d(mid_channels, num_class, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    def __init__(self, num_class: int = 19) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, num_class)
        self.conv_out16 = BiSeNetOutput(128, 64, num_class)
        self.conv_out32 = BiSeNetOutput(128, 64, num_class)

    def _resize(self, logits: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(logits, size, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(main logits, 1/8-context logits, 1/16-context logits), all at the input size."""
        feat8, context8, context16 = self.cp(x)
        out = self.conv_out(self.ffm(feat8, context8))
        size = x.shape[2:]
        return (self._resize(out, size), self._resize(self.conv_out16(context8), size),
                self._resize(self.conv_out32(context16), size))

    def parse_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Only the main head's logits (what the parse uses), skipping the two auxiliary heads."""
        feat8, context8, _ = self.cp(x)
        return self._resize(self.conv_out(self.ffm(feat8, context8)), x.shape[2:])
