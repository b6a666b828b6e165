"""Scale-invariant errors used to evaluate relighting and lighting estimation (DPR, Zhou et al. 2019).

A single image (or SH vector) only determines lighting up to a global scale (albedo and light
intensity trade off), so DPR compares results after the best global scale:

    α*(a, b)     = <a, b> / <a, a>           (the scalar minimising ||α a - b||²; 0 if a = 0)
    si_mse(a, b) = mean((α* a - b)²)         over all elements
    si_l2(a, b)  = ||α* a - b||₂             (Euclidean norm, not squared)

`a` is the prediction, `b` the reference (not symmetric). Both are flattened; numpy arrays (computed
in float64) and torch tensors (computed in their dtype, returned as 0-dim tensors) are accepted.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _flat_pair(pred: Any, target: Any) -> tuple[Any, Any]:
    if hasattr(pred, "detach") or hasattr(target, "detach"):  # torch tensors
        import torch

        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        dtype = torch.promote_types(pred.dtype, target.dtype)
        pred, target = pred.to(dtype).reshape(-1), target.to(dtype).reshape(-1)
    else:
        pred = np.asarray(pred, dtype=np.float64).reshape(-1)
        target = np.asarray(target, dtype=np.float64).reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"prediction and reference must have the same number of elements, "
                         f"got {pred.shape[0]} and {target.shape[0]}")
    if pred.shape[0] == 0:
        raise ValueError("cannot compare empty arrays")
    return pred, target


def best_scale(pred: Any, target: Any) -> Any:
    """α* = <pred, target> / <pred, pred>, the scale that brings `pred` closest to `target` (0 if
    `pred` is all zeros)."""
    pred, target = _flat_pair(pred, target)
    energy = (pred * pred).sum()
    return (pred * target).sum() / energy if float(energy) > 0 else energy * 0


def scaled_residual(pred: Any, target: Any) -> Any:
    """α* · pred - target (flattened)."""
    pred, target = _flat_pair(pred, target)
    return best_scale(pred, target) * pred - target


def si_mse(pred: Any, target: Any) -> Any:
    """Scale-invariant MSE: min over scalar α of mean((α · pred - target)²)."""
    residual = scaled_residual(pred, target)
    return (residual * residual).mean()


def si_l2(pred: Any, target: Any) -> Any:
    """Scale-invariant L2 distance: min over scalar α of ||α · pred - target||₂."""
    residual = scaled_residual(pred, target)
    return (residual * residual).sum() ** 0.5
