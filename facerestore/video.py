"""Face restoration on video clips, streamed frame by frame with PyAV (FFmpeg's libraries, from its wheels).

    decode -> upright (rotation metadata) -> detect (a window of frames at once) -> track faces ->
      (one window later) smooth their landmarks over past and future frames -> align -> ONE batched
      forward for the faces of the window, each face with its track's fixed noise seed -> paste back ->
      encode (H.264 yuv420p by default)

What is kept: every input frame with its timestamp (variable frame rates stay variable), the duration,
and every audio and subtitle stream, copied packet for packet without re-encoding. Rotation metadata
is applied while decoding: the output is written upright, without rotation metadata.

Memory stays constant over the clip's length: only two windows of `batch_frames` decoded frames (plus
the encoder's and muxer's small queues) are alive at a time. The output goes to a temporary file beside `dst`,
renamed to `dst` only when complete, so an interrupted run never leaves a broken file under that name.

Temporal stability: a face keeps its track (and track id) from frame to frame; its landmarks are
averaged over the frames around each frame, before and after (`TrackSmoother`: zero lag, restored one
window behind detection; the tracker's One Euro filter predicts where tracks go); a face the detector
misses for up to `max_missed` frames is bridged with its extrapolated landmarks; noise-drawing models
(GFP-GAN) get one fixed noise seed per track instead of fresh noise per call, which would flicker.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif")

# Output container per input extension, for H.264: GIF cannot hold it (-> .mp4) and WebM holds only
# VP8/VP9/AV1 (-> .mkv, which holds every stream a WebM file can).
_H264_CONTAINER = {".gif": ".mp4", ".webm": ".mkv"}
_WEBM_CODECS = ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1", "av1")
_CRF_CODECS = ("libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1")


def is_video(path: str | os.PathLike) -> bool:
    """Whether `path` names a video file (by extension)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_videos(inputs: list[str | os.PathLike]) -> list[Path]:
    """Video files (by extension) inside the given folders, sorted; files given directly are not listed."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and is_video(f))
    return found


def output_extension(src: str | os.PathLike, codec: str = "libx264") -> str:
    """The container written for `src`: the same as the input where it can hold `codec`, else .mp4
    (GIF) or .mkv (WebM with a codec WebM does not allow)."""
    ext = Path(src).suffix.lower()
    if ext == ".webm" and codec in _WEBM_CODECS:
        return ext
    return _H264_CONTAINER.get(ext, ext if ext in VIDEO_EXTENSIONS else ".mp4")


@dataclass
class VideoSummary:
    """What `restore_video` did: `frames` written, `faces_per_frame` restored in each, `tracks` (distinct
    faces followed), `bridged` (faces restored at extrapolated positions in frames where the detector
    missed them), `seconds` of wall time, `duration` of the clip (s), and the `output` path."""

    output: Path
    frames: int
    faces_per_frame: list[int]
    tracks: int
    bridged: int
    seconds: float
    duration: float

    @property
    def faces(self) -> int:
        return int(sum(self.faces_per_frame))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    @property
    def seconds_per_face(self) -> float:
        return self.seconds / self.faces if self.faces else float("nan")


# --- landmark smoothing and tracking -------------------------------------------------------------

class OneEuroFilter:
    """One Euro filter (Casiez, Roussel, Vogel, CHI 2012) for an array of points, with one cutoff for the
    whole array: a low-pass whose cutoff rises with the speed of motion, so it is steady when still and
    lags little when moving.

    Speeds are measured in `scale` units per second (pass the face size, e.g. `face_scale(landmarks)`,
    the eye-to-mouth distance, so the same settings work at every resolution): cutoff = min_cutoff +
    beta * mean point speed. The defaults come from a sweep on a synthetic pan/zoom clip (README, Video):
    less flicker than the input's, about one frame of lag at 2 face scales per second. `dt` comes from the frames' real
    timestamps, so variable frame rates are filtered correctly.
    """

    def __init__(self, min_cutoff: float = 0.2, beta: float = 1.0, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.velocity: np.ndarray | None = None  # smoothed derivative, units per second
        self.time: float | None = None

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.value is None or self.time is None or t <= self.time:
            if self.value is None or self.time is None:
                self.value, self.velocity = x.copy(), np.zeros_like(x)
            else:  # repeated timestamp: take the new measurement, keep the motion estimate
                self.value = x.copy()
            self.time = t
            return self.value.copy()
        dt = t - self.time
        raw_velocity = (x - self.value) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.velocity = self.velocity + a_d * (raw_velocity - self.velocity)
        speed = float(np.linalg.norm(self.velocity.reshape(-1, 2), axis=1).mean()) / max(scale, 1e-6)
        a = self._alpha(self.min_cutoff + self.beta * speed, dt)
        self.value = self.value + a * (x - self.value)
        self.time = t
        return self.value.copy()

    def predict(self, t: float) -> np.ndarray:
        """The value extrapolated to time `t` with the smoothed velocity (constant-velocity model)."""
        assert self.value is not None and self.time is not None
        return self.value + self.velocity * max(0.0, t - self.time)


@dataclass
class Track:
    """One face followed through the clip."""

    id: int
    filter: OneEuroFilter
    box: np.ndarray  # (4,) last matched or predicted box
    landmarks: np.ndarray  # (5, 2) smoothed (or predicted, while bridged)
    missed: int = 0  # consecutive frames without a matching detection


@dataclass
class TrackedFace:
    track_id: int
    landmarks: np.ndarray  # (5, 2) smoothed landmarks to align with
    box: np.ndarray
    bridged: bool  # True: not detected in this frame, landmarks extrapolated


def face_scale(landmarks: np.ndarray) -> float:
    """Face size in pixels: distance between the eye centre and the mouth centre (about a third of the face)."""
    lm = np.asarray(landmarks, np.float64)
    return float(np.linalg.norm(lm[:2].mean(0) - lm[3:].mean(0))) + 1e-6


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x1, y1, x2, y2 boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


class FaceTracker:
    """Associates each frame's detections with the tracks of earlier frames and smooths their landmarks.

    A detection continues a track when its box overlaps the track's predicted box (IoU >= `min_iou`) or
    its landmarks lie within `max_distance` face sizes of the predicted ones; pairs are taken greedily,
    closest first. Unmatched detections start new tracks (new ids); a track missed for up to `max_missed`
    frames is bridged at its extrapolated position, then dropped. `smooth=False` passes the detected
    landmarks through unchanged (for comparison).
    """

    def __init__(self, max_missed: int = 3, min_iou: float = 0.3, max_distance: float = 0.5,
                 smooth: bool = True, min_cutoff: float = 0.2, beta: float = 1.0, d_cutoff: float = 1.0) -> None:
        self.max_missed, self.min_iou, self.max_distance, self.smooth = max_missed, min_iou, max_distance, smooth
        self.filter_settings = dict(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        self.tracks: list[Track] = []
        self.next_id = 0

    def update(self, boxes: np.ndarray, landmarks: np.ndarray, t: float,
               frame_size: tuple[int, int] | None = None) -> list[TrackedFace]:
        """Detections of the frame at time `t` (s) -> the faces to restore in it, ordered by track id."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
        predicted = [tr.filter.predict(t) for tr in self.tracks]
        pairs = []
        for i, (tr, pred) in enumerate(zip(self.tracks, predicted)):
            shift = (pred - tr.landmarks).mean(0)
            iou = box_iou(tr.box + np.tile(shift, 2), boxes)[0] if len(boxes) else np.zeros(0)
            for j in range(len(boxes)):
                distance = np.linalg.norm(landmarks[j] - pred, axis=1).mean() / face_scale(landmarks[j])
                if iou[j] >= self.min_iou or distance <= self.max_distance:
                    pairs.append((distance, i, j))
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        for _, i, j in sorted(pairs):
            if i in matched_tracks or j in matched_dets:
                continue
            matched_tracks.add(i)
            matched_dets.add(j)
            tr = self.tracks[i]
            smoothed = tr.filter(landmarks[j], t, face_scale(landmarks[j]))
            tr.landmarks = smoothed if self.smooth else landmarks[j].copy()
            tr.box, tr.missed = boxes[j].copy(), 0
        out: list[TrackedFace] = []
        kept: list[Track] = []
        for i, tr in enumerate(self.tracks):
            if i in matched_tracks:
                out.append(TrackedFace(tr.id, tr.landmarks.copy(), tr.box.copy(), False))
                kept.append(tr)
                continue
            tr.missed += 1
            if tr.missed > self.max_missed:
                continue
            shift = (predicted[i] - tr.landmarks).mean(0)
            tr.landmarks, tr.box = predicted[i], tr.box + np.tile(shift, 2)
            kept.append(tr)
            if frame_size is None or _mostly_inside(tr.box, frame_size):
                out.append(TrackedFace(tr.id, tr.landmarks.copy(), tr.box.copy(), True))
        for j in range(len(boxes)):
            if j in matched_dets:
                continue
            tr = Track(self.next_id, OneEuroFilter(**self.filter_settings), boxes[j].copy(), landmarks[j].copy())
            tr.filter(landmarks[j], t, face_scale(landmarks[j]))
            self.next_id += 1
            kept.append(tr)
            out.append(TrackedFace(tr.id, tr.landmarks.copy(), tr.box.copy(), False))
        self.tracks = kept
        return sorted(out, key=lambda f: f.track_id)


