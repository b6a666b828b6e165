"""Build DFDNet component dictionaries from your own high-quality faces.

    faces (aligned FFHQ-style, or detected and aligned) -> 512x512 -> VGG19 encoder of DFDNet
      -> per component (left eye, right eye, nose, mouth) and scale (256, 128, 64, 32): crop the
         feature map with the component box, bilinear resize to the dictionary size S x S
      -> K-means per component and scale -> `<part>_<scale>_center.npy`, shape (K, C, S, S) float32,
         the official DictionaryCenter512 layout (`UNetDictFace.load_dictionaries` reads it).

The paper builds each dictionary with K-means on VGG features of high-quality faces; the raw
(un-normalised) features are clustered here, as the network normalises every atom itself.

K-means: a small torch implementation (k-means++ seeding, then Lloyd iterations until no assignment
changes). Why not scikit-learn: the vectors are long (C*S*S = 1,152 to 387,200 values; 1.56 M per
face over the 16 dictionaries) and a real build uses thousands of faces, so the data lives in
memory-mapped files on disk and is streamed through the device in chunks of rows; scikit-learn's
KMeans needs it all in memory (as float32/64 arrays) and runs on the CPU only, MiniBatchKMeans only
approximates Lloyd. Distances use ||x||^2 - 2 x.c + ||c||^2 with matrix products on centred data
(GPU with `device="cuda"`). Empty clusters keep their previous centre. Deterministic for a given `seed`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...archs.dfdnet import PARTS, SCALES, UNetDictFace, VGGFeat, dictionary_key, dictionary_shape
from ... import convert
from ...imageio import IMAGE_EXTENSIONS, to_bgr_uint8, write_atomic


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside `folder` (sorted); clear error when there are none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of face images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def load_encoder(weights: str | os.PathLike | torch.nn.Module | None = None) -> VGGFeat:
    """DFDNet's VGG19 encoder (features only, no classifier) with trained weights.

    weights: None (the official DFDNet generator from the zoo: cache, else download), a DFDNet
    generator checkpoint (keys `VggExtract.*`; its RGB_mean/RGB_std are used), a torchvision VGG19
    state dict (keys `features.*`, e.g. the official weights/vgg19.pth; ImageNet mean/std), or a
    UNetDictFace / VGGFeat module."""
    if isinstance(weights, UNetDictFace):
        return weights.VggExtract
    if isinstance(weights, VGGFeat):
        return weights
    from ... import hub

    if weights is None:
        from dataclasses import replace

        from ...registry import get_entry

        entry = get_entry("dfdnet")
        generator = replace(entry, files=tuple(wf for wf in entry.files if wf.role == "weights"))
        weights = next(iter(hub.resolve(generator).values()))
    state = hub.extract_state_dict(hub.read_checkpoint(weights))
    encoder = VGGFeat(classifier=False)
    if "VggExtract.model.features.0.weight" in state:
        prefix = "VggExtract.model.features."
        with torch.no_grad():
            encoder.RGB_mean.copy_(state["VggExtract.RGB_mean"])
            encoder.RGB_std.copy_(state["VggExtract.RGB_std"])
    elif "features.0.weight" in state:
        prefix = "features."
    else:
        raise hub.WeightsError(
            f"{weights} is neither a DFDNet generator checkpoint (VggExtract.* keys) nor a torchvision VGG19 "
            f"state dict (features.* keys); its first keys are {list(state)[:5]}"
        )
    features = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        encoder.model.features.load_state_dict(features, strict=True)
    except RuntimeError as exc:
        raise hub.WeightsError(f"{weights}: the VGG19 features do not fit: {str(exc)[:1000]}") from exc
    return encoder


def aligned_faces(paths: Sequence[Path], size: int = 512, aligned: bool = True, detector: str = "retinaface-resnet50",
                  detector_weights: str | None = None, device: str | torch.device | None = None
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(face BGR uint8 size x size, its 5 landmarks (5,2)) for every face of every image.

    aligned=True: each image is one FFHQ-aligned face, resized to `size`; its landmarks are the FFHQ
    template. aligned=False: faces are detected and aligned to the FFHQ template (all faces)."""
    from ...face.align import template

    points = template("ffhq", size)
    if not aligned:
        from ...face.align import estimate_affine, transform_points, warp_faces
        from ...face.detect import load_detector

        finder = load_detector(detector, weights=detector_weights, device=device)
    for path in paths:
        img, _ = to_bgr_uint8(path)
        if aligned:
            h, w = img.shape[:2]
            if (h, w) != (size, size):
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC)
            yield img, points
            continue
        detections = finder.detect(img)
        for landmarks in detections.landmarks:
            affine = estimate_affine(landmarks, points)
            yield warp_faces(img, affine[None], size)[0], transform_points(landmarks, affine)


