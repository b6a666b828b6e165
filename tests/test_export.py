"""Model export (facerestore.export, `facerestore export`): the ONNX files, run with onnxruntime on
the CPU, reproduce PyTorch for every family (small configs of the real architectures; the real DPR
and RetinaFace weights; DFDNet's golden instance), with a dynamic batch axis; TorchScript traces too.

An ONNX export goes through torch.export: 10-30 s per model on a loaded 2-core machine, so each model
is exported once per module (fixtures) and its tests share the file. DFDNet rebuilds its 240 M-
parameter golden instance (~15 s, ~5 GB peak with the export). The module takes about 4-5 minutes.
"""
from __future__ import annotations

import contextlib
import io
import json
import re

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torchvision

import facerestore
from conftest import shared_path
from facerestore.archs.stylegan2 import StyleConv
from facerestore.cli import main
from facerestore.export import (ExportError, check_outputs, export_onnx, export_torchscript, read_metadata,
                                read_torchscript_metadata, run_onnx)
from facerestore.face.detect import load_detector

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.load.*deprecated:FutureWarning")  # our own loads

RETINAFACE = "weights/retinaface/mobilenet0.25_Final.pth"
DPR_512 = "weights/dpr/trained_model_03.t7"

# Small configs of the real architectures (16 px faces, 1/16 of the channels, 16-dim styles).
SMALL = {
    "gpen-bfr-512": dict(size=16, style_dim=16, n_mlp=1, narrow=1 / 16),
    "gfpgan-v1.4": dict(out_size=16, num_style_feat=16, num_mlp=1, narrow=1 / 16),  # GFPGANv1Clean
    "gfpgan-v1": dict(out_size=16, num_style_feat=16, num_mlp=1, narrow=1 / 16),  # GFPGANv1 (FIR resampling)
}


def small_restorer(name: str) -> facerestore.Restorer:
    """Random small network whose every weight matters (noise strengths and biases start at zero)."""
    torch.manual_seed(0)
    restorer = facerestore.load(name, pretrained=False, device="cpu", detector=None, **SMALL[name])
    with torch.no_grad():
        for param in restorer.net.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return restorer


def official_call(restorer: facerestore.Restorer, x: torch.Tensor, **kwargs) -> np.ndarray:
    """The network called as its restorer calls it (GFP-GAN with the stored noise)."""
    if "randomize_noise" not in kwargs and restorer.entry.name.startswith("gfpgan"):
        kwargs["randomize_noise"] = False
    with torch.inference_mode():
        return restorer.net(x, **restorer.entry.forward_kwargs, **kwargs)[0].numpy()


