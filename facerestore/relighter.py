"""Portrait relighting with DPR: `load("dpr").relight(img, light)`.

The pipeline is the official demo's (`testNetwork_demo_512.py`): the portrait is resized to the
network size R x R (bilinear, aspect ratio not kept), converted to Lab (OpenCV, uint8), its L/255 goes
through the network with the target light, the relit L (× 255, truncated to uint8) replaces the L
channel, and the image goes back to BGR and to its original size. Colour (a/b) is untouched: colour
in, colour out. Options beyond the demo: `keep_aspect=True` (pad to a square instead of squashing)
and `detect=True` (whole photos: every detected face is aligned, relit and pasted back).
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence, Union

import cv2
import numpy as np
import torch
from torch import nn

from .imageio import from_bgr_uint8, to_bgr_uint8
from .shlight import SHLight
from .restorer import Restorer

LightLike = Union[SHLight, str, os.PathLike, Sequence[float], np.ndarray, torch.Tensor]


def as_light(light: LightLike) -> SHLight:
    """An SHLight from what users pass: an SHLight; a path to an official light file (read with the
    demo's 0.7 scale, see SHLight.from_file); or 9 coefficients, used as given (network scale, i.e.
    what the network takes; 0.7 × the values of an official file)."""
    if isinstance(light, SHLight):
        return light
    if isinstance(light, (str, os.PathLike)):
        return SHLight.from_file(light)
    return SHLight(light)


def split_outputs(outputs: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(relit L, source SH) from either official return convention: 512 -> (img, light),
    1024 -> (img, feat, light, None)."""
    if len(outputs) == 2:
        return outputs[0], outputs[1]
    return outputs[0], outputs[2]


