"""DFDNet generator (facerestore.archs.dfdnet.UNetDictFace) against the official implementation.

The golden tests rebuild the golden random-weight state dict (240 M parameters) from its recipe
once per module (~15 s, ~3 GB peak memory) and run four 512x512 forwards on the CPU: this module
takes about 1-2 minutes.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import shared_path

from facerestore.archs.dfdnet import (
    PARTS,
    SCALES,
    SpectralNormConv2d,
    UNetDictFace,
    dictionary_key,
    dictionary_shape,
)

CASES = (0, 1, 2)


def random_dictionaries(k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {dictionary_key(p, s): rng.standard_normal((k, *dictionary_shape(p, s))).astype(np.float32)
            for p in PARTS for s in SCALES}


def golden_state_dict() -> tuple[dict[str, torch.Tensor], list[str]]:
    """The golden state dict from dfdnet_weights_recipe.json + dfdnet_sn_buffers.npz, and the keys
    whose sha256 does not match the recipe."""
    recipe = json.loads(shared_path("golden/dfdnet/dfdnet_weights_recipe.json").read_text())
    sn_buffers = np.load(shared_path("golden/dfdnet/dfdnet_sn_buffers.npz"))
    blur = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16
    arrays, mismatched = {}, []
    for row in recipe["keys"]:
        key, shape, source = row["key"], row["shape"], row["source"]
        if source == "recipe":
            z = np.random.RandomState(row["seed"]).standard_normal(int(np.prod(shape))).reshape(shape)
            offset = np.asarray(row.get("offset", 0.0), dtype=np.float64)
            if offset.ndim:  # per-channel ImageNet mean/std of RGB_mean/RGB_std (1,3,1,1)
                offset = offset.reshape(1, -1, 1, 1)
            value = (row["scale"] * z + offset).astype(np.float32)
        elif source == "alias":
            value = arrays[row["alias_of"]]
        elif source.startswith("explicit"):
            value = sn_buffers[key]
        else:  # official constant: the blur kernel
            value = np.ascontiguousarray(np.broadcast_to(blur, shape))
        if hashlib.sha256(np.ascontiguousarray(value, dtype="<f4").tobytes()).hexdigest() != row["sha256"]:
            mismatched.append(key)
        arrays[key] = value
    return {k: torch.from_numpy(v) for k, v in arrays.items()}, mismatched


@pytest.fixture(scope="module")
def golden():
    state, mismatched = golden_state_dict()
    net = UNetDictFace()
    net.load_state_dict(state, strict=True)
    net.load_dictionaries(shared_path("golden/dfdnet/dfdnet_dictionaries_K4.npz"))
    yield {"state": state, "mismatched": mismatched, "net": net.eval()}
    del net, state


def load_case(index: int) -> dict[str, np.ndarray]:
    with np.load(shared_path(f"golden/dfdnet/dfdnet_case{index}.npz")) as data:
        return {k: data[k] for k in data.files}


def official_part_locations(case: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    """As the official test passes them: 4-tuple of int64 (1,4) tensors."""
    return tuple(torch.from_numpy(case["part_locations"][i:i + 1]) for i in range(4))


# ---------------------------------------------------------------- layout


def test_state_dict_matches_the_manifest(golden):
    manifest = json.loads(shared_path("golden/manifests/dfdnet_unetdictface.json").read_text())
    net = golden["net"]
    layout = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in net.state_dict().items()]
    assert layout == manifest["state_dict"]  # ordered keys, shapes, dtypes
    assert sum(p.numel() for p in net.parameters()) == manifest["num_parameters"]
    persistent_buffers = [name for name, _ in net.named_buffers() if name in net.state_dict()]
    assert persistent_buffers == manifest["buffers"]
    # aliases are the same tensors, not copies
    assert getattr(net.VggExtract.features[3], "34").weight is net.VggExtract.model.features[34].weight
    assert "dictionary_left_eye_256" not in net.state_dict()  # dictionaries are not weights


def test_golden_weights_rebuild_exactly(golden):
    assert golden["mismatched"] == []
    assert len(golden["state"]) == 386


# ---------------------------------------------------------------- golden forward


@pytest.mark.parametrize("index", CASES)
def test_eval_forward_matches_official(golden, index):
    case, net = load_case(index), golden["net"]
    x = torch.from_numpy(case["input_A"])
    with torch.inference_mode():
        features = net.VggExtract(x)
        updated, matches = net.swap_components(features, [case["part_locations"].tolist()])
        out = net.decode(features, updated)
    np.testing.assert_allclose(features[3].numpy(), case["vgg_feat_32"], rtol=0, atol=1e-4)
    for i, scale in enumerate(SCALES):
        for j, part in enumerate(PARTS):
            match = matches[dictionary_key(part, scale)]
            assert int(match["index"][0]) == case["selected_index"][i, j], (part, scale)
            reference = case[f"scores_{scale}_{part}"]
            error = np.abs(match["scores"][0].numpy() - reference).max() / np.abs(reference).max()
            assert error < 1e-5, (part, scale, error)
            x1, y1, x2, y2 = (v // (512 // scale) for v in case["part_locations"][j])
            if part == "mouth":  # written last, so its box holds exactly its own update
                np.testing.assert_allclose(updated[i][:, :, y1:y2, x1:x2].numpy(),
                                           case[f"update_feat_{scale}_{part}_crop"], rtol=0, atol=1e-4)
    assert np.abs(out.numpy() - case["out_eval"]).max() <= 1e-5


def test_train_mode_first_call_matches_the_official_test_script(golden):
    """The official script never calls eval(): each forward does one power iteration per SN conv."""
    case, net = load_case(0), golden["net"]
    net.load_state_dict(golden["state"])
    u_before = net.le_256[0].weight_u.clone()
    try:
        net.train()
        with torch.no_grad():
            first = net(torch.from_numpy(case["input_A"]), official_part_locations(case))
        assert not torch.equal(net.le_256[0].weight_u, u_before)  # u, v updated in place
        assert np.abs(first.numpy() - case["out_test_script"]).max() <= 1e-5
        image = ((first.clamp(-1, 1) + 1) / 2 * 255)[0].permute(1, 2, 0).numpy().astype(np.uint8)  # truncation
        assert np.abs(image.astype(int) - case["out_test_script_u8"]).max() <= 1
    finally:
        net.eval()
        net.load_state_dict(golden["state"])  # back to the stored u, v for the other tests


# ---------------------------------------------------------------- cheap checks (random weights)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNetDictFace().eval()


def test_constructor_reads_nothing_and_forward_needs_dictionaries(net):
    assert not net.has_dictionaries
    with pytest.raises(RuntimeError, match="load_dictionaries"):
        with torch.inference_mode():
            net(torch.zeros(1, 3, 64, 64), torch.zeros(1, 4, 4, dtype=torch.int64))


def test_load_dictionaries_reads_the_official_layout(tmp_path):
    arrays = random_dictionaries(k=3)
    for key, value in arrays.items():  # flattened rows, as a K-means tool writes them: the loader reshapes
        np.save(tmp_path / f"{key}_center.npy", value.reshape(3, -1))
    net = UNetDictFace(dictionary_path=tmp_path)
    assert net.has_dictionaries
    assert set(net.dictionary_sizes().values()) == {3}
    atoms = torch.from_numpy(arrays["mouth_64"])
    stored = net.dictionary_mouth_64.view(3, *dictionary_shape("mouth", 64))
    mean, var = atoms.flatten(2).mean(2), atoms.flatten(2).var(2)  # unbiased, as the official AdaIN
    expected = (atoms - mean[..., None, None]) / (var[..., None, None] + 1e-5).sqrt()
    torch.testing.assert_close(stored, expected, rtol=0, atol=1e-6)

    (tmp_path / "nose_32_center.npy").unlink()
    with pytest.raises(FileNotFoundError, match="nose_32_center.npy"):
        net.load_dictionaries(tmp_path)
    (tmp_path / "nose_32_center.npy").write_text("<html>not an array</html>")
    with pytest.raises(ValueError, match="nose_32_center.npy"):
        net.load_dictionaries(tmp_path)


def test_set_dictionaries_checks_shapes(net):
    arrays = random_dictionaries(k=2)
    arrays["nose_128"] = arrays["nose_128"][:, :, :5, :5]
    with pytest.raises(ValueError, match="nose_128"):
        net.set_dictionaries(arrays)
    del arrays["nose_128"]
    with pytest.raises(ValueError, match="nose_128"):
        net.set_dictionaries(arrays)


def test_each_face_of_a_batch_uses_its_own_boxes(net):
    """swap_components on a batch of two = on each face alone (the official code handles one face)."""
    net.set_dictionaries(random_dictionaries(k=5, seed=1))
    generator = torch.Generator().manual_seed(3)
    sizes = ((128, 256), (256, 128), (512, 64), (512, 32))
    features = [torch.randn(2, c, s, s, generator=generator).relu() for c, s in sizes]
    boxes = [[[152, 190, 233, 271], [279, 190, 360, 271], [234, 306, 279, 351], [203, 339, 311, 447]],
             [[120, 160, 200, 240], [300, 170, 380, 250], [220, 280, 280, 340], [180, 330, 330, 460]]]
    with torch.inference_mode():
        both, matches = net.swap_components(features, boxes)
        for b in range(2):
            alone, alone_matches = net.swap_components([f[b:b + 1] for f in features], boxes[b:b + 1])
            for updated_both, updated_alone in zip(both, alone):
                torch.testing.assert_close(updated_both[b:b + 1], updated_alone, rtol=1e-5, atol=1e-5)
            for key, match in matches.items():
                assert int(match["index"][b]) == int(alone_matches[key]["index"][0])
    # the boxes matter: features outside every box are unchanged, inside they are not
    assert torch.equal(both[0][1, :, :60, :], features[0][1, :, :60, :])  # boxes start at y = 160 // 2
    assert not torch.equal(both[0][1, :, 80:100, 60:100], features[0][1, :, 80:100, 60:100])


def test_empty_box_is_a_clear_error(net):
    net.set_dictionaries(random_dictionaries(k=2))
    features = [torch.rand(1, c, s, s) for c, s in ((128, 256), (256, 128), (512, 64), (512, 32))]
    boxes = [[[152, 190, 233, 271], [279, 190, 360, 271], [250, 306, 255, 351], [203, 339, 311, 447]]]
    with pytest.raises(ValueError, match="nose box"):
        net.swap_components(features, boxes)


def test_vgg_features_follow_the_official_in_place_relu(net):
    with torch.inference_mode():
        features = net.VggExtract(torch.rand(1, 3, 64, 64) * 2 - 1)
    # inputs narrower than 224 are resized to 224 first, as the official preprocess does
    assert [tuple(f.shape[1:]) for f in features] == [(128, 112, 112), (256, 56, 56), (512, 28, 28), (512, 14, 14)]
    assert all(bool((f >= 0).all()) for f in features[:3])  # relu2_2, relu3_4, relu4_4
    assert bool((features[3] < 0).any())  # conv5_4 before its ReLU


def test_spectral_norm_matches_torch_in_train_and_eval():
    torch.manual_seed(1)
    reference = torch.nn.utils.spectral_norm(torch.nn.Conv2d(6, 5, 3, padding=2, dilation=2))
    ours = SpectralNormConv2d(6, 5, padding=2, dilation=2)
    ours.load_state_dict(reference.state_dict())
    assert list(ours.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        for _ in range(2):  # one power iteration per train-mode call
            torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
        torch.testing.assert_close(ours.weight_u, reference.weight_u, rtol=0, atol=0)
        ours.eval(), reference.eval()
        u = ours.weight_u.clone()
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
        assert torch.equal(ours.weight_u, u)  # eval: no power iteration
