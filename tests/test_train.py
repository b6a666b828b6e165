"""The trainer: configs, data order, discriminators, and real (tiny) training runs on FFHQ faces —
that it learns, that a run killed with Ctrl-C resumes onto the same loss curve, that a NaN stops it
with the last good checkpoint kept, and that a fine-tuned checkpoint loads with facerestore.load."""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, shared_path

import facerestore
import facerestore.cli
from facerestore import hub
from facerestore.archs.discriminators import (
    FacialComponentDiscriminator, MultiScaleDiscriminator, gfpgan_discriminator, gpen_discriminator, minibatch_stddev,
)
from facerestore.train import ConfigError, TrainingError, entry_from_config, load_config, read_csv, train
from facerestore.train.config import SchedulerConfig
from facerestore.train.data import StreamBatchSampler
from facerestore.train.trainer import ema_decay, lr_factor

CONFIGS = ROOT / "configs"
TINY_GPEN = CONFIGS / "tiny_gpen.yaml"


@pytest.fixture
def one_thread():
    """Training tests run single-threaded: on the shared 2-core machine it is faster than two
    oversubscribed threads, and it makes runs in different processes bit-identical."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def faces64(tmp_path_factory) -> Path:
    """The 7 FFHQ faces of shared/data/ffhq/hq resized once to 64x64 (the tiny configs' size)."""
    src = shared_path("data/ffhq/hq")
    out = tmp_path_factory.mktemp("faces64")
    for path in sorted(src.iterdir()):
        img = cv2.imread(str(path))
        cv2.imwrite(str(out / f"{path.stem}.png"), cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA))
    return out


def write_config(path: Path, base: Path = TINY_GPEN, **sections) -> Path:
    """A copy of a config with some keys changed: write_config(p, train={"iters": 5}, log={...})."""
    data = yaml.safe_load(base.read_text())
    for section, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(copy.deepcopy(values))
        else:
            data[section] = values
    path.write_text(yaml.safe_dump(data))
    return path


QUIET_LOG = {"every": 1, "checkpoint_every": 1000, "val_every": 0, "sample_every": 0, "tensorboard": False}


# ---- configs -----------------------------------------------------------------------------------------
def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.iter.*did you mean 'iters'"):
        load_config(write_config(tmp_path / "a.yaml", train={"iter": 5}))
    with pytest.raises(ConfigError, match="exactly one of"):
        load_config(write_config(tmp_path / "b.yaml", model={"zoo": "gpen-bfr-512"}))
    with pytest.raises(ConfigError, match="not a trainable family"):
        load_config(write_config(tmp_path / "c.yaml", model={"arch": "realesrgan"}))
    with pytest.raises(ConfigError, match="feature_matching uses the discriminator"):
        data = yaml.safe_load(TINY_GPEN.read_text())
        del data["losses"]["gan"]
        (tmp_path / "d.yaml").write_text(yaml.safe_dump(data))
        load_config(tmp_path / "d.yaml")
    config = load_config(write_config(tmp_path / "e.yaml", train={"optim_g": {"lr": "3e-4"}}))
    assert config.train.optim_g.lr == pytest.approx(3e-4)  # YAML 1.1 reads 3e-4 as a string


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_resolve_to_zoo_conventions(path):
    config = load_config(path)
    entry = entry_from_config(path)
    assert entry.files[0].filename == "last.pth" and entry.files[0].state_dict_key == "net_ema"
    if config.model.zoo:
        base = facerestore.get_entry(config.model.zoo)
        assert (entry.arch, dict(entry.arch_config), entry.face_size) == (base.arch, dict(base.arch_config), base.face_size)
        assert (entry.template, entry.restorer, entry.input_range) == (base.template, base.restorer, base.input_range)
    # DFDNet keeps its dictionaries beside the checkpoint
    assert [wf.role for wf in entry.files[1:]] == (["dictionary"] * 16 if config.model.zoo == "dfdnet" else [])


def test_load_config_path_builds_the_untrained_tiny_model():
    restorer = facerestore.load(TINY_GPEN, pretrained=False, device="cpu", detector=None)
    net = restorer.net
    assert type(net).__name__ == "FullGenerator" and restorer.entry.face_size == 64
    assert restorer.entry.template == "gpen"  # from gpen-bfr-512, the family's reference entry
    out, _ = net(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64)


