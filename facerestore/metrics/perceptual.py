"""LPIPS (Zhang et al. 2018), the learned perceptual distance (lower is better), via the `lpips` package.

LPIPS = an ImageNet classifier's features (AlexNet by default, as the restoration papers report)
compared through linear layers calibrated on human judgements. The linear layers ship inside the
`lpips` package; the backbone's ImageNet weights are torchvision's, which `lpips` would download
into torch's cache. Here both are explicit files: the backbone is found through
facerestore.metrics.weights (explicit path, $FACERESTORE_LPIPS_BACKBONE, our cache, torchvision's
cache, download), and both are loaded strictly, so a wrong file fails loudly instead of giving a
quietly meaningless score.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import convert, hub
from .weights import metric_weights_path

# lpips net name -> (torchvision weights file, its URL)
BACKBONES = {
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "squeeze": ("squeezenet1_1-b8a52dc0.pth", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"),
}


def image_to_unit_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    """BGR uint8 HxWx3 -> (1, 3, H, W) RGB float in [-1, 1] on `device`."""
    return convert.image_to_tensor(img, device=device)[None]


def shipped_linear_weights(net: str) -> Path:
    """The LPIPS v0.1 linear layers that come with the lpips package."""
    import lpips

    return Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"


class LPIPS:
    """LPIPS distance between two BGR uint8 images of the same size; keeps the network loaded.

    net: "alex" (default, what GFPGAN/CodeFormer/VQFR report), "vgg" or "squeeze".
    weights: the torchvision ImageNet weights of the backbone (e.g. alexnet-owt-7be5be79.pth).
    linear_weights: LPIPS linear layers (default: the v0.1 file shipped with `lpips`).
    """

    def __init__(self, net: str = "alex", weights: str | os.PathLike | None = None,
                 linear_weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 download: bool = True) -> None:
        import lpips

        if net not in BACKBONES:
            raise ValueError(f"LPIPS net must be one of {sorted(BACKBONES)}, got {net!r}")
        filename, url = BACKBONES[net]
        backbone_path = metric_weights_path("lpips", filename, url, weights, env="FACERESTORE_LPIPS_BACKBONE",
                                            download=download)
        linear_path = Path(linear_weights) if linear_weights is not None else shipped_linear_weights(net)
        with warnings.catch_warnings():  # lpips builds torchvision nets with the deprecated `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
        backbone = hub.extract_state_dict(hub.read_checkpoint(backbone_path))
        linear = dict(hub.extract_state_dict(hub.read_checkpoint(linear_path)))
        # lpips' slices keep torchvision's layer numbers: slice2.3.weight is features.3.weight
        sources = {key: "features." + key.split(".", 1)[1] for key in model.net.state_dict()}
        absent = [source for source in sources.values() if source not in backbone]
        if absent:
            raise hub.WeightsError(f"{backbone_path} is not torchvision {net} weights: {absent[0]} is missing")
        model.net.load_state_dict({key: backbone[source] for key, source in sources.items()}, strict=True)
        for i, layer in enumerate(model.lins):
            prefix = f"lin{i}."
            try:
                layer.load_state_dict({k[len(prefix):]: linear.pop(k) for k in list(linear) if k.startswith(prefix)})
            except RuntimeError as exc:
                raise hub.WeightsError(f"{linear_path} are not LPIPS {net} linear layers: {exc}") from exc
        if linear:
            raise hub.WeightsError(f"{linear_path} are not LPIPS {net} linear layers (unexpected {sorted(linear)[:3]})")
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()
        self.net = net

    @torch.inference_mode()
    def __call__(self, restored: np.ndarray, reference: np.ndarray) -> float:
        if reference is None:
            raise ValueError("LPIPS compares with a reference image: pass reference=...")
        if np.shape(restored) != np.shape(reference):
            raise ValueError(f"image shapes differ: {np.shape(restored)} vs {np.shape(reference)}; resize first")
        a = image_to_unit_tensor(restored, self.device)
        b = image_to_unit_tensor(reference, self.device)
        return float(self.model(a, b).item())
