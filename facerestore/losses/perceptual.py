"""Perceptual and style (Gram matrix) losses on VGG19 features, as GFP-GAN and DFDNet train with.

The backbone is torchvision's VGG19 architecture. Its ImageNet weights come from torchvision's file
`vgg19-dcbb9e9d.pth`, looked up locally first (see `losses.weights`); tests use random weights.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch
import torchvision
from torch import nn

from .. import hub
from .weights import loss_weights_path

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

# Names of the layers of torchvision's vgg19().features, in order (BasicSR's naming).
VGG19_LAYERS = tuple(
    name
    for block, n_convs in enumerate((2, 2, 4, 4, 4), start=1)
    for name in [x for i in range(1, n_convs + 1) for x in (f"conv{block}_{i}", f"relu{block}_{i}")] + [f"pool{block}"]
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """Fixed VGG19 returning the activations of the named layers, {name: tensor}.

    Input: RGB, in [-1, 1] when `range_norm` (mapped to [0, 1]), then ImageNet-normalised when
    `use_input_norm`. Only the layers up to the deepest requested one are kept. The ReLUs are not
    in-place, so a pre-ReLU ("conv") feature is what it says.
    """

    def __init__(self, layers: Sequence[str], pretrained: bool = True, weights: str | os.PathLike | None = None,
                 use_input_norm: bool = True, range_norm: bool = True) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown or not layers:
            raise ValueError(f"unknown VGG19 layer(s) {unknown or layers}; choose from {', '.join(VGG19_LAYERS)}")
        last = max(VGG19_LAYERS.index(name) for name in layers)
        # torchvision's VGG19 feature layers ("E" config) without the 120M-parameter classifier.
        self.body = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])[: last + 1]
        if pretrained:
            path = loss_weights_path(VGG19_FILE, VGG19_URL, weights)
            state = hub.extract_state_dict(hub.read_checkpoint(path))
            # Only the kept layers are loaded: a file with just `features.*` (no classifier) is fine.
            kept = {k.removeprefix("features."): v for k, v in state.items()
                    if k.startswith("features.") and int(k.split(".")[1]) <= last}
            try:
                self.body.load_state_dict(kept, strict=True)
            except RuntimeError as exc:
                raise hub.WeightsError(f"{path} is not torchvision's VGG19 ({VGG19_FILE}): {exc}") from exc
        for module in self.body:
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.layers = tuple(layers)
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        features = {}
        for name, module in zip(VGG19_LAYERS, self.body):
            x = module(x)
            if name in self.layers:
                features[name] = x
        return features


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) features -> (N, C, C) Gram matrices, normalised by C*H*W."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w).float()  # sums of h*w products overflow in fp16
    return flat @ flat.transpose(1, 2) / (c * h * w)


def feature_distance(a: torch.Tensor, b: torch.Tensor, criterion: str) -> torch.Tensor:
    """"l1" / "l2" (means) or "fro" (Frobenius norm of the difference, BasicSR's option)."""
    if criterion == "l1":
        return (a - b).abs().mean()
    if criterion == "l2":
        return (a - b).pow(2).mean()
    if criterion == "fro":
        return torch.linalg.vector_norm(a - b)
    raise ValueError(f"criterion must be 'l1', 'l2' or 'fro', got {criterion!r}")


class PerceptualLoss(nn.Module):
    """Weighted distance of VGG19 features (perceptual) and of their Gram matrices (style).

    layer_weights: {layer name: weight}, e.g. GFP-GAN's {"conv1_2": 0.1, "conv2_2": 0.1,
    "conv3_4": 1, "conv4_4": 1, "conv5_4": 1}. forward(x, gt) -> (perceptual, style); a term whose
    weight is 0 is returned as None and not computed. The target's features are not differentiated.
    """

    def __init__(self, layer_weights: Mapping[str, float], perceptual_weight: float = 1.0, style_weight: float = 0.0,
                 criterion: str = "l1", pretrained: bool = True, weights: str | os.PathLike | None = None,
                 use_input_norm: bool = True, range_norm: bool = True) -> None:
        super().__init__()
        feature_distance(torch.zeros(1), torch.zeros(1), criterion)  # validate now
        self.layer_weights = dict(layer_weights)
        self.perceptual_weight, self.style_weight, self.criterion = perceptual_weight, style_weight, criterion
        self.vgg = VGG19Features(list(self.layer_weights), pretrained, weights, use_input_norm, range_norm)

    def forward(self, x: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x_features = self.vgg(x)
        gt_features = {k: v.detach() for k, v in self.vgg(gt.detach()).items()}
        perceptual = style = None
        if self.perceptual_weight > 0:
            perceptual = self.perceptual_weight * sum(
                w * feature_distance(x_features[k], gt_features[k], self.criterion) for k, w in self.layer_weights.items())
        if self.style_weight > 0:
            style = self.style_weight * sum(
                w * feature_distance(gram_matrix(x_features[k]), gram_matrix(gt_features[k]), self.criterion)
                for k, w in self.layer_weights.items())
        return perceptual, style
