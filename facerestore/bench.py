"""Cross-method benchmark: run restoration models on the same aligned faces and measure them the same way.

    from facerestore.bench import run_benchmark
    run_benchmark(["gfpgan", "gpen", "dfdnet"], "faces/", degradation="gfpgan", seed=0, out_dir="results/")

Data: a folder of aligned HQ faces (degraded on the fly with a preset of facerestore.data and the
seed; face i always gets the draw of `default_rng([seed, i, 0])`, as DegradedFolderDataset) or a
folder holding `lq/` and `hq/` pairs matched by name. Faces are resized to `size` (default 512)
before anything else; every model restores the aligned input (`restore(img, aligned=True, seed=seed)`)
and every metric compares at that size. The degraded input itself is measured too (row "input").

Out dir:
    run.json                 settings (a rerun must use the same ones; models/metrics/limit may grow)
    inputs/lq|hq/<face>.png  the inputs and references; inputs/params/<face>.json the degradation drawn
    restored/<model>/<face>.png and pairs/<model>/<face>.json  per-pair results: a rerun skips them
    results.csv              one row per (face, model)
    results.json             settings, metric directions, per-model mean/std/n, skipped (weights not
                             available) and failed (any other error, with traceback) models and
                             metrics with the reason, all rows
    results.md               Markdown table: mean ± std per model and metric, latency, peak memory
    grids/<face>.png, grid.png  input | each model | ground truth, labelled

Latency: wall-clock seconds of one `restore()` call per face (after one untimed warm-up call per
model; CUDA synchronised). Peak memory: on CUDA `torch.cuda.max_memory_allocated` during the call
(weights + activations); on CPU the peak resident set size during the call above the RSS before it
(Linux: VmHWM after resetting it through /proc/self/clear_refs; elsewhere the getrusage maximum,
which only shows growth beyond the process's earlier peak).
"""
from __future__ import annotations

import csv
import ctypes
import gc
import json
import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm.auto import tqdm

from .data.datasets import DegradedFolderDataset, PairedFolderDataset
from .data.preview import labelled_grid
from .imageio import read_image, write_atomic, write_image
from .metrics import get_info, list_metrics

DEFAULT_METRICS = ("psnr", "ssim", "lpips", "niqe", "ids", "lmd")
INPUT = "input"  # the degraded input, measured like a model
# Settings that change the numbers: a rerun into the same out dir must keep them.
_RUN_KEYS = ("data", "mode", "degradation", "seed", "size", "pretrained", "load_kwargs")


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------
def _write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (NaN/inf become null: strict JSON)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    text = json.dumps(clean(obj), indent=1, allow_nan=False)
    write_atomic(path, lambda f: f.write(text.encode()))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


