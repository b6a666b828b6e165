"""Export of the codebook families (CodeFormer and its heads, RestoreFormer, RestoreFormer++): the ONNX
files (onnxruntime, CPU) and TorchScript traces choose the same code tokens / quantizer indices as
PyTorch on a real face and reproduce its output; CodeFormer's fidelity weight `w` is an input of the graph.

Small configs of the real architectures (the families' `tiny` overrides with one block per level, one
transformer layer: the ONNX export's cost grows with the op count) with seeded weights; one FFHQ face
resized to 32x32. An ONNX export takes 10-30 s on a loaded 2-core machine (torch.export and the
translation, not the network size), so the ONNX round trip is done for `codeformer` (`w` an input; the
colorization and inpainting heads add only their official constants and blend) and `restoreformer-plusplus`
(RestoreFormer's decoder plus a second attention scale); every entry is traced to TorchScript, whose
wrapper is the same module. The module runs torch and onnxruntime on one thread: these tiny networks gain nothing
from two, and on a loaded machine two threads waiting on each other make each small op up to 100x slower.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

import facerestore
from conftest import shared_path
from facerestore.archs.codeformer import inpaint_blend
from facerestore.export import export_onnx, export_torchscript, read_metadata, read_torchscript_metadata, run_onnx
from facerestore.registry import get_entry

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.load.*deprecated:FutureWarning")

SIZE = 32
FEWER_OPS = {"codeformer": dict(n_layers=1, res_blocks=1), "restoreformer": dict(num_res_blocks=1)}
# fp32: ONNX / TorchScript vs PyTorch, observed max |diff| ~1e-5 on these networks (different kernels
# and summation orders); tokens and indices must be equal.
ATOL = 1e-4


def small_config(name: str) -> dict:
    family = get_entry(name).family
    return {**family.tiny, **FEWER_OPS[family.name]}


def seeded_restorer(name: str) -> facerestore.Restorer:
    """Small network with seeded weights, perturbed so that every weight matters (biases start at zero)."""
    torch.manual_seed(0)
    restorer = facerestore.load(name, pretrained=False, device="cpu", detector=None, **small_config(name))
    with torch.no_grad():
        for param in restorer.net.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return restorer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    """A real FFHQ face at the small networks' size, RGB in [-1, 1], (1, 3, 32, 32)."""
    bgr = cv2.imread(str(shared_path("data/ffhq/hq/00000.png")))
    small = cv2.resize(bgr, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1


def codeformer_reference(restorer: facerestore.Restorer, x: torch.Tensor, w: float) -> tuple[np.ndarray, np.ndarray,
                                                                                              float]:
    """(output, tokens, smallest top-1 minus top-2 logit) of the PyTorch network, called as the entry calls it."""
    with torch.inference_mode():
        out, logits, _ = restorer.net(x, w=w, adain=restorer.entry.forward_kwargs["adain"])
    if restorer.entry.task == "inpaint":
        out = inpaint_blend(x, out)
    top2 = logits.topk(2, dim=2).values
    return out.numpy(), logits.argmax(dim=2).numpy(), float((top2[..., 0] - top2[..., 1]).min())


def restoreformer_reference(restorer: facerestore.Restorer, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
    """(output, indices (1, L), smallest distance margin between the nearest and second-nearest code)."""
    net = restorer.net
    with torch.inference_mode():
        out, indices = net(x)
        z = torch.nn.functional.conv2d(net.encoder(x)["out"], net.quant_conv.weight, net.quant_conv.bias)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        distances = torch.cdist(flat, net.quantize.embedding.weight).square()
    nearest2 = distances.topk(2, dim=1, largest=False).values
    return out.numpy(), indices.reshape(1, -1).numpy(), float((nearest2[:, 1] - nearest2[:, 0]).min())


def with_holes(x: torch.Tensor) -> torch.Tensor:
    """The face with a pure-white rectangle (all channels 1.0), the inpainting head's hole convention."""
    x = x.clone()
    x[:, :, 10:20, 6:26] = 1.0
    return x


# ---------------------------------------------------------------- ONNX


@pytest.fixture(scope="module", params=["codeformer", "restoreformer-plusplus"])
def onnx_export(request, tmp_path_factory):
    restorer = seeded_restorer(request.param)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACERESTORE_HOME", str(tmp_path_factory.mktemp("home")))
        path = export_onnx(restorer, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return restorer, session(path), path


def test_onnx_chooses_the_pytorch_tokens_on_a_real_face(onnx_export, face):
    restorer, onnx_session, _ = onnx_export
    if restorer.entry.family.name == "restoreformer":
        out, indices = onnx_session.run(None, {"image": face.numpy()})
        reference, expected, margin = restoreformer_reference(restorer, face)
        assert margin > 1e-5  # every choice clear of fp32 noise (~1e-7 here): equality is meaningful
        assert indices.dtype == np.int64 and np.array_equal(indices, expected)
        assert len(np.unique(expected)) >= 8  # many different codes, not one code everywhere
        assert np.abs(out - reference).max() < ATOL
        return
    for w in (0.0, 0.5, 1.0):  # one graph, w set per call
        out, tokens = onnx_session.run(None, {"image": face.numpy(), "w": np.array(w, np.float32)})
        reference, expected, gap = codeformer_reference(restorer, face, w)
        assert gap > 1e-4  # every token's top-1 logit clear of fp32 noise (~1e-6 here)
        assert tokens.shape == (1, 64) and tokens.dtype == np.int64 and np.array_equal(tokens, expected)
        assert len(np.unique(expected)) >= 8
        assert np.abs(out - reference).max() < ATOL  # w = 0: the graph adds 0 * fusion, PyTorch skips it


def test_codeformer_fidelity_is_an_input(onnx_export, face):
    restorer, onnx_session, path = onnx_export
    if restorer.entry.family.name != "codeformer":
        pytest.skip("fidelity is a network input for CodeFormer only")
    image, w = onnx_session.get_inputs()
    assert (image.name, w.name) == ("image", "w") and w.shape == [] and isinstance(image.shape[0], str)
    assert [o.name for o in onnx_session.get_outputs()] == ["output", "tokens"]
    batch = torch.cat([face, face.flip(3)])  # dynamic batch
    low, _ = onnx_session.run(None, {"image": batch.numpy(), "w": np.array(0.0, np.float32)})
    high, tokens = onnx_session.run(None, {"image": batch.numpy(), "w": np.array(1.0, np.float32)})
    assert np.abs(high - low).max() > 0.05  # w reaches the network
    for i in range(2):
        reference, expected, _ = codeformer_reference(restorer, batch[i:i + 1], 1.0)
        assert np.array_equal(tokens[i:i + 1], expected) and np.abs(high[i:i + 1] - reference).max() < ATOL
    metadata = read_metadata(path)
    official = restorer.entry.forward_kwargs["w"]
    assert metadata["fidelity"] == f"input w (official {official:g})" and "w: float32 scalar" in metadata["inputs"]
    assert json.loads(metadata["check_max_abs_diff"])["tokens"] == 0
    out, tokens = run_onnx(path, (face, np.float32(1.0)))  # the library's runner takes w as a NumPy scalar
    assert np.array_equal(tokens, codeformer_reference(restorer, face, 1.0)[1])


# ---------------------------------------------------------------- TorchScript


@pytest.mark.parametrize("name", ["codeformer", "codeformer-colorization", "codeformer-inpainting", "restoreformer",
                                  "restoreformer-plusplus"])
def test_torchscript_chooses_the_pytorch_tokens(name, face, tmp_path):
    restorer = seeded_restorer(name)
    path = export_torchscript(restorer, tmp_path / "model.pt")
    module = torch.jit.load(str(path))
    x = with_holes(face) if restorer.entry.task == "inpaint" else face
    batch = torch.cat([x, x.flip(3)])  # traced at batch 2, run at 2 and 1
    if restorer.entry.family.name == "restoreformer":
        with torch.inference_mode():
            out, indices = module(batch)
        assert torch.equal(indices[:1], module(x)[1])
        reference, expected, _ = restoreformer_reference(restorer, x)
        assert np.array_equal(indices[:1].numpy(), expected)
        assert np.abs(out[:1].numpy() - reference).max() < ATOL
    else:
        for w in (0.0, restorer.entry.forward_kwargs["w"], 1.0):
            with torch.inference_mode():
                out, tokens = module(batch, torch.tensor(w))
            reference, expected, _ = codeformer_reference(restorer, x, w)
            assert np.array_equal(tokens[:1].numpy(), expected)
            assert np.abs(out[:1].numpy() - reference).max() < ATOL
            if restorer.entry.task == "inpaint":  # the official blend is in the graph
                holes = (x == 1.0).all(dim=1, keepdim=True).expand_as(x)
                assert torch.equal(out[:1][~holes], x[~holes]) and (out[:1][holes] != 1.0).all()
    metadata = read_torchscript_metadata(path)
    assert metadata["model"] == name and metadata["batch"] == "dynamic"


def test_codeformer_fidelity_fixed_at_export(face, tmp_path):
    restorer = seeded_restorer("codeformer")
    path = export_torchscript(restorer, tmp_path / "cf.pt", fidelity=0.7)
    module = torch.jit.load(str(path))
    with torch.inference_mode():
        out, tokens = module(face)  # image is the only input
    reference, expected, _ = codeformer_reference(restorer, face, 0.7)
    assert np.array_equal(tokens.numpy(), expected) and np.abs(out.numpy() - reference).max() < ATOL
    assert read_torchscript_metadata(path)["fidelity"] == "w=0.7 (fixed at export)"


def test_fidelity_of_a_pixel_blend_family_is_refused(tmp_path):
    restorer = seeded_restorer("restoreformer")
    with pytest.raises(ValueError, match="pixel blend"):
        export_torchscript(restorer, tmp_path / "rf.pt", fidelity=0.5)
    assert not (tmp_path / "rf.pt").exists()
