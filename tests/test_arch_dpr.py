"""DPR networks: exact checkpoint layout (aliases, dead keys), the released weights against the
official outputs, and the forward's structural facts on small configs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import shared_path
from facerestore.archs.dpr import HourglassNet, HourglassNet1024, HourglassNet_1024
from facerestore.hub import read_checkpoint

CONFIGS = {512: (HourglassNet, "trained_model_03.t7"), 1024: (HourglassNet1024, "trained_model_1024_03.t7")}
# At 1024 the network is checked here on 5 lights; lights 0 and 3 go through the full pipeline in
# test_relight.py (keeps the slow 1024 forwards to one per light).
LIGHTS = {512: range(7), 1024: (1, 2, 4, 5, 6)}


def manifest(size: int) -> dict:
    return json.loads(shared_path(f"golden/manifests/dpr_{size}.json").read_text())


def layout(net: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in net.state_dict().items()]


@pytest.fixture(scope="module")
def released():
    """Both released networks, loaded once for the module (eval mode, CPU, float32)."""
    nets = {}
    for size, (cls, filename) in CONFIGS.items():
        net = cls().eval()
        # read_checkpoint = torch.load(weights_only=True): the legacy .t7 files are plain tensors.
        net.load_state_dict(read_checkpoint(shared_path(f"weights/dpr/{filename}")), strict=True)
        nets[size] = net
    return nets


def random_eval_net(cls=HourglassNet, **kwargs) -> torch.nn.Module:
    """A small net with non-trivial BN statistics, in eval mode."""
    net = cls(**kwargs)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(0.0, 0.3)  # positive: keeps small random nets alive
    return net.eval()


@pytest.mark.parametrize("size", [512, 1024])
def test_state_dict_layout_is_the_official_one(size):
    cls, _ = CONFIGS[size]
    expected = manifest(size)
    assert layout(cls()) == expected["state_dict"]  # keys, order, shapes and dtypes
    assert len(expected["state_dict"]) == {512: 250, 1024: 280}[size]


@pytest.mark.parametrize("size", [512, 1024])
def test_alias_groups_are_one_tensor(size):
    cls, _ = CONFIGS[size]
    state = cls().state_dict(keep_vars=True)
    groups = manifest(size)["alias_groups"]
    assert len(groups) == 63
    for group in groups:
        assert len({state[key].data_ptr() for key in group}) == 1, group
    # unique parameters as counted by the manifest (aliases counted once)
    unique = {p.data_ptr(): p.numel() for p in cls().parameters()}
    assert sum(unique.values()) == manifest(size)["num_parameters"]


def test_official_class_name_is_available():
    assert HourglassNet_1024 is HourglassNet1024


@pytest.mark.parametrize("size", [512, 1024])
def test_released_network_reproduces_official_outputs(released, size):
    net = released[size]
    inputs = np.load(shared_path(f"golden/dpr/dpr{size}_input.npz"))
    x = torch.from_numpy(inputs["input_L"])
    for i in LIGHTS[size]:
        case = np.load(shared_path(f"golden/dpr/dpr{size}_light_{i:02d}.npz"))
        with torch.inference_mode():
            out = net(x, torch.from_numpy(case["sh_input"]), 0)
        if size == 512:
            assert len(out) == 2
            out_img, out_light = out
        else:
            assert len(out) == 4 and out[3] is None
            out_img, out_feat, out_light = out[:3]
            assert out_feat.shape == (1, 128, 32, 32)
            assert np.abs(out_feat.numpy() - case["out_feat"]).max() <= 1e-5
        assert np.abs(out_img.numpy() - case["out_img"]).max() <= 1e-5, i
        assert np.abs(out_light.numpy() - case["out_light"]).max() <= 1e-5, i


@pytest.mark.parametrize("size", [512, 1024])
def test_predict_light_is_the_forward_light(released, size):
    x = torch.from_numpy(np.load(shared_path(f"golden/dpr/dpr{size}_input.npz"))["input_L"])
    expected = np.load(shared_path(f"golden/dpr/dpr{size}_light_00.npz"))["out_light"]
    with torch.inference_mode():
        light = released[size].predict_light(x)
    assert light.shape == (1, 9, 1, 1)
    assert np.abs(light.numpy() - expected).max() <= 1e-5


def test_skip_count_drops_the_outer_skip_branches():
    net = random_eval_net(baseFilter=4)
    x, sh = torch.rand(1, 1, 32, 32), torch.randn(1, 9, 1, 1)
    with torch.no_grad():
        base0, base1 = net(x, sh, 0)[0], net(x, sh, 1)[0]
        net.HG3.upper.conv1.weight.add_(0.5)  # outermost skip branch
        assert not torch.allclose(net(x, sh, 0)[0], base0)
        assert torch.equal(net(x, sh, 1)[0], base1)  # skip_count=1: HG3's upper branch is not used
        net.HG2.upper.conv1.weight.add_(0.5)
        assert not torch.allclose(net(x, sh, 1)[0], base1)


def test_dead_keys_do_not_change_the_output():
    net = random_eval_net(HourglassNet1024, model_512=random_eval_net(baseFilter=4), baseFilter=4)
    x, sh = torch.rand(1, 1, 64, 64), torch.randn(1, 9, 1, 1)
    with torch.no_grad():
        before = net(x, sh)
        for name in ("pre_conv.weight", "conv_1.weight", "output.weight", "HG3.upper.shortcuts.weight",
                     "HG0.upper.shortcuts.weight", "HG3.low1.shortcuts.weight"):
            net.model_512.get_parameter(name).add_(1.0)
        after = net(x, sh)
        assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
        net.model_512.get_parameter("HG0.low1.shortcuts.weight").add_(1.0)  # 64->155: a real shortcut
        assert not torch.allclose(net(x, sh)[0], before[0])


def test_target_light_drives_output_but_not_the_estimate():
    net = random_eval_net(baseFilter=4)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        img_a, light_a = net(x, torch.randn(1, 9, 1, 1))
        img_b, light_b = net(x, torch.randn(1, 9, 1, 1))
    assert img_a.shape == (2, 1, 32, 32) and light_a.shape == (2, 9, 1, 1)
    assert torch.equal(light_a, light_b)  # the source light is predicted before the target is injected
    assert not torch.allclose(img_a, img_b)
    assert float(img_a.min()) > 0 and float(img_a.max()) < 1  # sigmoid output


def test_one_light_for_a_batch_equals_per_sample_lights():
    net = random_eval_net(baseFilter=4)
    x, sh = torch.rand(3, 1, 32, 32), torch.randn(1, 9, 1, 1)
    with torch.no_grad():
        batched = net(x, sh)[0]
        single = torch.cat([net(x[i:i + 1], sh)[0] for i in range(3)])
        per_sample = net(x, sh.expand(3, -1, -1, -1))[0]
        flat = net(x, sh.reshape(9))[0]
    for other in (single, per_sample, flat):
        torch.testing.assert_close(batched, other, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="target SH"):
        net(x, torch.zeros(1, 8, 1, 1))


def test_lighting_net_replaces_the_first_27_channels():
    net = random_eval_net(baseFilter=4)
    feat, sh = torch.rand(2, 59, 2, 2), torch.randn(2, 9, 1, 1)
    with torch.no_grad():
        out, face, source = net.light(feat, sh)
    assert torch.equal(out[:, 27:], feat[:, 27:]) and torch.equal(face, feat[:, 27:])
    assert torch.equal(out[:, :27, :1, :1].expand(-1, -1, 2, 2), out[:, :27])  # constant over space
    assert source.shape == (2, 9, 1, 1)
