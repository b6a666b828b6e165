"""Model export: zoo networks to ONNX (and TorchScript), with a fixed, documented signature.

    from facerestore.export import export_onnx
    export_onnx("gfpgan-v1.4", "gfpgan.onnx")  # writes the file, then checks it with onnxruntime (CPU)

Each family is wrapped in a small module whose inputs and outputs are plain float32 tensors (S is
the network size, N the batch, dynamic unless said otherwise):

- restorers (GFP-GAN, GPEN, DFDNet): `image` (N,3,S,S) in the entry's colour order and range (RGB in
  [-1, 1]; GPEN seg2face [0, 1]) -> `output`, the restored face in the same layout, not clamped.
  GFP-GAN uses the noise maps stored in its checkpoint (`randomize_noise=False`): an exported graph
  cannot draw fresh noise per call, so its output is deterministic (`restore()` in Python draws fresh
  noise unless given a seed; the two differ in fine texture only).
  DFDNet: the component boxes are constants (those of the FFHQ template at 512 by default, or
  `part_locations=`) and the batch size is fixed: the network turns the boxes into Python ints and
  loops over faces, so neither can be an input of a traced graph.
- CodeFormer (codeformer, -colorization, -inpainting): `image` (N,3,S,S) RGB in [-1, 1] and `w`, a
  float32 scalar (0-d tensor): the fidelity weight, set per call (0 = the codebook's face, 1 = closest
  to the input; the entries' official values 0.5 / 0 / 1 are in the metadata) -> `output` (N,3,S,S)
  and `tokens` (N,L) int64, the chosen code of each of the L = (S/32)^2 latent positions (row-major).
  The inpainting graph includes the official blend (input kept outside pure-white holes). With
  `fidelity=` the export fixes w as a constant instead and `image` is the only input.
- RestoreFormer / RestoreFormer++: `image` -> `output` and `indices` (N,L) int64, the quantizer's
  nearest code per latent position (row-major).
- DPR (relight): `L` (N,1,S,S) lightness in [0, 1] (OpenCV Lab L / 255) and `sh` (N,9) target SH
  light -> `relit` (N,1,S,S) in [0, 1] and `light` (N,9), the SH light estimated for the input.
- RetinaFace (detect): `image` (N,3,S,S) BGR in 0..255 (mean subtraction is in the graph) ->
  `boxes` (N,P,4) x1,y1,x2,y2, `scores` (N,P), `landmarks` (N,P,5,2), in input pixels, for the P prior
  boxes of that input size (score threshold and NMS are left to the caller).

ONNX goes through torch.onnx's torch.export-based exporter (needs the `onnxscript` package; opset >=
18). The written file carries its conventions in `metadata_props` (`facerestore.*` keys, see
`read_metadata`), including the measured check. TorchScript is `torch.jit.trace` of the same wrapper.
The check compares integer outputs (tokens, indices) exactly.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from .archs.ops import plain_ops
from .imageio import write_atomic
from .registry import DetectorEntry, ModelEntry, ZooEntry, import_object

MIN_OPSET = 18  # the torch.export-based exporter writes opset 18 and newer
DEFAULT_TOLERANCE = 1e-3  # max |onnx - torch| allowed by the check, per unit of output scale
DEFAULT_DETECT_SIZE = 640
METADATA_PREFIX = "facerestore."


class ExportError(RuntimeError):
    """An export failed, or the exported model does not reproduce the PyTorch model."""


# ----------------------------------------------------------------------------------------------
# Wrappers: the exported signatures


class FaceNetExport(nn.Module):
    """image -> image: a restoration network called as its restorer calls it, image output only."""

    def __init__(self, net: nn.Module, forward_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.forward_kwargs = dict(forward_kwargs)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.net(image, **self.forward_kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


class DetectorExport(nn.Module):
    """BGR image (0..255) -> boxes, scores, landmarks in input pixels for every prior box."""

    def __init__(self, net: nn.Module, size: int, min_sizes, steps=(8, 16, 32), variances=(0.1, 0.2)) -> None:
        super().__init__()
        from .face.detect import MEAN_BGR, prior_boxes

        self.net = net
        self.variances = tuple(variances)
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1))
        self.register_buffer("priors", prior_boxes(size, size, min_sizes, steps))
        self.register_buffer("scale", torch.tensor([float(size), float(size)]))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from .face.detect import decode

        deltas, scores, landmark_deltas = self.net(image - self.mean)
        n, p = scores.shape
        boxes, landmarks = decode(deltas.reshape(-1, 4), landmark_deltas.reshape(-1, 10),
                                  self.priors.repeat(n, 1), self.variances)
        return (boxes.reshape(n, p, 4) * self.scale.repeat(2), scores,
                landmarks.reshape(n, p, 5, 2) * self.scale)


class CodeFormerExport(nn.Module):
    """image, w (0-d tensor) -> output, tokens: CodeFormer called as its entry's official call (adain, the
    inpainting blend) with the fidelity weight as an input of the graph."""

    def __init__(self, net: nn.Module, adain: bool, inpaint: bool) -> None:
        super().__init__()
        self.net, self.adain, self.inpaint = net, adain, inpaint

    def restore(self, image: torch.Tensor, w: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .archs.codeformer import inpaint_blend

        out, logits, _ = self.net(image, w=w, adain=self.adain)
        if self.inpaint:
            out = inpaint_blend(image, out)
        return out, logits.argmax(dim=2)  # the tokens the network looked up (first index on ties, as ONNX)

    def forward(self, image: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.restore(image, w)


class CodeFormerFixedExport(CodeFormerExport):
    """image -> output, tokens with w a constant of the graph (w = 0 skips the fusion, as the network does)."""

    def __init__(self, net: nn.Module, adain: bool, inpaint: bool, w: float) -> None:
        super().__init__(net, adain, inpaint)
        self.w = float(w)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.restore(image, self.w)


class RestoreFormerExport(nn.Module):
    """image -> output, indices (N, L): the image and the quantizer's chosen code per latent position."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, indices = self.net(image)
        return out, indices.reshape(image.shape[0], -1)


