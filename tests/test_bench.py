"""The benchmark runner end to end on shared FFHQ faces with small real architectures (untrained):
every artefact, metric values consistent with the saved images, skip-with-reason, resuming."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from facerestore.archs.gfpgan import GFPGANv1Clean
from facerestore.archs.gpen import FullGenerator
from facerestore.bench import PeakMemory, run_benchmark
from facerestore.imageio import read_image
from facerestore.metrics import compute
from facerestore.registry import ZooEntry, get_entry

# Small configurations of the real architectures, as test-only zoo entries (not registered).
TINY_GFPGAN = ZooEntry(
    name="bench-tiny-gfpgan", arch=GFPGANv1Clean, files=(), task="restore", face_size=64, template="ffhq",
    arch_config=dict(out_size=64, num_style_feat=16, channel_multiplier=1, num_mlp=2, narrow=1 / 16,
                     input_is_latent=True, different_w=True, sft_half=True, fix_decoder=False),
    forward_kwargs={"return_rgb": False})
TINY_GPEN = ZooEntry(
    name="bench-tiny-gpen", arch=FullGenerator, files=(), task="restore", face_size=64, template="gpen",
    arch_config=dict(size=64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.125),
    family=get_entry("gpen").family, output_rounding="truncate")

OFFLINE = {"lpips": {"download": False}, "ids": {"download": False}}


@pytest.fixture
def face_pipeline():
    pytest.importorskip("facerestore.face.align", reason="the face pipeline (alignment templates) is not present yet")


@pytest.fixture
def metric_options(shared, monkeypatch, face_pipeline):
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")  # no cached ImageNet weights either
    return {**OFFLINE, "niqe": {"weights": str(shared("weights/metrics/niqe_pris_params.npz"))},
            "lmd": {"detector": "retinaface-mobile0.25-1mb",
                    "detector_weights": str(shared("weights/retinaface/mobilenet0.25_Final.pth"))}}


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_benchmark_artefacts_values_skips_and_resume(shared, tmp_path, metric_options):
    out = tmp_path / "results"
    kwargs = dict(data=shared("data/ffhq/hq"), degradation="gfpgan", seed=0, pretrained=False, out_dir=out,
                  device="cpu", limit=2, size=192, metric_options=metric_options, progress=False)
    result = run_benchmark([TINY_GFPGAN, TINY_GPEN, "no-such-model"], metrics=["psnr", "niqe", "lpips", "ids", "lmd"],
                           **kwargs)

    # what ran and what was skipped, with reasons
    assert result["faces"] == ["00000", "00001"]
    assert result["models"] == ["bench-tiny-gfpgan", "bench-tiny-gpen"]
    assert "Unknown model" in result["failed_models"]["no-such-model"]  # a wrong name is an error, not a skip
    assert result["skipped_models"] == {}
    assert "alexnet-owt-7be5be79.pth" in result["skipped_metrics"]["lpips"]
    assert "recognition_arcface_ir_se50.pth" in result["skipped_metrics"]["ids"]
    assert set(result["skipped_metrics"]) == {"lpips", "ids"}

    # every artefact
    for name in ("run.json", "results.csv", "results.json", "results.md", "grid.png"):
        assert (out / name).is_file(), name
    rows = read_rows(out / "results.csv")
    assert [(r["model"], r["face"]) for r in rows] == [
        (m, f) for m in ("input", "bench-tiny-gfpgan", "bench-tiny-gpen") for f in ("00000", "00001")]
    assert list(rows[0]) == ["face", "model", "psnr", "niqe", "lmd", "latency_s", "peak_memory_mib"]
    for face in ("00000", "00001"):
        grid = read_image(out / "grids" / f"{face}.png")
        assert grid.shape[1] == 4 * 256  # input | 2 models | ground truth
        assert read_image(out / "inputs" / "lq" / f"{face}.png").shape == (192, 192, 3)
        params = json.loads((out / "inputs" / "params" / f"{face}.json").read_text())
        assert params["preset"] == "gfpgan"

    # values agree with the saved images
    hq = read_image(out / "inputs" / "hq" / "00001.png")
    lq = read_image(out / "inputs" / "lq" / "00001.png")
    restored = read_image(out / "restored" / "bench-tiny-gpen" / "00001.png")
    by_key = {(r["model"], r["face"]): r for r in rows}
    assert float(by_key["input", "00001"]["psnr"]) == pytest.approx(compute("psnr", lq, hq), abs=1e-9)
    assert float(by_key["bench-tiny-gpen", "00001"]["psnr"]) == pytest.approx(compute("psnr", restored, hq), abs=1e-9)
    niqe = compute("niqe", restored, weights=metric_options["niqe"]["weights"])
    assert float(by_key["bench-tiny-gpen", "00001"]["niqe"]) == pytest.approx(niqe, abs=1e-9)
    assert by_key["input", "00001"]["latency_s"] == ""  # the input is not a model
    for model in ("bench-tiny-gfpgan", "bench-tiny-gpen"):
        latency = [float(by_key[model, f]["latency_s"]) for f in ("00000", "00001")]
        assert all(t > 0 for t in latency)
        assert float(by_key[model, "00000"]["peak_memory_mib"]) >= 0
    summary = result["summary"]["bench-tiny-gpen"]["psnr"]
    values = [float(by_key["bench-tiny-gpen", f]["psnr"]) for f in ("00000", "00001")]
    assert summary["mean"] == pytest.approx(np.mean(values)) and summary["std"] == pytest.approx(np.std(values))
    assert summary["n"] == 2
    # the untrained networks are far from the ground truth; the degraded input is closer
    assert result["summary"]["input"]["psnr"]["mean"] > summary["mean"]

    table = (out / "results.md").read_text()
    assert "| model | PSNR ↑ | NIQE ↓ | LMD ↓ | latency (s/face) | peak memory (MiB) |" in table
    assert f"| bench-tiny-gpen | {summary['mean']:.2f} ± {summary['std']:.2f} |" in table
    assert "metric `lpips`" in table and "model `no-such-model`" in table
    assert json.loads((out / "results.json").read_text())["summary"]["input"]["psnr"]["n"] == 2

    # a rerun with the same settings reuses every finished pair; a new metric is added to them
    stamps = {p: p.stat().st_mtime_ns for p in (out / "restored").rglob("*.png")}
    again = run_benchmark([TINY_GFPGAN, TINY_GPEN], metrics=["psnr", "ssim"], **kwargs)
    assert {p: p.stat().st_mtime_ns for p in (out / "restored").rglob("*.png")} == stamps
    rows_again = {(r["model"], r["face"]): r for r in read_rows(out / "results.csv")}
    assert rows_again["bench-tiny-gpen", "00001"]["latency_s"] == by_key["bench-tiny-gpen", "00001"]["latency_s"]
    assert float(rows_again["bench-tiny-gpen", "00001"]["ssim"]) == pytest.approx(compute("ssim", restored, hq))
    assert again["skipped_models"] == {}

    # other settings into the same folder are refused
    with pytest.raises(ValueError, match="other settings"):
        run_benchmark([TINY_GPEN], metrics=["psnr"], **{**kwargs, "seed": 1})


def test_benchmark_on_real_pairs_and_dfdnet_without_dictionaries(shared, tmp_path, face_pipeline):
    out = tmp_path / "pairs"
    result = run_benchmark([TINY_GFPGAN, "dfdnet"], shared("data/ffhq/val"), metrics=["psnr", "ssim"],
                           pretrained=False, out_dir=out, device="cpu", limit=1, size=64, progress=False,
                           metric_options={"ssim": {"no_such_option": 1}})
    assert result["mode"] == "paired" and result["faces"] == ["ffhq_00000"]
    # untrained DFDNet has no component dictionaries: a failure with its traceback, never a silent skip
    assert "RuntimeError" in result["failed_models"]["dfdnet"] and result["skipped_models"] == {}
    assert "Traceback" in result["tracebacks"]["model dfdnet"]
    assert "TypeError" in result["failed_metrics"]["ssim"]  # a metric that crashes is a failure too
    assert "FAILED" in (out / "results.md").read_text()
    lq = read_image(out / "inputs" / "lq" / "ffhq_00000.png")
    hq = read_image(out / "inputs" / "hq" / "ffhq_00000.png")
    assert result["summary"]["input"]["psnr"]["mean"] == pytest.approx(compute("psnr", lq, hq))
    assert math.isfinite(result["summary"]["bench-tiny-gfpgan"]["psnr"]["mean"])
    with pytest.raises(ValueError, match="pairs"):
        run_benchmark([TINY_GFPGAN], shared("data/ffhq/val"), degradation="gfpgan", out_dir=tmp_path / "x")


def test_bench_cli(shared, tmp_path, capsys):
    from facerestore.cli import main

    out = tmp_path / "cli"
    assert main(["bench", "--models", "no-such-model", "--data", str(shared("data/ffhq/hq")), "--metrics", "psnr,ssim",
                 "--limit", "1", "--size", "64", "--no-pretrained", "--device", "cpu", "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert "| input |" in captured.out and "no-such-model" in captured.out
    assert "FAILED model no-such-model" in captured.err and "Unknown model" in captured.err
    assert (out / "results.csv").is_file() and (out / "grids" / "00000.png").is_file()


def test_peak_memory_sees_a_large_allocation():
    import torch

    memory = PeakMemory(torch.device("cpu"))
    memory.baseline()
    with memory:
        block = np.ones((64, 1024, 1024), np.uint8)  # 64 MiB, touched, freed before the end
        del block
    assert memory.peak_mib > 50
    assert "RSS" in memory.method or "getrusage" in memory.method
