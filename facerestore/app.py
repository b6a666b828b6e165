"""`facerestore app`: a local Gradio web app built on the public Python API only.

Tabs: Restore (one or several photos through one or several zoo models side by side, before/after
slider, face gallery, downloads), Relight (DPR: a light from a direction or an SH file, with the
lit-sphere preview) and Video (one clip through one model).

The app's functions are also its HTTP API, with stable names (see README, "App"):
    /restore (image, model, fidelity, upscale) -> restored image (PNG)
    /relight (image, azimuth, elevation) -> relit image (PNG)

Loaded models live in a small LRU cache; every model run goes through one queue slot
(`concurrency`, 1 by default), so two users cannot load and run models at the same time and exhaust
memory. Errors users can cause come back as messages in the page (gr.Error), never as stack traces.
"""
from __future__ import annotations

import functools
import gc
import html
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app phones nowhere

import cv2
import gradio as gr
import numpy as np
import torch

from . import hub
from .api import load
from .imageio import ImageError, read_image, write_image
from .registry import ZooEntry, get_entry, list_models
from .restorer import PRECISIONS, NoFaceWarning, Restorer
from .shlight import DEFAULT_AMBIENT, DEFAULT_INTENSITY, SHLight

logger = logging.getLogger("facerestore.app")

PASTE_MODES = {"model default": None, "face parsing mask (facexlib)": "parse", "eroded square (facexlib)": "box",
               "GPEN's parsing mask": "gpen", "feathered square": "feather"}
MAX_MODELS_AT_ONCE = 4  # side-by-side comparison: models per request
OUTPUT_MAX_AGE_S = 3600  # result files older than this are deleted on the next request


@dataclass
class AppOptions:
    """What `facerestore app` takes on its command line (the model options match `restore`'s)."""

    model: str = "gfpgan-v1.4"  # selected when the page opens
    device: str | None = None
    precision: str = "fp32"
    pretrained: bool = True  # False: untrained restore models (tests the pipeline, reads no file)
    detector: str = "retinaface-resnet50"
    detector_weights: str | None = None
    relight_model: str = "dpr-512"
    relight_weights: str | None = None  # a local file for relight_model (used even with pretrained=False)
    upsampler_weights: str | None = None  # load(..., upsampler_weights=)
    parser_weights: str | None = None  # load(..., parser_weights=)
    max_models: int = 2  # loaded models kept in memory (LRU)
    concurrency: int = 1  # model runs at the same time, all users together
    max_queue: int = 16  # waiting requests beyond which new ones are refused
    max_photos: int = 8  # photos per restore request


def read_upload(path: str) -> np.ndarray:
    """read_image for an uploaded file; errors name the file as the user knows it, not the server's copy."""
    try:
        return read_image(path)
    except ImageError as exc:
        raise ImageError(str(exc).replace(str(path), Path(path).name)) from None


def upsampler_names() -> list[str]:
    """The zoo's background upsamplers (task "upscale")."""
    return list_models(task="upscale")


def light_from_angles(azimuth: float, elevation: float, intensity: float = DEFAULT_INTENSITY,
                      ambient: float = DEFAULT_AMBIENT) -> SHLight:
    """A directional light (plus ambient) from angles in degrees, view frame: azimuth turns around the
    vertical axis, 0 = from the camera, +90 = from the image right, -90 = from the left, 180 = from
    behind; elevation is above the horizontal plane, +90 = from straight above."""
    az, el = math.radians(azimuth), math.radians(elevation)
    direction = (math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az))
    return SHLight.from_direction(direction, intensity=intensity, ambient=ambient)


def user_message(exc: BaseException) -> str:
    """The message a page shows for an error: what happened and what to do, no stack trace."""
    if isinstance(exc, hub.WeightsError):  # its text says which file to place where
        return f"Weights not available: {exc}"
    if isinstance(exc, ImageError):
        return f"Not a usable image: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError) or isinstance(exc, MemoryError):
        return "Out of memory: try a smaller upscale, fewer photos or fewer models at once."
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, (ValueError, FileNotFoundError, RuntimeError)):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}: {exc}); the server log has the details."


def friendly(fn: Callable) -> Callable:
    """Run an event handler; any error becomes a gr.Error with `user_message` (shown in the page,
    and raised by gradio_client as its message). Unexpected errors are logged with their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            expected = isinstance(exc, (hub.WeightsError, ImageError, KeyError, ValueError, FileNotFoundError))
            logger.log(logging.INFO if expected else logging.ERROR, "%s failed", fn.__name__, exc_info=not expected)
            # the page renders the message as HTML: file names and paths must not become markup
            raise gr.Error(html.escape(user_message(exc), quote=False), print_exception=False) from exc

    return wrapper


class ModelCache:
    """Loaded models, least recently used evicted beyond `capacity`. Loading holds the lock, so one
    model is loaded at a time and a model is never loaded twice."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the model cache needs room for at least 1 model, got {capacity}")
        self.capacity = capacity
        self._models: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any]) -> tuple[Any, float]:
        """The model for `key` (built with `build()` if missing) and the seconds spent loading it."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key], 0.0
            while len(self._models) >= self.capacity:  # free memory before loading the next one
                self._models.popitem(last=False)
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            start = time.perf_counter()
            model = build()
            self._models[key] = model
            return model, time.perf_counter() - start

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._models)


class FaceRestoreApp:
    """The app's logic, independent of the page layout: model cache, result files, handlers."""

    def __init__(self, options: AppOptions) -> None:
        self.options = options
        self.cache = ModelCache(options.max_models)
        self.workdir = Path(tempfile.mkdtemp(prefix="facerestore-app-"))

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- models -------------------------------------------------------------------------------
    def restorer(self, name: str, precision: str | None = None, upsampler: str | None = None) -> tuple[Restorer, float]:
        """A cached restore model (and the seconds spent loading it, 0 when cached)."""
        entry = get_entry(name)
        if entry.task != "restore":
            raise ValueError(f"{entry.name} is a {entry.task} model, not a restore model; "
                             f"choose one of: {', '.join(list_models(task='restore'))}")
        precision = precision or self.default_precision(entry)
        o = self.options
        key = ("restore", entry.name, precision, o.device, o.pretrained, upsampler)

        def build() -> Restorer:
            kwargs: dict[str, Any] = dict(pretrained=o.pretrained, device=o.device, precision=precision,
                                          detector=o.detector, detector_weights=o.detector_weights, progress=False)
            return load(entry.name, upsampler=upsampler, upsampler_weights=o.upsampler_weights if upsampler else None,
                        parser_weights=o.parser_weights, **kwargs)

        return self.cache.get(key, build)

    def relighter(self, name: str | None = None) -> tuple[Restorer, float]:
        o = self.options
        entry = get_entry(name or o.relight_model)
        if entry.task != "relight":
            raise ValueError(f"{entry.name} is not a relighting model; choose one of: "
                             f"{', '.join(list_models(task='relight'))}")
        weights = o.relight_weights if entry.name == get_entry(o.relight_model).name else None
        # --no-pretrained is for trying the pipeline; a weights file given explicitly is still used
        pretrained = o.pretrained or weights is not None
        key = ("relight", entry.name, o.device, pretrained)
        return self.cache.get(key, lambda: load(entry.name, weights=weights, pretrained=pretrained, device=o.device,
                                                detector=o.detector, detector_weights=o.detector_weights,
                                                progress=False))

    def default_precision(self, entry: ZooEntry) -> str:
        return self.options.precision if self.options.precision in entry.precisions else "fp32"

    # -- files --------------------------------------------------------------------------------
    def request_dir(self) -> Path:
        """A fresh folder for one request's result files; results older than an hour are removed."""
        now = time.time()
        for old in self.workdir.iterdir():
            if now - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        folder = self.workdir / uuid.uuid4().hex[:12]
        folder.mkdir()
        return folder

    # -- restore ------------------------------------------------------------------------------
    def run_restore(self, restorer: Restorer, img: np.ndarray, fidelity: float | None, upscale: float,
                    paste: str | None = None) -> tuple[Any, float]:
        """restorer.restore (fidelity/paste None: the model's defaults); returns (result, seconds)."""
        kwargs: dict[str, Any] = {"upscale": float(upscale), "paste": paste,
                                  "fidelity": None if fidelity is None else float(fidelity)}
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoFaceWarning)  # no face is reported to the user instead
            result = restorer.restore(img, **kwargs)
        return result, time.perf_counter() - start

    def api_restore(self, image: str, model: str, fidelity: float | None, upscale: float) -> str:
        """/restore: one photo through one model -> the restored photo (PNG path)."""
        if not image:
            raise ValueError("no image given")
        img = read_upload(image)
        restorer, _ = self.restorer(model)
        result, _ = self.run_restore(restorer, img, fidelity, 1.0 if upscale is None else upscale)
        if not result.faces:
            raise ValueError("No face found in the image: nothing to restore (try a photo where faces are "
                             "larger or better lit).")
        return str(write_image(self.request_dir() / f"{Path(image).stem}_{restorer.entry.name}.png", result.image))

    def ui_restore(self, files: list[str] | None, models: list[str] | str | None, fidelity: float,
                   model_fidelity: bool, upscale: float, upsampler: str | None, paste: str | None,
                   precision: str | None, progress: gr.Progress = gr.Progress()) -> tuple:
        """The Restore tab: every photo through every chosen model."""
        if not files:
            raise ValueError("Upload one or more photos first.")
        models = list(dict.fromkeys([models] if isinstance(models, str) else models or []))  # once each, in order
        if not models:
            raise ValueError("Choose at least one model.")
        if len(models) > MAX_MODELS_AT_ONCE:
            raise ValueError(f"Compare at most {MAX_MODELS_AT_ONCE} models at once.")
        if len(files) > self.options.max_photos:
            raise ValueError(f"At most {self.options.max_photos} photos per request.")
        paste_mode = PASTE_MODES.get(paste or "model default")
        upsampler = None if upsampler in (None, "", "none") else upsampler
        out_dir = self.request_dir()
        pairs: list[tuple[str, str]] = []  # (before, after) for the slider, in gallery order
        comparison, faces, downloads, rows, notes = [], [], [], [], []
        for model in models:  # all photos per model: one model in memory at a time
            progress(0, desc=f"loading {model}")
            restorer, load_s = self.restorer(model, precision or None, upsampler)
            name = restorer.entry.name
            if load_s:
                notes.append(f"{name} loaded in {load_s:.1f} s")
            for k, path in enumerate(files):
                stem = Path(path).stem
                progress(k / len(files), desc=f"{name}: {stem}")
                try:
                    img = read_upload(path)
                    result, seconds = self.run_restore(restorer, img, None if model_fidelity else fidelity,
                                                       upscale, paste_mode)
                except (ImageError, ValueError) as exc:
                    notes.append(f"{stem}: {user_message(exc)}")
                    continue
                after = write_image(out_dir / f"{stem}_{name}.png", result.image)
                before = out_dir / f"{stem}_input_{result.shape[1]}x{result.shape[0]}.png"
                if not before.exists():  # the input at the output's size, so the slider halves line up
                    write_image(before, cv2.resize(img, (result.shape[1], result.shape[0]), interpolation=cv2.INTER_CUBIC))
                pairs.append((str(before), str(after)))
                comparison.append((str(after), f"{stem} | {name} | {seconds:.1f} s"))
                downloads.append(str(after))
                for i, face in enumerate(result.faces):
                    side_by_side = write_image(out_dir / f"{stem}_{name}_face{i:02d}.png",
                                               np.concatenate([face.crop, face.restored], axis=1))
                    faces.append((str(side_by_side), f"{stem} face {i + 1} | {name}: input | restored"))
                rows.append(f"| {stem} | {name} | {len(result.faces)} | {result.shape[1]}x{result.shape[0]} "
                            f"| {seconds:.2f} |")
                if not result.faces:
                    notes.append(f"{stem}: no face found, the photo is only upscaled")
            restorer = result = None  # the cache alone holds the model now (it may evict it for the next one)
        if not pairs:
            raise ValueError("Nothing was restored: " + "; ".join(notes))
        for note in notes:
            if "no face" in note or "Not a usable" in note:
                gr.Warning(note)
        status = "\n".join(["| photo | model | faces | size | seconds |", "|---|---|---|---|---|", *rows])
        if notes:
            status += "\n\n" + "\n".join(f"- {n}" for n in notes)
        return (pairs[0], gr.Gallery(value=comparison, columns=max(2, len(models))), faces, downloads, status, pairs)

    def model_card(self, models: list[str] | str | None) -> str:
        models = [models] if isinstance(models, str) else list(models or [])
        lines = []
        for name in models:
            try:
                e = get_entry(name)
            except KeyError as exc:
                lines.append(f"- {user_message(exc)}")
                continue
            commercial = "commercial use allowed" if e.commercial_use else "**no commercial use**"
            lines.append(f"- **{e.name}** ({e.face_size} px faces; precisions {', '.join(e.precisions)}): "
                         f"{e.description} License: {e.license or 'unknown'} ({commercial}).")
        if not self.options.pretrained:
            lines.append("- *Untrained weights (`--no-pretrained`): the output only shows that the pipeline runs.*")
        return "\n".join(lines)

    # -- relight ------------------------------------------------------------------------------
    def api_relight(self, image: str, azimuth: float, elevation: float) -> str:
        """/relight: the whole image as the portrait (the official demo's pipeline) under a light
        from (azimuth, elevation) degrees -> the relit image (PNG path)."""
        if not image:
            raise ValueError("no image given")
        img = read_upload(image)
        relighter, _ = self.relighter()
        relit = relighter.relight(img, light_from_angles(azimuth, elevation))
        return str(write_image(self.request_dir() / f"{Path(image).stem}_relit.png", relit))

    def make_light(self, source: str, azimuth: float, elevation: float, intensity: float, ambient: float,
                   preset: str | None) -> SHLight:
        if source == "SH file":
            if not preset:
                raise ValueError("Upload an SH light file (9 numbers, one per line, as DPR's example_light/).")
            return SHLight.from_file(preset)
        return light_from_angles(azimuth, elevation, intensity, ambient)

    def sphere(self, source: str, azimuth: float, elevation: float, intensity: float, ambient: float,
               preset: str | None) -> np.ndarray | None:
        """The lit-sphere preview of the chosen light (gray uint8), None while no SH file is given."""
        if source == "SH file" and not preset:
            return None
        return self.make_light(source, azimuth, elevation, intensity, ambient, preset).render_sphere(256)

    def ui_relight(self, image: str | None, model: str, source: str, azimuth: float, elevation: float,
                   intensity: float, ambient: float, preset: str | None, keep_aspect: bool, detect: bool) -> tuple:
        if not image:
            raise ValueError("Upload a portrait first.")
        light = self.make_light(source, azimuth, elevation, intensity, ambient, preset)
        img = read_upload(image)
        relighter, load_s = self.relighter(model)
        start = time.perf_counter()
        relit = relighter.relight(img, light, detect=detect, keep_aspect=keep_aspect)
        seconds = time.perf_counter() - start
        out = write_image(self.request_dir() / f"{Path(image).stem}_relit.png", relit)
        status = f"{relighter.entry.name}: {seconds:.2f} s" + (f" (model loaded in {load_s:.1f} s)" if load_s else "")
        return str(out), light.render_sphere(256), status

    # -- video --------------------------------------------------------------------------------
    def ui_video(self, video: str | None, model: str, fidelity: float, upscale: float) -> tuple[str, str]:
        if not video:
            raise ValueError("Upload a video clip first.")
        restorer, _ = self.restorer(model)
        dst = self.request_dir() / f"{Path(video).stem}_{restorer.entry.name}.mp4"
        start = time.perf_counter()
        restorer.restore_video(video, dst, upscale=float(upscale), fidelity=float(fidelity))
        return str(dst), f"{restorer.entry.name}: {time.perf_counter() - start:.1f} s"


def build_app(options: AppOptions | None = None) -> gr.Blocks:
    """The page: Restore, Relight (and Video) tabs plus the /restore and /relight API endpoints.
    The returned Blocks has `.facerestore` (the FaceRestoreApp) and a queue set up; call .launch()."""
    options = options or AppOptions()
    app = FaceRestoreApp(options)
    restore_models = list_models(task="restore")
    relight_models = list_models(task="relight")
    for name, task in ((options.model, "restore"), (options.relight_model, "relight"), (options.detector, "detect")):
        if get_entry(name).task != task:  # unknown names raise a KeyError with close matches
            raise ValueError(f"{name} is a {get_entry(name).task} model, not a {task} model")
    default_model = get_entry(options.model).name
    precisions = list(PRECISIONS)
    heavy = dict(concurrency_limit=options.concurrency, concurrency_id="models")  # one shared slot for model runs

    with gr.Blocks(title="facerestore", delete_cache=(1800, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown("# facerestore\nBlind face restoration and portrait relighting, running on this machine."
                    + ("\n\n**Untrained models (`--no-pretrained`)**: restorations are noise; this checks the pipeline."
                       if not options.pretrained else ""))
        with gr.Tab("Restore", id="restore"):
            with gr.Row():
                with gr.Column(scale=1):
                    photos = gr.File(label="Photos", file_count="multiple", file_types=["image"], type="filepath",
                                     elem_id="restore-input")
                    models = gr.Dropdown(restore_models, value=[default_model], multiselect=True,
                                         label=f"Models (up to {MAX_MODELS_AT_ONCE}: side by side)",
                                         elem_id="restore-models")
                    card = gr.Markdown(app.model_card([default_model]), elem_id="restore-model-card")
                    fidelity = gr.Slider(0, 1, value=0, step=0.05, label="Fidelity (0 = model output, 1 = input face)",
                                         elem_id="restore-fidelity")
                    model_fidelity = gr.Checkbox(value=True, label="Use each model's default fidelity")
                    upscale = gr.Slider(1, 4, value=2, step=0.5, label="Upscale", elem_id="restore-upscale")
                    upsamplers = upsampler_names()
                    upsampler = gr.Dropdown(["none", *upsamplers], value="none", label="Background upsampler",
                                            visible=bool(upsamplers), elem_id="restore-upsampler")
                    paste = gr.Dropdown(list(PASTE_MODES), value="model default", label="Paste mode",
                                        elem_id="restore-paste")
                    precision = gr.Dropdown(precisions, value=options.precision, label="Precision",
                                            elem_id="restore-precision")
                    run = gr.Button("Restore", variant="primary", elem_id="restore-button")
                with gr.Column(scale=2):
                    slider = gr.ImageSlider(label="Before / after (click a result below to show it here)",
                                            type="filepath", format="png", interactive=False, elem_id="restore-slider")
                    comparison = gr.Gallery(label="Results (photo | model | time)", format="png", columns=2, height=420,
                                            object_fit="contain", preview=False, elem_id="restore-results")
                    faces = gr.Gallery(label="Faces: input crop | restored", format="png", columns=3, height=300,
                                       object_fit="contain", preview=False, elem_id="restore-faces")
                    download = gr.File(label="Download", file_count="multiple", interactive=False,
                                       elem_id="restore-download")
                    status = gr.Markdown(elem_id="restore-status")
            pairs = gr.State([])
            models.change(app.model_card, models, card, api_visibility="private", queue=False)
            run.click(friendly(app.ui_restore),
                      [photos, models, fidelity, model_fidelity, upscale, upsampler, paste, precision],
                      [slider, comparison, faces, download, status, pairs], api_visibility="private", **heavy)

            def show_pair(pairs: list, evt: gr.SelectData) -> Any:
                return pairs[evt.index] if 0 <= evt.index < len(pairs) else gr.skip()

            comparison.select(show_pair, pairs, slider, api_visibility="private", queue=False)

        with gr.Tab("Relight", id="relight"):
            with gr.Row():
                with gr.Column(scale=1):
                    portrait = gr.Image(label="Portrait", type="filepath", sources=["upload", "clipboard"],
                                        elem_id="relight-input")
                    relight_model = gr.Dropdown(relight_models, value=get_entry(options.relight_model).name,
                                                label="Model", elem_id="relight-model")
                    source = gr.Radio(["direction", "SH file"], value="direction", label="Light",
                                      elem_id="relight-source")
                    azimuth = gr.Slider(-180, 180, value=45, step=5, label="Azimuth (degrees; 0 = from the camera, "
                                        "+90 = from the right)", elem_id="relight-azimuth")
                    elevation = gr.Slider(-90, 90, value=15, step=5, label="Elevation (degrees above)",
                                          elem_id="relight-elevation")
                    intensity = gr.Slider(0, 3, value=DEFAULT_INTENSITY, step=0.02, label="Intensity")
                    ambient = gr.Slider(0, 1.5, value=DEFAULT_AMBIENT, step=0.02, label="Ambient")
                    preset = gr.File(label="SH light file (9 numbers, as DPR's example_light/*.txt)",
                                     file_types=[".txt"], type="filepath", elem_id="relight-preset")
                    keep_aspect = gr.Checkbox(False, label="Keep aspect ratio (pad instead of squashing)")
                    detect = gr.Checkbox(False, label="Whole photo: relight every detected face")
                    relight = gr.Button("Relight", variant="primary", elem_id="relight-button")
                with gr.Column(scale=1):
                    light_inputs = [source, azimuth, elevation, intensity, ambient, preset]
                    sphere = gr.Image(app.sphere("direction", 45, 15, DEFAULT_INTENSITY, DEFAULT_AMBIENT, None),
                                      label="Light (lit-sphere preview)", format="png", interactive=False,
                                      height=256, elem_id="relight-sphere")
                    relit = gr.Image(label="Relit", type="filepath", format="png", interactive=False,
                                     elem_id="relight-output")
                    relight_status = gr.Markdown()
            for control in light_inputs:
                control.change(friendly(app.sphere), light_inputs, sphere, api_visibility="private", queue=False)
            relight.click(friendly(app.ui_relight),
                          [portrait, relight_model, *light_inputs, keep_aspect, detect],
                          [relit, sphere, relight_status], api_visibility="private", **heavy)

        with gr.Tab("Video", id="video"):
            with gr.Row():
                with gr.Column():
                    clip = gr.Video(label="Short clip", sources=["upload"], elem_id="video-input")
                    video_model = gr.Dropdown(restore_models, value=default_model, label="Model")
                    video_fidelity = gr.Slider(0, 1, value=0, step=0.05, label="Fidelity")
                    video_upscale = gr.Slider(1, 4, value=1, step=0.5, label="Upscale")
                    video_run = gr.Button("Restore video", variant="primary", elem_id="video-button")
                with gr.Column():
                    video_out = gr.Video(label="Restored", interactive=False, elem_id="video-output")
                    video_status = gr.Markdown()
            video_run.click(friendly(app.ui_video), [clip, video_model, video_fidelity, video_upscale],
                            [video_out, video_status], api_visibility="private", **heavy)

        # The HTTP API: fixed names and parameter order (README "App"); hidden from the page.
        with gr.Column(visible=False):
            api_image = gr.File(label="image", type="filepath")
            api_model = gr.Textbox(value=default_model, label="model")
            api_fidelity = gr.Number(value=0, label="fidelity")
            api_upscale = gr.Number(value=2, label="upscale")
            api_restored = gr.Image(label="restored", type="filepath", format="png")
            api_azimuth = gr.Number(value=45, label="azimuth")
            api_elevation = gr.Number(value=15, label="elevation")
            api_relit = gr.Image(label="relit", type="filepath", format="png")
            restore_trigger = gr.Button(visible=False)
            relight_trigger = gr.Button(visible=False)
        restore_trigger.click(friendly(app.api_restore), [api_image, api_model, api_fidelity, api_upscale],
                              api_restored, api_name="restore", **heavy)
        relight_trigger.click(friendly(app.api_relight), [api_image, api_azimuth, api_elevation], api_relit,
                              api_name="relight", **heavy)

    demo.queue(default_concurrency_limit=options.concurrency, max_size=options.max_queue)
    demo.facerestore = app
    return demo


def launch(options: AppOptions, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           max_file_size: str = "50mb") -> None:
    """Build the app and serve it (blocks until interrupted). Local only unless `share=True`."""
    demo = build_app(options)
    try:
        demo.launch(server_name=host, server_port=port, share=share, show_error=True, inbrowser=False,
                    max_file_size=max_file_size, ssr_mode=False)
    finally:
        demo.facerestore.close()
