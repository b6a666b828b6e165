"""FID (Heusel et al. 2017) between two folders of images (lower is better), with pytorch-fid's
Inception network and Frechet distance.

The network is pytorch-fid's FID Inception (TensorFlow's 2015 Inception weights ported to
PyTorch, `pt_inception-2015-12-05-6726825d.pth`), assembled from pytorch-fid's own blocks and
loaded from an explicit file (safely, `weights_only`): pytorch-fid itself would download it into
torch's cache. Features are the 2048-d pool3 activations of images resized to 299x299
(bilinear), as pytorch-fid computes them. Images are decoded with OpenCV (pytorch-fid uses PIL:
identical for PNG, JPEG decoders may differ by a level).

FID needs many images to be meaningful (the covariance is 2048x2048; papers use thousands);
on a handful of faces it is only a smoke test. The matrix square root of the 2048x2048
covariances takes about half a minute on a small CPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import convert, hub
from ..imageio import list_images, read_image, to_bgr_uint8
from .weights import metric_weights_path

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_FILE
# pytorch-fid's InceptionV3 up to the final average pool (its output block 3), in order
LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool")
# pytorch-fid's `--dims`: feature size -> the layer ending that output block
BLOCK_END = {64: "maxpool1", 192: "maxpool2", 768: "Mixed_6e", 2048: "avgpool"}


def build_fid_inception() -> torch.nn.Module:
    """The untrained FID Inception (torchvision's Inception3 with pytorch-fid's patched blocks)."""
    from pytorch_fid import inception as fid

    net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)
    return net


def _to_unit_rgb(img: np.ndarray) -> torch.Tensor:
    """BGR uint8 HxWx3 -> (3, H, W) RGB float in [0, 1]."""
    return convert.image_to_tensor(img, value_range=(0.0, 1.0))


class FID:
    """Frechet Inception Distance between two folders; keeps the network loaded.

    weights: the FID Inception file (default: $FACERESTORE_FID_WEIGHTS, the caches, a download).
    dims: 2048 (pool3, the standard FID) or pytorch-fid's smaller feature blocks 64, 192, 768.
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 batch_size: int = 16, dims: int = 2048, download: bool = True, progress: bool = True) -> None:
        if dims not in BLOCK_END:
            raise ValueError(f"dims must be one of {sorted(BLOCK_END)}, got {dims}")
        path = metric_weights_path("fid", FID_FILE, FID_URL, weights, env="FACERESTORE_FID_WEIGHTS", download=download)
        net = build_fid_inception()
        hub.load_weights(net, path)
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.net = net.to(self.device).eval()
        self.layers = LAYERS[:LAYERS.index(BLOCK_END[dims]) + 1]
        self.batch_size, self.progress = batch_size, progress

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, dims) features (spatially averaged below 2048, as pytorch-fid)."""
        x = F.interpolate(images.to(self.device), size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        for name in self.layers:
            x = getattr(self.net, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def statistics(self, folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the pool3 features of every image in `folder`."""
        files = list_images([folder])
        if len(files) < 2:
            raise ValueError(f"FID needs at least 2 images per folder; {folder} has {len(files)}")
        feats = []
        for start in tqdm(range(0, len(files), self.batch_size), desc=f"fid {Path(folder).name}",
                          disable=not self.progress, leave=False):
            images = [_to_unit_rgb(to_bgr_uint8(read_image(f))[0]) for f in files[start:start + self.batch_size]]
            if len({tuple(t.shape) for t in images}) > 1:  # bring odd sizes to 299 first (the same resize)
                images = [F.interpolate(t[None], size=(299, 299), mode="bilinear", align_corners=False)[0]
                          for t in images]
            rgb = torch.stack(images)
            feats.append(self.features(rgb).double().cpu().numpy())
        feats = np.concatenate(feats)
        return feats.mean(axis=0), np.cov(feats, rowvar=False)

    def __call__(self, restored: str | os.PathLike, reference: str | os.PathLike) -> float:
        for folder in (restored, reference):
            if not Path(folder).is_dir():
                raise ValueError(f"FID compares two folders of images; {folder} is not a folder")
        mu1, sigma1 = self.statistics(restored)
        mu2, sigma2 = self.statistics(reference)
        return frechet_distance(mu1, sigma1, mu2, sigma2)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """pytorch-fid's calculate_frechet_distance, without sqrtm's `disp` argument (removed in SciPy 1.18)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():  # product almost singular: add eps to the diagonal
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
