"""The `Restorer` interface every model implements, and `FaceRestorer`, the whole-photo pipeline:

    to_bgr_uint8(img) -> detector(img) -> align(landmarks, entry.template, entry.face_size)
      -> one batched forward for all faces -> paste back into the (upscaled) photo -> RestoreResult

Model-specific behaviour lives in subclasses (declared next to the model's zoo entries) that
override `forward_faces`; everything else is shared.
"""
from __future__ import annotations

import contextlib
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch

from . import convert
from .imageio import from_bgr_uint8, gray_bgr, to_bgr_uint8
from .registry import ZooEntry

PASTE_MODES = ("parse", "box", "gpen", "feather")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# The largest output (pixels) `restore` makes by default: 250 MP, about 1.6 GB at its ~6.5 bytes per output
# pixel (the input and output photos plus chunk-sized paste buffers; README "Robustness"). Larger requests
# stop with an ImageTooLargeError naming this limit instead of risking an out-of-memory kill; set
# `restorer.max_pixels` (None: no limit) to change it.
MAX_PIXELS = 250_000_000

# Seeding PyTorch's process-global RNG (only for nets that may draw from it, see Restorer.inference) is
# one critical section for the whole process: two threads seeding it at once would interleave draws.
_GLOBAL_RNG_LOCK = threading.Lock()


class ImageTooLargeError(ValueError):
    """The output `restore` would make is larger than `restorer.max_pixels`."""


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

    def __array_wrap__(self, array: np.ndarray, context: Any = None, return_scalar: bool = False) -> Any:
        # Arithmetic and reductions (out - img, out.mean()) give plain arrays and numbers, not "photos"
        # with faces; views and slices (out[y0:y1]) keep the type through __array_finalize__.
        array = np.asarray(array).view(np.ndarray)
        return array[()] if return_scalar or array.ndim == 0 else array

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
        parser: str | None = None,
        parser_weights: str | None = None,
        upsampler: str | None = None,
        upsampler_weights: str | None = None,
        pretrained_helpers: bool = True,
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
        # Helper networks of the whole-photo pipeline, built on first use: the face parser of the
        # "parse"/"gpen" paste-back (default parsenet) and the background upsampler (none by default).
        # pretrained_helpers=False builds them untrained unless their weights are given (tests, offline).
        self.parser_name = parser or "parsenet"
        self.parser_weights = parser_weights
        self.upsampler_name = upsampler
        self.upsampler_weights = upsampler_weights
        self.pretrained_helpers = pretrained_helpers
        self._parser = None
        self._upsampler = None
        self._detector = None
        # Helpers are built once even when several threads ask for one at the same time (a web server).
        self._helpers_lock = threading.Lock()

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
            with self._helpers_lock:
                if self._detector is None:
                    self._detector = load_detector(self.detector_name, weights=self.detector_weights,
                                                   device=self.device)
        return self._detector

    @property
    def parser(self):
        """The face parser of the "parse"/"gpen" paste-back, built on first use."""
        if self._parser is None:
            from .face.parse import load_parser

            with self._helpers_lock:
                if self._parser is None:
                    self._parser = load_parser(self.parser_name, weights=self.parser_weights, device=self.device,
                                               pretrained=self.pretrained_helpers or self.parser_weights is not None)
        return self._parser

    @property
    def upsampler(self):
        """The background upsampler (a callable `(bgr_uint8, scale) -> bgr_uint8`), or None."""
        if self._upsampler is None and self.upsampler_name:
            from .api import load

            with self._helpers_lock:
                if self._upsampler is None:
                    self._upsampler = load(self.upsampler_name, weights=self.upsampler_weights, device=self.device,
                                           precision=self.precision,
                                           pretrained=self.pretrained_helpers or self.upsampler_weights is not None)
        return self._upsampler

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
        for helper in (self._detector, self._parser, self._upsampler):
            if helper is not None:
                helper.to(self.device)
        return self

    @contextlib.contextmanager
    def inference(self, seed: int | Sequence[int] | None = None) -> Iterator[None]:
        """No-grad inference; with an int `seed`, random draws from the global RNG are reproducible and its
        state is left as it was (per-face seed lists only concern nets with seedable noise inputs, see
        FaceRestorer.forward_faces). Seeding the global RNG holds a process-wide lock for the block, so
        seeded calls from several threads do not interleave their draws (they run one at a time). The
        zoo's networks draw nothing from it at inference (GFP-GAN's noise comes from per-call generators),
        so for them the seed is not needed and their calls never take that lock."""
        if not isinstance(seed, (int, np.integer)):
            seed = None
        devices = [self.device] if self.device.type == "cuda" else []
        if seed is None or _draws_nothing(self.net):
            with torch.inference_mode():
                yield
            return
        with _GLOBAL_RNG_LOCK, torch.inference_mode(), torch.random.fork_rng(devices=devices):
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
        return convert.image_to_tensor(images, color=self.entry.color, value_range=self.entry.input_range,
                                       device=self.device, channels_last=self.channels_last)

    def to_image(self, tensor: torch.Tensor) -> np.ndarray:
        """(N,3,H,W) network output in the entry's range -> (N,H,W,3) BGR uint8 (clamped, then rounded or
        truncated as the entry's official code does)."""
        return convert.tensor_to_image(tensor, color=self.entry.color, value_range=self.entry.input_range,
                                       rounding=self.entry.output_rounding)