class PeakMemory:
    """Peak memory of restore() calls above the level before the model was loaded, in MiB.

    `baseline()` before loading a model; then `with memory:` around each call sets `peak_mib`.
    CUDA: torch.cuda.max_memory_allocated during the call minus the allocation before loading
    (weights + activations of the model; the metric networks loaded earlier are not counted).
    CPU (Linux): the peak resident set size during the call (VmHWM, reset through
    /proc/self/clear_refs before each call) minus the RSS before loading (after gc and malloc_trim):
    weights + activations + what the allocators keep. Elsewhere: getrusage's lifetime maximum
    above the baseline (it cannot go down, so later models may read low).
    """

    def __init__(self, device: Any) -> None:
        import torch

        self.torch, self.device = torch, device
        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self.linux = not self.cuda and self._reset_peak()
        self.method = ("torch.cuda.max_memory_allocated above the allocation before loading the model" if self.cuda
                       else "peak RSS during the call (VmHWM) above the RSS before loading the model" if self.linux
                       else "getrusage ru_maxrss above the level before loading the model")
        self.base, self.peak_mib = 0.0, math.nan

    @staticmethod
    def _status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024  # kB -> MiB
        raise OSError(f"/proc/self/status has no {field}")

    @staticmethod
    def _reset_peak() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # "5" resets the peak RSS (VmHWM) and nothing else
            return True
        except OSError:
            return False

    def _now(self) -> float:
        if self.cuda:
            return self.torch.cuda.memory_allocated(self.device) / 2**20
        if self.linux:
            return self._status("VmRSS")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)

    def baseline(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
        elif self.linux:
            try:  # hand freed heap back to the system so the baseline is the live memory
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except (OSError, AttributeError):
                pass
        self.base = self._now()

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            self.torch.cuda.reset_peak_memory_stats(self.device)
        elif self.linux:
            self._reset_peak()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            peak = self.torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            peak = self._status("VmHWM") if self.linux else self._now()
        self.peak_mib = max(0.0, peak - self.base)


def _model_name(model: Any) -> tuple[str, Any]:
    """(canonical name, what to pass to load) for a zoo name/alias/config path or a ZooEntry."""
    from .api import resolve_entry

    return resolve_entry(model).name, model


def _make_metric(name: str, device: Any, options: dict) -> Any:
    """A loaded metric; `device` goes to the metrics that run a network."""
    from .metrics import get_metric

    if get_info(name).uses_device:
        options = {"device": device, **options}
    return get_metric(name, **options)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _expected_skip(exc: BaseException) -> bool:
    """Weights that are not available (offline, not downloadable) are an expected skip; anything else
    (unknown names, missing dictionaries, bugs) is a failure that must show."""
    from .hub import WeightsError

    return isinstance(exc, WeightsError)


class Outcomes:
    """What did not run, by name: `skipped` (expected: weights not available) or `failed` (anything
    else, with its traceback), so a crash never reads as a skip."""

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.tracebacks: dict[str, str] = {}

    def add(self, name: str, exc: BaseException) -> None:
        if _expected_skip(exc):
            self.skipped[name] = _reason(exc)
        else:
            self.failed[name] = _reason(exc)
            self.tracebacks[name] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def __contains__(self, name: str) -> bool:
        return name in self.skipped or name in self.failed


# ----------------------------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------------------------
Face = tuple[str, np.ndarray, np.ndarray, dict | None]  # name, lq, hq, degradation parameters


def load_faces(data: str | os.PathLike, degradation: str | None, seed: int, size: int,
               limit: int | None = None) -> tuple[str, str | None, list[Face]]:
    """(mode, degradation, [(name, lq, hq, params)]) for a benchmark folder (see the module docstring)."""
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark data {root} is not a folder")
    if (root / "lq").is_dir() and (root / "hq").is_dir():
        if degradation is not None:
            raise ValueError(f"{root} holds lq/ and hq/ pairs; --degradation only applies to HQ-only folders")
        dataset = PairedFolderDataset(root, size=size)
        count = len(dataset) if limit is None else min(limit, len(dataset))
        return "paired", None, [(*dataset.load(i), None) for i in range(count)]
    degradation = degradation or "gfpgan"
    dataset = DegradedFolderDataset(root, degradation, size=size, seed=seed)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return "degraded", degradation, [dataset.load(i) for i in range(count)]


def run_benchmark(
    models: Iterable[Any],
    data: str | os.PathLike,
    degradation: str | None = None,
    seed: int = 0,
    metrics: Iterable[str] = DEFAULT_METRICS,
    pretrained: bool = True,
    out_dir: str | os.PathLike = "bench_results",
    device: str | None = None,
    *,
    limit: int | None = None,
    size: int = 512,
    detector: str = "retinaface-resnet50",
    detector_weights: str | os.PathLike | None = None,
    metric_options: dict[str, dict] | None = None,
    progress: bool = True,
    **load_kwargs: Any,
) -> dict:
    """Benchmark `models` (zoo names/aliases or ZooEntry objects) on `data`; returns what results.json holds.

    degradation: preset for HQ-only folders (default "gfpgan"); must be None for lq/hq pairs.
    metrics: names from facerestore.metrics (FID compares the restored folder with the HQ folder).
        A metric whose weights are not available is skipped with the reason, not an error.
    detector / detector_weights: the face detector for LMD (and the restorers; aligned inputs never
        need it). metric_options: extra options per metric, e.g. {"lpips": {"weights": "..."}}.
    load_kwargs: passed to facerestore.load (e.g. precision="bf16", or architecture overrides).
    Models and metrics whose weights are not available (hub.WeightsError) are listed under
    `skipped_models` / `skipped_metrics` with the reason; any other error (an unknown name, DFDNet
    without dictionaries, a bug) under `failed_models` / `failed_metrics`, with the traceback under
    `tracebacks`: a crash never reads as a skip (the CLI exits 1 when anything failed).
    """
    import torch

    from . import load
    from .restorer import default_device

    out = Path(out_dir)
    metrics = [m.strip().lower() for m in metrics if m.strip()]
    known = list_metrics()
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(known)}")
    torch_device = torch.device(device) if device else default_device()

    mode, degradation, faces = load_faces(data, degradation, seed, size, limit)
    if not faces:
        raise FileNotFoundError(f"no faces found in {data}")
    settings = {"data": str(Path(data).resolve()), "mode": mode, "degradation": degradation, "seed": seed,
                "size": size, "pretrained": pretrained,
                "load_kwargs": {k: repr(v) for k, v in sorted(load_kwargs.items())}}
    previous = _read_json(out / "run.json")
    if previous is not None:
        changed = [k for k in _RUN_KEYS if previous.get(k) != settings[k]]
        if changed:
            raise ValueError(f"{out} holds a benchmark run with other settings ({', '.join(changed)}: "
                             f"{[previous.get(k) for k in changed]} vs {[settings[k] for k in changed]}); "
                             "choose another output folder")
    _write_json(out / "run.json", settings)

    for name, lq, hq, params in faces:  # written once: a rerun reads the same inputs
        if not (out / "inputs" / "lq" / f"{name}.png").is_file():
            write_image(out / "inputs" / "hq" / f"{name}.png", hq)
            if params is not None:
                _write_json(out / "inputs" / "params" / f"{name}.json", params)
            write_image(out / "inputs" / "lq" / f"{name}.png", lq)

    options = {name: dict(opts) for name, opts in (metric_options or {}).items()}
    options.setdefault("lmd", {}).setdefault("detector", detector)
    if detector_weights is not None:
        options["lmd"].setdefault("detector_weights", str(detector_weights))
    scorer = Scorer(metrics, torch_device, options)

    model_specs: list[tuple[str, Any]] = []
    model_outcomes = Outcomes()
    for model in models:
        try:
            model_specs.append(_model_name(model))
        except Exception as exc:  # an unknown name: a failure, not a skip
            model_outcomes.add(str(getattr(model, "name", model)), exc)

    memory = PeakMemory(torch_device)
    bar = tqdm(total=len(faces) * (len(model_specs) + 1), desc="benchmark", unit="pair", disable=not progress)
    for name, lq, hq, _ in faces:  # the degraded input itself, as a baseline row
        path = out / "pairs" / INPUT / f"{name}.json"
        record = _read_json(path) or {"face": name, "model": INPUT, "metrics": {}}
        if scorer.score(lq, hq, record):
            _write_json(path, record)
        bar.update(1)

    def load_model(spec: Any) -> Any:
        memory.baseline()
        with torch.random.fork_rng(devices=[]):  # untrained weights: the same on every run
            torch.manual_seed(seed)
            return load(spec, pretrained=pretrained, device=torch_device, detector=detector,
                        detector_weights=detector_weights, progress=progress, **load_kwargs)

    for model_name, spec in model_specs:
        bar.set_postfix_str(model_name)
        restorer = None
        for name, lq, hq, _ in faces:
            pair_path = out / "pairs" / model_name / f"{name}.json"
            image_path = out / "restored" / model_name / f"{name}.png"
            record = _read_json(pair_path)
            bar.update(1)
            if record is not None and image_path.is_file():  # finished: only new metrics, if any
                if scorer.missing(record):
                    scorer.score(read_image(image_path), hq, record)
                    _write_json(pair_path, record)
                continue
            if model_name in model_outcomes:
                continue
            try:
                if restorer is None:
                    restorer = load_model(spec)
                    restorer.restore(lq, aligned=True, seed=seed)  # warm-up (one-off costs), not timed
                with memory:
                    start = time.perf_counter()
                    restored = np.asarray(restorer.restore(lq, aligned=True, seed=seed).image)
                    if memory.cuda:
                        torch.cuda.synchronize(torch_device)
                    latency = time.perf_counter() - start
            except Exception as exc:  # weights missing offline (skip); DFDNet without dictionaries, bugs (failure)
                model_outcomes.add(model_name, exc)
                continue
            record = {"face": name, "model": model_name, "latency_s": latency, "peak_memory_mib": memory.peak_mib,
                      "metrics": {}}
            scorer.score(restored, hq, record)
            write_image(image_path, restored)
            _write_json(pair_path, record)
        del restorer
    bar.close()

    names = [INPUT] + [n for n, _ in model_specs]
    rows = collect_rows(out, names, [f[0] for f in faces], scorer.image_metrics)
    folder_results = scorer.score_folders(out, [n for n in names if n not in model_outcomes])
    result = {
        **settings,
        "models": names[1:],
        "faces": [f[0] for f in faces],
        "metrics": metrics,
        "device": str(torch_device),
        "memory_method": memory.method,
        "metric_info": {m: {"lower_is_better": known[m].lower_is_better, "needs_reference": known[m].needs_reference,
                            "description": known[m].description} for m in metrics},
        "skipped_models": model_outcomes.skipped,
        "skipped_metrics": scorer.outcomes.skipped,
        "failed_models": model_outcomes.failed,
        "failed_metrics": scorer.outcomes.failed,
        "tracebacks": {**{f"model {k}": v for k, v in model_outcomes.tracebacks.items()},
                       **{f"metric {k}": v for k, v in scorer.outcomes.tracebacks.items()}},
        "summary": summarize(rows, scorer.image_metrics, folder_results),
        "rows": rows,
    }
    _write_json(out / "results.json", result)
    write_csv(out / "results.csv", rows, scorer.image_metrics)
    (out / "results.md").write_text(markdown_table(result))
    write_grids(out, faces, [n for n in names if n not in model_outcomes], rows, scorer.image_metrics)
    return result


class Scorer:
    """The requested metrics, loaded once; those that cannot load are skipped (weights not available)
    or failed (anything else), with the reason, in `outcomes`."""

    def __init__(self, metrics: list[str], device: Any, options: dict[str, dict]) -> None:
        known = list_metrics()
        self.loaded: dict[str, Any] = {}
        self.outcomes = Outcomes()
        for name in metrics:
            try:
                self.loaded[name] = _make_metric(name, device, options.get(name, {}))
            except Exception as exc:  # weights missing offline: skip; anything else: failure. Report, go on
                self.outcomes.add(name, exc)
        self.image_metrics = [m for m in metrics if known[m].inputs == "images" and m in self.loaded]
        self.folder_metrics = [m for m in metrics if known[m].inputs == "folders"]

    def missing(self, record: dict) -> list[str]:
        return [m for m in self.image_metrics if m not in record["metrics"]]

    def score(self, restored: np.ndarray, reference: np.ndarray, record: dict) -> bool:
        """Add the metrics `record` lacks (a failure gives NaN and the reason, and, unless it is an
        expected skip, marks the metric failed); True if any was added."""
        missing = self.missing(record)
        for metric in missing:
            try:
                record["metrics"][metric] = self.loaded[metric](restored, reference)
            except Exception as exc:
                record["metrics"][metric] = math.nan
                record.setdefault("errors", {})[metric] = _reason(exc)
                if metric not in self.outcomes:
                    self.outcomes.add(metric, exc)
        return bool(missing)

    def score_folders(self, out: Path, models: list[str]) -> dict[str, dict[str, float]]:
        """Folder metrics (FID): each model's restored folder against the ground-truth folder."""
        results: dict[str, dict[str, float]] = {}
        for metric in self.folder_metrics:
            for model in models if metric in self.loaded else []:
                folder = out / ("inputs/lq" if model == INPUT else f"restored/{model}")
                try:
                    results.setdefault(model, {})[metric] = self.loaded[metric](folder, out / "inputs" / "hq")
                except Exception as exc:
                    self.outcomes.add(metric, exc)
        return results


