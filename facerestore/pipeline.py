"""Whole folders at model speed: `restore_folder` overlaps reading, detection, the network, paste-back
and writing of consecutive photos.

    decode (read + to BGR) -> detect (faces, aligned crops, background) -> network (restore_faces)
      -> paste (paste-back, back to the input's form) -> write (encode, atomic write; calling thread)

Each stage is one thread joined to the next by a bounded queue (`queue_size` photos), so at most a few
photos are in memory whatever the folder's size. Torch, OpenCV and file I/O release the GIL, so while the
network restores photo n, photo n+1 is being detected and photo n-1 pasted and written. Every photo goes
through the same steps as `restorer.restore` (`prepare_photo` -> `restore_faces` -> `finish_photo`) with
the same seed, so outputs are byte-identical to processing the photos one after the other
(`pipelined=False` does that, in the calling thread).

The output naming rule (also used by `facerestore.distributed`) lives here: `plan_outputs`,
`output_file`, `faces_stem`.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

_END = object()  # sent down the queues after the last photo


# ---------------------------------------------------------------- output names
def plan_outputs(sources: list[tuple[Path, Path]], out_dir: Path) -> list[Path]:
    """One distinct output stem (a path without extension) per input, deterministic.

    sources: (file, path relative to its input) as imageio.find_images gives them. The output of
    `in/sub/x.png` found in folder `in/` is `OUT/sub/x`: the folder structure is mirrored. Inputs
    that would share a stem (same folder, same name apart from extension and letter case, e.g.
    `x.png` and `x.jpg`) get their own extension added (`x_png`, `x_jpg`); names that still coincide
    (the same name from two input folders) get `_2`, `_3`, ... in input order, the first keeps its name.
    """
    def key(stem: Path) -> str:
        return os.path.normcase(str(stem)).casefold()  # one file on case-insensitive file systems

    out_dir = Path(out_dir)
    plain = [out_dir / rel.parent / rel.stem for _, rel in sources]
    groups: dict[str, set[str]] = {}
    for stem, (_, rel) in zip(plain, sources):
        groups.setdefault(key(stem), set()).add(rel.suffix.lower())
    stems, taken = [], set()
    for stem, (_, rel) in zip(plain, sources):
        if len(groups[key(stem)]) > 1:
            stem = stem.with_name(f"{stem.name}_{rel.suffix.lstrip('.').lower() or 'noext'}")
        unique, n = stem, 2
        while key(unique) in taken:
            unique, n = stem.with_name(f"{stem.name}_{n}"), n + 1
        taken.add(key(unique))
        stems.append(unique)
    return stems


def output_file(stem: Path, src: Path, ext: str, suffix: str = "") -> Path:
    """`stem` + suffix + extension (the input's with ext "auto", else `ext`)."""
    extension = src.suffix if ext == "auto" else "." + ext.lstrip(".").lower()
    return stem.with_name(f"{stem.name}{suffix}{extension}")


def faces_stem(stem: Path, out_dir: Path) -> Path:
    """Where save_faces puts the face crops of the input whose output stem is `stem`."""
    return Path(out_dir) / "faces" / stem.relative_to(out_dir)


def find_inputs(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input) for the images of `inputs` (files given directly, whatever
    their type, and image files inside folders), then the videos inside folders."""
    from .imageio import find_images
    from .video import is_video

    inputs = list(inputs)
    found = find_images(inputs)
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            found += [(f, f.relative_to(root)) for f in sorted(root.rglob("*")) if f.is_file() and is_video(f)]
    return found


def check_ext(ext: str) -> None:
    """A clear error for an output format that is not an image format."""
    from .imageio import IMAGE_EXTENSIONS

    if ext != "auto" and "." + ext.lstrip(".").lower() not in IMAGE_EXTENSIONS:
        raise ValueError(f"--ext {ext}: not an image format; use auto or one of "
                         f"{', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}")


def write_outputs(dst: Path, image: np.ndarray, faces: list, face_stem: Path | None, inputs: set[Path]) -> None:
    """The restored photo to `dst` and, with a `face_stem`, each face's input and restored crop beside
    it (PNG); all writes atomic. A face crop that would be an input is refused."""
    from .imageio import write_image

    write_image(dst, image)
    if face_stem is None:
        return
    for i, face in enumerate(faces):
        for kind, pixels in (("input", face.crop), ("restored", face.restored)):
            target = face_stem.with_name(f"{face_stem.name}_{i:02d}_{kind}.png")
            if target.resolve() in inputs:
                raise ValueError(f"face crop {target} would overwrite an input; choose another --output")
            write_image(target, pixels)


# ---------------------------------------------------------------- the pipeline
@dataclass
class FolderSummary:
    """What `restore_folder` did. `total`: inputs found; `done`: inputs finished (restored or failed;
    fewer than total only when interrupted); `failed`: (input, "ExceptionType: message") in input order;
    `faces`: faces restored in photos; `stage_seconds`: busy time of each stage, summed over photos
    (the stages overlap when pipelined)."""

    total: int
    done: int
    failed: list[tuple[Path, str]]
    faces: int
    seconds: float
    outputs: list[Path] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def restored(self) -> int:
        return self.done - len(self.failed)

    @property
    def photos_per_minute(self) -> float:
        return 60.0 * self.restored / self.seconds if self.seconds > 0 else 0.0

    @property
    def faces_per_second(self) -> float:
        return self.faces / self.seconds if self.seconds > 0 else 0.0


class FolderInterrupted(KeyboardInterrupt):
    """Ctrl-C during `restore_folder`: `.summary` says what was finished (those outputs are complete)."""

    def __init__(self, summary: FolderSummary) -> None:
        super().__init__("interrupted")
        self.summary = summary


@dataclass
class _Photo:
    """One input on its way through the stages."""

    index: int
    src: Path
    dst: Path
    face_stem: Path | None
    error: str | None = None
    fatal: BaseException | None = None  # not an error of this file (e.g. KeyboardInterrupt): stops the run
    bgr: Any = None
    info: Any = None
    job: Any = None
    restored: Any = None
    image: Any = None
    faces: list = field(default_factory=list)


class _Stages:
    """The steps of `restorer.restore` for one photo, split where the pipeline hands photos on."""

    def __init__(self, restorer: Any, inputs: set[Path], options: dict[str, Any]) -> None:
        from .restorer import FaceRestorer, check_restore_options

        self.restorer = restorer
        self.inputs = inputs
        self.options = options
        self.staged = isinstance(restorer, FaceRestorer)  # else: restorer.restore in the network stage
        check_restore_options(options["fidelity"], options["upscale"], options["paste"])
        self.seconds = {name: 0.0 for name in ("decode", "detect", "network", "paste", "write")}

    def decode(self, photo: _Photo) -> None:
        from .imageio import read_image, to_bgr_uint8

        if photo.dst.resolve() in self.inputs:
            raise ValueError(f"output {photo.dst} would overwrite an input; choose another --output or --suffix")
        img = read_image(photo.src)
        if self.staged:
            photo.bgr, photo.info = to_bgr_uint8(img)
        else:
            photo.bgr = img

    def detect(self, photo: _Photo) -> None:
        o, r = self.options, self.restorer
        if self.staged and not o["aligned"]:
            photo.job = r.prepare_photo(photo.bgr, o["upscale"], o["only_center_face"], o["max_faces"],
                                        o["min_face_size"], o["background_upsampler"] or r.upsampler,
                                        o["paste"] or r.entry.family.paste)

    def network(self, photo: _Photo) -> None:
        from .restorer import NoFaceWarning

        o, r = self.options, self.restorer
        if not self.staged:
            result = r.restore(photo.bgr, upscale=o["upscale"], aligned=o["aligned"],
                               only_center_face=o["only_center_face"], max_faces=o["max_faces"],
                               fidelity=o["fidelity"], seed=o["seed"], paste=o["paste"])
            photo.image, photo.faces = np.asarray(result), list(getattr(result, "faces", []))
        elif o["aligned"]:
            photo.image, photo.faces = r._restore_aligned(photo.bgr, o["upscale"], o["fidelity"], o["seed"])
        elif photo.job.faces:
            photo.restored = r.restore_faces(photo.job.crops, photo.job.crop_landmarks, o["fidelity"], o["seed"])
        else:
            warnings.warn(f"{photo.src}: no face found: writing the (upscaled) input unchanged", NoFaceWarning,
                          stacklevel=2)

    def paste(self, photo: _Photo) -> None:
        from .imageio import from_bgr_uint8

        if not self.staged:
            return
        if not self.options["aligned"]:
            job = photo.job
            photo.image = self.restorer.finish_photo(job, photo.restored) if job.faces else job.background
            photo.faces = job.faces
        photo.image = from_bgr_uint8(photo.image, photo.info)
        photo.bgr = photo.job = photo.restored = None  # free the memory early

    def write(self, photo: _Photo) -> None:
        write_outputs(photo.dst, photo.image, photo.faces, photo.face_stem, self.inputs)

    def run(self, name: str, photo: _Photo) -> None:
        """Stage `name` on one photo: its error is recorded on the photo, which still flows on (so
        failures are reported in input order); anything else (Ctrl-C) stops the run."""
        if photo.error is not None or photo.fatal is not None:
            return
        start = time.perf_counter()
        try:
            getattr(self, name)(photo)
        except Exception as exc:  # one bad file must not stop the batch
            photo.error = f"{type(exc).__name__}: {exc}"
        except BaseException as exc:
            photo.fatal = exc
        finally:
            self.seconds[name] += time.perf_counter() - start


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put with a bounded wait, giving up when the run is stopped (nobody reads any more)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _drain(q: queue.Queue, stop: threading.Event) -> Iterable[Any]:
    """Items from `q` until _END, or until the run is stopped."""
    while not stop.is_set():
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is _END:
            return
        yield item


def _worker(stages: _Stages, name: str, inbox: Any, outbox: queue.Queue, stop: threading.Event) -> None:
    """A stage thread: photos from `inbox` (a queue, or the list of photos for the first stage) to `outbox`."""
    items = inbox if isinstance(inbox, list) else _drain(inbox, stop)
    for photo in items:
        if stop.is_set():
            return
        stages.run(name, photo)
        if not _put(outbox, photo, stop):
            return
    _put(outbox, _END, stop)


def restore_folder(
    restorer: Any,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    ext: str = "auto",
    suffix: str = "",
    save_faces: bool = False,
    upscale: float = 1,
    aligned: bool = False,
    only_center_face: bool = False,
    max_faces: int | None = None,
    min_face_size: float = 0,
    fidelity: float | None = None,
    seed: int | None = None,
    paste: str | None = None,
    background_upsampler: Any = None,
    video_options: dict[str, Any] | None = None,
    pipelined: bool = True,
    queue_size: int = 2,
    progress: bool = True,
    on_result: Callable[[Path, Path | None, str | None], None] | None = None,
) -> FolderSummary:
    """Restore every photo (and video) of `inputs` (files and folders) into `out_dir`.

    Output names: `plan_outputs` (mirrored folders, collision-free), `output_file` (ext "auto" keeps the
    input's format, else `ext`; `suffix` is appended to the name); with `save_faces` each face's input and
    restored crop go to OUT/faces/. Writes are atomic and never replace an input. A file that cannot be
    read or restored is recorded in `summary.failed` and the others go on. Videos go through
    `restorer.restore_video` (with `video_options`: crf, codec, ...) after the photos. The restore options
    are those of `restorer.restore`. `pipelined=False` runs the same steps one photo after the other in
    the calling thread; `queue_size` bounds the photos waiting between two stages. `on_result(src, dst,
    error)` is called in input order as each input is finished. Ctrl-C raises FolderInterrupted, whose
    `.summary` says what was finished.
    """
    from tqdm.auto import tqdm

    from .video import is_video

    check_ext(ext)
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    out_dir = Path(out_dir)
    sources = find_inputs(inputs)
    input_set = {src.resolve() for src, _ in sources if src.exists()}
    stems = plan_outputs(sources, out_dir)
    options = dict(upscale=upscale, aligned=aligned, only_center_face=only_center_face, max_faces=max_faces,
                   min_face_size=min_face_size, fidelity=fidelity, seed=seed, paste=paste,
                   background_upsampler=background_upsampler)
    stages = _Stages(restorer, input_set, options)
    photos, videos = [], []
    for index, ((src, _), stem) in enumerate(zip(sources, stems)):
        if is_video(src):
            videos.append((index, src, stem))
        else:
            photos.append(_Photo(index, src, output_file(stem, src, ext, suffix),
                                 faces_stem(stem, out_dir) if save_faces else None))

    name = getattr(getattr(restorer, "entry", None), "name", type(restorer).__name__)
    bar = tqdm(total=len(sources), desc=f"restore ({name})", unit="img", disable=not progress)
    failed: dict[int, tuple[Path, str]] = {}
    outputs: dict[int, Path] = {}
    faces = 0
    start = time.perf_counter()

    def finished(index: int, src: Path, dst: Path | None, error: str | None, face_count: int = 0) -> None:
        nonlocal faces
        if error is None:
            outputs[index] = dst
            faces += face_count
        else:
            failed[index] = (src, error)
        bar.update(1)
        if on_result is not None:
            on_result(src, dst if error is None else None, error)

    def summary(interrupted: bool = False) -> FolderSummary:
        return FolderSummary(total=len(sources), done=len(outputs) + len(failed),
                             failed=[failed[i] for i in sorted(failed)], faces=faces,
                             seconds=time.perf_counter() - start, outputs=[outputs[i] for i in sorted(outputs)],
                             stage_seconds=dict(stages.seconds), interrupted=interrupted)

    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        for photo in _pipelined(stages, photos, queue_size, stop, threads) if pipelined else _sequential(stages, photos):
            if photo.fatal is not None:
                raise photo.fatal
            stages.run("write", photo)
            if photo.fatal is not None:
                raise photo.fatal
            finished(photo.index, photo.src, photo.dst, photo.error, len(photo.faces))
        for index, src, stem in videos:
            try:
                dst = _restore_video_file(restorer, src, stem, suffix, aligned, options, video_options or {})
                finished(index, src, dst, None)
            except Exception as exc:
                finished(index, src, None, f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt as exc:
        # Outputs written so far are complete (atomic writes); the stage threads stop after their photo.
        raise FolderInterrupted(summary(interrupted=True)) from exc
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        bar.close()
    return summary()


def _sequential(stages: _Stages, photos: list[_Photo]) -> Iterable[_Photo]:
    for photo in photos:
        for name in ("decode", "detect", "network", "paste"):
            stages.run(name, photo)
        yield photo


def _pipelined(stages: _Stages, photos: list[_Photo], queue_size: int, stop: threading.Event,
               threads: list[threading.Thread]) -> Iterable[_Photo]:
    """Photos in input order, each through the decode/detect/network/paste threads."""
    inbox: Any = photos
    for name in ("decode", "detect", "network", "paste"):
        outbox: queue.Queue = queue.Queue(maxsize=queue_size)
        thread = threading.Thread(target=_worker, args=(stages, name, inbox, outbox, stop),
                                  name=f"facerestore-{name}", daemon=True)
        thread.start()
        threads.append(thread)
        inbox = outbox
    while True:
        try:
            photo = inbox.get(timeout=0.5)
        except queue.Empty:
            if not any(t.is_alive() for t in threads):  # a stage thread died without passing _END
                raise RuntimeError("the restore pipeline stopped unexpectedly") from None
            continue
        if photo is _END:
            return
        yield photo


def _restore_video_file(restorer: Any, src: Path, stem: Path, suffix: str, aligned: bool,
                        options: dict[str, Any], video_options: dict[str, Any]) -> Path:
    """One video: <stem><suffix>.<same container, or .mp4/.mkv where it cannot hold the codec>."""
    from .video import output_extension

    codec = video_options.get("codec", "libx264")
    dst = stem.with_name(f"{stem.name}{suffix}{output_extension(src, codec)}")
    if dst.resolve() == src.resolve():
        raise ValueError(f"output {dst} would overwrite the input; choose another --output or --suffix")
    if aligned:
        raise ValueError("--aligned is for photos of aligned faces; videos are searched for faces")
    restorer.restore_video(src, dst, upscale=options["upscale"], only_center_face=options["only_center_face"],
                           max_faces=options["max_faces"], fidelity=options["fidelity"], seed=options["seed"],
                           paste=options.get("paste"), **video_options)
    return dst
