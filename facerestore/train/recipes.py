"""What one training step computes, per model family: the generator's forward, its losses, and the
discriminators with their losses. The trainer (trainer.py) owns the loop, optimisers, EMA, AMP,
DDP and checkpoints; a recipe only says how outputs and losses are made.

- RestorationRecipe (GFP-GAN, GPEN, DFDNet): LQ face -> restored face; pixel, perceptual/style,
  adversarial (+ R1), GFP-GAN's pyramid, facial-component and identity losses, GPEN's
  discriminator feature matching, DFDNet's multi-scale hinge loss, as the config turns them on.
- RelightRecipe (DPR): a face under one light -> the same face under another; L1 + gradient L1 on
  the relit image, L2 on the predicted source light, feature consistency between the two lightings.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import convert, hub
from ..archs import discriminators as discs
from ..losses import (
    GANLoss, IdentityLoss, PerceptualLoss, PixelLoss, component_style_loss, crop_components,
    feature_consistency_loss, feature_matching_loss, gradient_l1, light_loss, pyramid_loss, r1_penalty,
)
from ..registry import ZooEntry, families, import_object
from .config import Config, ConfigError

COMPONENTS = ("left_eye", "right_eye", "mouth")  # the facial components of the component losses (GFP-GAN's)


def build_recipe(config: Config, entry: ZooEntry, size: int) -> "Recipe":
    """The training recipe the entry's family declares."""
    spec = entry.family.training
    if spec is None:
        trainable = sorted({e for f in families() if f.training for e in f.training.config_archs})
        raise ConfigError(f"{entry.name} ({entry.family.name}) cannot be trained with facerestore train; "
                          f"trainable families: {', '.join(trainable)}")
    return import_object(spec.recipe)(config, entry, size)


def without_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """fp32 inside an autocast region (R1's double backward is fragile in half precision)."""
    return torch.autocast(device_type, enabled=False)


def set_requires_grad(modules: Any, flag: bool) -> None:
    for module in modules:
        module.requires_grad_(flag)


def discriminator_loss(gan: GANLoss, disc: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The discriminator's adversarial loss: real judged real, (detached) fake judged fake."""
    return gan(disc(real), True, is_disc=True) + gan(disc(fake.detach()), False, is_disc=True)


def lazy_r1(gan_config: Any, disc: nn.Module, real: torch.Tensor, it: int) -> dict[str, torch.Tensor]:
    """StyleGAN2's lazy R1: every `r1_every` iterations, gamma/2 * R1 * r1_every (so its average
    strength is that of R1 at every step), in fp32."""
    if gan_config is None or gan_config.r1 <= 0 or it % gan_config.r1_every != 0:
        return {}
    real = real.detach().float().requires_grad_(True)
    with without_autocast(real.device.type):
        penalty = r1_penalty(disc(real), real)
    return {"d_r1": gan_config.r1 / 2 * penalty * gan_config.r1_every}


class Recipe:
    """Interface. `discriminators`: {name: module} trained by the trainer with one optimiser each
    (`d_train` holds the modules used for their update; the trainer may wrap them in DDP)."""

    discriminators: dict[str, nn.Module]
    d_train: dict[str, nn.Module]
    loss_modules: nn.ModuleDict  # fixed networks inside losses (VGG, ArcFace), moved to the device

    def datasets(self, config: Config, size: int) -> tuple[Any, Any]:
        """(training set, validation set or None) of the data this recipe trains on: LQ/HQ face pairs,
        aligned (with data.align) to the model's template."""
        from .data import restoration_datasets

        entry = getattr(self, "entry", None)
        return restoration_datasets(config, size, getattr(entry, "template", "ffhq"))

    def configure_generator(self, net: nn.Module) -> None:
        """Freeze what the family does not train (before the optimiser is built)."""

    def prepare(self, batch: dict, device: torch.device) -> dict:
        """Batch from the DataLoader -> tensors on the device (+ anything derived, e.g. boxes)."""
        raise NotImplementedError

    def forward(self, net: nn.Module, batch: dict) -> dict[str, Any]:
        """Generator forward: {"image": output, ...}."""
        raise NotImplementedError

    def generator_losses(self, out: dict, batch: dict, it: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def discriminator_losses(self, out: dict, batch: dict, it: int) -> dict[str, torch.Tensor]:
        return {}

    def regularization_losses(self, batch: dict, it: int) -> dict[str, torch.Tensor]:
        return {}

    def log_keys(self) -> list[str]:
        """Every loss name a step may report, in CSV column order."""
        raise NotImplementedError

    def validation_pairs(self, net: nn.Module, batch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs, outputs, references) as uint8 images (N, H, W, 3) BGR or (N, H, W) grey, for
        metrics and sample grids."""
        raise NotImplementedError


def to_bgr_uint8(batch: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) RGB in [-1, 1] -> (N, H, W, 3) BGR uint8, as the datasets convert."""
    return convert.tensor_to_image(batch.cpu())


class RestorationRecipe(Recipe):
    """Restoration from LQ to HQ faces, with the forward, default discriminator, component boxes and
    frozen parts the entry's family declares (its `TrainingSpec`)."""

    def __init__(self, config: Config, entry: ZooEntry, size: int) -> None:
        self.spec, self.size, self.entry = entry.family.training, size, entry
        self.frozen_explicit = config.model.frozen is not None
        self.frozen = tuple(config.model.frozen) if self.frozen_explicit else self.spec.frozen
        losses = config.losses
        self.loss_config = losses
        self.loss_modules = nn.ModuleDict()
        if losses.relight is not None:
            raise ConfigError("losses.relight is for DPR; a restoration model trains with pixel/perceptual/gan/...")
        if losses.pixel is not None:
            self.loss_modules["pixel"] = PixelLoss(losses.pixel.type, losses.pixel.weight)
        if losses.perceptual is not None:
            p = losses.perceptual
            self.loss_modules["perceptual"] = PerceptualLoss(p.layers, p.weight, p.style_weight, p.criterion,
                                                             p.pretrained, p.weights)
        if losses.identity is not None:
            i = losses.identity
            self.loss_modules["identity"] = IdentityLoss(i.weight, i.pretrained, i.weights)
        if losses.pyramid is not None and not self.spec.pyramid:
            raise ConfigError("losses.pyramid needs GFP-GAN's intermediate RGB outputs; remove it for this model")
        if losses.components is not None and size < 64:
            raise ConfigError("losses.components needs faces of at least 64 px")
        self.discriminators: dict[str, nn.Module] = {}
        if losses.gan is not None:
            self.gan = GANLoss(losses.gan.type, losses.gan.weight)
            self.discriminators["d"] = self._main_discriminator(losses.gan.discriminator)
            if losses.gan.discriminator_weights:
                hub.load_weights(self.discriminators["d"], losses.gan.discriminator_weights)
        if losses.components is not None:
            self.component_gan = GANLoss(losses.components.gan_type, losses.components.gan_weight)
            for part in COMPONENTS:
                self.discriminators[f"d_{part}"] = discs.FacialComponentDiscriminator()
            scale = size / 512
            self.crop_sizes = {"left_eye": max(8, round(losses.components.eye_size * scale)),
                               "right_eye": max(8, round(losses.components.eye_size * scale)),
                               "mouth": max(8, round(losses.components.mouth_size * scale))}
        self.d_train = dict(self.discriminators)
        self.template_points = None
        if self.spec.part_boxes or losses.components is not None:
            from ..face.align import template

            self.template_points = np.asarray(template(entry.template, size), dtype=np.float64)

    def _main_discriminator(self, kwargs: dict) -> nn.Module:
        kwargs = dict(kwargs)
        kind = kwargs.pop("type", self.spec.discriminator)
        if kind == "stylegan2":
            return discs.gfpgan_discriminator(self.size, **kwargs)
        if kind == "gpen":
            return discs.gpen_discriminator(self.size, **kwargs)
        if kind == "multiscale":
            return discs.MultiScaleDiscriminator(**kwargs)
        raise ConfigError(f"losses.gan.discriminator.type must be stylegan2, gpen or multiscale, got {kind!r}")

    def part_boxes(self, flipped: torch.Tensor) -> np.ndarray:
        """(N, 4, 4) boxes (left eye, right eye, nose, mouth; xyxy) of the aligned faces of the batch,
        from the alignment template; a flipped face gets the mirrored boxes."""
        from ..face.parts import part_locations_from_landmarks5

        points = self.template_points
        mirrored = points[[1, 0, 2, 4, 3]].copy()  # a mirror swaps left and right points
        mirrored[:, 0] = self.size - mirrored[:, 0]
        landmarks = np.stack([mirrored if f else points for f in flipped.tolist()])
        return part_locations_from_landmarks5(landmarks, self.size)

    def configure_generator(self, net: nn.Module) -> None:
        """Freeze `model.frozen` (default: the family's TrainingSpec.frozen, e.g. CodeFormer's codebook
        and decoder). An explicit list is the whole list: everything else trains, even parts the
        architecture freezes when it is built (CodeFormer's fix_modules)."""
        if self.frozen_explicit:
            net.requires_grad_(True)
        for path in self.frozen:
            try:
                module = net.get_submodule(path)
            except AttributeError:
                children = ", ".join(name for name, _ in net.named_children())
                raise ConfigError(f"model.frozen: {type(net).__name__} has no submodule {path!r} "
                                  f"(its parts: {children})") from None
            module.requires_grad_(False)

    # -- step
    def prepare(self, batch: dict, device: torch.device) -> dict:
        lq, hq = batch["lq"].to(device, non_blocking=True), batch["hq"].to(device, non_blocking=True)
        flipped = batch.get("flipped", torch.zeros(lq.shape[0], dtype=torch.bool))
        prepared = {"lq": lq, "hq": hq, "flipped": flipped}
        if self.spec.part_boxes or self.loss_config.components is not None:
            prepared["boxes"] = torch.from_numpy(self.part_boxes(flipped))
        return prepared

    def forward(self, net: nn.Module, batch: dict) -> dict[str, Any]:
        return self.spec.forward(net, batch, self.loss_config.pyramid is not None)

    def _component_crops(self, images: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        index = {"left_eye": 0, "right_eye": 1, "mouth": 3}
        return {part: crop_components(images, boxes[:, index[part]].float(), self.crop_sizes[part])
                for part in COMPONENTS}

    def generator_losses(self, out: dict, batch: dict, it: int) -> dict[str, torch.Tensor]:
        cfg, image, hq = self.loss_config, out["image"], batch["hq"]
        losses: dict[str, torch.Tensor] = {}
        if "pixel" in self.loss_modules:
            losses["pixel"] = self.loss_modules["pixel"](image, hq)
        if cfg.pyramid is not None and (cfg.pyramid.until is None or it <= cfg.pyramid.until):
            losses["pyramid"] = cfg.pyramid.weight * pyramid_loss(out["rgbs"], hq)
        if "perceptual" in self.loss_modules:
            perceptual, style = self.loss_modules["perceptual"](image, hq)
            if perceptual is not None:
                losses["perceptual"] = perceptual
            if style is not None:
                losses["style"] = style
        if cfg.gan is not None:
            disc = self.discriminators["d"]  # the bare module: no gradient sync needed for a frozen D
            if cfg.feature_matching is not None:
                fake_pred, fake_feats = disc(image, return_feats=True)
                with torch.no_grad():
                    _, real_feats = disc(hq, return_feats=True)
                losses["feature_matching"] = cfg.feature_matching.weight * feature_matching_loss(
                    fake_feats, real_feats, cfg.feature_matching.criterion)
            else:
                fake_pred = disc(image)
            losses["gan"] = self.gan(fake_pred, True, is_disc=False)
        if cfg.components is not None:
            fake_crops = self._component_crops(image, batch["boxes"])
            real_crops = self._component_crops(hq, batch["boxes"])
            gan_terms, style_terms = [], []
            for part in COMPONENTS:
                disc = self.discriminators[f"d_{part}"]
                fake_pred, fake_feats = disc(fake_crops[part], return_feats=True)
                gan_terms.append(self.component_gan(fake_pred, True, is_disc=False))
                if cfg.components.style_weight > 0:
                    with torch.no_grad():
                        _, real_feats = disc(real_crops[part], return_feats=True)
                    style_terms.append(component_style_loss(fake_feats, real_feats))
            losses["components_gan"] = sum(gan_terms)
            if style_terms:
                losses["components_style"] = cfg.components.style_weight * sum(style_terms)
        if "identity" in self.loss_modules:
            losses["identity"] = self.loss_modules["identity"](image, hq)
        return losses

    def discriminator_losses(self, out: dict, batch: dict, it: int) -> dict[str, torch.Tensor]:
        cfg, fake, hq = self.loss_config, out["image"].detach(), batch["hq"]
        losses: dict[str, torch.Tensor] = {}
        if cfg.gan is not None:
            disc = self.d_train["d"]
            fake_pred, real_pred = disc(fake), disc(hq)
            losses["d"] = self.gan(real_pred, True, is_disc=True) + self.gan(fake_pred, False, is_disc=True)
            losses["d_real_score"] = _mean_score(real_pred).detach()
            losses["d_fake_score"] = _mean_score(fake_pred).detach()
        if cfg.components is not None:
            fake_crops = self._component_crops(fake, batch["boxes"])
            real_crops = self._component_crops(hq, batch["boxes"])
            losses["d_components"] = sum(
                discriminator_loss(self.component_gan, self.d_train[f"d_{part}"], fake_crops[part], real_crops[part])
                for part in COMPONENTS)
        return losses

    def regularization_losses(self, batch: dict, it: int) -> dict[str, torch.Tensor]:
        return lazy_r1(self.loss_config.gan, self.d_train.get("d"), batch["hq"], it)

    def log_keys(self) -> list[str]:
        cfg, keys = self.loss_config, []
        if cfg.pixel is not None:
            keys.append("pixel")
        if cfg.pyramid is not None:
            keys.append("pyramid")
        if cfg.perceptual is not None:
            keys += [k for k, w in (("perceptual", cfg.perceptual.weight), ("style", cfg.perceptual.style_weight)) if w > 0]
        if cfg.gan is not None:
            keys += (["feature_matching"] if cfg.feature_matching is not None else []) + ["gan"]
        if cfg.components is not None:
            keys += ["components_gan"] + (["components_style"] if cfg.components.style_weight > 0 else [])
        if cfg.identity is not None:
            keys.append("identity")
        if cfg.gan is not None:
            keys += ["d", "d_real_score", "d_fake_score"] + (["d_r1"] if cfg.gan.r1 > 0 else [])
        if cfg.components is not None:
            keys.append("d_components")
        return keys

    def validation_pairs(self, net: nn.Module, batch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.forward(net, batch)["image"]
        return to_bgr_uint8(batch["lq"]), to_bgr_uint8(out), to_bgr_uint8(batch["hq"])


def _mean_score(pred: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    preds = [pred] if isinstance(pred, torch.Tensor) else pred
    return sum(p.float().mean() for p in preds) / len(preds)


class LightingFeatures:
    """Captures the lighting-free face features of DPR's lighting network (its 2nd output) during a
    forward, with a hook, so the feature loss needs no change to the network."""

    def __init__(self, net: nn.Module) -> None:
        from ..archs.dpr import LightingNet

        self.module = next(m for m in net.modules() if isinstance(m, LightingNet))
        self.features: list[torch.Tensor] = []

    def __enter__(self) -> "LightingFeatures":
        self.handle = self.module.register_forward_hook(lambda _m, _i, output: self.features.append(output[1]))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.remove()


# Mirroring the image (X -> -X in DPR's frame, X = image right) flips the sign of the SH coefficients
# odd in X: order [1, Y, Z, X, YX, YZ, 3Z^2-1, XZ, X^2-Y^2].
MIRROR_SH_SIGNS = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0])


class RelightRecipe(Recipe):
    def datasets(self, config: Config, size: int) -> tuple[Any, Any]:
        """Portraits with source/target SH lights (see train.data.relight_datasets)."""
        from .data import relight_datasets

        return relight_datasets(config, size)

    def __init__(self, config: Config, entry: ZooEntry, size: int) -> None:
        self.size, self.entry = size, entry
        losses = config.losses
        if losses.relight is None:
            raise ConfigError("DPR trains with losses.relight (image, gradient, light, feature weights)")
        unsupported = [name for name in ("pixel", "perceptual", "pyramid", "components", "identity", "feature_matching")
                       if getattr(losses, name) is not None]
        if unsupported:
            raise ConfigError(f"DPR training uses losses.relight (+ optional gan); remove losses.{', losses.'.join(unsupported)}")
        self.weights = losses.relight
        self.gan_config = losses.gan
        self.loss_modules = nn.ModuleDict()
        self.discriminators = {}
        if losses.gan is not None:
            self.gan = GANLoss(losses.gan.type, losses.gan.weight)
            kwargs = {"in_channels": 1, "num_scales": 1, **losses.gan.discriminator}
            kwargs.pop("type", None)
            self.discriminators["d"] = discs.MultiScaleDiscriminator(**kwargs)
            if losses.gan.discriminator_weights:
                hub.load_weights(self.discriminators["d"], losses.gan.discriminator_weights)
        self.d_train = dict(self.discriminators)

    def prepare(self, batch: dict, device: torch.device) -> dict:
        prepared = {k: batch[k].to(device, non_blocking=True) for k in ("src", "tgt", "src_sh", "tgt_sh")}
        if "flipped" in batch:  # a mirrored face is lit by the mirrored light
            signs = torch.where(batch["flipped"][:, None].to(device), MIRROR_SH_SIGNS.to(device), 1.0)
            prepared["src_sh"], prepared["tgt_sh"] = prepared["src_sh"] * signs, prepared["tgt_sh"] * signs
        return prepared

    def _relight(self, net: nn.Module, image: torch.Tensor, sh: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(relit image, SH predicted for the input, lighting-free face features)."""
        from ..relighter import split_outputs

        with LightingFeatures(_unwrap(net)) as captured:
            relit, source_sh = split_outputs(net(image, sh[:, :, None, None], self.weights.skip_count))
        return relit, source_sh, captured.features[-1]

    def forward(self, net: nn.Module, batch: dict) -> dict[str, Any]:
        # Both directions (src -> tgt light, tgt -> src light) in one batch: one forward pass.
        n = batch["src"].shape[0]
        relit, lights, feats = self._relight(net, torch.cat([batch["src"], batch["tgt"]]),
                                             torch.cat([batch["tgt_sh"], batch["src_sh"]]))
        return {"image": relit[:n], "to_src": relit[n:], "src_light": lights[:n], "tgt_light": lights[n:],
                "src_feat": feats[:n], "tgt_feat": feats[n:]}

    def generator_losses(self, out: dict, batch: dict, it: int) -> dict[str, torch.Tensor]:
        w = self.weights
        losses = {
            "image": w.image * (F.l1_loss(out["image"], batch["tgt"]) + F.l1_loss(out["to_src"], batch["src"])),
            "gradient": w.gradient * (gradient_l1(out["image"], batch["tgt"]) + gradient_l1(out["to_src"], batch["src"])),
            "light": w.light * (light_loss(out["src_light"], batch["src_sh"]) + light_loss(out["tgt_light"], batch["tgt_sh"])),
            "feature": w.feature * feature_consistency_loss(out["src_feat"], out["tgt_feat"]),
        }
        if self.gan_config is not None:
            losses["gan"] = self.gan(self.discriminators["d"](out["image"]), True, is_disc=False)
        return losses

    def discriminator_losses(self, out: dict, batch: dict, it: int) -> dict[str, torch.Tensor]:
        if self.gan_config is None:
            return {}
        return {"d": discriminator_loss(self.gan, self.d_train["d"], out["image"], batch["tgt"])}

    def regularization_losses(self, batch: dict, it: int) -> dict[str, torch.Tensor]:
        return lazy_r1(self.gan_config, self.d_train.get("d"), batch["tgt"], it)

    def log_keys(self) -> list[str]:
        keys = ["image", "gradient", "light", "feature"]
        if self.gan_config is not None:
            keys += ["gan", "d"] + (["d_r1"] if self.gan_config.r1 > 0 else [])
        return keys

    def validation_pairs(self, net: nn.Module, batch: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out, _, _ = self._relight(net, batch["src"], batch["tgt_sh"])

        def grey(x: torch.Tensor) -> np.ndarray:
            return (x.detach().float().cpu()[:, 0] * 255).clamp_(0, 255).round_().to(torch.uint8).numpy()

        return grey(batch["src"]), grey(out), grey(batch["tgt"])


def _unwrap(net: nn.Module) -> nn.Module:
    return net.module if hasattr(net, "module") else net
