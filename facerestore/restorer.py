"""The `Restorer` interface every model implements, and `FaceRestorer`, the whole-photo pipeline:

    to_bgr_uint8(img) -> detector(img) -> align(landmarks, entry.template, entry.face_size)
      -> one batched forward for all faces -> paste back into the (upscaled) photo -> RestoreResult

Model-specific behaviour lives in subclasses (declared next to the model's zoo entries) that
override `forward_faces`; everything else is shared.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import cv2
import numpy as np
import torch

from .imageio import from_bgr_uint8, to_bgr_uint8
from .registry import ZooEntry

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class NoFaceWarning(UserWarning):
    """No face was found in an image; it is returned upscaled but otherwise unchanged."""


@dataclass
class FaceResult:
    """One face of a photo: where it was found, how it was aligned, and its crops."""

    box: np.ndarray  # (4,) x1, y1, x2, y2 in input-image pixels
    score: float
    landmarks: np.ndarray  # (5, 2) in input-image pixels
    affine: np.ndarray  # (2, 3) input image -> aligned crop
    crop: np.ndarray  # aligned input face, BGR uint8, face_size x face_size
    restored: np.ndarray  # restored face, BGR uint8, face_size x face_size


class RestoreResult(np.ndarray):
    """The restored photo (an ndarray you can use directly, e.g. with cv2.imwrite) that also carries
    `.faces`, a list of FaceResult. `.image` is the same pixels as a plain ndarray."""

    faces: list[FaceResult]

    def __new__(cls, image: np.ndarray, faces: list[FaceResult] | None = None) -> "RestoreResult":
        obj = np.asarray(image).view(cls)
        obj.faces = list(faces or [])
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.faces = getattr(obj, "faces", [])

    @property
    def image(self) -> np.ndarray:
        return self.view(np.ndarray)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Restorer:
    """A loaded network plus what is needed to run it on images.

    Attributes: `net` (the torch module in the official state-dict layout and call convention),
    `entry` (its ZooEntry), `device`, `precision` ("fp32" exact, or "bf16"/"fp16" autocast).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        entry: ZooEntry,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        detector: str | None = "retinaface-resnet50",
        detector_weights: str | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if precision not in entry.precisions:
            raise ValueError(f"{entry.name} supports precision {', '.join(entry.precisions)}, not {precision!r}")
        self.entry = entry
        self.device = torch.device(device) if device is not None else default_device()
        self.precision = precision
        self.net = net.to(self.device).eval()
        set_weight_layout(self.net, self.channels_last)
        if precision != "fp32":
            # the net itself runs in the chosen precision, also when called directly as restorer.net(x)
            self._wrap_forward()
        self.detector_name = detector
        self.detector_weights = detector_weights
        self._detector = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.entry.name!r}, device={str(self.device)!r}, precision={self.precision!r})"

    _batch_size: int | None = None

    @property
    def batch_size(self) -> int:
        """Faces per forward, bounded so that a crowd photo does not exhaust memory: 4 on CPU (where
        batching saves nothing per face), 16 faces of 512 px (the same pixels at other sizes) on CUDA,
        where it makes each face several times cheaper. Assign to override."""
        if self._batch_size is not None:
            return self._batch_size
        if self.device.type != "cuda":
            return 4
        return max(1, int(16 * (512 / self.entry.face_size) ** 2))

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"batch_size must be >= 1, got {value}")
        self._batch_size = int(value)

    @property
    def channels_last(self) -> bool:
        """Whether the net runs channels_last: always in fast modes; in exact mode where the entry says,
        on CPU (on CUDA those small-channel networks measured faster in NCHW)."""
        return self.precision != "fp32" or (self.entry.channels_last and self.device.type == "cpu")

    @property
    def detector(self):
        """The face detector, built on first use (so aligned-face use never needs detector weights)."""
        if self._detector is None:
            from .face.detect import load_detector

            if not self.detector_name:
                raise RuntimeError("this restorer was loaded with detector=None; pass aligned=True or load a detector")
            self._detector = load_detector(self.detector_name, weights=self.detector_weights, device=self.device)
        return self._detector

    def _wrap_forward(self) -> None:
        """Make `net.forward` itself autocast to the restorer's precision on its device."""
        plain_forward = type(self.net).forward.__get__(self.net)
        self.net.forward = torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])(plain_forward)

    def to(self, device: str | torch.device) -> "Restorer":
        self.device = torch.device(device)
        self.net.to(self.device)
        set_weight_layout(self.net, self.channels_last)  # exact mode's layout can depend on the device
        if self.precision != "fp32":
            self._wrap_forward()
        if self._detector is not None:
            self._detector.to(self.device)
        return self

    @contextlib.contextmanager
    def inference(self, seed: int | None = None) -> Iterator[None]:
        """No-grad inference; with `seed`, random draws are reproducible and the global RNG state is
        left as it was."""
        devices = [self.device] if self.device.type == "cuda" else []
        rng = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
        with torch.inference_mode(), rng:
            if seed is not None:
                torch.manual_seed(seed)
            yield

    def find_faces(self, bgr: np.ndarray, dst: np.ndarray, only_center_face: bool = False,
                   max_faces: int | None = None, min_face_size: float = 0) -> list[FaceResult]:
        """Detect faces (highest scores first) and their affines onto the (5, 2) template `dst`.

        min_face_size: shortest box side in input pixels; only_center_face: the face nearest the
        image centre; max_faces: at most this many. Crops are filled in later by the caller."""
        from .face.align import estimate_affine

        dets = self.detector.detect(bgr)
        keep = [i for i in range(len(dets.scores))
                if min(dets.boxes[i, 2] - dets.boxes[i, 0], dets.boxes[i, 3] - dets.boxes[i, 1]) >= min_face_size]
        if only_center_face and keep:
            h, w = bgr.shape[:2]
            centers = (dets.boxes[keep, :2] + dets.boxes[keep, 2:]) / 2
            keep = [keep[int(np.argmin(np.linalg.norm(centers - [w / 2, h / 2], axis=1)))]]
        if max_faces is not None:
            keep = keep[:max_faces]
        empty = np.zeros((0, 0, 3), np.uint8)
        return [FaceResult(dets.boxes[i].copy(), float(dets.scores[i]), dets.landmarks[i].copy(),
                           estimate_affine(dets.landmarks[i], dst), empty, empty) for i in keep]

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """(N,H,W,3) BGR uint8 -> (N,3,H,W) float on the device, in the entry's colour order and range."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        if self.entry.color == "rgb":
            x = x.flip(-1)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        lo, hi = self.entry.input_range
        x = x * (hi - lo) + lo
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def to_image(self, tensor: torch.Tensor) -> np.ndarray:
        """(N,3,H,W) network output in the entry's range -> (N,H,W,3) BGR uint8 (clamped, rounded)."""
        lo, hi = self.entry.input_range
        x = ((tensor.detach().float() - lo) / (hi - lo)).clamp_(0, 1)
        if self.entry.color == "rgb":
            x = x.flip(1)
        return (x.permute(0, 2, 3, 1) * 255.0).round_().to(torch.uint8).cpu().numpy()


