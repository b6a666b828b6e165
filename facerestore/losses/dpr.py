"""DPR's relighting losses (Zhou et al. 2019): L1 on the relit image and on its spatial gradients,
L2 on the lighting the network predicts for its input, and a feature loss asking the lighting-free
face features of two lightings of one face to agree."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def image_gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x (N, C, H, W-1) and y (N, C, H-1, W)."""
    return img[..., :, 1:] - img[..., :, :-1], img[..., 1:, :] - img[..., :-1, :]


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the image gradients of `pred` and `target` (x and y terms summed)."""
    (pgx, pgy), (tgx, tgy) = image_gradients(pred), image_gradients(target)
    return F.l1_loss(pgx, tgx) + F.l1_loss(pgy, tgy)


def light_loss(pred_sh: torch.Tensor, true_sh: torch.Tensor) -> torch.Tensor:
    """MSE of the predicted source SH coefficients; shapes (N, 9, 1, 1) and (N, 9) are both fine."""
    return F.mse_loss(pred_sh.reshape(pred_sh.shape[0], -1), true_sh.reshape(true_sh.shape[0], -1))


def feature_consistency_loss(face_feat_a: torch.Tensor, face_feat_b: torch.Tensor) -> torch.Tensor:
    """MSE between the lighting-free features of one face seen under two lightings (symmetric)."""
    return F.mse_loss(face_feat_a, face_feat_b)
