"""Restoring on Ray (facerestore.distributed): a local 2-CPU cluster started by the test, two actors with
one model each, every output the same bytes as the local sequential run with the same weights."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import shared_path

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny_gpen.yaml")  # a 64 px GPEN: fast on CPU


@pytest.fixture(scope="module")
def local_cluster():
    # offline, quiet, and actors import this checkout's facerestore
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_ray_outputs_match_local_sequential(local_cluster, tmp_path, capsys):
    import facerestore
    from facerestore.api import build_model
    from facerestore.cli import main
    from facerestore.distributed import restore_with_ray
    from facerestore.pipeline import restore_folder

    weights = tmp_path / "tiny.pth"  # saved once, so that every actor loads the same weights
    torch.save(build_model(TINY, pretrained=False).state_dict(), weights)
    detector = dict(detector="retinaface-mobile0.25-1mb",
                    detector_weights=shared_path("weights/retinaface/mobilenet0.25_Final.pth"))
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(shared_path("data/real/whole/Blake_Lively.jpg"), src / "a.jpg")
    shutil.copy(shared_path("data/real/whole/Blake_Lively.jpg"), src / "sub" / "a.jpg")  # mirrored folder
    shutil.copy(shared_path("data/real/whole/Blake_Lively.jpg"), src / "a.png")  # same stem: a_jpg, a_png
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    options = dict(seed=0, paste="box", upscale=1.5, save_faces=True)

    # local reference: one photo after the other, with the actors' thread count (1 CPU each)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        restorer = facerestore.load(TINY, weights=weights, device="cpu", **detector)
        local = restore_folder(restorer, [src], tmp_path / "local", pipelined=False, progress=False, **options)
    finally:
        torch.set_num_threads(threads)

    summary = restore_with_ray([src], tmp_path / "ray", model=TINY, weights=weights, device="cpu", num_workers=2,
                               retries=1, progress=False, **detector, **options)
    assert summary.total == local.total == 4 and summary.restored == local.restored == 3
    assert [(p.name, why.split(":")[0]) for p, why in summary.failed] == [("broken.png", "ImageError")]
    assert "after 2 attempts" in summary.failed[0][1]  # tried again once, then reported
    assert summary.faces == local.faces > 0
    ray_files = {str(p.relative_to(tmp_path / "ray")): p.read_bytes() for p in (tmp_path / "ray").rglob("*")
                 if p.is_file()}
    local_files = {str(p.relative_to(tmp_path / "local")): p.read_bytes() for p in (tmp_path / "local").rglob("*")
                   if p.is_file()}
    assert {p for p in ray_files if not p.startswith("faces/")} == {"a_jpg.jpg", "a_png.png", "sub/a.jpg"}
    assert ray_files == local_files  # every output and face crop, byte for byte
    assert not list(tmp_path.rglob("*.tmp"))

    # the command line, on the cluster this process already runs: exit code 1 and the bad file named
    code = main(["restore", str(src), "-o", str(tmp_path / "cli"), "-m", TINY, "--weights", str(weights),
                 "--device", "cpu", "--seed", "0", "--paste", "box", "--upscale", "1.5", "--ray", "--ray-workers", "1",
                 "--retries", "0", "--detector", detector["detector"],
                 "--detector-weights", str(detector["detector_weights"])])
    captured = capsys.readouterr()
    assert code == 1 and "restored 3 of 4" in captured.out
    assert "FAILED" in captured.err and "broken.png" in captured.err and "after 1 attempts" in captured.err
    assert (tmp_path / "cli" / "sub" / "a.jpg").read_bytes() == local_files["sub/a.jpg"]


def test_facerestore_imports_without_ray():
    code = ("import sys; sys.modules['ray'] = None; import facerestore, facerestore.distributed, "
            "facerestore.cli.restore; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