def _mostly_inside(box: np.ndarray, frame_size: tuple[int, int]) -> bool:
    h, w = frame_size
    x1, y1, x2, y2 = box
    inside = max(0.0, min(x2, w) - max(x1, 0)) * max(0.0, min(y2, h) - max(y1, 0))
    return inside >= 0.5 * max((x2 - x1) * (y2 - y1), 1e-9)


class TrackSmoother:
    """Zero-lag landmark smoothing along tracks, for clips restored with a look-ahead: the landmarks of a
    face at time t become the Gaussian-weighted mean (sigma `sigma` seconds, over +-3 sigma) of its track's
    landmarks at the frames around t, past and future. Unlike a causal filter (One Euro) it does not
    trail a moving face (steady motion at even frame spacing comes out exactly; uneven spacing (VFR) and
    the clip's first and last 3 sigma, where one side is missing, leave a small lag), and it averages the
    detector's jitter over ~2.5 sigma x fps frames.

    `add(track_id, t, landmarks)` records a frame's landmarks; `smoothed(track_id, t)` is valid once the
    frames up to t + 3 sigma were added (or the clip ended); `forget(before)` drops what is no longer needed."""

    def __init__(self, sigma: float = 0.1) -> None:
        self.sigma = sigma
        self.history: dict[int, list[tuple[float, np.ndarray]]] = {}

    @property
    def reach(self) -> float:
        return 3 * self.sigma

    def add(self, track_id: int, t: float, landmarks: np.ndarray) -> None:
        self.history.setdefault(track_id, []).append((t, np.asarray(landmarks, np.float64)))

    def smoothed(self, track_id: int, t: float) -> np.ndarray:
        near = [(u, lm) for u, lm in self.history[track_id] if abs(u - t) <= self.reach]
        weights = np.array([math.exp(-0.5 * ((u - t) / self.sigma) ** 2) for u, _ in near])
        # a weighted mean, not a local line fit: the fit has no lag at uneven spacing and at the clip's
        # ends, but measured ~15 % more flicker (it follows the jitter more closely)
        return np.tensordot(weights / weights.sum(), np.stack([lm for _, lm in near]), axes=1)

    def forget(self, before: float) -> None:
        for track_id in list(self.history):
            kept = [(u, lm) for u, lm in self.history[track_id] if u >= before - self.reach]
            if kept:
                self.history[track_id] = kept
            else:
                del self.history[track_id]


