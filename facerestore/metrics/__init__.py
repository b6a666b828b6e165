"""Image quality metrics for face restoration, behind one small registry.

    from facerestore.metrics import compute, get_metric, list_metrics
    compute("psnr", restored, reference)            # BGR uint8 images
    lpips = get_metric("lpips", weights=...)         # keeps the network loaded for repeated calls
    lpips(restored, reference)
    compute("fid", "restored_dir/", "reference_dir/")

`list_metrics()` says for each metric whether lower is better, whether it needs a reference and
which weights it needs. Metrics that need weights raise `facerestore.hub.WeightsError` naming the
file, its URL and where to put it when they are not available offline; each accepts `weights=` (a
local file) and an environment variable (see the table in `list_metrics()`).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["MetricInfo", "compute", "get_metric", "list_metrics"]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric measures and what it needs."""

    name: str
    lower_is_better: bool
    needs_reference: bool
    weights: str  # what files it needs ("" = none)
    target: str  # "module:attribute": a function (restored, reference, **options) or a class(**options)
    inputs: str = "images"  # "images" (BGR uint8 arrays) or "folders" (FID) or "arrays" (lighting)
    env: str = ""  # environment variable naming the weights file
    uses_device: bool = False  # runs a network: takes device=
    description: str = ""

    @property
    def needs_weights(self) -> bool:
        return bool(self.weights)


_METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("psnr", False, True, "", "facerestore.metrics.pixel:psnr",
                   description="PSNR in dB, BasicSR convention (crop_border=0, test_y_channel=False)"),
        MetricInfo("ssim", False, True, "", "facerestore.metrics.pixel:ssim",
                   description="SSIM, BasicSR/MATLAB convention (11x11 Gaussian 1.5, valid, per-channel mean)"),
        MetricInfo("lpips", True, True, "AlexNet ImageNet weights (torchvision) + LPIPS linear layers (shipped)",
                   "facerestore.metrics.perceptual:LPIPS", env="FACERESTORE_LPIPS_BACKBONE", uses_device=True,
                   description="LPIPS v0.1 perceptual distance (AlexNet by default)"),
        MetricInfo("niqe", True, False, "NIQE pristine model niqe_pris_params.npz (BasicSR)",
                   "facerestore.metrics.niqe:NIQE", env="FACERESTORE_NIQE_PARAMS",
                   description="no-reference naturalness, BasicSR's calculate_niqe (Y channel)"),
        MetricInfo("ids", False, True, "ArcFace IR-SE50 recognition_arcface_ir_se50.pth (facexlib)",
                   "facerestore.metrics.identity:IdentitySimilarity", env="FACERESTORE_ARCFACE_WEIGHTS",
                   uses_device=True,
                   description="identity similarity: cosine of ArcFace embeddings"),
        MetricInfo("deg", True, True, "ArcFace IR-SE50 recognition_arcface_ir_se50.pth (facexlib)",
                   "facerestore.metrics.identity:IdentityAngle", env="FACERESTORE_ARCFACE_WEIGHTS",
                   uses_device=True,
                   description="identity distance 'Deg.': angle between ArcFace embeddings in degrees"),
        MetricInfo("lmd", True, True, "face detector (RetinaFace, via facerestore.face)",
                   "facerestore.metrics.landmarks:LandmarkDistance", uses_device=True,
                   description="landmark distance: mean error of the detector's 5 points, in pixels"),
        MetricInfo("fid", True, True, "FID Inception pt_inception-2015-12-05-6726825d.pth (pytorch-fid)",
                   "facerestore.metrics.fid:FID", inputs="folders", env="FACERESTORE_FID_WEIGHTS", uses_device=True,
                   description="Frechet Inception Distance between two folders"),
    )
}

# Written with the relighting code; registered when that module is present.
_OPTIONAL = (
    MetricInfo("si_mse", True, True, "", "facerestore.metrics.lighting:si_mse", inputs="arrays",
               description="scale-invariant MSE (DPR relighting / SH evaluation)"),
    MetricInfo("si_l2", True, True, "", "facerestore.metrics.lighting:si_l2", inputs="arrays",
               description="scale-invariant L2 distance (DPR)"),
)


def list_metrics() -> dict[str, MetricInfo]:
    """name -> MetricInfo (lower_is_better, needs_reference, weights, inputs) for every metric."""
    metrics = dict(_METRICS)
    for info in _OPTIONAL:
        if importlib.util.find_spec(info.target.split(":")[0]) is not None:
            metrics[info.name] = info
    return metrics


def get_info(name: str) -> MetricInfo:
    metrics = list_metrics()
    key = name.strip().lower()
    if key not in metrics:
        raise KeyError(f"unknown metric {name!r}; available: {', '.join(metrics)}")
    return metrics[key]


class FunctionMetric:
    """A metric function with fixed options, callable like the class-based metrics."""

    def __init__(self, function: Callable[..., Any], info: MetricInfo, **options: Any) -> None:
        self.function, self.info, self.options = function, info, options

    def __call__(self, restored: Any, reference: Any = None) -> float:
        if self.info.needs_reference:
            if reference is None:
                raise ValueError(f"{self.info.name} compares with a reference: pass reference=...")
            return float(self.function(restored, reference, **self.options))
        return float(self.function(restored, **self.options))


def get_metric(name: str, **options: Any) -> Callable[..., float]:
    """A ready metric: `metric(restored, reference=None) -> float`. Networks and weights are loaded
    here, once (raises hub.WeightsError when they are not available); options go to the metric
    (e.g. crop_border, test_y_channel, weights, device)."""
    info = get_info(name)
    module_name, attribute = info.target.split(":")
    target = getattr(importlib.import_module(module_name), attribute)
    if inspect.isclass(target):
        metric = target(**options)
        metric.info = info
        return metric
    return FunctionMetric(target, info, **options)


def compute(name: str, restored: Any, reference: Any = None, **options: Any) -> float:
    """One metric value: BGR uint8 images (restored, and the ground truth for full-reference
    metrics), or two folders for FID."""
    return get_metric(name, **options)(restored, reference)