def pad_to_square(img: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Centre `img` on a square canvas, extending its border pixels (no new content for the network
    to relight); returns the square and the (top, left) offset of the original."""
    h, w = img.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE)
    return square, (top, left)


def head_mask(size: int, crop_scale: float = 1.0, feather: float = 0.06) -> np.ndarray:
    """(size, size) float32 weights in [0, 1] covering the head (face, hair, ears) of an FFHQ-aligned
    crop enlarged by `crop_scale`: an ellipse with Gaussian-feathered edges. DPR relights everything
    in its input, background included; blending only the head keeps the relit crop from showing as
    a box in the photo."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    # head ellipse of the FFHQ framing (centre slightly above the crop centre), shrunk by crop_scale
    cx, cy = size * 0.5, size * (0.5 - 0.03 / crop_scale)
    ax, ay = size * 0.33 / crop_scale, size * 0.46 / crop_scale
    inside = (((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1).astype(np.float32)
    sigma = max(feather * size / crop_scale, 0.5)
    return np.clip(cv2.GaussianBlur(inside, (0, 0), sigma), 0.0, 1.0)


class Relighter(Restorer):
    """DPR on portraits and photos. Needs no face detector unless `detect=True` is used."""

    crop_scale = 1.2  # detect=True: the aligned crop is this much larger than the FFHQ framing

    # -- core: aligned R x R crops ---------------------------------------------------------------
    def relight_crops(self, crops: np.ndarray, light: LightLike) -> tuple[np.ndarray, np.ndarray]:
        """Relight (N, R, R, 3) BGR uint8 crops at the network size R: returns the relit crops (same
        shape, BGR uint8) and the source lights the network estimated, (N, 9) network scale."""
        size = self.entry.face_size
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (N, {size}, {size}, 3) BGR uint8, got {crops.shape} {crops.dtype}")
        target = as_light(light).to_tensor(self.device)
        labs = np.stack([cv2.cvtColor(crop, cv2.COLOR_BGR2LAB) for crop in crops])
        relit_l, source = [], []
        with self.inference():
            for start in range(0, len(labs), self.batch_size):
                lightness = torch.from_numpy(np.ascontiguousarray(labs[start:start + self.batch_size, :, :, 0]))
                x = lightness.to(self.device)[:, None].float() / 255.0  # float32 L / 255 as in the demo
                out_img, out_light = split_outputs(self.net(x, target, **self.entry.forward_kwargs))
                # × 255 in float32, then truncation toward zero (the demo's astype(np.uint8)), not rounding
                relit_l.append((out_img[:, 0].float().cpu().numpy() * np.float32(255.0)).astype(np.uint8))
                source.append(out_light.float().cpu().numpy().reshape(-1, 9))
        labs[:, :, :, 0] = np.concatenate(relit_l)
        relit = np.stack([cv2.cvtColor(lab, cv2.COLOR_LAB2BGR) for lab in labs])
        return relit, np.concatenate(source).astype(np.float64)

    def estimate_crops(self, crops: np.ndarray) -> np.ndarray:
        """Source lights (N, 9) of (N, R, R, 3) BGR uint8 crops, network scale (the network's
        out_light as is: it is trained in the scale of its light input, so it is directly usable as
        a target light). Runs only the encoder half of the network."""
        crops = np.asarray(crops)
        lightness = np.stack([cv2.cvtColor(crop, cv2.COLOR_BGR2LAB)[:, :, 0] for crop in crops])
        with self.inference():
            x = torch.from_numpy(lightness).to(self.device)[:, None].float() / 255.0
            return self.net.predict_light(x).float().cpu().numpy().reshape(-1, 9).astype(np.float64)

    # -- whole image as the portrait ---------------------------------------------------------------
    def _to_net(self, bgr: np.ndarray, keep_aspect: bool) -> tuple[np.ndarray, Any]:
        """The image as the network sees it (R x R, bilinear as the demo) and what is needed to map back."""
        square, offset = pad_to_square(bgr) if keep_aspect else (bgr, (0, 0))
        size = self.entry.face_size
        net_input = cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
        return net_input, (bgr.shape[:2], square.shape[:2], offset)

    @staticmethod
    def _from_net(relit: np.ndarray, geometry: Any) -> np.ndarray:
        """Back to the input's size (bilinear, as the demo), cropping away keep_aspect's padding."""
        (h, w), (square_h, square_w), (top, left) = geometry
        back = cv2.resize(relit, (square_w, square_h), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(back[top:top + h, left:left + w])

    # -- public API -------------------------------------------------------------------------------------
    def relight(
        self,
        img: Any,
        light: LightLike,
        *,
        detect: bool = False,
        keep_aspect: bool = False,
        crop_scale: float | None = None,
        max_faces: int | None = None,
        min_face_size: float = 0,
        color_order: str = "bgr",
    ) -> np.ndarray:
        """Relight a portrait (or every face of a photo with detect=True) under `light`.

        img: BGR uint8 HxWx3 (cv2 convention), a path, a PIL image, or RGB with color_order="rgb";
            gray, alpha and 16-bit inputs come back in their form. The output has the input's size.
        light: an SHLight (e.g. SHLight.from_direction((1, 0, 1))), a path to an official light file
            (its values × 0.7, as the demo does), or 9 SH coefficients used as given (network scale).
        detect=False: the whole image is the portrait, exactly the official demo (resized to R x R
            without keeping the aspect ratio and back). keep_aspect=True pads it to a square first
            (border pixels extended), so faces are not squashed; the output is cropped back.
        detect=True: faces are detected, aligned to the FFHQ template with the crop enlarged by
            crop_scale (default 1.2, so hair and cheeks are inside), relit, and the head region
            (feathered ellipse, `head_mask`) is pasted back; the rest of the photo is unchanged. max_faces / min_face_size (box's
            shorter side, input pixels) select faces, highest detection scores first.
        """
        bgr, info = to_bgr_uint8(img, color_order)
        light = as_light(light)
        if detect:
            out = self._relight_faces(bgr, light, crop_scale, max_faces, min_face_size)
        else:
            net_input, geometry = self._to_net(bgr, keep_aspect)
            out = self._from_net(self.relight_crops(net_input[None], light)[0][0], geometry)
        return from_bgr_uint8(out, info, color_order)

    def estimate_light(self, img: Any, *, detect: bool = False, keep_aspect: bool = False,
                       crop_scale: float | None = None, color_order: str = "bgr") -> SHLight:
        """The lighting of a portrait as the network estimates it (its `out_light`).

        The result is in the same convention and scale as SHLight inputs (network scale: what
        `to_tensor()` feeds the network; the official light files hold these values / 0.7), so it
        can be used directly as a target, e.g. to move one portrait's light onto another.
        detect=True: the light of the largest detected face.
        """
        bgr, _ = to_bgr_uint8(img, color_order)
        if detect:
            faces = self.find_faces(bgr, self._template(crop_scale))
            if not faces:
                raise ValueError("no face found in the image; use detect=False to treat it as a portrait")
            largest = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            from .face.align import warp_faces

            crop = warp_faces(bgr, largest.affine[None], self.entry.face_size)
        else:
            crop = self._to_net(bgr, keep_aspect)[0][None]
        return SHLight(self.estimate_crops(crop)[0])

    # -- whole photos --------------------------------------------------------------------------------
    def _template(self, crop_scale: float | None) -> np.ndarray:
        """FFHQ 5-point template at the network size, shrunk toward the centre by crop_scale (a
        larger crop: more hair, cheeks and background around the face)."""
        from .face.align import template

        size = self.entry.face_size
        scale = self.crop_scale if crop_scale is None else crop_scale
        if scale <= 0:
            raise ValueError(f"crop_scale must be positive, got {scale}")
        centre = np.array([size / 2.0, size / 2.0])
        return centre + (template(self.entry.template, size) - centre) / scale

    def _relight_faces(self, bgr: np.ndarray, light: SHLight, crop_scale: float | None,
                       max_faces: int | None, min_face_size: float) -> np.ndarray:
        from .face.align import warp_faces
        from .face.paste import paste_faces

        faces = self.find_faces(bgr, self._template(crop_scale), max_faces=max_faces, min_face_size=min_face_size)
        if not faces:
            import warnings

            from .restorer import NoFaceWarning

            warnings.warn("no face found: returning the input unchanged", NoFaceWarning, stacklevel=3)
            return bgr.copy()
        affines = np.stack([f.affine for f in faces])
        crops = warp_faces(bgr, affines, self.entry.face_size)
        relit, _ = self.relight_crops(crops, light)
        scale = self.crop_scale if crop_scale is None else crop_scale
        mask = head_mask(self.entry.face_size, scale)[None, :, :, None]
        relit = np.clip(mask * relit + (1.0 - mask) * crops + 0.5, 0, 255).astype(np.uint8)
        return paste_faces(bgr, relit, affines)


def contact_sheet(frames: Sequence[np.ndarray], lights: Sequence[SHLight], thumb_width: int = 256,
                  columns: int | None = None) -> np.ndarray:
    """Frames in a grid (BGR uint8), each with the lit-sphere preview of its light under it."""
    if not frames or len(frames) != len(lights):
        raise ValueError("need as many lights as frames (at least one)")
    h, w = frames[0].shape[:2]
    thumb_h = max(1, round(h * thumb_width / w))
    sphere = max(16, thumb_width // 3)
    pad = 8
    cell_h, cell_w = thumb_h + sphere + 2 * pad, thumb_width + 2 * pad
    columns = columns or math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    sheet = np.full((rows * cell_h, columns * cell_w, 3), 24, np.uint8)
    for k, (frame, light) in enumerate(zip(frames, lights)):
        y, x = (k // columns) * cell_h + pad, (k % columns) * cell_w + pad
        thumb = cv2.resize(frame, (thumb_width, thumb_h), interpolation=cv2.INTER_AREA)
        sheet[y:y + thumb_h, x:x + thumb_width] = thumb
        preview = cv2.cvtColor(light.render_sphere(sphere), cv2.COLOR_GRAY2BGR)
        sx = x + (thumb_width - sphere) // 2
        sheet[y + thumb_h:y + thumb_h + sphere, sx:sx + sphere] = preview
    return sheet


# ---- export ------------------------------------------------------------------------------------
class RelightExport(nn.Module):
    """(L, sh) -> (relit L, estimated light) for DPR."""

    def __init__(self, net: nn.Module, forward_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.forward_kwargs = dict(forward_kwargs)

    def forward(self, L: torch.Tensor, sh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: N803
        relit, light = split_outputs(self.net(L, sh.reshape(-1, 9, 1, 1), **self.forward_kwargs))
        return relit, light.reshape(-1, 9)


def export_spec(net: nn.Module, entry: Any, size: int | None = None, batch: int = 1, **_options: Any):
    """DPR's export signature: (L, sh) -> (relit L, estimated light), at a fixed size."""
    from .export import ExportSpec, _stacked, _uniform

    size = size or entry.face_size
    downsampling = net.size_multiple
    if size % downsampling:
        raise ValueError(f"{entry.name} needs an input side divisible by {downsampling}, got {size}")
    lightness = _uniform((1, size, size), 0.0, 1.0)

    def make(rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        sh = torch.randn(9, generator=rng) * 0.3
        sh[0] += 0.8  # a plausible light: mostly ambient
        return lightness(rng), sh

    return ExportSpec(RelightExport(net, entry.forward_kwargs), _stacked(make), ("L", "sh"), ("relit", "light"),
                      True, None, {
        "inputs": (f"L: float32 (N,1,{size},{size}) lightness in [0, 1] (OpenCV Lab L / 255); sh: float32 (N,9) "
                   "target light, second-order SH coefficients (facerestore.SHLight)"),
        "outputs": (f"relit: float32 (N,1,{size},{size}) lightness in [0, 1]; light: float32 (N,9) SH light "
                    "estimated for the input"),
        "notes": "fixed input size; a and b of Lab are kept from the input image",
    })