@dataclass
class ExportSpec:
    """A network wrapped for export, with example inputs and its documented convention."""

    module: nn.Module
    make_inputs: Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]  # (batch, rng) -> inputs
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_batch: bool  # False when the network fixes the batch size (DFDNet)
    fixed_batch: int | None
    metadata: dict[str, str]  # written to the ONNX metadata_props / TorchScript extra files

    def inputs(self, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        return self.make_inputs(batch, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# From a zoo name (or a loaded model) to an ExportSpec


def _load(model: Any, weights: str | os.PathLike | None, pretrained: bool, size: int | None,
          overrides: dict[str, Any]) -> tuple[nn.Module, ModelEntry, str]:
    """(network on the CPU in eval mode, its zoo entry, where its weights come from) from a
    name/entry/config or a loaded model (anything with `.net` and `.entry`: a Restorer, a FaceDetector).
    `size` also builds the network at that size (its family's size argument, e.g. GFP-GAN's out_size);
    the official weights fit the official size only."""
    from .api import build_model, resolve_entry, sized_entry

    if hasattr(model, "net") and isinstance(getattr(model, "entry", None), ModelEntry):
        return _cpu_float32(model.net), model.entry, "as loaded by the caller"
    entry = resolve_entry(model)
    if not pretrained:
        note = "random init (pretrained=False)"
    elif weights is not None:
        note = os.fspath(weights)
    else:
        note = ", ".join(wf.filename for wf in entry.files if wf.role == "weights")
    size_key = entry.family.size_argument
    if size is not None and size_key is not None:
        overrides = {size_key: size, **overrides}
    net = build_model(entry, weights, pretrained, progress=True, **overrides)
    return net.eval(), sized_entry(entry, overrides), note


def _cpu_float32(net: nn.Module) -> nn.Module:
    """The network in float32 on the CPU, in eval mode; a copy when the caller's is elsewhere, so that
    exporting never moves or casts the caller's model."""
    tensors = [*net.parameters(), *net.buffers()]
    if any(t.device.type != "cpu" or (t.is_floating_point() and t.dtype != torch.float32) for t in tensors):
        net = copy.deepcopy(net).float().cpu()
    return net.eval()


def _uniform(shape: tuple[int, ...], low: float, high: float) -> Callable[[torch.Generator], torch.Tensor]:
    return lambda rng: torch.rand(shape, generator=rng) * (high - low) + low


def export_spec(net: nn.Module, entry: ModelEntry, *, size: int | None = None, batch: int = 1,
                part_locations: np.ndarray | None = None, fidelity: float | None = None) -> ExportSpec:
    """Wrap `net` (of zoo entry `entry`) in its export signature (see the module docstring).

    size: input side; default the network size (restorers, DPR) or 640 (detectors).
    batch: the batch of the example inputs (and DFDNet's fixed batch).
    part_locations: for networks that take facial component boxes (DFDNet), (4,4) or (batch,4,4)
        boxes [x1,y1,x2,y2] of left eye, right eye, nose, mouth in the 512 face (default: from the
        FFHQ template's 5 points).
    fidelity: for networks that take the fidelity weight (CodeFormer's w): fix it as a constant of the
        graph; None (default) makes it an input. The wrapper is the entry's family's `export` function."""
    from . import __version__

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    options: dict[str, Any] = {"part_locations": part_locations} if part_locations is not None else {}
    if fidelity is not None:
        if entry.family.fidelity_argument is None:
            raise ValueError(f"fidelity is not part of the {entry.name} network (for its family it is a pixel blend "
                             "with the input, done outside the exported graph): export without fidelity")
        options["fidelity"] = fidelity
    if entry.family.export is None:
        raise ValueError(f"{entry.name} has no export signature ({entry.family.name} networks are not exportable)")
    spec = import_object(entry.family.export)(net, entry, size=size, batch=batch, **options)
    spec.metadata = {
        "model": entry.name, "task": entry.task, "facerestore_version": __version__, **spec.metadata,
        "input_names": ",".join(spec.input_names), "output_names": ",".join(spec.output_names),
        "batch": "dynamic" if spec.dynamic_batch else str(spec.fixed_batch),
        "template": getattr(entry, "template", ""), "license": entry.license, "source": entry.source,
    }
    spec.module.eval()
    return spec


def _stacked(make: Callable[[torch.Generator], Any]) -> Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]:
    """(batch, rng) -> inputs, from a function drawing one sample (a tensor or a tuple of tensors)."""
    def make_inputs(n: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
        samples = [make(rng) for _ in range(n)]
        if isinstance(samples[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*samples))
        return (torch.stack(samples),)

    return make_inputs


def detector_spec(net: nn.Module, entry: DetectorEntry, size: int | None = None, batch: int = 1,
                  **_options: Any) -> ExportSpec:
    """RetinaFace-style detectors: image (fixed size) -> boxes, scores, landmarks for every prior box."""
    size = size or DEFAULT_DETECT_SIZE
    module = DetectorExport(net, size, entry.min_sizes, entry.steps, entry.variances)
    priors = module.priors.shape[0]
    return ExportSpec(module, _stacked(_uniform((3, size, size), 0.0, 255.0)), ("image",),
                      ("boxes", "scores", "landmarks"), True, None, {
        "inputs": f"image: float32 (N,3,{size},{size}) BGR, 0..255 (not mean-subtracted)",
        "outputs": (f"boxes (N,{priors},4) x1,y1,x2,y2 and landmarks (N,{priors},5,2) (left eye, right eye, nose, "
                    f"left/right mouth corner) in input pixels, scores (N,{priors}) face probability, for every "
                    "prior box; apply a score threshold and NMS"),
        "notes": ("fixed input size (the prior boxes are constants of that size): resize or pad images to it and "
                  "map the results back"),
    })


def face_net_spec(net: nn.Module, entry: ZooEntry, size: int | None = None, batch: int = 1,
                  **_options: Any) -> ExportSpec:
    """Face restoration networks: image -> image at the network size, called as the restorer calls them."""
    make, metadata, net_size = face_image_io(net, entry, size)
    forward_kwargs = dict(entry.forward_kwargs)
    argument = entry.family.fidelity_argument
    if argument:  # the entry's official fidelity is a constant of the graph
        forward_kwargs[argument] = forward_kwargs.get(argument, entry.family.fidelity)
        metadata["fidelity"] = f"{argument}={forward_kwargs[argument]:g}"
    metadata["notes"] = "fixed input size"
    if "randomize_noise" in _parameters(net.forward):
        forward_kwargs["randomize_noise"] = False  # the stored noise buffers: a graph cannot draw noise
        metadata["notes"] += ("; deterministic: uses the noise maps stored in the weights instead of fresh noise "
                              "per call (randomize_noise=False)")
    return ExportSpec(FaceNetExport(net, forward_kwargs), make, ("image",), ("output",), True, None, metadata)


def codeformer_spec(net: nn.Module, entry: ZooEntry, size: int | None = None, batch: int = 1,
                    fidelity: float | None = None, **_options: Any) -> ExportSpec:
    """CodeFormer: image, w -> output, tokens (w fixed when `fidelity` is given)."""
    make_image, metadata, net_size = face_image_io(net, entry, size)
    forward_kwargs = dict(entry.forward_kwargs)
    official_w = forward_kwargs.get("w", entry.family.fidelity)
    inpaint = entry.task == "inpaint"
    latent = getattr(net, "latent_res", net_size // 32) ** 2
    metadata["outputs"] += (f"; tokens: int64 (N,{latent}) the chosen code of each latent position (row-major)"
                            + ("; the input is kept outside its pure-white holes (all channels 1.0)" if inpaint else ""))
    metadata["notes"] = "fixed input size"
    if fidelity is None:
        module: nn.Module = CodeFormerExport(net, bool(forward_kwargs.get("adain", False)), inpaint)
        names: tuple[str, ...] = ("image", "w")
        metadata["inputs"] += (f"; w: float32 scalar (0-d), fidelity weight in [0, 1]: 0 = the codebook's face, "
                               f"1 = closest to the input (official: {official_w:g})")
        metadata["fidelity"] = f"input w (official {official_w:g})"

        def make(n: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:  # a w in (0, 1): the fusion runs
            return (*make_image(n, rng), torch.rand((), generator=rng))
    else:
        module = CodeFormerFixedExport(net, bool(forward_kwargs.get("adain", False)), inpaint, fidelity)
        names, make = ("image",), make_image
        metadata["fidelity"] = f"w={fidelity:g} (fixed at export)"
    return ExportSpec(module, make, names, ("output", "tokens"), True, None, metadata)


def restoreformer_spec(net: nn.Module, entry: ZooEntry, size: int | None = None, batch: int = 1,
                       **_options: Any) -> ExportSpec:
    """RestoreFormer / RestoreFormer++: image -> output, indices."""
    make, metadata, net_size = face_image_io(net, entry, size)
    latent = (net_size // 2 ** (len(net.decoder.up) - 1)) ** 2
    metadata["outputs"] += f"; indices: int64 (N,{latent}) the quantizer's code of each latent position (row-major)"
    metadata["notes"] = "fixed input size"
    return ExportSpec(RestoreFormerExport(net), make, ("image",), ("output", "indices"), True, None, metadata)


def face_image_io(net: nn.Module, entry: ZooEntry, size: int | None
                  ) -> tuple[Callable[[int, torch.Generator], tuple[torch.Tensor, ...]], dict[str, str], int]:
    """(example-input maker, documented input/output metadata, network size) of a face image network."""
    net_size = 2 ** net.log_size if hasattr(net, "log_size") else entry.face_size
    if size is not None and size != net_size:
        size_key = entry.family.size_argument or "size"
        raise ValueError(f"this {entry.name} network takes {net_size}x{net_size} faces, not {size}; "
                         f"rebuild it for another size with load(..., {size_key}=...)")
    lo, hi = entry.input_range
    colour = entry.color.upper()
    make = _stacked(_uniform((3, net_size, net_size), lo, hi))
    metadata = {"inputs": f"image: float32 (N,3,{net_size},{net_size}) {colour} in [{lo:g}, {hi:g}]",
                "outputs": f"output: float32 (N,3,{net_size},{net_size}) {colour}, about [{lo:g}, {hi:g}] (clamp it)"}
    return make, metadata, net_size


def _parameters(fn: Callable) -> set[str]:
    return set(inspect.signature(fn).parameters)


# ----------------------------------------------------------------------------------------------
# ONNX


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    opset: int = MIN_OPSET,
    batch: int = 1,
    dynamic_batch: bool = True,
    size: int | None = None,
    part_locations: np.ndarray | None = None,
    fidelity: float | None = None,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    **overrides: Any,
) -> Path:
    """Export a model to an ONNX file at `path` (written atomically) and check it.

    model: a zoo name or alias, a ZooEntry, a loaded Restorer or FaceDetector.
    weights / pretrained / overrides: as `facerestore.load` (overrides rebuild the architecture, e.g.
        a smaller test config; they apply to zoo names only).
    opset: ONNX opset, >= 18.
    batch: batch of the example input (and of the check); dynamic_batch makes the batch axis of every
        input and output symbolic ("N"), except for DFDNet, whose batch is always fixed.
    size: input side (restorers: must be the network's; DPR: any multiple of 16 (1024 model: 32);
        detectors: the fixed square input, default 640).
    fidelity: CodeFormer only: fix w as a constant of the graph (default: `w` is an input).
    check: run the file with onnxruntime on the CPU on a random input and compare with PyTorch; an
        output off by more than `tolerance` x max(1, max |output|), or an integer output (tokens,
        indices) that differs at all, raises ExportError. The measured
        max |diff| is stored in the file's metadata (`read_metadata(path)["check_max_abs_diff"]`).
    """
    onnx = _require("onnx")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (the torch.export-based ONNX exporter), got {opset}")
    net, entry, weights_note = _load(model, weights, pretrained, size, overrides)
    spec = export_spec(net, entry, size=size, batch=batch, part_locations=part_locations, fidelity=fidelity)
    dynamic = dynamic_batch and spec.dynamic_batch
    program = _torch_onnx_export(spec, batch, dynamic, opset)
    proto = program.model_proto
    written_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    metadata = {**spec.metadata, "opset": str(written_opset),
                "batch": "dynamic" if dynamic else str(spec.fixed_batch or batch),
                "weights": weights_note}
    if check:
        inputs = spec.inputs(batch, seed=1)
        diffs = check_outputs(_run_torch(spec.module, inputs), run_onnx(proto, inputs, spec.input_names),
                              spec.output_names, tolerance, "onnxruntime")
        metadata["check_max_abs_diff"] = json.dumps(dict(zip(spec.output_names, diffs)))
    for key, value in metadata.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = METADATA_PREFIX + key, value
    proto.doc_string = (f"{entry.name} exported by facerestore {metadata['facerestore_version']}. "
                        f"Inputs: {metadata['inputs']}. Outputs: {metadata['outputs']}")
    try:
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GB limit (no zoo model comes near it)
        raise ExportError(f"{entry.name} is too large for a single-file ONNX model ({exc})") from exc
    out = Path(path)
    write_atomic(out, lambda f: f.write(data))
    return out


def _torch_onnx_export(spec: ExportSpec, batch: int, dynamic: bool, opset: int):
    """torch.onnx.export (torch.export-based) of the wrapper -> ONNXProgram."""
    _require("onnxscript")  # the exporter's dependency: a clear message instead of its ImportError
    # A dynamic export is traced at batch + 1 and checked at `batch`, so the check covers the dynamic
    # axis. Tracing at >= 2 also matters: the StyleGAN2 layers have a batch-1 fast path, while their
    # general (batched) path is exact for every batch size, including 1.
    example = spec.inputs(batch + 1 if dynamic else batch)
    dynamic_shapes = None
    if dynamic:
        n = torch.export.Dim("N", min=1, max=4096)
        dynamic_shapes = {name: {0: n} if x.dim() else None for name, x in zip(spec.input_names, example)}
    try:
        # plain_ops: the plain op sequence (no oneDNN-only fused convolutions) is what exports
        with torch.no_grad(), plain_ops(), warnings.catch_warnings():
            # DPR's two inputs share the batch axis: the exporter says it keeps one name for both
            warnings.filterwarnings("ignore", message=".*The axis name: .* will not be used", category=UserWarning)
            return torch.onnx.export(spec.module, example, None, dynamo=True, opset_version=opset,
                                     input_names=list(spec.input_names), output_names=list(spec.output_names),
                                     dynamic_shapes=dynamic_shapes, optimize=True, verbose=False)
    except Exception as exc:  # the exporter raises many types; report which model and why
        raise ExportError(f"ONNX export of {spec.metadata['model']} failed: {type(exc).__name__}: "
                          f"{str(exc)[:2000]}") from exc


def run_onnx(model: Any, inputs: tuple[torch.Tensor, ...] | tuple[np.ndarray, ...],
             input_names: tuple[str, ...] | None = None) -> list[np.ndarray]:
    """Run an ONNX model (a path, bytes or ModelProto) with onnxruntime on the CPU."""
    ort = _require("onnxruntime")
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = os.fspath(model)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = input_names or tuple(i.name for i in session.get_inputs())
    feeds = {name: np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
             for name, x in zip(names, inputs)}
    return session.run(None, feeds)


def _run_torch(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    with torch.inference_mode():
        out = module(*inputs)
    return [(t.float() if t.is_floating_point() else t).numpy()
            for t in (out if isinstance(out, (tuple, list)) else (out,))]


def compare_outputs(reference: list[np.ndarray], actual: list[np.ndarray]) -> list[float]:
    """max |actual - reference| per output; equal values count as 0 also where they are inf or nan
    (random weights can overflow, e.g. a detector's box sizes); inf when the shapes differ."""
    diffs = []
    for r, a in zip(reference, actual):
        if a.shape != r.shape:
            diffs.append(float("inf"))
            continue
        with np.errstate(invalid="ignore"):  # inf - inf where both are inf: masked by `same`
            same = (a == r) | (np.isnan(a) & np.isnan(r))
            diffs.append(float(np.where(same, 0.0, np.abs(a.astype(np.float64) - r)).max(initial=0.0)))
    return diffs


def _scale(x: np.ndarray) -> float:
    """max(1, max |x| over its finite values): what an output's tolerance is relative to."""
    finite = np.abs(x[np.isfinite(x)])
    return max(1.0, float(finite.max())) if finite.size else 1.0


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `facerestore.*` metadata of an exported ONNX file, without the prefix."""
    model = _require("onnx").load(os.fspath(path), load_external_data=False)
    return {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)}


# ----------------------------------------------------------------------------------------------
# TorchScript


def export_torchscript(
    model: Any,
    path: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    batch: int = 1,
    size: int | None = None,
    part_locations: np.ndarray | None = None,
    fidelity: float | None = None,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    **overrides: Any,
) -> Path:
    """`torch.jit.trace` of the export wrapper (same signature as the ONNX export), saved atomically
    to `path` with the metadata as the extra file `facerestore.json`; with `check`, the saved file is
    loaded back and compared with the module on a random input. Traced on the CPU: load it with
    `torch.jit.load(path, map_location=...)`; the batch size may vary (except DFDNet)."""
    net, entry, weights_note = _load(model, weights, pretrained, size, overrides)
    spec = export_spec(net, entry, size=size, batch=batch, part_locations=part_locations, fidelity=fidelity)
    example = spec.inputs(batch + 1 if spec.dynamic_batch else batch)  # see _torch_onnx_export
    with torch.no_grad(), _quiet_jit(), plain_ops():  # portable ops only (see _torch_onnx_export)
        traced = torch.jit.trace(spec.module, example, check_trace=False)
    metadata = {**spec.metadata, "batch": "dynamic" if spec.dynamic_batch else str(spec.fixed_batch),
                "weights": weights_note}
    if check:  # the serialized module, loaded back, against the eager one
        buffer = io.BytesIO()
        with _quiet_jit():
            torch.jit.save(traced, buffer)
            buffer.seek(0)
            loaded = torch.jit.load(buffer)
        inputs = spec.inputs(batch, seed=1)
        diffs = check_outputs(_run_torch(spec.module, inputs), _run_torch(loaded, inputs), spec.output_names,
                              tolerance, "TorchScript")
        metadata["check_max_abs_diff"] = json.dumps(dict(zip(spec.output_names, diffs)))
    extra = {"facerestore.json": json.dumps(metadata)}
    out = Path(path)
    with _quiet_jit():
        write_atomic(out, lambda f: torch.jit.save(traced, f, _extra_files=extra))
    return out


def read_torchscript_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata saved with a TorchScript export."""
    extra = {"facerestore.json": ""}
    with _quiet_jit():
        torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["facerestore.json"])


# ----------------------------------------------------------------------------------------------
# Helpers


def check_outputs(reference: list[np.ndarray], actual: list[np.ndarray], names: tuple[str, ...],
                  tolerance: float = DEFAULT_TOLERANCE, runtime: str = "exported") -> list[float]:
    """Max |actual - reference| per output; ExportError when one exceeds tolerance x max(1, max |reference|)
    (relative to the output's scale: images in [-1, 1], boxes in pixels), or when an integer output (code
    tokens, indices) differs at all."""
    diffs = compare_outputs(reference, actual)
    allowed = [0.0 if np.issubdtype(ref.dtype, np.integer) else tolerance * _scale(ref) for ref in reference]
    off = [f"{name}: max |diff| {diff:.3g} (allowed {limit:.3g})"
           for name, diff, limit in zip(names, diffs, allowed) if not diff <= limit]
    if off:
        raise ExportError(f"the {runtime} model does not reproduce PyTorch: {'; '.join(off)}. Please report "
                          "this with the model name and your torch/onnx/onnxruntime versions; pass "
                          "check=False (--no-check) to keep the file anyway")
    return diffs


def _require(module: str) -> Any:
    """Import an optional dependency of the export, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(f"model export needs the {module} package: pip install 'facerestore[export]' "
                          "(onnx, onnxscript, onnxruntime)") from exc


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence what torch.jit says about every trace: its deprecation notice, and the tracer's warning
    on the StyleGAN2 layers' batch-size branch (traced at batch >= 2, that path holds for every batch)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield
