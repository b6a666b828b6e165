"""Collections too large for one machine: restore them on a Ray cluster with Ray Data
(`pip install 'facerestore[ray]'`).

    restore_with_ray(["photos/"], "out/", model="gfpgan", address="auto", num_workers=8)

The driver lists the inputs and plans every output name with the local rule (`pipeline.plan_outputs`:
mirrored folders, collision-free names); a Ray Data pipeline sends the inputs to `num_workers` actors,
each holding one loaded model (on a GPU when the cluster has them), which restore and write their outputs
atomically, exactly as `restore_folder` does (the same steps, so the same bytes for the same weights, seed
and thread count). A failed input is tried again `retries` times in its actor, then reported by name in
the summary. Inputs and the output folder must be reachable under the same paths from every node (a
shared file system); on a laptop (a local cluster) they are.

Ray is imported only when this runs: facerestore itself does not need it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .pipeline import FolderSummary, faces_stem, find_inputs, output_file, plan_outputs

LOAD_OPTIONS = ("weights", "pretrained", "device", "precision", "detector", "detector_weights", "parser",
                "parser_weights", "upsampler", "upsampler_weights")
RESTORE_OPTIONS = ("upscale", "aligned", "only_center_face", "max_faces", "min_face_size", "fidelity", "seed", "paste")


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("Ray is not installed: pip install 'facerestore[ray]' (or run without --ray)") from exc
    return ray


class RestoreActor:
    """One Ray actor: one loaded model; restores the rows of a batch ({"index", "src", "dst", "face_stem"})
    and returns, per row, its error (empty when written), the attempts made and the faces restored."""

    def __init__(self, model: str, load_options: dict[str, Any], restore_options: dict[str, Any],
                 video_options: dict[str, Any], inputs: list[str], retries: int, threads: int | None) -> None:
        import torch

        from .api import load
        from .pipeline import _Stages

        if threads:  # the same thread count as a reference run gives the same bytes
            torch.set_num_threads(threads)
        self.restorer = load(model, progress=False, **load_options)
        self.stages = _Stages(self.restorer, {Path(p) for p in inputs},
                              {"background_upsampler": None, "min_face_size": 0, **restore_options})
        self.options = self.stages.options
        self.video_options = video_options
        self.retries = retries

    def restore_one(self, src: Path, dst: Path, face_stem: Path | None) -> tuple[str, int]:
        """(error or "", faces) for one input, as restore_folder does it."""
        from .pipeline import _Photo, _restore_video_file
        from .video import is_video

        if is_video(src):
            try:
                _restore_video_file(self.restorer, src, dst.with_suffix(""), "", self.options["aligned"],
                                    self.options, self.video_options)
                return "", 0
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}", 0
        photo = _Photo(0, src, dst, face_stem)
        for name in ("decode", "detect", "network", "paste", "write"):
            self.stages.run(name, photo)
        if photo.fatal is not None:
            raise photo.fatal
        return photo.error or "", len(photo.faces)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors, attempts, faces = [], [], []
        for src, dst, face_stem in zip(batch["src"], batch["dst"], batch["face_stem"]):
            for attempt in range(1, self.retries + 2):
                error, count = self.restore_one(Path(src), Path(dst), Path(face_stem) if face_stem else None)
                if not error:
                    break
            errors.append(error)
            attempts.append(attempt)
            faces.append(count)
        return {"index": batch["index"], "error": np.array(errors, dtype=object),
                "attempts": np.array(attempts), "faces": np.array(faces)}


def _paths_of(paths_or_dataset: Any) -> list[tuple[Path, Path]]:
    """(file, relative path) pairs from files/folders, or from a ray.data.Dataset's "path" column
    (its files are named as files given directly: by their names)."""
    if isinstance(paths_or_dataset, (str, os.PathLike)):
        paths_or_dataset = [paths_or_dataset]
    if hasattr(paths_or_dataset, "select_columns") and hasattr(paths_or_dataset, "take_all"):
        if "path" not in paths_or_dataset.columns():
            raise ValueError("the dataset needs a 'path' column of file paths, e.g. "
                             "ray.data.from_items([{'path': p} for p in files])")
        return [(Path(row["path"]), Path(Path(row["path"]).name))
                for row in paths_or_dataset.select_columns(["path"]).take_all()]
    return find_inputs(paths_or_dataset)


def restore_with_ray(
    paths_or_dataset: Any,
    out_dir: str | os.PathLike,
    *,
    model: str = "gfpgan",
    address: str | None = None,
    num_workers: int = 2,
    num_cpus: float = 1,
    num_gpus: float | None = None,
    retries: int = 2,
    ext: str = "auto",
    suffix: str = "",
    save_faces: bool = False,
    video_options: dict[str, Any] | None = None,
    runtime_env: dict[str, Any] | None = None,
    progress: bool = True,
    **options: Any,
) -> FolderSummary:
    """Restore files/folders (or a ray.data.Dataset with a "path" column) into `out_dir` on Ray.

    address: None joins the Ray instance this process already runs, else starts a local one (shut down
    at the end); "auto" or "ray://host:10001" joins an existing cluster. num_workers: actors, one loaded
    model each, with `num_cpus` CPUs (torch uses that many threads) and `num_gpus` GPUs (default: 1 when
    the cluster has GPUs and `device` is not "cpu", else 0). retries: extra attempts for a failed input.
    options: those of `facerestore.load` (weights, pretrained, device, precision, detector, ...) and of
    `restore` (upscale, aligned, fidelity, seed, paste, ...). Names, formats and save_faces as in
    `restore_folder`. Returns a FolderSummary; `failed` lists inputs by name with the last error.
    """
    from .pipeline import check_ext

    unknown = set(options) - set(LOAD_OPTIONS) - set(RESTORE_OPTIONS)
    if unknown:
        raise TypeError(f"restore_with_ray got unknown options {sorted(unknown)}; it takes those of "
                        f"facerestore.load ({', '.join(LOAD_OPTIONS)}) and restore ({', '.join(RESTORE_OPTIONS)})")
    if retries < 0 or num_workers < 1:
        raise ValueError(f"retries must be >= 0 and num_workers >= 1, got {retries} and {num_workers}")
    check_ext(ext)
    load_options = {k: (os.fspath(Path(v).absolute()) if k.endswith("weights") and v and "://" not in str(v) else v)
                    for k, v in options.items() if k in LOAD_OPTIONS}
    restore_options = {k: v for k, v in options.items() if k in RESTORE_OPTIONS}
    restore_options = {**dict(upscale=1, aligned=False, only_center_face=False, max_faces=None, fidelity=None,
                              seed=None, paste=None), **restore_options}
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix in (".yaml", ".yml") and Path(model).exists():
        model = os.fspath(Path(model).absolute())  # a training config: actors run elsewhere

    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, runtime_env=runtime_env, include_dashboard=False,
                 log_to_driver=progress, ignore_reinit_error=True)
        started = True  # shut down (local) or disconnected (cluster) at the end
    try:
        out_dir = Path(out_dir).absolute()  # actors do not share the driver's working directory
        sources = [(src.absolute(), rel) for src, rel in _paths_of(paths_or_dataset)]
        stems = plan_outputs(sources, out_dir)
        inputs = sorted({os.fspath(src.resolve()) for src, _ in sources if src.exists()})
        rows, failed = [], {}
        for index, ((src, _), stem) in enumerate(zip(sources, stems)):
            dst = output_file(stem, src, ext, suffix)
            if os.fspath(dst.resolve()) in inputs:
                failed[index] = (src, f"ValueError: output {dst} would overwrite an input; "
                                      "choose another --output or --suffix")
                continue
            rows.append({"index": index, "src": os.fspath(src), "dst": os.fspath(dst),
                         "face_stem": os.fspath(faces_stem(stem, out_dir)) if save_faces else ""})
        start = time.perf_counter()
        faces, outputs = 0, {}
        if rows:
            if num_gpus is None:
                on_cpu = str(load_options.get("device") or "").startswith("cpu")
                num_gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 and not on_cpu else 0
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = progress
            dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * num_workers))
            results = dataset.map_batches(
                RestoreActor, batch_size=1, concurrency=num_workers, num_cpus=num_cpus, num_gpus=num_gpus,
                fn_constructor_kwargs=dict(model=os.fspath(model), load_options=load_options,
                                           restore_options=restore_options, video_options=video_options or {},
                                           inputs=inputs, retries=retries,
                                           threads=max(1, int(num_cpus)) if not num_gpus else None),
            ).take_all()
            by_index = {row["index"]: row for row in rows}
            for result in results:
                index = int(result["index"])
                if result["error"]:
                    failed[index] = (Path(by_index[index]["src"]),
                                     f"{result['error']} (after {int(result['attempts'])} attempts)")
                else:
                    outputs[index] = Path(by_index[index]["dst"])
                    faces += int(result["faces"])
        return FolderSummary(total=len(sources), done=len(outputs) + len(failed),
                             failed=[failed[i] for i in sorted(failed)], faces=faces,
                             seconds=time.perf_counter() - start, outputs=[outputs[i] for i in sorted(outputs)])
    finally:
        if started:
            ray.shutdown()

