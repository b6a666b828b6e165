"""GFP-GAN's extra losses: the pyramid restoration loss and the facial component losses.

- Pyramid loss: L1 between the intermediate RGB outputs of the degradation-removal U-Net
  (`out_rgbs`, smallest first) and the ground truth downsampled (bilinear, by halves) to each size.
- Facial components: eyes and mouth are cropped with RoIAlign from output and ground truth; each
  has its own discriminator (see archs/discriminators.py: FacialComponentDiscriminator), trained
  with a GAN loss, plus a style loss between the Gram matrices of the discriminator features of
  the restored and the real component.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from .perceptual import gram_matrix


def image_pyramid(img: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """`img` downsampled by repeated bilinear halving to each of `sizes` (each a power-of-two
    fraction of the image size), in the order given."""
    levels = {img.shape[-1]: img}
    current = img
    while current.shape[-1] > min(sizes):
        current = F.interpolate(current, scale_factor=0.5, mode="bilinear", align_corners=False)
        levels[current.shape[-1]] = current
    missing = [s for s in sizes if s not in levels]
    if missing:
        raise ValueError(f"sizes {missing} are not {img.shape[-1]} halved a whole number of times")
    return [levels[s] for s in sizes]


def pyramid_loss(out_rgbs: Sequence[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """Sum over scales of the mean L1 between each intermediate RGB output and the downsampled gt."""
    pyramid = image_pyramid(gt, [rgb.shape[-1] for rgb in out_rgbs])
    return sum(F.l1_loss(rgb, target) for rgb, target in zip(out_rgbs, pyramid))


def crop_components(img: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """RoIAlign crops (N, C, size, size) of one component per image.

    boxes: (N, 4) x1, y1, x2, y2 in pixels of `img` (one box per image of the batch).
    """
    if boxes.shape != (img.shape[0], 4):
        raise ValueError(f"expected one box per image, shape ({img.shape[0]}, 4); got {tuple(boxes.shape)}")
    index = torch.arange(img.shape[0], device=img.device, dtype=img.dtype)[:, None]
    rois = torch.cat([index, boxes.to(img)], dim=1)
    return roi_align(img, rois, output_size=size, spatial_scale=1.0)


def component_style_loss(fake_feats: Sequence[torch.Tensor], real_feats: Sequence[torch.Tensor],
                         layer_weights: Sequence[float] = (0.5, 1.0)) -> torch.Tensor:
    """L1 between Gram matrices of a component discriminator's features of the restored and the
    real crop (the real side is not differentiated). GFP-GAN weighs its two feature levels 0.5, 1."""
    if not (len(fake_feats) == len(real_feats) == len(layer_weights)):
        raise ValueError("need as many fake features, real features and layer weights")
    return sum(w * F.l1_loss(gram_matrix(f), gram_matrix(r.detach()))
               for f, r, w in zip(fake_feats, real_feats, layer_weights))
