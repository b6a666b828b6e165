"""GPEN's discriminator feature-matching loss (Yang et al. 2021, L_F): the restored image should
excite the discriminator's intermediate layers as the ground truth does."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def feature_matching_loss(fake_feats: Sequence[torch.Tensor], real_feats: Sequence[torch.Tensor],
                          criterion: str = "l2") -> torch.Tensor:
    """Mean over layers of the distance ("l2": MSE, "l1") between discriminator features of the
    restored and of the real image; the real features are not differentiated."""
    if len(fake_feats) != len(real_feats) or not fake_feats:
        raise ValueError("need the same, non-zero number of fake and real feature maps")
    distance = {"l1": F.l1_loss, "l2": F.mse_loss}.get(criterion)
    if distance is None:
        raise ValueError(f"criterion must be 'l1' or 'l2', got {criterion!r}")
    return sum(distance(f.float(), r.detach().float()) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)