def set_weight_layout(net: torch.nn.Module, channels_last: bool) -> None:
    """channels_last (the fast oneDNN/cuDNN convolution layout) or NCHW for the 4-D weights; 5-D
    modulated StyleGAN2 weights keep their checkpoint layout. Convolutions follow their weights."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for tensor in [*net.parameters(), *net.buffers()]:
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=layout)


class FaceRestorer(Restorer):
    """Blind face restoration on aligned faces or whole photos."""

    def forward_faces(self, crops: np.ndarray, crop_landmarks: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Restore aligned faces: (N,S,S,3) BGR uint8 -> (N,S,S,3) BGR uint8, in batches.

        `crop_landmarks` (N,5,2) are the 5 points in crop coordinates (used by models that need
        part locations, e.g. DFDNet)."""
        outputs = []
        with self.inference(seed):
            for start in range(0, len(crops), self.batch_size):
                out = self.net(self.to_tensor(crops[start:start + self.batch_size]), **self.entry.forward_kwargs)
                outputs.append(self.to_image(out[0] if isinstance(out, (tuple, list)) else out))
        return np.concatenate(outputs) if outputs else crops[:0].copy()

    def restore(
        self,
        img: Any,
        *,
        upscale: float = 1,
        aligned: bool = False,
        only_center_face: bool = False,
        max_faces: int | None = None,
        min_face_size: float = 0,
        fidelity: float = 0.0,
        seed: int | None = None,
        color_order: str = "bgr",
        background_upsampler: Any = None,
    ) -> RestoreResult:
        """Restore every face of a photo (or one aligned face with `aligned=True`).

        img: BGR uint8 HxWx3 (cv2 convention), a path, a PIL image, or an RGB array with
            `color_order="rgb"`; gray, RGBA (alpha kept) and 16-bit inputs come back in their form.
        upscale: output size factor; the background is resized (or passed to `background_upsampler`,
            a callable `(bgr_uint8, scale) -> bgr_uint8`, e.g. a Real-ESRGAN wrapper).
        fidelity: 0 = the model's restoration as is (official behaviour), 1 = the input face
            unchanged; values between blend the two linearly (GPEN's demo `alpha` = 1 - fidelity).
        seed: models that draw noise (GFP-GAN) give the same output for the same seed; None draws
            fresh noise like the official code.
        only_center_face / max_faces / min_face_size: which detected faces to restore (the largest
            detection scores first; min_face_size is the box's shorter side in input pixels).
        """
        if not 0.0 <= fidelity <= 1.0:
            raise ValueError(f"fidelity must be in [0, 1], got {fidelity}")
        if upscale <= 0:
            raise ValueError(f"upscale must be positive, got {upscale}")
        bgr, info = to_bgr_uint8(img, color_order)
        size = self.entry.face_size
        if aligned:
            crop = bgr if bgr.shape[:2] == (size, size) else cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LINEAR)
            from .face.align import template

            points = template(self.entry.template, size)[None]
            restored = self.forward_faces(crop[None], points, seed=seed)[0]
            restored = blend(restored, crop, fidelity)
            out_h, out_w = round(bgr.shape[0] * upscale), round(bgr.shape[1] * upscale)
            image = restored if (out_h, out_w) == (size, size) else cv2.resize(
                restored, (out_w, out_h), interpolation=cv2.INTER_LINEAR if out_h > size else cv2.INTER_AREA)
            face = FaceResult(np.array([0, 0, bgr.shape[1], bgr.shape[0]], np.float32), 1.0,
                              points[0] * [bgr.shape[1] / size, bgr.shape[0] / size], np.eye(2, 3) * size / bgr.shape[0],
                              crop, restored)
            return RestoreResult(from_bgr_uint8(image, info, color_order), [face])

        from .face.align import template

        dst = template(self.entry.template, self.entry.face_size)
        faces = self.find_faces(bgr, dst, only_center_face, max_faces, min_face_size)
        background = upscale_background(bgr, upscale, background_upsampler)
        if not faces:
            warnings.warn("no face found: returning the (upscaled) input unchanged", NoFaceWarning, stacklevel=2)
            return RestoreResult(from_bgr_uint8(background, info, color_order), [])

        from .face.align import transform_points, warp_faces
        from .face.paste import paste_faces, resize_affine

        affines = np.stack([f.affine for f in faces])
        crops = warp_faces(bgr, affines, size)
        crop_landmarks = np.stack([transform_points(f.landmarks, f.affine) for f in faces])
        restored = blend(self.forward_faces(crops, crop_landmarks, seed=seed), crops, fidelity)
        for face, crop, out in zip(faces, crops, restored):
            face.crop, face.restored = crop, out
        to_input = resize_affine(bgr.shape, background.shape)  # background pixel -> input pixel
        bg_affines = np.stack([a @ to_input for a in affines])
        image = paste_faces(background, restored, bg_affines)
        return RestoreResult(from_bgr_uint8(image, info, color_order), faces)

    def restore_video(self, src: Any, dst: Any, **options: Any) -> Any:
        """Restore every face of a video clip into `dst`, streaming (see `facerestore.video.restore_video`
        for the options: those of `restore` plus crf, codec, batch_frames, progress); returns a VideoSummary."""
        from .video import restore_video

        return restore_video(self, src, dst, **options)

def blend(restored: np.ndarray, original: np.ndarray, fidelity: float) -> np.ndarray:
    """Linear blend toward the input: fidelity 0 -> restored, 1 -> original."""
    if fidelity == 0:
        return restored
    if fidelity == 1:
        return original.copy()
    mixed = restored.astype(np.float32) * (1.0 - fidelity) + original.astype(np.float32) * fidelity
    return np.clip(mixed.round(), 0, 255).astype(np.uint8)


def upscale_background(bgr: np.ndarray, upscale: float, upsampler: Any = None) -> np.ndarray:
    if upsampler is not None:
        return upsampler(bgr, upscale)
    if upscale == 1:
        return bgr.copy()
    h, w = bgr.shape[:2]
    size = (max(1, math.floor(w * upscale + 0.5)), max(1, math.floor(h * upscale + 0.5)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_LANCZOS4 if upscale > 1 else cv2.INTER_AREA)