def set_weight_layout(net: torch.nn.Module, channels_last: bool) -> None:
    """channels_last (the fast oneDNN/cuDNN convolution layout) or NCHW for the 4-D weights; 5-D
    modulated StyleGAN2 weights keep their checkpoint layout. Convolutions follow their weights."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for tensor in [*net.parameters(), *net.buffers()]:
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=layout)


class FaceRestorer(Restorer):
    """Blind face restoration on aligned faces or whole photos.

    `max_pixels`: the largest output (in pixels, i.e. input pixels x upscale^2) `restore` makes; larger
    requests raise ImageTooLargeError before any work. Default MAX_PIXELS (250 megapixels); None: no limit.
    """

    max_pixels: int | None = MAX_PIXELS

    def forward_faces(self, crops: np.ndarray, crop_landmarks: np.ndarray,
                      seed: int | Sequence[int] | None = None, fidelity: float | None = None) -> np.ndarray:
        """Restore aligned faces: (N,S,S,3) BGR uint8 -> (N,S,S,3) BGR uint8, in batches.

        `crop_landmarks` (N,5,2) are the 5 points in crop coordinates (used by models that need
        part locations, e.g. DFDNet). `seed`: an int makes the noise of noise-drawing models (GFP-GAN)
        reproducible (drawn in the official order, as after torch.manual_seed(seed) on the CPU); a list
        gives each face its own seed, so a face gets the same noise whatever its batch position (video
        tracks). Seeded noise comes from its own generator, never from PyTorch's global RNG, so threads
        sharing a restorer do not disturb each other. `fidelity`: for families whose network takes it
        (CodeFormer's w), the value passed; None = the family's default."""
        seed = int(seed) if isinstance(seed, np.integer) else seed
        seeds = _per_face_seeds(seed, len(crops))
        if self.entry.task == "colorize" and len(crops):  # colorization heads take a grey face
            crops = np.stack([gray_bgr(crop) for crop in crops])
        noise_shapes = getattr(self.net, "noise_shapes", None)
        kwargs = dict(self.entry.forward_kwargs)
        argument = self.entry.family.fidelity_argument
        if argument:  # None: the entry's official value (its forward_kwargs), else the family's default
            kwargs[argument] = kwargs.get(argument, self.entry.family.fidelity) if fidelity is None else fidelity
        generator = torch.Generator().manual_seed(seed) if isinstance(seed, int) else None
        outputs = []
        # Custom nets without seedable noise inputs (a test's) may draw from the global RNG: a seed makes
        # those draws reproducible (see `inference`).
        with self.inference(seed if noise_shapes is None else None):
            for start in range(0, len(crops), self.batch_size):
                stop = min(start + self.batch_size, len(crops))
                if noise_shapes is not None and seed is not None:
                    kwargs["noise"] = self._draw_noise(noise_shapes, stop - start, generator,
                                                       seeds[start:stop] if seeds is not None else None)
                out = self.net(self.to_tensor(crops[start:stop]), **kwargs)
                outputs.append(self.to_image(out[0] if isinstance(out, (tuple, list)) else out))
        return np.concatenate(outputs) if outputs else crops[:0].copy()

    def _draw_noise(self, noise_shapes, batch: int, generator: torch.Generator | None,
                    seeds: list[int] | None) -> list[torch.Tensor]:
        """Per-layer noise (B,1,h,w): from one generator for the whole call, or one per face."""
        if generator is not None:
            layers = [torch.randn(shape, generator=generator) for shape in noise_shapes(batch)]
        else:
            per_face = []
            for face_seed in seeds:
                g = torch.Generator().manual_seed(int(face_seed))
                per_face.append([torch.randn(shape, generator=g) for shape in noise_shapes(1)])
            layers = [torch.cat(parts) for parts in zip(*per_face)]
        return [layer.to(self.device) for layer in layers]

    def restore(
        self,
        img: Any,
        *,
        upscale: float = 1,
        aligned: bool = False,
        only_center_face: bool = False,
        max_faces: int | None = None,
        min_face_size: float = 0,
        fidelity: float | None = None,
        seed: int | None = None,
        color_order: str = "bgr",
        background_upsampler: Any = None,
        paste: str | None = None,
    ) -> RestoreResult:
        """Restore every face of a photo (or one aligned face with `aligned=True`).

        img: BGR uint8 HxWx3 (cv2 convention), a path, a PIL image, or an RGB array with
            `color_order="rgb"`; gray, RGBA (alpha kept) and 16-bit inputs come back in their form.
        upscale: output size factor; the background is resized, or upsampled by the restorer's
            upsampler (`load(..., upsampler="realesrgan-x2plus")`) or `background_upsampler`, a callable
            `(bgr_uint8, scale) -> bgr_uint8`.
        paste: how faces go back into the photo: "parse" (through the face-parsing mask of the restored
            face, as GFPGAN/CodeFormer/RestoreFormer++'s inference via facexlib), "box" (facexlib's eroded
            square mask), "gpen" (GPEN's parsing-mask compositing), "feather" (a soft square); None = the
            model's official default (`restorer.entry.family.paste`).
        fidelity: in [0, 1], None = the model's official default. For CodeFormer it is the network's
            fidelity weight w (official default 0.5); for the other models 0 = the model's restoration
            as is (official behaviour, the default), 1 = the input face unchanged, values between blend
            the two linearly (GPEN's demo `alpha` = 1 - fidelity).
        seed: models that draw noise (GFP-GAN) give the same output for the same seed; None draws
            fresh noise like the official code.
        only_center_face / max_faces / min_face_size: which detected faces to restore (the largest
            detection scores first; min_face_size is the box's shorter side in input pixels).
        Raises ImageTooLargeError (a ValueError) when the output would exceed `self.max_pixels`.
        Thread-safe: one restorer may serve several threads at once (same results as one at a time).
        """
        check_restore_options(fidelity, upscale, paste)
        bgr, info = to_bgr_uint8(img, color_order)
        if aligned:
            self._check_size(bgr.shape, upscale)  # (photos: checked in prepare_photo, before detection)
            image, faces = self._restore_aligned(bgr, upscale, fidelity, seed)
        else:
            image, faces = self._restore_photo(bgr, upscale, fidelity, seed, only_center_face, max_faces,
                                               min_face_size, background_upsampler or self.upsampler,
                                               paste or self.entry.family.paste)
        return RestoreResult(from_bgr_uint8(image, info, color_order), faces)

    def _check_size(self, shape: tuple[int, ...], upscale: float) -> None:
        """ImageTooLargeError when the output would exceed `max_pixels` (a clear stop, not an OOM kill)."""
        if self.max_pixels is None:
            return
        out_pixels = round(shape[0] * upscale) * round(shape[1] * upscale)
        if out_pixels > self.max_pixels:
            raise ImageTooLargeError(
                f"the output would be {out_pixels / 1e6:.0f} megapixels ({shape[1]}x{shape[0]} input x upscale "
                f"{upscale:g}), above the limit restorer.max_pixels = {self.max_pixels / 1e6:.0f} megapixels "
                f"(about 6.5 bytes of memory per output pixel); use a smaller upscale, or raise the limit "
                f"(restorer.max_pixels = N, or --max-megapixels on the command line) if the memory is there")

    def restore_faces(self, crops: np.ndarray, crop_landmarks: np.ndarray, fidelity: float | None = None,
                      seed: int | Sequence[int] | None = None) -> np.ndarray:
        """Aligned faces -> restored faces, with the fidelity applied as the family defines it (inside
        the network for CodeFormer, a pixel blend with the input for the others)."""
        if self.entry.family.fidelity_argument:
            return self.forward_faces(crops, crop_landmarks, seed=seed, fidelity=fidelity)
        restored = self.forward_faces(crops, crop_landmarks, seed=seed)
        return blend(restored, crops, self.entry.family.fidelity if fidelity is None else fidelity)

    # ---- the tasks of restoration heads (colorization, inpainting), on aligned faces --------------------
    def colorize(self, img: Any) -> np.ndarray:
        """Colour an aligned face (grey or colour; only its luminance is used): BGR uint8 of the input's
        size. Input: anything `restore` accepts. Needs a colorization head (task "colorize")."""
        self._require_task("colorize")
        return self._run_aligned(gray_bgr(to_bgr_uint8(img)[0]))

    def inpaint(self, img: Any, mask: np.ndarray) -> np.ndarray:
        """Fill the holes of an aligned face: `mask` (H, W), nonzero = hole. The holes are painted white
        (255), the official inpainting input, before the network sees the face; BGR uint8 of the input's
        size. Needs an inpainting head (task "inpaint")."""
        self._require_task("inpaint")
        bgr = to_bgr_uint8(img)[0]
        mask = np.asarray(mask)
        if mask.ndim == 3:
            mask = mask.max(axis=2)
        if mask.shape != bgr.shape[:2]:
            raise ValueError(f"the mask must be {bgr.shape[:2]} (the image's height, width), got {mask.shape}")
        holed = bgr.copy()
        holed[mask != 0] = 255
        return self._run_aligned(holed)

    def _require_task(self, task: str) -> None:
        """A clear error naming the head to load when this entry is not a `task` model."""
        if self.entry.task == task:
            return
        from .registry import get_entry, list_models

        heads = list_models(task=task)
        same_family = [name for name in heads if get_entry(name).family is self.entry.family]
        hint = f"load({(same_family or heads)[0]!r})" if heads else f"a {task!r} model"
        raise RuntimeError(f"{self.entry.name} is a {self.entry.task!r} model; {task}() needs {hint}")

    def _run_aligned(self, bgr: np.ndarray) -> np.ndarray:
        """One aligned face of any size: resized to the network size (bilinear), restored, resized back."""
        size = self.entry.face_size
        h, w = bgr.shape[:2]
        crop = bgr if (h, w) == (size, size) else cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LINEAR)
        out = self.forward_faces(crop[None], np.zeros((1, 5, 2), np.float32))[0]
        return out if (h, w) == (size, size) else cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)

    def _restore_aligned(self, bgr: np.ndarray, upscale: float, fidelity: float | None,
                         seed: int | None) -> tuple[np.ndarray, list[FaceResult]]:
        """One aligned face: resized to the network size, restored, resized to the output size."""
        from .face.align import template

        size = self.entry.face_size
        crop = bgr if bgr.shape[:2] == (size, size) else cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LINEAR)
        points = template(self.entry.template, size)[None]
        restored = self.restore_faces(crop[None], points, fidelity, seed)[0]
        out_h, out_w = round(bgr.shape[0] * upscale), round(bgr.shape[1] * upscale)
        image = restored if (out_h, out_w) == (size, size) else cv2.resize(
            restored, (out_w, out_h), interpolation=cv2.INTER_LINEAR if out_h > size else cv2.INTER_AREA)
        face = FaceResult(np.array([0, 0, bgr.shape[1], bgr.shape[0]], np.float32), 1.0,
                          points[0] * [bgr.shape[1] / size, bgr.shape[0] / size], np.eye(2, 3) * size / bgr.shape[0],
                          crop, restored)
        return image, [face]

    def _restore_photo(self, bgr: np.ndarray, upscale: float, fidelity: float | None, seed: int | None,
                       only_center_face: bool, max_faces: int | None, min_face_size: float,
                       background_upsampler: Any, paste: str) -> tuple[np.ndarray, list[FaceResult]]:
        """A whole photo: detect -> align -> one batched restore -> paste back into the background."""
        job = self.prepare_photo(bgr, upscale, only_center_face, max_faces, min_face_size, background_upsampler, paste)
        if not job.faces:
            warnings.warn("no face found: returning the (upscaled) input unchanged", NoFaceWarning, stacklevel=3)
            return job.background, []
        restored = self.restore_faces(job.crops, job.crop_landmarks, fidelity, seed)
        return self.finish_photo(job, restored), job.faces

    def prepare_photo(self, bgr: np.ndarray, upscale: float, only_center_face: bool, max_faces: int | None,
                      min_face_size: float, background_upsampler: Any, paste: str) -> "PhotoJob":
        """The work of a photo before the network: detect, align (crops), the output-size background.
        `restore` is prepare_photo -> restore_faces(job.crops, ...) -> finish_photo; the folder pipeline
        (facerestore.pipeline) runs the three steps in separate threads."""
        from .face.align import template, transform_points, warp_faces

        self._check_size(bgr.shape, upscale)  # before any work (restore and the folder pipeline call this)
        size = self.entry.face_size
        faces = self.find_faces(bgr, template(self.entry.template, size), only_center_face, max_faces, min_face_size)
        background = upscale_background(bgr, upscale, background_upsampler, exact_size=paste != "feather")
        job = PhotoJob(bgr.shape, upscale, paste, faces, background)
        if faces:
            job.affines = np.stack([f.affine for f in faces])
            job.crops = warp_faces(bgr, job.affines, size)
            job.crop_landmarks = np.stack([transform_points(f.landmarks, f.affine) for f in faces])
        return job

    def finish_photo(self, job: "PhotoJob", restored: np.ndarray) -> np.ndarray:
        """Paste the restored faces of a prepared photo back (and record crops in its FaceResults)."""
        for face, crop, out in zip(job.faces, job.crops, restored):
            face.crop, face.restored = crop, out
        return self.paste_back(job.background, restored, job.affines, job.input_shape, job.upscale, job.paste,
                               np.stack([f.box for f in job.faces]))

    def paste_back(self, background: np.ndarray, restored: np.ndarray, affines: np.ndarray,
                   input_shape: tuple[int, ...], upscale: float, paste: str, boxes: np.ndarray | None = None
                   ) -> np.ndarray:
        """Composite restored faces (N,S,S,3) into the output-size `background` (modified in place and
        returned) with paste mode `paste`; `affines` map input pixels to crop pixels."""
        from .face import paste as pasting

        # the background is the caller's own (output-size) array: faces are pasted into it, no copy
        if paste == "parse":
            return pasting.paste_parse(background, restored, affines, self.parser.face_masks(restored), upscale,
                                       inplace=True)
        if paste == "box":
            return pasting.paste_box(background, restored, affines, upscale, inplace=True)
        if paste == "gpen":
            # the fidelity blend with the input crop (GPEN's alpha) happened before, in restore_faces
            return pasting.paste_gpen(background, restored, affines, self.parser.gpen_masks(restored), boxes, upscale,
                                      inplace=True)
        to_input = pasting.resize_affine(input_shape, background.shape)  # background pixel -> input pixel
        return pasting.paste_faces(background, restored, np.stack([a @ to_input for a in affines]), inplace=True)


    def restore_video(self, src: Any, dst: Any, **options: Any) -> Any:
        """Restore every face of a video clip into `dst`, streaming (see `facerestore.video.restore_video`
        for the options: those of `restore` plus crf, codec, batch_frames, progress); returns a VideoSummary."""
        from .video import restore_video

        return restore_video(self, src, dst, **options)


@dataclass
class PhotoJob:
    """A photo between `prepare_photo` and `finish_photo`: its faces, aligned crops and background."""

    input_shape: tuple[int, ...]
    upscale: float
    paste: str
    faces: list[FaceResult]
    background: np.ndarray  # the photo at the output size, faces not yet pasted
    affines: np.ndarray | None = None  # (N, 2, 3) input -> crop
    crops: np.ndarray | None = None  # (N, S, S, 3) aligned input faces
    crop_landmarks: np.ndarray | None = None  # (N, 5, 2)


def check_restore_options(fidelity: float | None, upscale: float, paste: str | None) -> None:
    """ValueError for a fidelity outside [0, 1], a non-positive upscale or an unknown paste mode (the checks
    `restore`, `restore_video` and the folder pipeline share, made before any work)."""
    if fidelity is not None and not 0.0 <= fidelity <= 1.0:
        raise ValueError(f"fidelity must be in [0, 1] (or None for the model's default), got {fidelity}")
    if upscale <= 0:
        raise ValueError(f"upscale must be positive, got {upscale}")
    if paste is not None and paste not in PASTE_MODES:
        raise ValueError(f"paste must be one of {', '.join(PASTE_MODES)} (or None for the model's default), "
                         f"got {paste!r}")


def _draws_nothing(net: torch.nn.Module) -> bool:
    """Whether `net` draws no random numbers from the global RNG at inference: facerestore's architectures
    without noise inputs (in eval mode dropout is off; GFP-GAN gets its seeded noise passed in)."""
    return type(net).__module__.startswith("facerestore.archs.") and not hasattr(net, "noise_shapes")


def _per_face_seeds(seed: int | Sequence[int] | None, count: int) -> list[int] | None:
    """A list of per-face seeds (checked), or None for one seed (or none) for the whole call."""
    if seed is None or isinstance(seed, (int, np.integer)):
        return None
    seeds = [int(s) for s in seed]
    if len(seeds) != count:
        raise ValueError(f"seed: one int per face is needed ({count}), got {len(seeds)}")
    return seeds


def blend(restored: np.ndarray, original: np.ndarray, fidelity: float) -> np.ndarray:
    """Linear blend toward the input: fidelity 0 -> restored, 1 -> original."""
    if fidelity == 0:
        return restored
    if fidelity == 1:
        return original.copy()
    mixed = restored.astype(np.float32) * (1.0 - fidelity) + original.astype(np.float32) * fidelity
    return np.clip(mixed.round(), 0, 255).astype(np.uint8)


def upscale_background(bgr: np.ndarray, upscale: float, upsampler: Any = None, exact_size: bool = False) -> np.ndarray:
    """The photo at the output size. `exact_size`: facexlib's convention, (int(w*s), int(h*s)) with
    Lanczos, also applied to an upsampler's output (its pastes assume that size); else the nearest size."""
    if exact_size:
        from .face.paste import upscale_background as facexlib_background

        if upsampler is None:
            return facexlib_background(bgr, upscale)
        # facexlib resizes the upsampler's output to (int(w * s), int(h * s)) of the INPUT's size
        h, w = bgr.shape[:2]
        out, size = upsampler(bgr, upscale), (int(w * upscale), int(h * upscale))
        if out.shape[1::-1] == size and not np.shares_memory(out, bgr):
            return out  # cv2.resize to the same size is a copy: skip it (an output-sized buffer less)
        return cv2.resize(out, size, interpolation=cv2.INTER_LANCZOS4)
    if upsampler is not None:
        out = upsampler(bgr, upscale)
        return out.copy() if np.shares_memory(out, bgr) else out  # faces are pasted into it: never the input
    if upscale == 1:
        return bgr.copy()
    h, w = bgr.shape[:2]
    size = (max(1, math.floor(w * upscale + 0.5)), max(1, math.floor(h * upscale + 0.5)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_LANCZOS4 if upscale > 1 else cv2.INTER_AREA)