def random_faces(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@contextlib.contextmanager
def isolated_home(tmp_path_factory):
    """Module fixtures run outside the per-test cache isolation of conftest: isolate them too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACERESTORE_HOME", str(tmp_path_factory.mktemp("export_home")))
        yield


# ---------------------------------------------------------------- restorers: GPEN, GFP-GAN


@pytest.fixture(scope="module", params=list(SMALL))
def restorer_export(request, tmp_path_factory):
    restorer = small_restorer(request.param)
    folder = tmp_path_factory.mktemp("onnx")
    (folder / "model.onnx").write_bytes(b"an older file")  # replaced atomically
    with isolated_home(tmp_path_factory):
        path = export_onnx(restorer, folder / "model.onnx")
    return restorer, path


def test_restorer_onnx_matches_pytorch(restorer_export):
    restorer, path = restorer_export
    x = random_faces(1, 16, seed=5)
    (out,) = run_onnx(path, (x,))
    reference = official_call(restorer, x)
    assert out.shape == (1, 3, 16, 16)
    assert reference.std() > 0.05  # a real image-like output, not a constant
    assert np.abs(out - reference).max() < 1e-4
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no temporary file left


def test_restorer_onnx_has_a_dynamic_batch(restorer_export):
    restorer, path = restorer_export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image,), (output,) = session.get_inputs(), session.get_outputs()
    assert (image.name, output.name) == ("image", "output")
    assert image.shape[1:] == [3, 16, 16] and isinstance(image.shape[0], str)
    x = random_faces(3, 16, seed=6)
    (out,) = session.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(out, official_call(restorer, x), rtol=0, atol=1e-4)


def test_restorer_onnx_metadata(restorer_export):
    restorer, path = restorer_export
    metadata = read_metadata(path)
    assert metadata["model"] == restorer.entry.name
    assert metadata["facerestore_version"] == facerestore.__version__
    assert metadata["inputs"] == "image: float32 (N,3,16,16) RGB in [-1, 1]"
    assert metadata["batch"] == "dynamic" and metadata["opset"] == "18"
    assert metadata["weights"] == "as loaded by the caller"  # a Restorer object was exported
    assert json.loads(metadata["check_max_abs_diff"])["output"] < 1e-4


def test_restorer_onnx_is_deterministic(restorer_export):
    """An exported graph cannot draw noise: GFP-GAN runs with the noise maps stored in its weights."""
    restorer, path = restorer_export
    x = random_faces(1, 16, seed=7)
    (first,), (second,) = run_onnx(path, (x,)), run_onnx(path, (x,))
    assert np.array_equal(first, second)
    if restorer.entry.name.startswith("gfpgan"):
        assert any(isinstance(m, StyleConv) and m.weight.abs().item() > 0 for m in restorer.net.modules())
        fresh = official_call(restorer, x, randomize_noise=True)  # restore()'s default: fresh noise
        assert np.abs(first - fresh).max() > 1e-3


# ---------------------------------------------------------------- DPR (through the CLI)


@pytest.fixture(scope="module")
def dpr_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("dpr") / "dpr512.onnx"
    stdout = io.StringIO()
    with isolated_home(tmp_path_factory), contextlib.redirect_stdout(stdout):
        code = main(["export", "dpr-512", "--onnx", str(path), "--weights", str(shared_path(DPR_512))])
    return code, stdout.getvalue(), path


def test_cli_writes_a_checked_onnx_file(dpr_export):
    code, stdout, path = dpr_export
    assert code == 0 and path.is_file()
    assert f"wrote {path} (ONNX, opset 18, batch dynamic)" in stdout
    check = next(line for line in stdout.splitlines() if "check:" in line)
    relit = float(check.split("relit ")[1].split(",")[0])
    assert 0 <= relit < 1e-4
    assert read_metadata(path)["weights"].endswith("trained_model_03.t7")


def test_dpr_onnx_reproduces_the_official_relighting(dpr_export):
    """Two golden lights in one batch: the exported real DPR gives the official outputs."""
    _, _, path = dpr_export
    with np.load(shared_path("golden/dpr/dpr512_input.npz")) as data:
        lightness = data["input_L"]
    cases = [np.load(shared_path(f"golden/dpr/dpr512_light_{i:02d}.npz")) for i in (0, 3)]
    sh = np.concatenate([case["sh_input"].reshape(1, 9) for case in cases])
    relit, light = run_onnx(path, (np.repeat(lightness, 2, axis=0), sh))
    assert relit.shape == (2, 1, 512, 512) and light.shape == (2, 9)
    for i, case in enumerate(cases):
        np.testing.assert_allclose(relit[i:i + 1], case["out_img"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(light[i], case["out_light"].reshape(9), rtol=0, atol=1e-5)
    assert np.abs(relit[0] - relit[1]).max() > 0.1  # the two lights give different images


# ---------------------------------------------------------------- RetinaFace


@pytest.fixture(scope="module")
def retinaface_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("retinaface") / "retinaface.onnx"
    with isolated_home(tmp_path_factory):
        export_onnx("retinaface-mobile0.25-1mb", path, weights=shared_path(RETINAFACE), size=640)
    return path


def letterbox(img: np.ndarray, size: int) -> np.ndarray:
    scale = size / max(img.shape[:2])
    resized = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    return canvas


def test_retinaface_onnx_detects_what_the_library_detects(retinaface_export):
    img = letterbox(cv2.imread(str(shared_path("data/real/whole/Solvay_conference_1927.png"))), 640)
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None]
    boxes, scores, landmarks = (torch.from_numpy(a[0]) for a in run_onnx(retinaface_export, (x,)))
    keep = scores > 0.95  # the entry's threshold, then NMS as FaceDetector does
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    order = torchvision.ops.nms(boxes, scores, 0.4)
    boxes, landmarks = boxes[order].numpy(), landmarks[order].numpy()
    eyes = np.linalg.norm(landmarks[:, 0] - landmarks[:, 1], axis=1) >= 5.0

    detector = load_detector("retinaface-mobile0.25-1mb", weights=shared_path(RETINAFACE), device="cpu")
    expected = detector.detect(img, detect_size=640)
    assert len(expected) >= 10  # faces of the group photo found at 640 px
    assert eyes.sum() == len(expected)
    np.testing.assert_allclose(boxes[eyes], expected.boxes, rtol=0, atol=0.05)
    np.testing.assert_allclose(landmarks[eyes], expected.landmarks, rtol=0, atol=0.05)


def test_retinaface_onnx_has_a_fixed_size_and_dynamic_batch(retinaface_export):
    session = ort.InferenceSession(str(retinaface_export), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "landmarks"]
    assert session.get_inputs()[0].shape[1:] == [3, 640, 640]
    priors = sum((640 // step) ** 2 * 2 for step in (8, 16, 32))
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 640, 640)).astype(np.float32)
    boxes, scores, landmarks = session.run(None, {"image": x})
    assert boxes.shape == (2, priors, 4) and scores.shape == (2, priors) and landmarks.shape == (2, priors, 5, 2)
    assert "NMS" in read_metadata(retinaface_export)["outputs"]


# ---------------------------------------------------------------- DFDNet


def test_dfdnet_onnx_reproduces_the_official_output(tmp_path):
    """Golden instance and case: the component boxes are constants of the exported graph."""
    from test_arch_dfdnet import golden_state_dict

    from facerestore.archs.dfdnet import UNetDictFace
    from facerestore.registry import get_entry
    from facerestore.restorer import FaceRestorer

    net = UNetDictFace()
    state, _ = golden_state_dict()
    net.load_state_dict(state, strict=True)
    del state
    restorer = FaceRestorer(net, get_entry("dfdnet"), device="cpu", detector=None)
    with pytest.raises(ValueError, match="dictionaries"):
        export_onnx(restorer, tmp_path / "dfdnet.onnx", check=False)
    net.load_dictionaries(shared_path("golden/dfdnet/dfdnet_dictionaries_K4.npz"))
    with np.load(shared_path("golden/dfdnet/dfdnet_case0.npz")) as data:
        case = {k: data[k] for k in ("input_A", "part_locations", "out_eval")}
    path = export_onnx(restorer, tmp_path / "dfdnet.onnx", part_locations=case["part_locations"], check=False)
    del restorer, net
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 512, 512]  # fixed batch
    (out,) = session.run(None, {"image": case["input_A"]})
    assert np.abs(out - case["out_eval"]).max() < 1e-4
    assert str(case["part_locations"].tolist()) in read_metadata(path)["notes"]
    del session
    path.unlink()  # 480 MB: not left behind in pytest's kept temporary folders


# ---------------------------------------------------------------- TorchScript


@pytest.mark.parametrize("name", list(SMALL))
def test_torchscript_runs_any_batch(name, tmp_path):
    config = dict(SMALL[name])
    size = config.pop("size", None) or config.pop("out_size")
    torch.manual_seed(0)
    path = export_torchscript(name, tmp_path / "model.pt", pretrained=False, size=size, **config)
    torch.manual_seed(0)  # the same random init as the export's network
    restorer = facerestore.load(name, pretrained=False, device="cpu", detector=None, **SMALL[name])
    module = torch.jit.load(str(path))
    for batch in (1, 3):
        x = random_faces(batch, 16, seed=batch)
        with torch.inference_mode():
            out = module(x).numpy()
        np.testing.assert_allclose(out, official_call(restorer, x), rtol=0, atol=1e-5)
    metadata = read_torchscript_metadata(path)
    assert metadata["model"] == name and metadata["batch"] == "dynamic"
    assert json.loads(metadata["check_max_abs_diff"])["output"] < 1e-5


def test_cli_torchscript_detector(tmp_path, capsys):
    path = tmp_path / "retinaface.pt"
    code = main(["export", "retinaface-mobile0.25-1mb", "--torchscript", str(path),
                 "--weights", str(shared_path(RETINAFACE)), "--size", "320"])
    out = capsys.readouterr().out
    assert code == 0 and "TorchScript" in out and "check:" in out
    module = torch.jit.load(str(path))
    boxes, scores, landmarks = module(torch.full((2, 3, 320, 320), 128.0))
    assert boxes.shape == (2, 4200, 4) and scores.shape == (2, 4200) and landmarks.shape == (2, 4200, 5, 2)


# ---------------------------------------------------------------- errors and the check


def test_opset_below_18_is_a_clear_cli_error(tmp_path, capsys):
    code = main(["export", "dpr-512", "--onnx", str(tmp_path / "x.onnx"), "--opset", "17"])
    assert code == 1 and "opset must be >= 18" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_size_of_a_loaded_restorer_cannot_change(tmp_path):
    restorer = small_restorer("gpen-bfr-512")
    with pytest.raises(ValueError, match="takes 16x16 faces, not 32"):
        export_onnx(restorer, tmp_path / "x.onnx", size=32)


def test_dpr_size_must_fit_the_hourglass(tmp_path):
    with pytest.raises(ValueError, match="divisible by 16"):
        export_onnx("dpr-512", tmp_path / "x.onnx", pretrained=False, size=520)


def test_check_is_relative_to_the_output_scale():
    image = np.linspace(-1, 1, 12, dtype=np.float32)
    boxes = np.linspace(0, 640, 12, dtype=np.float32)
    diffs = check_outputs([image, boxes], [image + 5e-4, boxes + 0.5], ("output", "boxes"), tolerance=1e-3)
    assert diffs == pytest.approx([5e-4, 0.5], rel=1e-3)
    with pytest.raises(ExportError, match=re.escape("output: max |diff| 0.002 (allowed 0.001)")):
        check_outputs([image], [image + 2e-3], ("output",), tolerance=1e-3)
    with pytest.raises(ExportError, match="boxes"):  # a different shape never passes
        check_outputs([boxes], [boxes[:6]], ("boxes",))
