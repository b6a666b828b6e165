"""Training configs: YAML files -> typed, validated `Config`; and the zoo entry a config trains.

A config names the model (a zoo entry to fine-tune, or an architecture family plus constructor
arguments to train from scratch), the data, the optimisation, the losses and the logging. Every
section and key is a dataclass field below, with its default and a comment: that is the reference.
Unknown keys are errors (with a suggestion), so a typo does not silently train something else.

`entry_from_config(path)` turns a config into a `ZooEntry` (arch + constructor arguments + face size,
template and conventions of the entry it fine-tunes), so `facerestore.load("cfg.yaml",
weights="runs/x/last.pth")` loads the fine-tuned network like any zoo model.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..registry import WeightFile, ZooEntry, families, get_entry

CHECKPOINT_FILE = "last.pth"


class ConfigError(ValueError):
    """A training config is invalid; the message names the key and what to write instead."""


@dataclass
class ModelConfig:
    zoo: str | None = None  # zoo entry to fine-tune, e.g. gpen-bfr-512 (its weights come through facerestore.hub)
    arch: str | None = None  # or a family to train from scratch: gfpgan, gfpgan-clean, gpen, dfdnet, dpr, dpr-1024
    config: dict = field(default_factory=dict)  # constructor arguments over the entry's / family's official ones
    weights: str | None = None  # local weights file or folder for the zoo entry (default: cache, then download)
    pretrained: bool = True  # with zoo: start from its weights (False: its architecture, random init)
    # Start from these weights instead (CLI --init): a zoo name (fetched like facerestore.load), a weights file
    # in the official layout of the family's releases, or a facerestore training checkpoint (its EMA weights).
    init: str | None = None
    frozen: list[str] | None = None  # submodules kept fixed (None: the family's default, []: train everything)
    lr_scale: dict = field(default_factory=dict)  # submodule -> lr multiplier, e.g. {stylegan_decoder: 0.1}


@dataclass
class DegradationConfig:
    preset: str = "gfpgan"  # facerestore.data preset: gfpgan, gpen, dfdnet, codeformer (`facerestore degrade`)
    ranges: dict = field(default_factory=dict)  # overrides of the preset's ranges, e.g. {blur_sigma: [0.1, 3]}
    # (CLI --degradation NAME or FILE.yaml: a preset name, or a YAML file holding {preset: ..., ranges: {...}})


@dataclass
class DataConfig:
    hq: str | None = None  # folder of aligned HQ faces (CLI --hq); relighting: the DPR data folder
    lq: str | None = None  # folder of LQ faces with the same file names (CLI --lq): real pairs, no degradation
    size: int | None = None  # training resolution (default: the model's face size)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)  # used when there is no lq folder
    batch_size: int = 4  # per process (per GPU with torchrun)
    num_workers: int = 2  # DataLoader worker processes (0: load in the main process)
    flip: bool = True  # random horizontal flips (of both images of a pair)
    align: bool = False  # align photos to the model's face template with the face detector (else they must be
    #                      aligned squares: a non-square image is an error naming it); pairs use the HQ's alignment
    detector: str = "retinaface-resnet50"  # with align: the detector zoo entry (e.g. retinaface-mobile0.25-1mb)
    detector_weights: str | None = None  # with align: a local weights file for it (default: cache, then download)
    val_hq: str | None = None  # validation HQ folder (default: hold out `val_count` images of hq)
    val_lq: str | None = None  # validation LQ folder (default: degrade val HQ with fixed seeds)
    val_count: int = 0  # without val_hq: the last N images of hq are held out of training for validation


@dataclass
class OptimizerConfig:
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0


@dataclass
class SchedulerConfig:
    type: str = "constant"  # constant | multistep | cosine
    milestones: list[int] = field(default_factory=list)  # multistep: iterations where lr *= gamma
    gamma: float = 0.5
    min_lr_ratio: float = 0.0  # cosine: final lr / initial lr
    warmup_iters: int = 0  # linear warm-up from 0 over the first N iterations


@dataclass
class EMAConfig:
    decay: float = 0.999  # EMA of the generator: ema = decay * ema + (1 - decay) * net
    warmup: bool = True  # effective decay min(decay, (1 + n) / (10 + n)) after n updates, so early EMA follows


@dataclass
class TrainConfig:
    iters: int = 100_000  # TOTAL iterations (CLI --iters); a resumed run continues up to it
    seed: int = 0
    optim_g: OptimizerConfig = field(default_factory=OptimizerConfig)
    optim_d: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + loss scaling); CPU: fp32
    # Explicit autocast precision (CLI --precision): fp32, bf16 (CPU or CUDA; fastest on CPUs with AMX) or fp16
    # (CUDA, with loss scaling). None: as `amp` says.
    precision: str | None = None
    grad_clip: float | None = None  # max gradient norm of the generator (None: no clipping)
    deterministic: bool = False  # cudnn deterministic algorithms (slower; exact repeats on GPU)


@dataclass
class PixelLossConfig:
    type: str = "l1"  # l1 | l2 | smooth_l1
    weight: float = 1.0


@dataclass
class PerceptualLossConfig:
    layers: dict = field(default_factory=lambda: {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0,
                                                  "conv4_4": 1.0, "conv5_4": 1.0})  # VGG19 layer: weight
    weight: float = 1.0  # perceptual (feature) term
    style_weight: float = 0.0  # style (Gram) term
    criterion: str = "l1"  # l1 | l2 | fro
    pretrained: bool = True  # ImageNet VGG19 (vgg19-dcbb9e9d.pth); False only for tests
    weights: str | None = None  # explicit path of vgg19-dcbb9e9d.pth


@dataclass
class GANLossConfig:
    type: str = "wgan_softplus"  # vanilla | lsgan | wgan | wgan_softplus | hinge
    weight: float = 0.1  # generator adversarial weight
    r1: float = 10.0  # R1 gamma on real images (0: off)
    r1_every: int = 16  # lazy R1 regularisation interval (StyleGAN2)
    discriminator: dict = field(default_factory=dict)  # discriminator constructor arguments (see archs.discriminators)
    discriminator_weights: str | None = None  # start D from a file, e.g. GPEN-BFR-512-D.pth (strict load)


@dataclass
class PyramidLossConfig:
    weight: float = 1.0  # GFP-GAN: L1 on the U-Net's intermediate RGB outputs vs the downsampled ground truth
    until: int | None = None  # stop using it after this iteration (GFP-GAN: 50k)


@dataclass
class ComponentLossConfig:
    gan_type: str = "vanilla"
    gan_weight: float = 1.0  # adversarial weight of the eye/mouth discriminators
    style_weight: float = 200.0  # Gram style loss on their features
    eye_size: int = 80  # RoIAlign crop sizes at face size 512 (scaled with the face size)
    mouth_size: int = 120


@dataclass
class IdentityLossConfig:
    weight: float = 10.0
    pretrained: bool = True  # ArcFace weights arcface_resnet18.pth; False only for tests
    weights: str | None = None


@dataclass
class FeatureMatchingLossConfig:
    weight: float = 0.02  # GPEN's beta
    criterion: str = "l2"


@dataclass
class RelightLossConfig:
    image: float = 1.0  # L1 on the relit L channel
    gradient: float = 1.0  # L1 on its image gradients
    light: float = 1.0  # L2 on the predicted source SH
    feature: float = 0.5  # L2 between the face features of the two lightings of one face
    skip_count: int = 0  # outermost hourglass levels trained without their skip branch


@dataclass
class LossConfig:
    pixel: PixelLossConfig | None = None
    perceptual: PerceptualLossConfig | None = None
    gan: GANLossConfig | None = None
    pyramid: PyramidLossConfig | None = None
    components: ComponentLossConfig | None = None
    identity: IdentityLossConfig | None = None
    feature_matching: FeatureMatchingLossConfig | None = None  # needs gan (it uses its discriminator)
    relight: RelightLossConfig | None = None  # DPR


@dataclass
class LogConfig:
    every: int = 50  # write losses to log.csv (and TensorBoard) every N iterations
    checkpoint_every: int = 5000  # save last.pth every N iterations (and at the end, and on Ctrl-C)
    snapshots: bool = False  # also keep iter_<N>.pth at every checkpoint
    # Validate every N iterations (0: only at the end), and before training: each metric of the EMA generator
    # (`psnr`), of the degraded input (`psnr_input`) and of the model at iteration 0 (`psnr_init`), to val.csv.
    val_every: int = 5000
    val_metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim"])  # facerestore.metrics names
    best_metric: str | None = None  # keep best.pth of the best value of this val metric (default: the first)
    # Write a grid (input | iteration 0 | EMA output now | ground truth) every N iterations (0: only at the end)
    sample_every: int = 5000
    sample_count: int = 4
    tensorboard: bool = True  # when tensorboard is installed


@dataclass
class Config:
    name: str = "finetune"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    log: LogConfig = field(default_factory=LogConfig)
    out: str | None = None  # output folder (CLI --out; default runs/<name>)
    source: str | None = None  # the YAML file this came from (set on load)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---- dict -> dataclasses ----------------------------------------------------------------------------
def _dataclass_type(annotation: Any) -> type | None:
    """The dataclass inside `X` or `X | None`, if any."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'the config'} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown key {where + '.' if where else ''}{key}{hint}")
        hint = hints[key]
        sub = _dataclass_type(hint)
        path = f"{where}.{key}" if where else str(key)
        if sub is DegradationConfig and isinstance(value, str):
            value = {"preset": value}  # `degradation: gpen` is short for `degradation: {preset: gpen}`
        if sub is not None and (value is not None or typing.get_origin(hint) is None):
            # a None section keeps its defaults; a None optional loss stays off (`gan: {}` turns it on)
            value = _build(sub, value, path)
        elif key == "betas" and value is not None:
            value = tuple(float(v) for v in value)
        elif value is not None and float in (hint, *typing.get_args(hint)) and not isinstance(value, bool):
            try:  # YAML 1.1 reads `2e-3` (no dot) as a string
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{path} must be a number, got {value!r}") from None
        values[key] = value
    return cls(**values)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """A validated Config from a (YAML) mapping."""
    config = _build(Config, data, "")
    _validate(config)
    return config


def load_config(path: str | os.PathLike) -> Config:
    """Read a training config YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    try:
        config = config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    config.source = str(path)
    return config


def _validate(config: Config) -> None:
    model = config.model
    if bool(model.zoo) == bool(model.arch):
        raise ConfigError("model: give exactly one of `zoo: <zoo name>` (fine-tune) or `arch: <family>` (from scratch)")
    if model.arch and model.arch not in config_archs():
        raise ConfigError(f"model.arch {model.arch!r} is not a trainable family; choose from {', '.join(config_archs())}")
    if config.train.iters < 1:
        raise ConfigError("train.iters must be at least 1")
    if config.data.batch_size < 1:
        raise ConfigError("data.batch_size must be at least 1")
    if config.train.precision not in (None, "fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision must be fp32, bf16 or fp16, got {config.train.precision!r}")
    best = config.log.best_metric
    if best is not None and best not in config.log.val_metrics:
        raise ConfigError(f"log.best_metric {best!r} must be one of log.val_metrics "
                          f"({', '.join(config.log.val_metrics)})")
    if config.train.scheduler.type not in ("constant", "multistep", "cosine"):
        raise ConfigError(f"train.scheduler.type must be constant, multistep or cosine, got {config.train.scheduler.type!r}")
    losses = config.losses
    if losses.feature_matching is not None and losses.gan is None:
        raise ConfigError("losses.feature_matching uses the discriminator of losses.gan: configure losses.gan too")
    if not any(getattr(losses, f.name) is not None for f in dataclasses.fields(losses)):
        raise ConfigError("losses: configure at least one loss (e.g. `pixel: {type: l1, weight: 1}`)")


def degradation_from_spec(spec: str | os.PathLike) -> DegradationConfig:
    """`--degradation`: a preset name (`jpeg-colorcast`), or a YAML file holding a degradation section
    ({preset: gfpgan, ranges: {blur_sigma: [0.2, 2]}}, or just a preset name)."""
    from ..data import get_preset

    text = os.fspath(spec)
    if text.lower().endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"degradation spec {path} does not exist")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = {"preset": data} if isinstance(data, str) else data
        try:
            degradation = _build(DegradationConfig, data, "degradation")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    else:
        degradation = DegradationConfig(preset=text)
    try:
        get_preset(degradation.preset)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    return degradation


# ---- config -> zoo entry ----------------------------------------------------------------------------
def base_entry(config: Config) -> ZooEntry:
    """The zoo entry the config fine-tunes, or the family's reference entry when training from scratch."""
    name = config.model.zoo or config_archs()[config.model.arch]
    return get_entry(name)


