"""Adversarial losses and the R1 gradient penalty.

GAN types (what each model family trains with):
- "vanilla": binary cross-entropy on logits (GFP-GAN's facial-component discriminators);
- "lsgan": least squares;
- "wgan": -D(x) for real, D(x) for fake;
- "wgan_softplus": softplus(-D(x)) for real, softplus(D(x)) for fake, the non-saturating logistic
  loss of StyleGAN2 (GFP-GAN and GPEN main discriminators);
- "hinge": relu(1 - D(x)) / relu(1 + D(x)) for the discriminator, -D(G(z)) for the generator
  (SNGAN style, DFDNet).
A multi-scale discriminator's list of outputs is averaged over its scales.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

GAN_TYPES = ("vanilla", "lsgan", "wgan", "wgan_softplus", "hinge")


def gan_loss(pred: torch.Tensor, target_is_real: bool, gan_type: str, is_disc: bool = False) -> torch.Tensor:
    """Unweighted adversarial loss of discriminator outputs `pred` (logits/scores, any shape).

    target_is_real: whether `pred` should be judged real; is_disc: the discriminator's loss (only
    changes "hinge", whose generator loss is -mean(pred) for a fake judged real).
    """
    pred = pred.float()  # softplus/BCE of large logits are unstable in half precision
    if gan_type == "vanilla":
        target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
        return F.binary_cross_entropy_with_logits(pred, target)
    if gan_type == "lsgan":
        return F.mse_loss(pred, torch.full_like(pred, 1.0 if target_is_real else 0.0))
    if gan_type == "wgan":
        return -pred.mean() if target_is_real else pred.mean()
    if gan_type == "wgan_softplus":
        return F.softplus(-pred).mean() if target_is_real else F.softplus(pred).mean()
    if gan_type == "hinge":
        if not is_disc:
            return -pred.mean()
        return F.relu(1 - pred).mean() if target_is_real else F.relu(1 + pred).mean()
    raise ValueError(f"gan type must be one of {GAN_TYPES}, got {gan_type!r}")


class GANLoss(nn.Module):
    """forward(pred, target_is_real, is_disc=False): the adversarial loss, times `loss_weight` for
    the generator (discriminator losses are not weighted, as in BasicSR). `pred` may be a list of
    outputs of a multi-scale discriminator: their losses are averaged."""

    def __init__(self, gan_type: str = "vanilla", loss_weight: float = 1.0) -> None:
        super().__init__()
        if gan_type not in GAN_TYPES:
            raise ValueError(f"gan type must be one of {GAN_TYPES}, got {gan_type!r}")
        self.gan_type, self.loss_weight = gan_type, loss_weight

    def forward(self, pred: torch.Tensor | Sequence[torch.Tensor], target_is_real: bool,
                is_disc: bool = False) -> torch.Tensor:
        preds = [pred] if isinstance(pred, torch.Tensor) else list(pred)
        loss = sum(gan_loss(p, target_is_real, self.gan_type, is_disc) for p in preds) / len(preds)
        return loss if is_disc else loss * self.loss_weight

    def extra_repr(self) -> str:
        return f"gan_type={self.gan_type!r}, loss_weight={self.loss_weight}"


def r1_penalty(real_pred: torch.Tensor | Sequence[torch.Tensor], real_img: torch.Tensor) -> torch.Tensor:
    """R1 regularisation (Mescheder et al. 2018): mean over the batch of |dD(x)/dx|^2 on real images.

    `real_img` must require grad and `real_pred` be computed from it; the graph is kept so the
    penalty can be back-propagated into the discriminator. Multiply by gamma/2 (and by the lazy
    interval when applied every k steps, as StyleGAN2 does).
    """
    preds = [real_pred] if isinstance(real_pred, torch.Tensor) else list(real_pred)
    total = sum(p.float().sum() for p in preds)
    (grad,) = torch.autograd.grad(outputs=total, inputs=real_img, create_graph=True)
    return grad.float().pow(2).reshape(grad.shape[0], -1).sum(1).mean()