# --- restoring a clip ----------------------------------------------------------------------------

def paste_back(restorer: Any, background: np.ndarray, restored: np.ndarray, affines: np.ndarray,
               frame_shape: tuple[int, ...], upscale: float, paste: str, boxes: np.ndarray) -> np.ndarray:
    """Paste restored faces into one frame with the photo pipeline's paste-back (`FaceRestorer.paste_back`):
    `affines` map frame pixels to crop pixels, `background` is the frame at the output size."""
    return restorer.paste_back(background, restored, affines, frame_shape, upscale, paste, boxes)


@dataclass
class _Frame:
    bgr: np.ndarray  # upright
    pts: int | None
    time_base: Fraction | None
    seconds: float
    faces: list[TrackedFace] = field(default_factory=list)


def _upright(frame: Any) -> np.ndarray:
    """The decoded frame as BGR uint8, rotated as its display matrix says (counterclockwise degrees)."""
    bgr = frame.to_ndarray(format="bgr24")
    quarter_turns = round(float(getattr(frame, "rotation", 0) or 0) / 90.0) % 4
    return np.ascontiguousarray(np.rot90(bgr, quarter_turns)) if quarter_turns else bgr


def _even(bgr: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: repeat the last row/column of odd-sized frames."""
    h, w = bgr.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return bgr
    return cv2.copyMakeBorder(bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)


def temporary_path(dst: Path) -> Path:
    """Where the output is written until it is complete (same folder and extension, hidden name)."""
    return dst.with_name(f".{dst.stem}.partial-{os.getpid()}{dst.suffix}")


def restore_video(
    restorer: Any,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    crf: int = 18,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    batch_frames: int = 8,
    progress: bool = True,
    max_missed: int = 3,
    smooth: bool = True,
    upscale: float = 1,
    only_center_face: bool = False,
    max_faces: int | None = None,
    min_face_size: float = 0,
    fidelity: float | None = None,
    seed: int | None = None,
    background_upsampler: Callable[[np.ndarray, float], np.ndarray] | None = None,
    paste: str | None = None,
    aligned: bool = False,
) -> VideoSummary:
    """Restore every face of a video clip `src` into `dst` (container chosen by its extension).

    crf: quality of H.264/H.265/VP9/AV1 (lower = better and larger; 18 is visually near-lossless for
        H.264); codec / pix_fmt: the video encoder (PyAV name, e.g. "libx265", "libvpx-vp9", "ffv1") and
        its pixel format. batch_frames: frames whose faces go through one batched forward.
    max_missed: frames a face may be missed by the detector and still be restored (bridged);
        smooth: look-ahead landmark smoothing along each track (TrackSmoother; False: raw detections).
    upscale, only_center_face, max_faces, min_face_size, fidelity, background_upsampler, paste: as in
        `FaceRestorer.restore`, per frame (paste None = the model's official paste-back, e.g. "parse" for
        GFP-GAN/CodeFormer, "gpen" for GPEN; "feather" is the cheapest: no face parsing). seed: base of the per-track noise seeds (track k uses
        seed + k); None draws the base from torch's RNG (fixed per track all the same).
    Returns a VideoSummary. Raises ValueError for a file that is not a readable video.
    """
    import av
    import torch
    from tqdm.auto import tqdm

    from .face.align import estimate_affine, template, transform_points, warp_faces
    from .restorer import check_restore_options, upscale_background

    if aligned:
        raise ValueError("aligned=True is for photos of single aligned faces; videos are searched for faces")
    check_restore_options(fidelity, upscale, paste)
    paste = paste or restorer.entry.family.paste
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"video {src} does not exist")
    if dst.resolve() == src.resolve():
        raise ValueError("output would overwrite the input; choose another output path")
    base_seed = int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
    size = restorer.entry.face_size
    dst_points = template(restorer.entry.template, size)
    # tracks associate raw detections; with `smooth` their landmarks are then averaged over the frames
    # around each frame (TrackSmoother), so frames are restored one window behind detection (look-ahead)
    tracker = FaceTracker(max_missed=max_missed, smooth=False)
    smoother = TrackSmoother() if smooth else None
    detector = restorer.detector

    try:
        inp = av.open(str(src))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise ValueError(f"{src} is not a readable video: {exc}") from exc
    started = time.perf_counter()
    faces_per_frame: list[int] = []
    bridged = 0
    tmp = temporary_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with inp:
            if not inp.streams.video:
                raise ValueError(f"{src} has no video stream")
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            time_base = vin.time_base or Fraction(1, 1000)
            duration = _duration_seconds(inp, vin)
            with av.open(str(tmp), "w") as out:
                to_copy = _streams_to_copy(inp, out)
                copies: dict[Any, Any] = {}  # input stream -> output stream, added after the video stream
                vout = None
                window: list[_Frame] = []
                pending: list[_Frame] = []  # tracked, waiting for the look-ahead of the next window
                waiting: list[Any] = []  # copied packets read before the video stream could be added
                last_pts = None

                def track(frames: list[_Frame]) -> None:
                    """Detect the faces of a window at once and associate them with tracks."""
                    images = [f.bgr for f in frames]
                    found = (detector.detect_batch(images) if hasattr(detector, "detect_batch")
                             else [detector.detect(img) for img in images])
                    for frame, dets in zip(frames, found):
                        keep = _select(dets, frame.bgr.shape[:2], only_center_face, max_faces, min_face_size)
                        frame.faces = tracker.update(dets.boxes[keep], dets.landmarks[keep], frame.seconds,
                                                     frame.bgr.shape[:2])
                        if smoother is not None:
                            for face in frame.faces:
                                smoother.add(face.track_id, frame.seconds, face.landmarks)

                def flush(frames: list[_Frame]) -> None:
                    """Restore, paste and encode a tracked window (its look-ahead frames are tracked too)."""
                    nonlocal vout, bridged
                    if not frames:
                        return
                    crops, crop_lms, affines, seeds = [], [], [], []
                    for frame in frames:
                        for face in frame.faces:
                            landmarks = (smoother.smoothed(face.track_id, frame.seconds) if smoother is not None
                                         else face.landmarks)
                            affine = estimate_affine(landmarks, dst_points)
                            affines.append(affine)
                            crop_lms.append(transform_points(landmarks, affine))
                            seeds.append((base_seed + face.track_id) % (2**63))
                            bridged += face.bridged
                        if frame.faces:
                            crops.append(warp_faces(frame.bgr, np.stack(affines[-len(frame.faces):]), size))
                    if smoother is not None:
                        smoother.forget(frames[-1].seconds)
                    restored = None
                    if crops:
                        crops_all = np.concatenate(crops)
                        # one batched forward, each face with its track's fixed noise seed
                        restored = restorer.restore_faces(crops_all, np.stack(crop_lms).astype(np.float32),
                                                          fidelity, seed=seeds)
                    start = 0
                    for k, frame in enumerate(frames):
                        background = upscale_background(frame.bgr, upscale, background_upsampler,
                                                        exact_size=paste != "feather")
                        n = len(frame.faces)
                        if n:
                            boxes = np.stack([face.box for face in frame.faces])
                            background = paste_back(restorer, background, restored[start:start + n],
                                                    np.stack(affines[start:start + n]), frame.bgr.shape, upscale,
                                                    paste, boxes)
                            start += n
                        image = _even(background)
                        if vout is None:
                            vout = _add_video_stream(out, codec, pix_fmt, crf, image.shape, vin, time_base)
                            copies.update({s: out.add_stream_from_template(s) for s in to_copy})
                            for packet in waiting:
                                packet.stream = copies[packet.stream]
                                out.mux(packet)
                            waiting.clear()
                        vf = av.VideoFrame.from_ndarray(image, format="bgr24")
                        vf.pts, vf.time_base = frame.pts, frame.time_base
                        for packet in vout.encode(vf):
                            out.mux(packet)
                        faces_per_frame.append(n)
                        bar.update(1)
                    bar.set_postfix(faces=sum(faces_per_frame), tracks=tracker.next_id, refresh=False)

                total = vin.frames or None
                with tqdm(total=total, desc=f"restore {src.name}", unit="frame", disable=not progress) as bar:
                    for packet in inp.demux(vin, *to_copy):
                        if packet.stream.index != vin.index:
                            if packet.dts is None:  # demuxer's end-of-stream marker
                                continue
                            if vout is None:  # the video stream is added with the first restored frame
                                waiting.append(packet)
                            else:
                                packet.stream = copies[packet.stream]
                                out.mux(packet)
                            continue
                        for frame in packet.decode():
                            pts = frame.pts if frame.pts is not None else (
                                last_pts + 1 if last_pts is not None else 0)
                            last_pts = pts
                            seconds = float(pts * time_base)
                            window.append(_Frame(_upright(frame), pts, time_base, seconds))
                            if len(window) >= batch_frames:
                                track(window)
                                flush(pending)  # restored once the window after it is tracked
                                pending, window = window, []
                    if window:
                        track(window)
                    flush(pending)
                    flush(window)
                    pending, window = [], []
                if vout is None:
                    raise ValueError(f"{src} has no decodable video frames")
                for packet in vout.encode():
                    out.mux(packet)
        os.replace(tmp, dst)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, av.FFmpegError):
            raise ValueError(f"{src}: could not be read or written as a video: {exc}") from exc
        raise
    return VideoSummary(dst, len(faces_per_frame), faces_per_frame, tracker.next_id, bridged,
                        time.perf_counter() - started, duration)


def _select(dets: Any, frame_shape: tuple[int, int], only_center_face: bool, max_faces: int | None,
            min_face_size: float) -> list[int]:
    """Indices of the detections to restore (the same rules as `FaceRestorer.restore`)."""
    boxes = dets.boxes
    keep = [i for i in range(len(dets.scores))
            if min(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1]) >= min_face_size]
    if only_center_face and keep:
        h, w = frame_shape
        centers = (boxes[keep, :2] + boxes[keep, 2:]) / 2
        keep = [keep[int(np.argmin(np.linalg.norm(centers - [w / 2, h / 2], axis=1)))]]
    # the same face found twice (at two detection scales) would become two tracks: drop a detection
    # lying mostly inside a higher-scoring one
    unique: list[int] = []
    for i in keep:
        x1, y1, x2, y2 = boxes[i]
        area = max((x2 - x1) * (y2 - y1), 1e-9)
        if all(_intersection(boxes[i], boxes[j]) < 0.6 * area for j in unique):
            unique.append(i)
    if max_faces is not None:
        unique = unique[:max_faces]
    return unique


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _duration_seconds(inp: Any, vin: Any) -> float:
    if vin.duration is not None and vin.time_base is not None:
        return float(vin.duration * vin.time_base)
    if inp.duration is not None:
        return inp.duration / 1_000_000  # AV_TIME_BASE
    return float("nan")


def _streams_to_copy(inp: Any, out: Any) -> list[Any]:
    """The audio and subtitle streams of `inp` that `out` can hold (their packets are muxed as they are)."""
    copies = []
    for stream in inp.streams:
        if stream.type not in ("audio", "subtitle"):
            continue
        name = stream.codec_context.name if stream.codec_context is not None else None
        if name is not None and name not in out.supported_codecs:
            warnings.warn(f"{stream.type} stream #{stream.index} ({name}) cannot be stored in "
                          f"{Path(out.name).suffix} files and is left out; write another container "
                          f"(e.g. .mkv) to keep it", stacklevel=3)
            continue
        copies.append(stream)
    return copies


def _add_video_stream(out: Any, codec: str, pix_fmt: str, crf: int, shape: tuple[int, ...], vin: Any,
                      time_base: Fraction) -> Any:
    import av

    if codec not in av.codecs_available:
        raise ValueError(f"video codec {codec!r} is not available in this PyAV build; "
                         f"try libx264, libx265, libvpx-vp9, libsvtav1 or ffv1")
    rate = vin.average_rate or vin.guessed_rate or Fraction(30)
    stream = out.add_stream(codec, rate=rate)
    stream.height, stream.width = shape[:2]
    stream.pix_fmt = pix_fmt
    stream.time_base = time_base
    stream.codec_context.time_base = time_base  # frames keep their own timestamps (variable rates too)
    if codec in _CRF_CODECS:
        stream.options = {"crf": str(crf), **({"b:v": "0"} if codec.startswith("libvpx") else {})}
    return stream


# --- synthetic clips (tests, benchmarks) ---------------------------------------------------------

def pan_zoom_affines(photo_shape: tuple[int, ...], size: tuple[int, int], frames: int, zoom: float = 1.15,
                     pan: float = 0.1, fit: float = 1.0) -> np.ndarray:
    """(frames, 2, 3) affines photo -> frame of a slow camera move over a still photo: the view
    shrinks by `zoom` and drifts by `pan` x its width/height over the clip (no real change in the
    scene, so any frame-to-frame change beyond resampling is flicker). `fit` < 1 shows less of the photo."""
    ph, pw = photo_shape[:2]
    w, h = size
    base = min(w / pw, h / ph) / fit
    out = np.zeros((frames, 2, 3))
    for i in range(frames):
        u = i / max(frames - 1, 1)
        s = base * (1 + (zoom - 1) * u)
        cx, cy = pw / 2 + pan * pw * (u - 0.5), ph / 2 + pan * ph * (u - 0.5) * 0.5
        out[i] = [[s, 0, w / 2 - s * cx], [0, s, h / 2 - s * cy]]
    return out


def write_test_clip(path: str | os.PathLike, photo: np.ndarray, *, size: tuple[int, int] = (160, 128),
                    frames: int = 24, fps: int = 24, vfr: bool = False, audio_hz: float | None = 440.0,
                    rotation: int = 0, crf: int = 12, **motion: float) -> np.ndarray:
    """Write an H.264 clip of a slow pan/zoom over `photo` (BGR uint8) for tests and benchmarks.

    vfr: frame durations alternate 1 and 2 ticks of 1/fps (variable frame rate); audio_hz: a mono
    sine track (AAC, 16 kHz) as long as the video, None for none; rotation: stored rotated by this
    many degrees clockwise with a display matrix that turns it back upright. Returns the (frames, 2, 3)
    photo -> upright frame affines (see `pan_zoom_affines`)."""
    import av

    affines = pan_zoom_affines(photo.shape, size, frames, **motion)
    tick = Fraction(1, fps)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        h, w = size[1], size[0]
        quarter_turns = round(rotation / 90) % 4
        video.height, video.width = (w, h) if quarter_turns % 2 else (h, w)
        video.pix_fmt, video.time_base = "yuv420p", tick
        video.codec_context.time_base = tick
        # one encoder thread: with x264's frame threads this clip came out different on every call once an
        # audio stream was muxed beside it (the same frames in); tests measure figures on these clips
        video.options = {"crf": str(crf), "threads": "1"}
        if quarter_turns:
            video.set_display_rotation(90 * quarter_turns)
        audio = None
        if audio_hz:
            audio = out.add_stream("aac", rate=16000)
            audio.layout = "mono"
        pts = 0
        for i in range(frames):
            img = cv2.warpAffine(photo, affines[i], size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            stored = np.ascontiguousarray(np.rot90(img, -quarter_turns))  # clockwise; the matrix turns it back
            frame = av.VideoFrame.from_ndarray(stored, format="bgr24")
            frame.pts, frame.time_base = pts, tick
            pts += 1 + (i % 2 if vfr else 0)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            rate = 16000
            t = np.arange(int(pts * tick * rate)) / rate
            samples = (0.3 * np.sin(2 * np.pi * audio_hz * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]),
                                                   format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
                for packet in audio.encode(chunk):
                    out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return affines


def read_frames(path: str | os.PathLike) -> tuple[list[np.ndarray], list[int]]:
    """All frames of a clip (upright BGR uint8) and their timestamps (pts) - for tests of short clips."""
    import av

    frames, pts = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(_upright(frame))
            pts.append(frame.pts)
    return frames, pts


def face_flicker(frames: list[np.ndarray], affines: np.ndarray, photo_boxes: np.ndarray,
                 inner: float = 0.8) -> float:
    """Mean absolute frame-to-frame change (0-255) inside the faces of a clip with known camera motion.

    frames: the clip's frames; affines: (frames, 2, 3) photo -> frame (from `write_test_clip`);
    photo_boxes: (F, 4) face boxes in the photo, shrunk to their central `inner` fraction. Frame t+1
    is warped onto frame t with the known motion before the difference is taken, so a still scene
    gives only resampling and coding noise; flicker of restored faces comes on top."""
    to3 = lambda a: np.vstack([a, [0, 0, 1]])  # noqa: E731
    total, count = 0.0, 0
    for t in range(len(frames) - 1):
        h, w = frames[t].shape[:2]
        next_to_this = (to3(affines[t]) @ np.linalg.inv(to3(affines[t + 1])))[:2]
        moved = cv2.warpAffine(frames[t + 1], next_to_this, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        valid = cv2.warpAffine(np.ones((h, w), np.uint8), next_to_this, (w, h), flags=cv2.INTER_NEAREST) > 0
        mask = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in np.asarray(photo_boxes, np.float64):
            cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * inner / 2, (y2 - y1) * inner / 2
            corners = np.array([[cx - hw, cy - hh], [cx + hw, cy + hh]]) @ affines[t][:, :2].T + affines[t][:, 2]
            (fx1, fy1), (fx2, fy2) = np.floor(corners.min(0)).astype(int), np.ceil(corners.max(0)).astype(int)
            mask[max(fy1, 0):max(fy2, 0), max(fx1, 0):max(fx2, 0)] = True
        mask &= valid
        diff = np.abs(moved.astype(np.float64) - frames[t].astype(np.float64)).mean(-1)
        total += float(diff[mask].sum())
        count += int(mask.sum())
    return total / max(count, 1)