# ---- schedules and data order ------------------------------------------------------------------------
def test_lr_schedules_and_ema_warmup():
    assert lr_factor(5, SchedulerConfig(warmup_iters=10), 100) == pytest.approx(0.5)
    multistep = SchedulerConfig(type="multistep", milestones=[10, 20], gamma=0.5)
    assert [lr_factor(i, multistep, 100) for i in (10, 11, 21)] == [1.0, 0.5, 0.25]
    cosine = SchedulerConfig(type="cosine", min_lr_ratio=0.1)
    assert lr_factor(50, cosine, 100) == pytest.approx(0.55) and lr_factor(100, cosine, 100) == pytest.approx(0.1)
    assert ema_decay(0.999, 0, warmup=True) == pytest.approx(0.1)
    assert ema_decay(0.999, 90, warmup=True) == pytest.approx(91 / 100)
    assert ema_decay(0.999, 10**6, warmup=True) == 0.999 and ema_decay(0.999, 0, warmup=False) == 0.999


def test_stream_sampler_is_resumable_and_shards_ranks():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = take(StreamBatchSampler(7, 3, seed=5), 10)
    assert take(StreamBatchSampler(7, 3, seed=5, start_iter=4), 6) == full[4:]
    positions = [item for batch in full for item in batch]
    for epoch in range(4):  # every epoch visits each index once
        assert sorted(i for i, e in positions if e == epoch) == list(range(7))
    rank0, rank1 = take(StreamBatchSampler(7, 2, 5, 0, 0, 2), 5), take(StreamBatchSampler(7, 2, 5, 0, 1, 2), 5)
    merged = [a + b for a, b in zip(rank0, rank1)]
    assert merged == take(StreamBatchSampler(7, 4, seed=5), 5)


# ---- discriminators ------------------------------------------------------------------------------------
def test_stylegan2_discriminator_layouts_and_features():
    gfpgan_d = gfpgan_discriminator(64, channel_multiplier=1, narrow=0.0625)
    keys = list(gfpgan_d.state_dict())
    assert keys[:2] == ["conv_body.0.0.weight", "conv_body.0.1.bias"] and not any("kernel" in k for k in keys)
    assert keys[-4:] == ["final_linear.0.weight", "final_linear.0.bias", "final_linear.1.weight", "final_linear.1.bias"]
    gpen_d = gpen_discriminator(64, channel_multiplier=1, narrow=0.0625)
    assert "convs.1.conv2.0.kernel" in gpen_d.state_dict()  # GPEN stores its FIR kernels
    x = torch.randn(3, 3, 64, 64)  # 3: not divisible by the stddev group of 4
    scores, feats = gfpgan_d(x, return_feats=True)
    assert scores.shape == (3, 1) and [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4]


def test_minibatch_stddev_appends_group_std():
    x = torch.zeros(4, 2, 3, 3)
    x[2:] = 2.0  # groups take samples (0, 2) and (1, 3): std 1 in both
    out = minibatch_stddev(x, group_size=2)
    assert out.shape == (4, 3, 3, 3)
    assert torch.allclose(out[:, 2], torch.ones(4, 3, 3), atol=1e-4)


def test_component_and_multiscale_discriminators():
    scores, feats = FacialComponentDiscriminator()(torch.randn(2, 3, 20, 20), return_feats=True)
    assert scores.shape == (2, 1, 5, 5) and [f.shape[1] for f in feats] == [128, 256]
    multi = MultiScaleDiscriminator(in_channels=1, num_scales=2, channels=8, num_layers=3)
    outs, feats = multi(torch.randn(2, 1, 64, 64), return_feats=True)
    assert [o.shape[-1] for o in outs] == [6, 2] and len(feats) == 8
    with pytest.raises(ValueError, match="at least 96 px"):
        MultiScaleDiscriminator(num_scales=3, channels=8)(torch.randn(1, 3, 64, 64))