def component_features(encoder: VGGFeat, faces: np.ndarray, boxes: np.ndarray) -> dict[str, torch.Tensor]:
    """VGG features of each component, resized to the dictionary size as the network does.

    faces (N,S,S,3) BGR uint8 aligned faces; boxes (N,4,4) [face, part, xyxy] in the faces' pixels.
    Returns `<part>_<scale>` -> (N, C*S*S) float32 tensors (on the encoder's device)."""
    device = encoder.RGB_mean.device
    x = convert.image_to_tensor(faces, device=device)
    size = faces.shape[1]
    features = encoder(x)
    out = {}
    for feature, scale in zip(features, SCALES):
        factor = size / feature.shape[-1]
        for p, part in enumerate(PARTS):
            _, side, _ = dictionary_shape(part, scale)
            rows = []
            for b in range(len(faces)):
                x1, y1, x2, y2 = (int(v // factor) for v in boxes[b, p])
                crop = feature[b:b + 1, :, y1:y2, x1:x2]
                rows.append(F.interpolate(crop, (side, side), mode="bilinear", align_corners=False).flatten(1))
            out[dictionary_key(part, scale)] = torch.cat(rows).float()
    return out


def _chunks(n: int, rows: int) -> Iterator[slice]:
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


def kmeans(data: np.ndarray | torch.Tensor, k: int, iterations: int = 50, seed: int = 0,
           device: str | torch.device | None = None, chunk_rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """K-means (k-means++ seeding + Lloyd) on the rows of `data` (N, D), streamed in chunks.

    `data` may be a memory-mapped array; only `chunk_rows` rows are on the device at a time.
    Returns centres (k, D) float32 and labels (N,) int64."""
    n, dim = data.shape
    if not 1 <= k <= n:
        raise ValueError(f"K-means needs 1 <= clusters <= number of samples; got {k} clusters for {n} faces")
    device = torch.device(device or "cpu")
    rng = np.random.default_rng(seed)

    def raw_rows(s: slice) -> torch.Tensor:
        chunk = data[s] if torch.is_tensor(data) else torch.from_numpy(np.array(data[s], dtype=np.float32))
        return chunk.to(device, torch.float32)

    # Work on centred data: the features share a large positive offset (post-ReLU), and the squared
    # distances ||x||^2 - 2 x.c + ||c||^2 would lose their small differences to float32 cancellation.
    offset = torch.zeros(dim, dtype=torch.float64, device=device)
    for s in _chunks(n, chunk_rows):
        offset += raw_rows(s).double().sum(0)
    offset = (offset / n).float()

    def rows(s: slice) -> torch.Tensor:
        return raw_rows(s) - offset

    squared = torch.cat([rows(s).square().sum(1) for s in _chunks(n, chunk_rows)])

    def distances_to(centres: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
        norms = centres.square().sum(1)
        for s in _chunks(n, chunk_rows):
            yield s, (squared[s, None] - 2 * rows(s) @ centres.t() + norms[None]).clamp_(min=0)

    # k-means++: each next centre drawn with probability proportional to the squared distance.
    centres = torch.empty(k, dim, device=device)
    first = int(rng.integers(n))
    centres[0] = rows(slice(first, first + 1))[0]
    closest = torch.cat([d[:, 0] for _, d in distances_to(centres[:1])])
    for j in range(1, k):
        weights = closest.double().cpu().numpy()
        total = weights.sum()
        pick = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        centres[j] = rows(slice(pick, pick + 1))[0]
        closest = torch.minimum(closest, torch.cat([d[:, 0] for _, d in distances_to(centres[j:j + 1])]))

    labels = torch.full((n,), -1, dtype=torch.int64, device=device)
    for _ in range(iterations):
        new_labels = torch.cat([d.argmin(1) for _, d in distances_to(centres)])
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
        sums = torch.zeros(k, dim, dtype=torch.float64, device=device)
        for s in _chunks(n, chunk_rows):
            sums.index_add_(0, labels[s], rows(s).double())
        counts = torch.bincount(labels, minlength=k)
        filled = counts > 0
        centres[filled] = (sums[filled] / counts[filled, None]).float()
    return (centres + offset).cpu().numpy(), labels.cpu().numpy()


def build_dictionaries(
    faces: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    clusters: int,
    encoder: str | os.PathLike | torch.nn.Module | None = None,
    *,
    size: int = 512,
    aligned: bool = True,
    detector: str = "retinaface-resnet50",
    detector_weights: str | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 4,
    iterations: int = 50,
    seed: int = 0,
    work_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Build the 16 DFDNet dictionaries with `clusters` atoms each from high-quality faces.

    faces: a folder of images or a list of image files (FFHQ-aligned faces with aligned=True, else
        photos whose faces are detected and aligned). size: side the faces are resized to (512,
        DFDNet's face size; boxes scale with it).
    encoder: see load_encoder (default: the official DFDNet generator's VGG19).
    work_dir: where the features are memory-mapped while clustering (default: a temp folder;
        1.56 M float32 values = 6.2 MB per face).
    Returns `<part>_<scale>` -> path of the written `<part>_<scale>_center.npy`."""
    from . import part_locations_from_landmarks5

    paths = list_images(faces) if isinstance(faces, (str, os.PathLike)) else [Path(p) for p in faces]
    if clusters < 1:
        raise ValueError(f"clusters must be at least 1, got {clusters}")
    if aligned and len(paths) < clusters:  # one face per image: known before any encoding
        raise ValueError(f"{len(paths)} faces are fewer than the {clusters} clusters asked for")
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else torch.device("cpu")
    vgg = load_encoder(encoder)
    vgg_device, vgg_training = vgg.RGB_mean.device, vgg.training
    vgg.to(device).eval()
    keys = [dictionary_key(p, s) for s in SCALES for p in PARTS]
    written: dict[str, Path] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="dfdnet-dict-", dir=work_dir) as tmp:
            sinks = {key: open(Path(tmp) / f"{key}.f32", "wb") for key in keys}
            count = 0
            try:
                batch: list[tuple[np.ndarray, np.ndarray]] = []

                def flush() -> None:
                    crops = np.stack([face for face, _ in batch])
                    boxes = part_locations_from_landmarks5(np.stack([lm for _, lm in batch]), size)
                    with torch.inference_mode():
                        for key, rows in component_features(vgg, crops, boxes).items():
                            rows.cpu().numpy().tofile(sinks[key])
                    batch.clear()

                for face in tqdm(aligned_faces(paths, size, aligned, detector, detector_weights, device),
                                 desc="Encoding faces", unit="face", disable=not progress):
                    batch.append(face)
                    count += 1
                    if len(batch) == batch_size:
                        flush()
                if batch:
                    flush()
            finally:
                for sink in sinks.values():
                    sink.close()
            if count < clusters:
                raise ValueError(f"found {count} faces, fewer than the {clusters} clusters asked for")
            for key in tqdm(keys, desc="K-means", unit="dictionary", disable=not progress):
                part, scale = key.rsplit("_", 1)
                shape = dictionary_shape(part, int(scale))
                data = np.memmap(Path(tmp) / f"{key}.f32", dtype=np.float32, mode="r",
                                 shape=(count, int(np.prod(shape))))
                centres, _ = kmeans(data, clusters, iterations=iterations, seed=seed, device=device)
                del data
                written[key] = out_dir / f"{key}_center.npy"
                array = centres.reshape(clusters, *shape)
                write_atomic(written[key], lambda f: np.save(f, array))
    finally:
        vgg.to(vgg_device).train(vgg_training)
    return written