def collect_rows(out: Path, models: list[str], faces: list[str], metrics: list[str]) -> list[dict]:
    """One row per finished (model, face) pair of this run, from the per-pair records."""
    rows = []
    for model in models:
        for face in faces:
            record = _read_json(out / "pairs" / model / f"{face}.json")
            if record is None:
                continue
            row = {"face": face, "model": model}
            row.update({m: _as_float(record["metrics"].get(m)) for m in metrics})
            row["latency_s"] = _as_float(record.get("latency_s"))
            row["peak_memory_mib"] = _as_float(record.get("peak_memory_mib"))
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------
def summarize(rows: list[dict], metrics: list[str], folder_results: dict[str, dict[str, float]] | None = None) -> dict:
    """model -> column -> {mean, std, n} over faces (NaN values left out; n counts the others)."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        values = [r for r in rows if r["model"] == model]
        columns = {}
        for column in (*metrics, "latency_s", "peak_memory_mib"):
            finite = np.array([r[column] for r in values if math.isfinite(r[column])], np.float64)
            columns[column] = {"mean": float(finite.mean()) if finite.size else math.nan,
                               "std": float(finite.std()) if finite.size else math.nan, "n": int(finite.size)}
        for metric, value in (folder_results or {}).get(model, {}).items():
            columns[metric] = {"mean": value, "std": math.nan, "n": len(values)}
        summary[model] = columns
    return summary


def write_csv(path: Path, rows: list[dict], metrics: list[str]) -> None:
    columns = ["face", "model", *metrics, "latency_s", "peak_memory_mib"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})


def _cell(stats: dict[str, float] | None, digits: int) -> str:
    if not stats or not math.isfinite(stats["mean"]):
        return "-"
    if not math.isfinite(stats["std"]):
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


_DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "niqe": 3, "ids": 4, "deg": 2, "lmd": 2, "fid": 2}


def markdown_table(result: dict) -> str:
    """results.md: one row per model, mean ± std over faces per metric, latency and peak memory."""
    metrics = [m for m in result["metrics"] if m not in result["skipped_metrics"]]  # failed ones show "-"
    arrows = {m: "↓" if result["metric_info"][m]["lower_is_better"] else "↑" for m in metrics}
    header = ["model", *[f"{m.upper()} {arrows[m]}" for m in metrics], "latency (s/face)", "peak memory (MiB)"]
    lines = [
        f"# Benchmark: {Path(result['data']).name}",
        "",
        f"{len(result['faces'])} faces at {result['size']}x{result['size']}; "
        + (f"degraded with preset `{result['degradation']}`, seed {result['seed']}"
           if result["mode"] == "degraded" else "real lq/hq pairs")
        + f"; {'pretrained' if result['pretrained'] else 'untrained (random)'} weights; device {result['device']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for model, columns in result["summary"].items():
        cells = [model, *[_cell(columns.get(m), _DIGITS.get(m, 4)) for m in metrics],
                 _cell(columns.get("latency_s"), 3), _cell(columns.get("peak_memory_mib"), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "mean ± std over faces; ↑ higher is better, ↓ lower is better. `input` is the degraded input "
              "itself. Latency: one `restore()` per face after a warm-up call. Peak memory: "
              + result["memory_method"] + "."]
    if result["skipped_models"] or result["skipped_metrics"]:
        lines += ["", "Skipped (weights not available):"]
        lines += [f"- model `{k}`: {v}" for k, v in result["skipped_models"].items()]
        lines += [f"- metric `{k}`: {v}" for k, v in result["skipped_metrics"].items()]
    if result.get("failed_models") or result.get("failed_metrics"):
        lines += ["", "FAILED (errors; tracebacks in results.json):"]
        lines += [f"- model `{k}`: {v}" for k, v in result.get("failed_models", {}).items()]
        lines += [f"- metric `{k}`: {v}" for k, v in result.get("failed_metrics", {}).items()]
    return "\n".join(lines) + "\n"


def write_grids(out: Path, faces: list[Face], models: list[str], rows: list[dict], metrics: list[str],
                tile: int = 256, overview_faces: int = 6) -> None:
    """grids/<face>.png: input | each model | ground truth, labelled with the face's first two metrics;
    grid.png: the first faces' rows together (smaller tiles)."""
    shown = [m for m in metrics if m in ("psnr", "lpips", "ssim", "niqe", "ids")][:2]
    values = {(r["face"], r["model"]): r for r in rows}
    overview_images, overview_labels = [], []
    for index, (name, lq, hq, _) in enumerate(faces):
        images, labels = [], []
        for model in models:
            image_path = out / ("inputs/lq" if model == INPUT else f"restored/{model}") / f"{name}.png"
            row = values.get((name, model), {})
            numbers = " ".join(f"{m} {row[m]:.3g}" for m in shown if math.isfinite(row.get(m, math.nan)))
            images.append(read_image(image_path) if image_path.is_file() else np.full_like(hq, 128))
            labels.append([model, numbers if image_path.is_file() else "(missing)"])
        images.append(hq)
        labels.append(["ground truth", name])
        write_image(out / "grids" / f"{name}.png", labelled_grid(images, labels, columns=len(images), tile=tile))
        if index < overview_faces:
            overview_images += images
            overview_labels += labels
    write_image(out / "grid.png", labelled_grid(overview_images, overview_labels, columns=len(models) + 1,
                                                tile=tile // 2))
