"""GFPGANv1 / GFPGANv1Clean against the official implementation: state-dict layout of the released
configurations (manifests), every golden forward case (official outputs of seeded random weights),
noise handling (injected, seeded, stored buffers), and the zoo entries."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import shared_path
from facerestore.archs.gfpgan import GFPGANv1, GFPGANv1Clean
from facerestore.registry import get_entry

CLASSES = {"GFPGANv1": GFPGANv1, "GFPGANv1Clean": GFPGANv1Clean}
CASES = ["gfpgan_clean_sfthalf", "gfpgan_clean_sftfull", "gfpgan_clean_inference_call", "gfpgan_clean_random_noise",
         "gfpgan_v1_sfthalf", "gfpgan_v1_sftfull", "gfpgan_v1_random_noise"]
RANDOM_NOISE_CASES = ["gfpgan_clean_random_noise", "gfpgan_v1_random_noise"]
TOL = dict(rtol=0, atol=1e-4)  # golden/README.md: official float32 noise ~1e-5, real mistakes >= 1e-3


def layout(net: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in net.state_dict().items()]


def load_case(name: str) -> dict:
    return torch.load(shared_path(f"golden/gfpgan/{name}.pt"), map_location="cpu", weights_only=True)


def build(case: dict, device: str = "cpu") -> torch.nn.Module:
    net = CLASSES[case["official_class"]](**case["config"])
    net.load_state_dict(case["state_dict"], strict=True)
    return net.to(device).eval()


def run(net, case, device="cpu", inject_noise=True):
    kwargs = dict(case["forward_kwargs"])
    if inject_noise and case["random_noise"] is not None:
        kwargs["noise"] = [n.to(device) for n in case["random_noise"]]
    with torch.no_grad():
        return net(case["input"].to(device), **kwargs)


def assert_matches_official(out, case):
    image, out_rgbs = out
    torch.testing.assert_close(image.cpu(), case["output"]["image"], **TOL)
    assert len(out_rgbs) == len(case["output"]["out_rgbs"])
    for actual, expected in zip(out_rgbs, case["output"]["out_rgbs"]):
        torch.testing.assert_close(actual.cpu(), expected, **TOL)


@pytest.mark.parametrize("manifest", ["gfpgan_v1", "gfpgan_clean_c2"])
def test_state_dict_layout_matches_the_released_checkpoints(manifest):
    m = json.loads(shared_path(f"golden/manifests/{manifest}.json").read_text())
    with torch.device("meta"):
        net = CLASSES[m["official_class"]](**m["constructor_kwargs"])
    assert layout(net) == m["state_dict"]  # ordered [key, shape, dtype], 285 entries
    persistent_buffers = {name for name, _ in net.named_buffers() if name in net.state_dict()}
    assert persistent_buffers == set(m["buffers"])
    assert sum(p.numel() for p in net.parameters()) == m["num_parameters"]


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_official(name):
    case = load_case(name)
    assert_matches_official(run(build(case), case), case)


@pytest.mark.parametrize("name", ["gfpgan_clean_sfthalf", "gfpgan_v1_sftfull", "gfpgan_v1_random_noise"])
def test_single_samples_match_the_batch(name):
    """A batch of one takes the weight-modulation path, larger batches the activation-modulation path."""
    case = load_case(name)
    net = build(case)
    for i in range(case["input"].shape[0]):
        one = {**case, "input": case["input"][i:i + 1]}
        if case["random_noise"] is not None:
            one["random_noise"] = [n[i:i + 1] for n in case["random_noise"]]
        image, _ = run(net, one)
        torch.testing.assert_close(image, case["output"]["image"][i:i + 1], **TOL)


@pytest.mark.parametrize("name", RANDOM_NOISE_CASES)
def test_official_call_seeded_like_the_official_run_reproduces_it(name):
    """Fresh noise is drawn from the global torch RNG in the official order, so the same seed gives the
    official output without injecting anything."""
    case = load_case(name)
    net = build(case)
    torch.manual_seed(case["rng_seed"])
    assert_matches_official(run(net, case, inject_noise=False), case)


def test_noise_shapes_describe_the_official_draws():
    case = load_case("gfpgan_v1_random_noise")
    decoder = build(case).stylegan_decoder
    assert decoder.noise_shapes(2) == [tuple(n.shape) for n in case["random_noise"]]
    torch.manual_seed(case["rng_seed"])  # the official draws are plain randn calls in this order
    for shape, drawn in zip(decoder.noise_shapes(2), case["random_noise"]):
        torch.testing.assert_close(torch.randn(shape), drawn, rtol=0, atol=0)


def test_fresh_noise_is_reproducible_by_seed_and_differs_between_seeds():
    case = load_case("gfpgan_clean_random_noise")
    net = build(case)
    outputs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outputs.append(run(net, case, inject_noise=False)[0])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    assert (outputs[0] - outputs[2]).abs().max() > 0.1


def test_stored_noise_buffers_use_no_randomness():
    case = load_case("gfpgan_v1_sfthalf")  # randomize_noise=False
    net = build(case)
    state = torch.get_rng_state()
    first = run(net, case)[0]
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(run(net, case)[0], first, rtol=0, atol=0)


def test_weight_keyword_is_swallowed_and_noise_length_is_checked():
    case = load_case("gfpgan_clean_inference_call")  # forward_kwargs include weight=0.5
    net = build(case)
    kwargs = {k: v for k, v in case["forward_kwargs"].items() if k != "weight"}
    with torch.no_grad():
        torch.testing.assert_close(net(case["input"], **kwargs)[0], case["output"]["image"], **TOL)
        with pytest.raises(ValueError, match="noise must hold 9"):
            net(case["input"], noise=[None] * 3)


@pytest.mark.parametrize("cls", [GFPGANv1, GFPGANv1Clean])
@pytest.mark.parametrize("input_is_latent,different_w", [(True, True), (False, False)])
def test_training_backward_pass(cls, input_is_latent, different_w):
    """In-place operations in the forward must not break autograd; every used parameter gets a gradient."""
    net = cls(32, num_style_feat=16, channel_multiplier=1, num_mlp=2, input_is_latent=input_is_latent,
              different_w=different_w, narrow=1 / 16, sft_half=True, fix_decoder=False)
    image, out_rgbs = net(torch.randn(2, 3, 32, 32), randomize_noise=False)
    (image.square().mean() + sum(rgb.mean() for rgb in out_rgbs)).backward()
    for name, p in net.named_parameters():
        if input_is_latent and ".style_mlp." in name:
            assert p.grad is None  # the mapping network is bypassed
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bfloat16_autocast_runs_close_to_float32():
    case = load_case("gfpgan_clean_sfthalf")
    net = build(case)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        image, _ = net(case["input"], **case["forward_kwargs"])
    expected = case["output"]["image"]
    assert (image.float() - expected).square().mean().sqrt() < 0.05 * expected.square().mean().sqrt()


def test_decoder_load_path_and_fix_decoder(tmp_path):
    decoder = GFPGANv1Clean(32, 16, 1, num_mlp=2, narrow=1 / 16).stylegan_decoder
    torch.save({"params_ema": decoder.state_dict()}, tmp_path / "decoder.pth")
    net = GFPGANv1Clean(32, 16, 1, decoder_load_path=str(tmp_path / "decoder.pth"), fix_decoder=True, num_mlp=2,
                        narrow=1 / 16)
    for key, value in decoder.state_dict().items():
        assert torch.equal(net.stylegan_decoder.state_dict()[key], value)
    assert not any(p.requires_grad for p in net.stylegan_decoder.parameters())
    assert all(p.requires_grad for p in net.final_linear.parameters())


def test_non_power_of_two_size_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        GFPGANv1Clean(500)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["gfpgan_clean_sfthalf", "gfpgan_v1_sfthalf", "gfpgan_v1_random_noise"])
def test_cuda_forward_matches_official(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    case = load_case(name)
    assert_matches_official(run(build(case, "cuda"), case, "cuda"), case)


def test_zoo_entries_match_the_official_configs():
    for name, manifest in [("gfpgan-v1", "gfpgan_v1"), ("gfpgan-v1.2", "gfpgan_clean_c2"),
                           ("gfpgan-v1.3", "gfpgan_clean_c2"), ("gfpgan-v1.4", "gfpgan_clean_c2")]:
        m = json.loads(shared_path(f"golden/manifests/{manifest}.json").read_text())
        entry = get_entry(name)
        assert dict(entry.arch_config) == m["constructor_kwargs"]
        assert entry.arch is CLASSES[m["official_class"]]
        released = {c["file"]: c["url"] for c in m["released_checkpoints"]}
        (wf,) = entry.files
        assert released[wf.filename] == wf.url and wf.state_dict_key == m["checkpoint_wrapper_key"]
        assert entry.face_size == m["native_input_size"] and entry.forward_kwargs == {"return_rgb": False}
    assert get_entry("gfpgan") is get_entry("gfpgan-v1.4")