# ---- training runs -------------------------------------------------------------------------------------
def test_tiny_gpen_learns_to_restore_held_out_faces(faces64, tmp_path, one_thread):
    """100 iterations (~30 s) of the shipped tiny config, from scratch, on 5 FFHQ faces degraded on the
    fly: the EMA generator's PSNR on the 2 held-out degraded faces climbs from random-init level
    (~8 dB) by more than 10 dB, to within 1 dB of the degraded inputs' own PSNR (~23 dB; it passes
    them after ~130 iterations). The checkpoint loads with facerestore.load(config, weights=...)."""
    out = tmp_path / "run"
    config = write_config(tmp_path / "tiny.yaml", log={"val_every": 0, "sample_every": 0, "tensorboard": False})
    result = train(config, hq=faces64, iters=100, out=out, progress=False)
    assert result["iter"] == 100 and not result["stopped"]
    val = read_csv(out / "val.csv")
    assert [row["iter"] for row in val] == [0, 100]  # before training and at the end
    start, end = val[0]["psnr"], val[-1]["psnr"]
    assert start < 12 and end > start + 10
    assert end > val[-1]["psnr_input"] - 1.0
    losses = read_csv(out / "log.csv")
    assert losses[-1]["pixel"] < 0.5 * losses[0]["pixel"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["iter_0000000.png", "iter_0000100.png"]

    restorer = facerestore.load(config, weights=out / "last.pth", device="cpu", detector=None)
    checkpoint = hub.read_checkpoint(out / "last.pth")
    for key, value in restorer.net.state_dict().items():
        assert torch.equal(value, checkpoint["net_ema"][key]), key
    face = cv2.imread(str(sorted(faces64.iterdir())[-1]))
    restored = restorer.restore(face, aligned=True)
    assert restored.shape == (64, 64, 3)


def test_resume_after_ctrl_c_continues_the_same_loss_curve(faces64, tmp_path, one_thread):
    """A run stopped with SIGINT (from outside, mid-run) and resumed with --resume logs the same
    losses and ends with the same weights as an uninterrupted run (R1, flips and noise included)."""
    total = 12
    losses = yaml.safe_load(TINY_GPEN.read_text())["losses"]
    losses["gan"]["r1_every"] = 4
    config = write_config(tmp_path / "tiny.yaml", log=QUIET_LOG, losses=losses)
    straight = tmp_path / "straight"
    # on CPU: CUDA runs in two processes differ (cudnn.benchmark picks algorithms per process)
    train(config, hq=faces64, iters=total, out=straight, device="cpu", progress=False)

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "facerestore", "train", str(config), "--hq", str(faces64),
                             "--iters", "1000", "--out", str(killed), "--device", "cpu", "--no-progress"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = killed / "log.csv"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):  # header + 2 iterations
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    stopped_at = hub.read_checkpoint(killed / "last.pth")["iter"]
    assert 2 <= stopped_at < total and f"stopped at iteration {stopped_at}" in output

    assert facerestore.cli.main(["train", str(config), "--hq", str(faces64), "--iters", str(total),
                                 "--out", str(killed), "--resume", "--device", "cpu", "--no-progress"]) == 0
    a, b = read_csv(straight / "log.csv"), read_csv(killed / "log.csv")
    assert [r["iter"] for r in b] == list(range(1, total + 1))
    assert any("d_r1" in row for row in a[stopped_at:])  # the lazy R1 ran after the resume
    for row_a, row_b in zip(a, b):
        assert row_a.keys() == row_b.keys()
        for key in row_a.keys() - {"sec_per_iter"}:
            assert row_b[key] == pytest.approx(row_a[key], rel=1e-5, abs=1e-7), (row_a["iter"], key)
    final_a, final_b = hub.read_checkpoint(straight / "last.pth"), hub.read_checkpoint(killed / "last.pth")
    for part in ("net_ema", "net"):
        for key, value in final_a[part].items():
            torch.testing.assert_close(final_b[part][key], value, rtol=1e-5, atol=1e-6)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(faces64, tmp_path, one_thread):
    config = write_config(tmp_path / "tiny.yaml", log={**QUIET_LOG, "checkpoint_every": 1},
                          train={"optim_g": {"lr": 1.0e30}})  # the first step blows the weights up
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"non-finite generator loss at iteration 2.*last\.pth \(iteration 1\)"):
        train(config, hq=faces64, iters=10, out=out, progress=False)
    checkpoint = hub.read_checkpoint(out / "last.pth")
    assert checkpoint["iter"] == 1
    with pytest.raises(FileExistsError, match="--resume"):  # a finished/broken run is not overwritten
        train(config, hq=faces64, iters=10, out=out, progress=False)