def config_archs() -> dict[str, str]:
    """`model: {arch: NAME}` names for training from scratch -> the zoo entry whose conventions (template,
    colour, value range, restorer, forward call) the new network shares; declared by each family."""
    return {arch: entry for family in families() if family.training
            for arch, entry in family.training.config_archs.items()}


def entry_from_config(config: Config | str | os.PathLike) -> ZooEntry:
    """The ZooEntry of the network a config trains: the base entry's architecture and conventions with
    the config's constructor arguments and face size. Its weights file is a training checkpoint
    (`last.pth`, EMA weights under `net_ema`): pass it as `load(config_path, weights=...)`."""
    if not isinstance(config, Config):
        config = load_config(config)
    base = base_entry(config)
    arch_config = {**dict(base.arch_config), **config.model.config}
    size_key = base.family.size_argument
    face_size = int(arch_config[size_key]) if size_key and size_key in arch_config else base.face_size
    checkpoint = WeightFile(CHECKPOINT_FILE, (), state_dict_key="net_ema")
    extra_files = tuple(wf for wf in base.files if wf.role != "weights")  # e.g. DFDNet's dictionaries
    origin = f"fine-tuned from {base.name}" if config.model.zoo else f"{config.model.arch} trained from scratch"
    return dataclasses.replace(
        base,
        name=config.name,
        arch_config=arch_config,
        files=(checkpoint, *extra_files),
        face_size=face_size,
        aliases=(),
        description=f"{config.name}: {origin} (config {config.source or '<in memory>'})",
        notes=f"Weights: a facerestore training checkpoint ({CHECKPOINT_FILE}, EMA generator under 'net_ema'); "
              f"pass it with load(config, weights=...). {base.notes}",
    )
