"""Real-ESRGAN image upsampling: `Upscaler` runs an RRDBNet on whole images exactly as the official
`RealESRGANer.enhance` (xinntao/Real-ESRGAN, realesrgan/utils.py) does, and serves as the face
pipeline's background upsampler (`FaceRestorer.restore(..., background_upsampler=upscaler)`).

The official pipeline, reproduced step by step (golden-tested, within one grey level):

1. 16-bit input is detected as `max > 256` (divided by 65535, else by 255); gray (2-D) input is run
   as RGB and converted back with BGR->GRAY; BGRA: the colour runs through the network, the alpha either
   through the network as well (replicated to three channels, `alpha_upsampler="realesrgan"`) or with
   `cv2.resize(INTER_LINEAR)` (`alpha_upsampler="cv2"`).
2. The RGB image is reflect-padded on the bottom/right by `pre_pad`, and for scale 2 (scale 1) further
   to a multiple of 2 (4), as the network's pixel-unshuffle needs.
3. With `tile > 0` the padded image is cut into `tile` x `tile` tiles from the top-left; each runs
   on its region grown by `tile_pad` on every side (clamped to the image) and only the tile's own
   part of the output is kept. Tiles do not blend: results near tile seams differ slightly from
   an untiled run (the network sees less context), exactly as in the official code.
4. The output is cropped back to `scale` x the input size, clamped to [0, 1], `round()`ed to
   uint8 / uint16, and resized with INTER_LANCZOS4 to `(int(w * outscale), int(h * outscale))` when
   `outscale` differs from the network scale.

Memory: tiles bound the network's working memory by the tile size, not the photo size. One tile's
largest activations are its last convs' (tile + 2 * tile_pad)^2 x scale^2 x 64 channels x 4 bytes:
~0.7 GB per tensor for tile 400 at scale 4 in fp32 (~2 GB peak), a quarter of that at scale 2, half in
bf16. Unlike the official code, which converts the whole input to float32 and assembles the whole float32
output on the device, each tile is converted to float when it runs and its result to the final
uint8/uint16 pixels as soon as it is computed (the same per-pixel arithmetic, bit-identical), so beyond
one tile only the integer input (padded) and output images are held. An untiled run of a
12-megapixel photo at scale 4 would need tens of GB; the default tile (`tile=None`) avoids that.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import cv2
import numpy as np
import torch

from .restorer import ImageTooLargeError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ALPHA_UPSAMPLERS = ("realesrgan", "cv2")
# Default tile side (input pixels) when `tile=None`, CPU and CUDA alike (GFPGAN's background-upsampler
# default). On CPU larger tiles are faster: each tile reruns its tile_pad border (10 px: 1.10x the pixels
# at 400, 1.21x at 200, 2x at 48) and small convolutions use the cores worse (benchmarks/upscale.py: tile
# 48 ran 2-4x slower than untiled); 400 keeps one tile's activations at ~0.5 GB (x2) / ~2 GB (x4) in fp32.
DEFAULT_TILE = 400
MOD_PAD = {1: 4, 2: 2}  # network scale -> the padded input's sides must be multiples of this
# Largest image `upscale` makes (the network-scale result, pixels): a clear error instead of an OOM kill.
# Same default as the face restorer's `max_pixels`; `upscaler.max_pixels = None` lifts it.
MAX_PIXELS = 250_000_000


class Upscaler:
    """A loaded RRDBNet (facerestore.archs.rrdbnet) plus the Real-ESRGAN image pipeline.

    net: the network (eval mode is set here); entry: its zoo entry, if any (kept for the caller);
    device: torch device (default: CUDA if available); precision: "fp32" (exact, the golden-tested
    output) or "bf16" / "fp16" (autocast + channels_last: faster, PSNR >= 40 dB against fp32);
    scale: the network's scale (default: `net.scale`).
    `max_pixels`: the largest image `upscale` makes (the network-scale result, before any `outscale`
    resize); larger requests raise facerestore.restorer.ImageTooLargeError before any work. None: no limit.
    """

    max_pixels: int | None = MAX_PIXELS

    def __init__(self, net: torch.nn.Module, entry: Any = None, device: str | torch.device | None = None,
                 precision: str = "fp32", scale: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if scale is None:
            scale = getattr(net, "scale", None)
            if scale is None:
                raise ValueError("the network has no `scale` attribute: pass scale= (the factor it upsamples by)")
        self.scale = int(scale)
        self.entry = entry
        self.precision = precision
        self.device = torch.device(device) if device is not None else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        self.net = net.eval()
        self.to(self.device)

    def __repr__(self) -> str:
        name = getattr(self.entry, "name", type(self.net).__name__)
        return f"Upscaler({name!r}, scale={self.scale}, device={str(self.device)!r}, precision={self.precision!r})"

    @property
    def channels_last(self) -> bool:
        """Whether the network runs channels_last: in fast modes, and in fp32 on CPU (oneDNN's
        native layout; measured faster than NCHW there, max |diff| ~2e-6 against it)."""
        return self.precision != "fp32" or self.device.type == "cpu"

    @property
    def default_tile(self) -> int:
        """The tile side used when `upscale(tile=None)`: bounded memory on any photo size."""
        return DEFAULT_TILE

    def to(self, device: str | torch.device) -> "Upscaler":
        self.device = torch.device(device)
        self.net.to(self.device)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        for tensor in self.net.parameters():
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=layout)
        return self

    def __call__(self, bgr: np.ndarray, scale: float) -> np.ndarray:
        """Background upsampler for the face pipeline: BGR uint8 -> BGR uint8 of
        (int(h * scale), int(w * scale)), as GFPGAN's `bg_upsampler.enhance(img, outscale=scale)`."""
        return self.upscale(bgr, outscale=scale)

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.precision == "fp32":
                yield
            else:
                with torch.autocast(self.device.type, dtype=PRECISIONS[self.precision]):
                    yield

    def upscale(self, img: np.ndarray, outscale: float | None = None, tile: int | None = None, tile_pad: int = 10,
                pre_pad: int = 10, alpha_upsampler: str = "realesrgan") -> np.ndarray:
        """RealESRGANer.enhance(img, outscale, alpha_upsampler) with RealESRGANer(tile=tile,
        tile_pad=tile_pad, pre_pad=pre_pad): returns the upsampled image in the input's form.

        img: HxWx3 BGR, HxW gray or HxWx4 BGRA; uint8 or uint16 (16-bit when max > 256, as officially).
        outscale: final size factor (default: the network scale; others resize with INTER_LANCZOS4).
        tile: tile side in input pixels; 0 runs the whole image at once (the official default);
            None (default) uses `default_tile` (400), which bounds memory and equals tile=0 for
            images whose padded sides are at most 400.
        tile_pad / pre_pad: overlap around each tile / reflect padding of the image's bottom-right.
        alpha_upsampler: "realesrgan" (the network) or "cv2" (INTER_LINEAR) for BGRA alpha.
        """
        if alpha_upsampler not in ALPHA_UPSAMPLERS:
            raise ValueError(f"alpha_upsampler must be one of {ALPHA_UPSAMPLERS}, got {alpha_upsampler!r}")
        img = np.asarray(img)
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
            raise ValueError(f"expected an HxW, HxWx3 (BGR) or HxWx4 (BGRA) image, got shape {img.shape}")
        if tile is None:
            tile = self.default_tile
        if tile < 0 or tile_pad < 0 or pre_pad < 0:
            raise ValueError(f"tile, tile_pad and pre_pad must be >= 0, got {tile}, {tile_pad}, {pre_pad}")
        h, w = img.shape[:2]
        self.check_size(img.shape, outscale)
        if min(h, w) <= pre_pad:
            raise ValueError(f"pre_pad={pre_pad} reflect padding needs an image larger than {pre_pad} pixels on "
                             f"each side, got {w}x{h}; pass a smaller pre_pad")

        # step 1: the official code converts the whole image to float32 / max first; the same per-pixel
        # arithmetic is done here tile by tile (`_float_rgb`), so the input is never held in float
        max_range = 65535 if np.max(img) > 256 else 255
        out_dtype = np.uint16 if max_range == 65535 else np.uint8
        mode = "L" if img.ndim == 2 else ("RGBA" if img.shape[2] == 4 else "RGB")

        s = self.scale
        channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        output = np.empty((h * s, w * s, channels) if channels > 1 else (h * s, w * s), out_dtype)

        def write_color(region: tuple[slice, slice], out_rgb: torch.Tensor) -> None:
            bgr = _to_bgr_float(out_rgb)
            if mode == "L":
                output[region] = _round(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), max_range)
            else:
                output[region + (slice(0, 3),)] = _round(bgr, max_range)

        self._run(img if mode != "RGBA" else img[:, :, :3], max_range, tile, tile_pad, pre_pad, write_color)
        if mode == "RGBA":
            if alpha_upsampler == "realesrgan":
                def write_alpha(region: tuple[slice, slice], out_rgb: torch.Tensor) -> None:
                    gray = cv2.cvtColor(_to_bgr_float(out_rgb), cv2.COLOR_BGR2GRAY)
                    output[region + (3,)] = _round(gray, max_range)

                self._run(img[:, :, 3], max_range, tile, tile_pad, pre_pad, write_alpha)
            else:
                alpha = img[:, :, 3].astype(np.float32) / max_range
                resized = cv2.resize(alpha, (w * s, h * s), interpolation=cv2.INTER_LINEAR)
                output[:, :, 3] = _round(resized, max_range)

        if outscale is not None and outscale != float(s):
            output = cv2.resize(output, (int(w * outscale), int(h * outscale)), interpolation=cv2.INTER_LANCZOS4)
        return output

    def check_size(self, shape: tuple[int, ...], outscale: float | None = None) -> None:
        """ImageTooLargeError when upscaling an image of `shape` would exceed `max_pixels`."""
        h, w = shape[:2]
        largest = max(h * w * self.scale ** 2, int(h * (outscale or self.scale)) * int(w * (outscale or self.scale)))
        if self.max_pixels is not None and largest > self.max_pixels:
            raise ImageTooLargeError(
                f"upscaling {w}x{h} would make an image of {largest} pixels ({largest / 1e6:.1f} megapixels), above "
                f"the limit upscaler.max_pixels = {self.max_pixels} (3-8 bytes of memory per pixel); "
                f"upscale a smaller image, or raise the limit (upscaler.max_pixels = N, or --max-megapixels on the "
                f"command line) if the memory is there")

    def _run(self, pixels: np.ndarray, max_range: int, tile: int, tile_pad: int, pre_pad: int, write) -> None:
        """Steps 2-3 on an HxW (gray: run as RGB) or HxWx3 (BGR) integer image: pad, run the network (whole
        or by tiles), and hand each output region inside the unpadded result to
        `write((rows, cols), (1, 3, h, w) tensor)`. Only the padded integer image and one tile in float
        are held (the official code holds the whole image in float32 several times over)."""
        h, w = pixels.shape[:2]
        s = self.scale
        # the official reflect paddings, in its order: pre_pad, then up to the network's multiple
        pixels = _reflect_pad(pixels, pre_pad, pre_pad)
        mod = MOD_PAD.get(s)
        if mod:
            pixels = _reflect_pad(pixels, -pixels.shape[0] % mod, -pixels.shape[1] % mod)
        height, width = pixels.shape[:2]
        # tile == 0: one "tile" covering the whole padded image, no tile padding
        tile_h, tile_w = (tile, tile) if tile > 0 else (height, width)
        with self._precision():
            for y0 in range(0, height, tile_h):
                for x0 in range(0, width, tile_w):
                    y1, x1 = min(y0 + tile_h, height), min(x0 + tile_w, width)
                    # only tiles that reach the unpadded image matter (the rest is cropped away)
                    if y0 >= h or x0 >= w:
                        continue
                    py0, px0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
                    py1, px1 = min(y1 + tile_pad, height), min(x1 + tile_pad, width)
                    out = self.net(self._tensor(_float_rgb(pixels[py0:py1, px0:px1], max_range)))
                    # the tile's own output, cropped to the unpadded image
                    keep_y1, keep_x1 = min(y1, h), min(x1, w)
                    out = out[:, :, (y0 - py0) * s:(keep_y1 - py0) * s, (x0 - px0) * s:(keep_x1 - px0) * s]
                    write((slice(y0 * s, keep_y1 * s), slice(x0 * s, keep_x1 * s)), out)

    def _tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 float32 RGB -> (1, 3, H, W) on the device, channels_last where the network runs so
        (an HWC array already is: no copy before the transfer)."""
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # channels_last strides already
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=layout).to(self.device)


def _reflect_pad(pixels: np.ndarray, bottom: int, right: int) -> np.ndarray:
    """Reflect padding (mirror without repeating the edge, as torch's "reflect") on the bottom/right."""
    if not bottom and not right:
        return pixels
    return np.pad(pixels, ((0, bottom), (0, right)) + ((0, 0),) * (pixels.ndim - 2), mode="reflect")


def _float_rgb(pixels: np.ndarray, max_range: int) -> np.ndarray:
    """HxW gray or HxWx3 BGR integer pixels -> HxWx3 float32 RGB in [0, 1], the official arithmetic
    (astype(float32) / max_range, then BGR2RGB or GRAY2RGB)."""
    values = pixels.astype(np.float32) / max_range
    return cv2.cvtColor(values, cv2.COLOR_GRAY2RGB if values.ndim == 2 else cv2.COLOR_BGR2RGB)


def _to_bgr_float(out_rgb: torch.Tensor) -> np.ndarray:
    """(1, 3, h, w) network output -> h x w x 3 BGR float32 in [0, 1] (the official clamp)."""
    rgb = out_rgb[0].float().cpu().clamp_(0, 1).numpy()
    return np.ascontiguousarray(rgb[::-1].transpose(1, 2, 0))


def _round(values: np.ndarray, max_range: int) -> np.ndarray:
    """The official float -> integer step: (x * 255.0).round() (or 65535.0), half to even."""
    return (values * float(max_range)).round()