def test_dpr_relighting_trains_on_dpr_layout(tmp_path, one_thread):
    """DPR's recipe (+ an optional patch GAN with R1) on a tiny synthetic dataset in DPR's layout (face
    folders with lit images and light files): losses are finite, validation runs, the checkpoint
    loads into the relighter."""
    rng = np.random.default_rng(0)
    data = tmp_path / "relight"
    for face in range(3):
        folder = data / f"imgHQ{face:05d}"
        folder.mkdir(parents=True)
        for light in range(3):
            img = cv2.GaussianBlur(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), (5, 5), 0)
            cv2.imwrite(str(folder / f"imgHQ{face:05d}_{light:02d}.png"), img)
            np.savetxt(folder / f"imgHQ{face:05d}_light_{light:02d}.txt", rng.normal(size=9))
    config = tmp_path / "dpr.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny-dpr", "model": {"arch": "dpr", "config": {"baseFilter": 4}},
        "data": {"size": 32, "batch_size": 2, "num_workers": 0, "val_count": 1},
        "train": {"iters": 3, "optim_g": {"lr": 1e-3}},
        "losses": {"relight": {"image": 1.0, "gradient": 1.0, "light": 1.0, "feature": 0.5},
                   "gan": {"type": "lsgan", "weight": 0.1, "r1": 1.0, "r1_every": 2,
                           "discriminator": {"channels": 4, "num_layers": 2}}},
        "log": {**QUIET_LOG, "val_every": 3},
    }))
    out = tmp_path / "run"
    result = train(config, hq=data, out=out, progress=False)
    rows = read_csv(out / "log.csv")
    assert len(rows) == 3 and all(np.isfinite(row[k]) and row[k] > 0 for row in rows
                                  for k in ("image", "gradient", "light", "feature", "gan", "d"))
    assert "d_r1" in rows[1] and "d_r1" not in rows[0]  # lazy R1 every 2nd iteration
    assert set(result["metrics"]) == {"iter", "psnr", "psnr_input", "psnr_init", "ssim", "ssim_input", "ssim_init"}
    relighter = facerestore.load(config, weights=out / "last.pth", device="cpu", detector=None)
    assert type(relighter).__name__ == "Relighter"


def test_tiny_gfpgan_trains_with_every_gfpgan_loss(faces64, tmp_path, one_thread):
    out = tmp_path / "run"
    config = write_config(tmp_path / "gfpgan.yaml", base=CONFIGS / "tiny_gfpgan.yaml", log=QUIET_LOG)
    train(config, hq=faces64, iters=2, out=out, progress=False)
    row = read_csv(out / "log.csv")[-1]
    for key in ("pixel", "pyramid", "perceptual", "style", "gan", "components_gan", "components_style", "identity",
                "d", "d_components"):
        assert np.isfinite(row[key]), key
    checkpoint = hub.read_checkpoint(out / "last.pth")
    assert set(checkpoint["discriminators"]) == {"d", "d_left_eye", "d_right_eye", "d_mouth"}
    facerestore.load(config, weights=out / "last.pth", device="cpu", detector=None)  # strict load


def test_torchrun_two_processes_train_with_ddp(faces64, tmp_path):
    """Multi-GPU code path on CPU: torchrun starts 2 processes (gloo backend), DDP trains, rank 0
    logs the losses averaged over the processes and writes one checkpoint with both random states."""
    out = tmp_path / "ddp"
    losses = yaml.safe_load(TINY_GPEN.read_text())["losses"]
    losses["gan"]["r1_every"] = 2  # R1's double backward through DDP at iteration 2
    config = write_config(tmp_path / "tiny.yaml", log=QUIET_LOG, losses=losses)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "facerestore", "train", str(config), "--hq", str(faces64), "--iters", "2",
                           "--out", str(out), "--device", "cpu", "--no-progress"], cwd=ROOT, env=env,
                          capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("done at iteration 2") == 1  # reported once, by rank 0
    checkpoint = hub.read_checkpoint(out / "last.pth")
    assert checkpoint["iter"] == 2 and len(checkpoint["rng"]) == 2
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])  # seeded per rank
    rows = read_csv(out / "log.csv")
    assert [row["iter"] for row in rows] == [1, 2] and np.isfinite(rows[1]["d_r1"])


def test_mirrored_light_renders_the_mirrored_sphere():
    """Flip augmentation for DPR: the SH sign flips used for a mirrored face light the mirror image."""
    from facerestore.shlight import render_sphere
    from facerestore.train.recipes import MIRROR_SH_SIGNS

    coefficients = np.array([1.08, -0.34, 0.42, 0.61, 0.2, -0.15, -0.3, 0.25, 0.1])
    mirrored = render_sphere(coefficients * MIRROR_SH_SIGNS.numpy())
    assert np.abs(mirrored.astype(int) - render_sphere(coefficients)[:, ::-1]).max() <= 1
    assert np.abs(mirrored.astype(int) - render_sphere(coefficients)).max() > 50  # the light did move
