"""Paste restored faces back into a photo with a feathered mask.

Each face is warped back and blended only within its own bounding region of the background (not the
whole image), so a photo with N faces costs N small warps and blends.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterator

import cv2
import numpy as np

from .align import invert_affine

# Pastes work through the photo in chunks of rows of at most this many pixels, so that their float
# canvases, masks and warped faces stay a few chunk-sized arrays (tens of MB) however large the photo
# or its faces: a 100-megapixel photo with one huge face would otherwise need float buffers of most of
# the photo. OpenCV's warpAffine gives the same pixel whatever row the warp starts at, so this is exact.
PASTE_CHUNK_PIXELS = 1 << 20


@functools.lru_cache(maxsize=8)
def feather_mask(size: int, margin: float = 0.06, softness: float = 0.03) -> np.ndarray:
    """(size, size) float32 weights: 1 in the middle of the crop, falling smoothly to 0 at its border."""
    mask = np.zeros((size, size), np.float32)
    m = max(1, round(size * margin))
    mask[m:size - m, m:size - m] = 1.0
    sigma = max(0.5, size * softness)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask[mask > 0.999] = 1.0  # exactly 1 in the core, so a face that is not changed there comes back unchanged
    mask.setflags(write=False)
    return mask


def paste_faces(background: np.ndarray, faces: np.ndarray, affines: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Composite restored faces onto `background` (later faces over earlier ones where they overlap).

    background: (H, W, 3) uint8; faces: (N, S, S, 3) uint8; affines: (N, 2, 3) mapping background
    pixels to crop pixels (the alignment transforms, composed with any background scaling, see
    `resize_affine`). Only each face's bounding region is warped and blended, so the cost grows with
    the faces' area, not with N x the photo; pixels outside every face mask are returned unchanged.
    inplace: paste into `background` itself (saves a copy of the photo).
    """
    out = background if inplace else background.copy()
    h, w = background.shape[:2]
    for face, affine in zip(faces, np.asarray(affines).reshape(-1, 2, 3)):
        size = face.shape[0]
        inverse = invert_affine(affine)  # crop -> background
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ inverse[:, :2].T + inverse[:, 2]
        x0, y0 = np.floor(corners.min(0)).astype(int) - 1
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue  # the face lies entirely outside the background
        mask_src = feather_mask(size)
        rows = max(1, PASTE_CHUNK_PIXELS // (x1 - x0))  # the region in chunks of rows: bounded float buffers
        for r0 in range(y0, y1, rows):
            r1 = min(r0 + rows, y1)
            local = inverse.copy()
            local[:, 2] -= (x0, r0)  # warp straight into this part of the region of interest
            roi = (x1 - x0, r1 - r0)
            face_back = cv2.warpAffine(face, local, roi, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            mask = cv2.warpAffine(mask_src, local, roi, flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
            region = out[r0:r1, x0:x1].astype(np.float32)
            region += mask * (face_back.astype(np.float32) - region)
            out[r0:r1, x0:x1] = np.clip(region.round(), 0, 255).astype(np.uint8)
    return out


def resize_affine(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """(3, 3) map from pixels of a resized image (`dst_shape`, e.g. the upscaled background) to pixels of
    the original (`src_shape`), with cv2.resize's pixel-centre convention: x_src = (x_dst + 0.5) * sx - 0.5.

    Compose it with an alignment affine (`affine @ resize_affine(img.shape, background.shape)`) to paste
    onto a resized background; a plain diag(sx, sy) shifts the faces by (1 - sx) / 2 pixels.
    """
    sy, sx = src_shape[0] / dst_shape[0], src_shape[1] / dst_shape[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------------------------------------
# The official paste-back modes, reproduced bit for bit: facexlib's FaceRestoreHelper.paste_faces_to_input_image
# (use_parse True: `paste_parse`, False: `paste_box`) and GPEN's FaceEnhancement.process (`paste_gpen`).
#
# The official code warps every face over the whole output image. Here each face is processed in a
# full-width band of rows that holds its whole footprint (plus the blur/erosion reach): OpenCV's warpAffine
# computes a pixel's source position from its column and row terms separately, so a row offset leaves every
# pixel's interpolation unchanged, while a column offset would not (float masks use fixed-point tables).
# Outside the bands the official blend reproduces the background exactly, so it is left untouched.
# ---------------------------------------------------------------------------------------------------------


def upscale_background(img: np.ndarray, upscale: float) -> np.ndarray:
    """facexlib's background for the paste: `img` resized to (int(w * upscale), int(h * upscale)) with
    INTER_LANCZOS4 (a copy when the size does not change). A background upsampler's output is resized
    the same way in facexlib."""
    h, w = img.shape[:2]
    return cv2.resize(img, (int(w * upscale), int(h * upscale)), interpolation=cv2.INTER_LANCZOS4)


def inverse_affine_facexlib(affine: np.ndarray, upscale: float = 1) -> np.ndarray:
    """facexlib `get_inverse_affine`: cv2.invertAffineTransform(affine) * upscale, the whole (2, 3) matrix
    (so crop -> input pixels, scaled about the origin to the upscaled image); no half-pixel term here,
    the paste adds its own offset (see `paste_parse`)."""
    return cv2.invertAffineTransform(np.asarray(affine, np.float64)) * upscale


def _paste_inverse(affine: np.ndarray, upscale: float) -> np.ndarray:
    """The crop -> output matrix facexlib's paste warps with: the inverse affine with
    `inverse[:, 2] += 0.5 * upscale` when upscale > 1."""
    inverse = inverse_affine_facexlib(affine, upscale)
    if upscale > 1:
        inverse[:, 2] += 0.5 * upscale
    return inverse


def _row_band(inverse: np.ndarray, size: int, height: int, margin: int = 2) -> tuple[int, int] | None:
    """Rows [y0, y1) of the output touched by warping a size x size crop with `inverse` (crop -> output),
    widened by `margin`; None when the face lies entirely above or below the image."""
    corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], np.float64)
    ys = corners @ inverse[1, :2] + inverse[1, 2]
    y0, y1 = int(np.floor(ys.min())) - margin, int(np.ceil(ys.max())) + 1 + margin
    y0, y1 = max(y0, 0), min(y1, height)
    return (y0, y1) if y1 > y0 else None


def _footprint_side(inverse: np.ndarray, size: int) -> float:
    return size * float(np.sqrt(abs(np.linalg.det(inverse[:, :2]))))


def _shift_rows(inverse: np.ndarray, y0: int) -> np.ndarray:
    """The same warp into an image whose row 0 is output row y0."""
    local = inverse.copy()
    local[1, 2] -= y0
    return local


def _warp_band(inverse: np.ndarray, size: int, shape: tuple[int, ...], margin: int = 2
               ) -> tuple[int, int, np.ndarray, tuple[int, int]] | None:
    """(y0, y1, crop -> band matrix, cv2 dsize) of the full-width band of output rows a size x size crop
    lands in (see `_row_band`); None when it lands outside the image."""
    band = _row_band(inverse, size, shape[0], margin)
    if band is None:
        return None
    y0, y1 = band
    return y0, y1, _shift_rows(inverse, y0), (shape[1], y1 - y0)


def _check_paste_inputs(background: np.ndarray, faces: np.ndarray, affines: np.ndarray,
                        face_size: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    if background.dtype != np.uint8 or background.ndim != 3 or background.shape[2] not in (3, 4):
        raise ValueError(f"background must be a BGR (or BGRA) uint8 image (H, W, 3|4); got {background.dtype} "
                         f"{background.shape}")
    faces = np.asarray(faces)
    if faces.ndim == 3:
        faces = faces[None]
    affines = np.asarray(affines, np.float64).reshape(-1, 2, 3)
    if len(faces) != len(affines):
        raise ValueError(f"{len(faces)} restored faces but {len(affines)} affines; give one affine per face")
    size = faces.shape[1] if face_size is None else face_size
    if len(faces) and faces.shape[1:3] != (size, size):
        raise ValueError(f"restored faces are {faces.shape[1:3]} but the affines map to {size}x{size} crops; "
                         f"resize the faces to the crop size first")
    return faces, affines, size


# Output rows are processed in chunks of at most PASTE_CHUNK_PIXELS pixels (full-width: see above), so
# that the float canvas, masks and warped faces of a paste never exceed a few chunk-sized arrays, however
# large the photo or its faces (see PASTE_CHUNK_PIXELS at the top).


def _row_chunks(bands: list[tuple[int, int]], width: int) -> Iterator[tuple[int, int, list[int]]]:
    """(first row, end row, indices of the bands overlapping it) for the chunks of rows covering `bands`."""
    if not bands:
        return
    step = max(1, PASTE_CHUNK_PIXELS // max(width, 1))
    top, bottom = min(b[0] for b in bands), max(b[1] for b in bands)
    for c0 in range(top, bottom, step):
        c1 = min(c0 + step, bottom)
        overlapping = [i for i, (y0, y1) in enumerate(bands) if y0 < c1 and y1 > c0]
        if overlapping:
            yield c0, c1, overlapping


def _blend_in_chunks(background: np.ndarray, layers: list, dtype: type, blend: Callable, inplace: bool
                     ) -> np.ndarray:
    """Composite facexlib-style in a float canvas (float32 or float64, as facexlib's arithmetic gives),
    chunk of rows by chunk, faces in order (`blend(canvas, first_row, layer)` warps layer = (band, ...)
    into the canvas rows and blends it), then truncate to uint8 as facexlib's final astype does."""
    out = background if inplace else background.copy()
    for c0, c1, overlapping in _row_chunks([layer[0] for layer in layers], background.shape[1]):
        canvas = background[c0:c1, :, :3].astype(dtype)
        for i in overlapping:
            blend(canvas, c0, layers[i])
        out[c0:c1, :, :3] = canvas.astype(np.uint8)  # truncation, as facexlib's astype(np.uint8)
    return out


def paste_parse(background: np.ndarray, restored_faces: np.ndarray, affines: np.ndarray,
                parse_masks: np.ndarray, upscale: float = 1, face_size: int | None = None,
                inplace: bool = False) -> np.ndarray:
    """facexlib `FaceRestoreHelper.paste_faces_to_input_image` with use_parse=True, bit for bit.

    background: (H, W, 3) BGR uint8 (or BGRA: alpha kept) at the OUTPUT size, i.e. what facexlib pastes on:
        `upscale_background(input_image_or_upsampler_output, upscale)`.
    restored_faces: (N, S, S, 3) BGR uint8 restored crops, S = face_size (the crop size of the affines).
    affines: (N, 2, 3) alignment affines, input image pixels -> crop pixels (as estimated for the crop).
    parse_masks: (N, 512, 512) float64, `FaceParser.face_masks(restored_faces)` (ParseNet as facexlib).
    upscale: output size / input size (facexlib's upscale_factor).

    Per face, in order (later faces over earlier ones): inverse = invert(affine) * upscale, + 0.5 * upscale
    on the translation when upscale > 1; face warped with it (bilinear, black border); mask resized to S
    (bilinear) and warped (flags=3, i.e. bilinear); canvas = mask * face + (1 - mask) * canvas in float64.
    Finally truncated to uint8. inplace: paste into `background` itself (saves a copy of the photo).
    """
    faces, affines, size = _check_paste_inputs(background, restored_faces, affines, face_size)
    parse_masks = np.asarray(parse_masks)
    if len(parse_masks) != len(faces):
        raise ValueError(f"{len(faces)} restored faces but {len(parse_masks)} parse masks")
    layers = []
    for face, affine, parse_mask in zip(faces, affines, parse_masks):
        inverse = _paste_inverse(affine, upscale)
        band = _row_band(inverse, size, background.shape[0])
        if band is not None:
            mask = cv2.resize(parse_mask, (face.shape[0], face.shape[1]))
            layers.append((band, inverse, face, mask))

    def blend(canvas: np.ndarray, top: int, layer) -> None:
        _, inverse, face, mask = layer
        local, dsize = _shift_rows(inverse, top), (canvas.shape[1], canvas.shape[0])
        face_back = cv2.warpAffine(face, local, dsize)
        mask = cv2.warpAffine(mask, local, dsize, flags=3)[:, :, None]
        canvas[...] = mask * face_back + (1 - mask) * canvas  # facexlib's expression, term for term

    return _blend_in_chunks(background, layers, np.float64, blend, inplace)


def paste_box(background: np.ndarray, restored_faces: np.ndarray, affines: np.ndarray, upscale: float = 1,
              face_size: int | None = None, inplace: bool = False) -> np.ndarray:
    """facexlib `FaceRestoreHelper.paste_faces_to_input_image` with use_parse=False, bit for bit.

    Arguments as `paste_parse` (no masks). Per face: the crop square (ones, float32) warped like the face,
    eroded by an int(2 * upscale) square (drops the half-covered border pixels); the face is weighted by
    it; the soft edge width w_edge = int(sqrt(area of the eroded mask)) // 20 sets a further erosion by a
    2 w_edge square and a GaussianBlur of size 2 w_edge + 1 (sigma from the size); canvas = soft * face +
    (1 - soft) * canvas in float32. Finally truncated to uint8. (The masks need the whole face: each
    face's full-width band of rows is computed at once, then blended chunk by chunk.)
    """
    faces, affines, size = _check_paste_inputs(background, restored_faces, affines, face_size)
    ones = np.ones((size, size), np.float32)
    border_kernel = np.ones((int(2 * upscale), int(2 * upscale)), np.uint8)
    results = []
    for face, affine in zip(faces, affines):
        inverse = _paste_inverse(affine, upscale)
        # the soft edge reaches at most sqrt(area) / 20 beyond the eroded square: keep that inside the band
        target = _warp_band(inverse, size, background.shape, margin=int(_footprint_side(inverse, size) / 10) + 4)
        if target is None:
            continue
        y0, y1, local, dsize = target
        face_back = cv2.warpAffine(face, local, dsize)
        mask = cv2.erode(cv2.warpAffine(ones, local, dsize), border_kernel)
        pasted = mask[:, :, None] * face_back
        w_edge = int(np.sum(mask) ** 0.5) // 20
        center = cv2.erode(mask, np.ones((w_edge * 2, w_edge * 2), np.uint8))
        soft = cv2.GaussianBlur(center, (w_edge * 2 + 1, w_edge * 2 + 1), 0)
        results.append(((y0, y1), soft, pasted))

    def blend(canvas: np.ndarray, top: int, layer) -> None:
        (y0, y1), soft, pasted = layer
        r0, r1 = max(y0, top), min(y1, top + canvas.shape[0])  # the rows of this chunk in the face's band
        region, mask = canvas[r0 - top:r1 - top], soft[r0 - y0:r1 - y0, :, None]
        region[...] = mask * pasted[r0 - y0:r1 - y0] + (1 - mask) * region

    return _blend_in_chunks(background, results, np.float32, blend, inplace)


GPEN_SMOOTHING_KERNEL = np.array([[0.0625, 0.125, 0.0625], [0.125, 0.25, 0.125], [0.0625, 0.125, 0.0625]],
                                 np.float32)


def inverse_affine_centered(affine: np.ndarray, upscale: float = 1) -> np.ndarray:
    """crop -> output pixels for an output `upscale` times the input, pixel centres aligned as cv2.resize
    aligns them (x_out = upscale * x_in + (upscale - 1) / 2). This is the matrix GPEN pastes with when its
    detector ran on the upscaled image (use_sr), expressed through the input image's affine."""
    inverse = cv2.invertAffineTransform(np.asarray(affine, np.float64)) * upscale
    inverse[:, 2] += (upscale - 1) / 2
    return inverse


def paste_gpen(background: np.ndarray, restored_faces: np.ndarray, affines: np.ndarray,
               gpen_masks: np.ndarray, face_boxes: np.ndarray, upscale: float = 1, face_size: int | None = None,
               cropped_faces: np.ndarray | None = None, alpha: float = 1.0, inplace: bool = False) -> np.ndarray:
    """GPEN's `FaceEnhancement.process` compositing, bit for bit given the same inputs.

    background: (H, W, 3) BGR uint8 at the output size (GPEN: the input, or the SR image when use_sr).
    restored_faces: (N, R, R, 3) BGR uint8 GPEN outputs; resized (bilinear) to face_size when R differs,
        after the steps below, as GPEN does when out_size != in_size.
    affines: (N, 2, 3) input pixels -> crop pixels; crops are face_size (GPEN's in_size).
    gpen_masks: (N, 512, 512) float32, `FaceParser.gpen_masks(restored_faces)`.
    face_boxes: (N, 4+) detection boxes x1, y1, x2, y2 in input pixels (scaled by upscale, as GPEN's
        detector sees the upscaled image).
    cropped_faces / alpha: GPEN's `alpha` blend with the unrestored crop (needed only when alpha != 1).

    Per face, in order: mask resized to face_size (bilinear) and warped back (flags=3) with
    `inverse_affine_centered`; faces whose box has a side under 100 px are smoothed with the 3x3 kernel
    [1 2 1; 2 4 2; 1 2 1] / 16; cv2.addWeighted(face, alpha, crop, 1 - alpha, 0); face warped back
    (flags=3, black border). Where this mask exceeds the accumulated one, mask and face replace it (the
    larger mask wins, regardless of order). Output: convertScaleAbs(bg * (1 - mask) + faces * mask)
    (rounded, saturated), in float32. Computed chunk of rows by chunk (see PASTE_CHUNK_PIXELS);
    inplace: paste into `background` itself.
    """
    faces, affines, size = _check_paste_inputs(background, restored_faces, affines, face_size=None)
    size = size if face_size is None else face_size
    if background.shape[2] != 3:
        raise ValueError("paste_gpen takes a 3-channel BGR background (GPEN has no alpha handling)")
    boxes = np.asarray(face_boxes, np.float64).reshape(len(faces), -1) * upscale
    if alpha != 1.0 and cropped_faces is None:
        raise ValueError("alpha != 1 blends with the unrestored crops: pass cropped_faces")
    layers = []
    for k, (face, affine) in enumerate(zip(faces, affines)):
        inverse = inverse_affine_centered(affine, upscale)
        band = _row_band(inverse, size, background.shape[0])
        if band is None:
            continue
        mask = cv2.resize(np.asarray(gpen_masks[k], np.float32), (size, size))
        box_h, box_w = boxes[k, 3] - boxes[k, 1], boxes[k, 2] - boxes[k, 0]
        if min(box_h, box_w) < 100:  # GPEN smooths small faces
            face = cv2.filter2D(face, -1, GPEN_SMOOTHING_KERNEL)
        if cropped_faces is not None:
            face = cv2.addWeighted(face, alpha, np.asarray(cropped_faces[k]), 1.0 - alpha, 0.0)
        if face.shape[:2] != (size, size):
            face = cv2.resize(face, (size, size))
        layers.append((band, inverse, face, mask))
    out = background if inplace else background.copy()
    width = background.shape[1]
    for c0, c1, overlapping in _row_chunks([layer[0] for layer in layers], width):
        full_mask = np.zeros((c1 - c0, width), np.float32)
        full_img = np.zeros((c1 - c0, width, 3), np.uint8)
        for i in overlapping:
            _, inverse, face, mask = layers[i]
            local, dsize = _shift_rows(inverse, c0), (width, c1 - c0)
            mask = cv2.warpAffine(mask, local, dsize, flags=3)
            larger = mask - full_mask > 0
            full_mask[larger] = mask[larger]
            full_img[larger] = cv2.warpAffine(face, local, dsize, flags=3)[larger]
        weight = full_mask[:, :, None]
        out[c0:c1] = cv2.convertScaleAbs(background[c0:c1] * (1 - weight) + full_img * weight)
    return out
