"""Pixel losses: L1, L2 (MSE) and smooth L1 between an output and its target, with a weight."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("mean", "sum", "none")


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1", reduction: str = "mean",
               beta: float = 1.0) -> torch.Tensor:
    """Element-wise distance of `pred` to `target`, reduced.

    kind: "l1", "l2" (squared error, = MSE) or "smooth_l1" (Huber with transition at `beta`,
    what GPEN uses); reduction: "mean", "sum" or "none".
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if kind == "l1":
        return F.l1_loss(pred, target, reduction=reduction)
    if kind in ("l2", "mse"):
        return F.mse_loss(pred, target, reduction=reduction)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, reduction=reduction, beta=beta)
    raise ValueError(f"pixel loss kind must be 'l1', 'l2' or 'smooth_l1', got {kind!r}")


class PixelLoss(nn.Module):
    """`loss_weight * pixel_loss(pred, target, kind, reduction)`."""

    def __init__(self, kind: str = "l1", loss_weight: float = 1.0, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__()
        pixel_loss(torch.zeros(1), torch.zeros(1), kind, reduction, beta)  # validate the arguments now
        self.kind, self.loss_weight, self.reduction, self.beta = kind, loss_weight, reduction, beta

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * pixel_loss(pred, target, self.kind, self.reduction, self.beta)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, loss_weight={self.loss_weight}, reduction={self.reduction!r}"
