"""Fine-tuning: `--init` from released weights (a zoo name, an official-layout file, a training
checkpoint) for every restore family, freezing and per-part learning rates, custom LQ/HQ pairs with
clear errors, the jpeg-colorcast preset, validation against the input and the iteration-0 model (CSV,
best.pth, grids), bf16 autocast on CPU, DFDNet training, and the tiny CodeFormer / RestoreFormer++
recipes lowering their loss on real faces."""
from __future__ import annotations

import copy
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
from facerestore.data import degrade, get_preset
from facerestore.registry import get_entry
from facerestore.train import ConfigError, load_config, read_csv, train
from facerestore.train.trainer import Trainer

CONFIGS = ROOT / "configs"
QUIET_LOG = {"every": 1, "checkpoint_every": 1000, "val_every": 0, "sample_every": 0, "tensorboard": False}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_faces(folder: Path, count: int = 3, size: int = 64, seed: int = 0) -> Path:
    """Smooth random colour images as stand-in faces (offline tests that only need data to exist)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        img = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (7, 7), 0)
        cv2.imwrite(str(folder / f"face{i}.png"), img)
    return folder


@pytest.fixture(scope="module")
def real_faces(tmp_path_factory) -> dict[int, Path]:
    """The FFHQ faces of shared/data/ffhq/hq resized once to 32 and 64 px (the tiny configs' sizes)."""
    src = shared_path("data/ffhq/hq")
    folders = {}
    for size in (32, 64):
        out = tmp_path_factory.mktemp(f"ffhq{size}")
        for path in sorted(src.iterdir()):
            img = cv2.imread(str(path))
            cv2.imwrite(str(out / f"{path.stem}.png"), cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
        folders[size] = out
    return folders


# One tiny config per restore family: (arch name, zoo entry whose file layout --init reads, constructor args).
FAMILIES = {
    "gfpgan": ("gfpgan-clean", "gfpgan-v1.4", dict(get_entry("gfpgan-v1.4").family.tiny)),
    "gpen": ("gpen", "gpen-bfr-512", dict(get_entry("gpen-bfr-512").family.tiny)),
    "codeformer": ("codeformer", "codeformer", {**get_entry("codeformer").family.tiny,
                                                "ch_mult": [1, 1, 2], "attn_resolutions": [8]}),
    "restoreformer": ("restoreformer", "restoreformer", {**get_entry("restoreformer").family.tiny,
                                                        "ch_mult": [1, 1, 2], "attn_resolutions": [8]}),
    "restoreformer++": ("restoreformer++", "restoreformer-plusplus",
                        {**get_entry("restoreformer").family.tiny, "ch_mult": [1, 1, 2], "attn_resolutions": [8]}),
}


def tiny_config(path: Path, arch: str, arch_config: dict, **sections) -> Path:
    data = {"name": f"tiny-{arch}", "model": {"arch": arch, "config": arch_config},
            "data": {"batch_size": 2, "num_workers": 0, "val_count": 1},
            "train": {"iters": 1, "optim_g": {"lr": 1e-3}}, "losses": {"pixel": {"type": "l1", "weight": 1.0}},
            "log": dict(QUIET_LOG)}
    for section, values in sections.items():
        data.setdefault(section, {}).update(copy.deepcopy(values))
    path.write_text(yaml.safe_dump(data))
    return path


def write_official_file(net: torch.nn.Module, entry_name: str, path: Path) -> Path:
    """The network's weights in the layout of the entry's released file (key, prefix, extra keys)."""
    wf = next(wf for wf in get_entry(entry_name).files if wf.role == "weights")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    if wf.network_prefix:  # RestoreFormer++: a Lightning checkpoint with loss/discriminator weights beside
        state = {**{wf.network_prefix + k: v for k, v in state.items()}, "loss.discriminator.w": torch.ones(3)}
    torch.save({wf.state_dict_key: state, "epoch": 7} if wf.state_dict_key else state, path)
    return path


def seeded_network(config_path: Path, seed: int = 123) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = facerestore.train.entry_from_config(config_path).build()
    with torch.no_grad():  # move every parameter off its default init, so equality is meaningful
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return net


def assert_same_weights(net: torch.nn.Module, reference: torch.nn.Module) -> None:
    got, want = net.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


# ---- --init ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_init_from_official_layout_file_lands_exactly(family, tmp_path):
    arch, entry_name, arch_config = FAMILIES[family]
    config = tiny_config(tmp_path / "c.yaml", arch, arch_config)
    source = seeded_network(config)
    weights = write_official_file(source, entry_name, tmp_path / "official.pth")
    cfg = load_config(config)
    cfg.model.init, cfg.data.hq, cfg.out = str(weights), str(synthetic_faces(tmp_path / "hq")), str(tmp_path / "run")
    trainer = Trainer(cfg, device="cpu", progress=False)
    assert_same_weights(trainer.net, source)
    assert_same_weights(trainer.net_ema, source)  # the EMA starts from the same weights


def test_init_from_zoo_name_and_from_training_checkpoint(tmp_path, one_thread):
    """`--init gfpgan-v1.4` goes through build_model: the cached file (here a tiny one in the official
    layout, with the config's size overrides); then `--init last.pth` starts from a run's EMA weights."""
    arch, entry_name, arch_config = FAMILIES["gfpgan"]
    config = tiny_config(tmp_path / "c.yaml", arch, arch_config)
    source = seeded_network(config)
    cached = hub.cached_path(get_entry(entry_name).files[0])
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_official_file(source, entry_name, cached)
    hq = synthetic_faces(tmp_path / "hq")
    out = tmp_path / "run"
    assert facerestore.cli.main(["train", str(config), "--init", "gfpgan", "--hq", str(hq), "--out", str(out),
                                 "--iters", "2", "--device", "cpu", "--no-progress"]) == 0
    first = facerestore.load(config, weights=out / "last.pth", device="cpu", detector=None).net
    assert not torch.equal(first.state_dict()["final_conv.weight"], source.state_dict()["final_conv.weight"])

    cfg = load_config(config)
    cfg.model.init, cfg.data.hq, cfg.out = str(out / "last.pth"), str(hq), str(tmp_path / "second")
    assert_same_weights(Trainer(cfg, device="cpu", progress=False).net, first)

    cfg.model.init = "gpen-bfr-512"
    with pytest.raises(ConfigError, match="is a gpen model; this config trains a gfpgan network"):
        Trainer(cfg, device="cpu", progress=False)
    cfg.model.init = str(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="no such file, and not a zoo name"):
        Trainer(cfg, device="cpu", progress=False)
    cfg.model.init = str(write_official_file(seeded_network(tiny_config(
        tmp_path / "other.yaml", arch, {**arch_config, "num_style_feat": 32})), entry_name, tmp_path / "other.pth"))
    with pytest.raises(ConfigError, match="does not fit the network of this config"):
        Trainer(cfg, device="cpu", progress=False)


def test_frozen_parts_and_lower_lr_for_pretrained_parts(tmp_path, one_thread):
    """CodeFormer's default freezes its codebook and decoder (the family's TrainingSpec); `model.frozen`
    replaces that list and `model.lr_scale` trains a part at a fraction of the learning rate."""
    arch, _, arch_config = FAMILIES["codeformer"]
    hq = synthetic_faces(tmp_path / "hq", size=32)
    config = tiny_config(tmp_path / "c.yaml", arch, arch_config)
    cfg = load_config(config)
    cfg.data.hq, cfg.out = str(hq), str(tmp_path / "a")
    trainer = Trainer(cfg, device="cpu", progress=False)
    frozen = {n.split(".")[0] for n, p in trainer.net.named_parameters() if not p.requires_grad}
    assert frozen == {"quantize", "generator"}

    cfg = load_config(tiny_config(tmp_path / "d.yaml", arch, arch_config,
                                  model={"frozen": ["quantize"], "lr_scale": {"generator": 0.1}}))
    cfg.data.hq, cfg.out = str(hq), str(tmp_path / "b")
    trainer = Trainer(cfg, device="cpu", progress=False)
    groups = trainer.optimizers["g"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4])
    generator_ids = {id(p) for p in trainer.net.generator.parameters()}
    assert {id(p) for p in groups[1]["params"]} == generator_ids
    decoder_before = copy.deepcopy(trainer.net.generator.state_dict())
    codebook_before = trainer.net.quantize.embedding.weight.clone()
    trainer.fit()
    assert torch.equal(trainer.net.quantize.embedding.weight, codebook_before)  # frozen
    assert not all(torch.equal(v, trainer.net.generator.state_dict()[k]) for k, v in decoder_before.items())

    cfg.model.frozen = ["decoder_typo"]
    cfg.out = str(tmp_path / "c")
    with pytest.raises(ConfigError, match="no submodule 'decoder_typo'"):
        Trainer(cfg, device="cpu", progress=False)


def test_shipped_finetune_configs_name_a_zoo_entry_of_every_restore_family():
    families = set()
    for path in sorted(CONFIGS.glob("finetune_*.yaml")):
        config = load_config(path)
        entry = get_entry(config.model.zoo)
        families.add(entry.family.name)
        assert config.log.val_every > 0 and config.data.val_count > 0, path.name
    assert families >= {"gfpgan", "gpen", "codeformer", "restoreformer", "dfdnet"}


# ---- custom pairs and degradations ---------------------------------------------------------------------
def test_pairs_are_matched_by_name_and_checked(tmp_path):
    arch, _, arch_config = FAMILIES["gpen"]
    config = tiny_config(tmp_path / "c.yaml", arch, arch_config)
    hq = synthetic_faces(tmp_path / "hq", count=3)
    lq = synthetic_faces(tmp_path / "lq", count=3, seed=1)
    (lq / "face2.png").rename(lq / "other.png")

    def run(out: str) -> None:
        train(config, hq=hq, lq=lq, out=tmp_path / out, device="cpu", progress=False)

    with pytest.raises(ConfigError, match=r"(?s)only in .*lq: other; only in .*hq: face2.*matched by file name"):
        run("a")
    (lq / "other.png").rename(lq / "face2.png")
    cv2.imwrite(str(lq / "face1.png"), np.zeros((48, 48, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"(?s)face1: .*face1\.png is 48x48 but .*face1\.png is 64x64"):
        run("b")
    synthetic_faces(lq, count=3, seed=1)
    cv2.imwrite(str(hq / "face0.png"), np.zeros((64, 80, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"(?s)face0\.png: 80x64 is not square.*data\.align: true"):
        run("c")
    synthetic_faces(hq, count=3)
    result = train(config, hq=hq, lq=lq, out=tmp_path / "d", device="cpu", progress=False)
    assert result["iter"] == 1


def test_jpeg_colorcast_preset_and_degradation_spec_file(tmp_path):
    face = cv2.imread(str(synthetic_faces(tmp_path / "f", count=1) / "face0.png"))
    out, params = degrade(face, "jpeg-colorcast", seed=3, return_params=True)
    assert [s["op"] for s in params["steps"]] == ["color_shift", "gaussian_blur", "jpeg"]
    blue, _, red = params["steps"][0]["shift"]
    assert -40 <= blue <= -20 and 10 <= red <= 25 and 10 <= params["steps"][2]["quality"] <= 25
    diff = out.astype(float) - face.astype(float)
    assert diff[..., 0].mean() < -10 and diff[..., 2].mean() > 5  # warm: less blue, more red
    assert np.array_equal(out, degrade(face, "jpeg-colorcast", seed=3))  # seeded

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"preset": "jpeg-colorcast", "ranges": {"jpeg": [40, 50]}}))
    arch, _, arch_config = FAMILIES["gpen"]
    config = tiny_config(tmp_path / "c.yaml", arch, arch_config)
    train(config, hq=synthetic_faces(tmp_path / "hq"), out=tmp_path / "run", device="cpu", progress=False,
          degradation=spec)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["degradation"] == {"preset": "jpeg-colorcast", "ranges": {"jpeg": [40, 50]}}
    assert get_preset("jpeg-colorcast").ranges["jpeg"] == (10, 25)
    with pytest.raises(ConfigError, match="unknown degradation preset"):
        train(config, hq=tmp_path / "hq", out=tmp_path / "x", degradation="jpeg-colourcast")


# ---- validation ------------------------------------------------------------------------------------------
def test_validation_reports_input_and_iteration_zero_and_keeps_the_best(tmp_path, one_thread):
    arch, _, arch_config = FAMILIES["gpen"]
    config = tiny_config(tmp_path / "c.yaml", arch, arch_config,
                         log={"val_every": 2, "sample_every": 2, "sample_count": 1},
                         train={"iters": 4, "optim_g": {"lr": 5e-3}})
    out = tmp_path / "run"
    train(config, hq=synthetic_faces(tmp_path / "hq", count=4), out=out, device="cpu", progress=False)
    rows = read_csv(out / "val.csv")
    assert [r["iter"] for r in rows] == [0, 2, 4]
    assert set(rows[0]) == {"iter", "psnr", "psnr_input", "psnr_init", "ssim", "ssim_input", "ssim_init"}
    for row in rows:  # iteration 0's model and the input are the same reference at every validation
        assert row["psnr_init"] == rows[0]["psnr"] and row["psnr_input"] == rows[0]["psnr_input"]
    best = hub.read_checkpoint(out / "best.pth")
    assert best["best"]["value"] == pytest.approx(max(r["psnr"] for r in rows), rel=1e-5)  # CSV: 6 digits
    assert best["iter"] == max(rows, key=lambda r: r["psnr"])["iter"]
    grid = cv2.imread(str(out / "samples" / "iter_0000004.png"))
    assert grid.shape[1] == 4 * 64  # input | iteration 0 | now | ground truth
