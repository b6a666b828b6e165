"""CodeFormer and RestoreFormer(++) through the zoo: official checkpoint layouts through load(weights=FILE),
fidelity as CodeFormer's w, the heads' task methods, and a whole photo with the real detector."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import facerestore
from conftest import shared_path
from facerestore.registry import get_entry


def tiny(name: str) -> dict:
    return dict(get_entry(name).family.tiny)


def test_codeformer_release_layout_loads_through_load(tmp_path):
    torch.manual_seed(1)
    net = get_entry("codeformer").build(**tiny("codeformer"))
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    restorer = facerestore.load("codeformer", weights=path, device="cpu", detector=None, **tiny("codeformer"))
    for key, value in net.state_dict().items():
        assert torch.equal(restorer.net.state_dict()[key], value), key


def test_restoreformer_plusplus_training_checkpoint_layout(tmp_path):
    """RestoreFormer++.ckpt: weights under state_dict, network keys prefixed vqvae., plus loss and
    discriminator keys that are not part of the network (ignored); a missing network key is an error."""
    torch.manual_seed(2)
    net = get_entry("restoreformer-plusplus").build(**tiny("restoreformer-plusplus"))
    state = {f"vqvae.{k}": v for k, v in net.state_dict().items()}
    state["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 3, 3)
    state["loss.logvar"] = torch.zeros(())
    path = tmp_path / "RestoreFormer++.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 10}, path)
    restorer = facerestore.load("restoreformer++", weights=path, device="cpu", detector=None,
                                **tiny("restoreformer-plusplus"))
    for key, value in net.state_dict().items():
        assert torch.equal(restorer.net.state_dict()[key], value), key
    del state[next(iter(state))]  # a network key missing: refused, naming the key
    torch.save({"state_dict": state}, path)
    with pytest.raises(facerestore.hub.WeightsError, match="Missing key"):
        facerestore.load("restoreformer++", weights=path, device="cpu", detector=None, **tiny("restoreformer-plusplus"))


def test_codeformer_fidelity_is_w():
    restorer = facerestore.load("codeformer", pretrained=False, device="cpu", detector=None, **tiny("codeformer"))
    face = cv2.resize(cv2.imread(str(shared_path("data/real/cropped/cf_0143.png"))), (32, 32))
    default = restorer.restore(face, aligned=True).image
    half = restorer.restore(face, aligned=True, fidelity=0.5).image
    zero = restorer.restore(face, aligned=True, fidelity=0.0).image
    one = restorer.restore(face, aligned=True, fidelity=1.0).image
    assert np.array_equal(default, half)  # None = the official w = 0.5
    assert np.abs(zero.astype(int) - one).max() > 0  # w reaches the network (feature fusion), not a pixel blend
    x = restorer.to_tensor(face[None])
    with torch.inference_mode():
        expected = restorer.to_image(restorer.net(x, w=1.0, adain=True)[0])[0]
    assert np.array_equal(one, expected)


def test_codeformer_heads_task_methods():
    color = facerestore.load("codeformer-colorization", pretrained=False, device="cpu", detector=None,
                             **tiny("codeformer-colorization"))
    face = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    assert color.colorize(face).shape == face.shape
    inpaint = facerestore.load("codeformer-inpainting", pretrained=False, device="cpu", detector=None,
                               **tiny("codeformer-inpainting"))
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:20] = 1
    out = inpaint.inpaint(face, mask)
    assert np.array_equal(out[mask == 0], face[mask == 0])  # only the holes change
    with pytest.raises(RuntimeError, match="codeformer-colorization"):
        inpaint.colorize(face)


def test_codeformer_whole_photo_with_the_real_detector():
    photo = cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))
    restorer = facerestore.load("codeformer", pretrained=False, device="cpu", detector="retinaface-mobile0.25-1mb",
                                detector_weights=shared_path("weights/retinaface/mobilenet0.25_Final.pth"),
                                **tiny("codeformer"))
    result = restorer.restore(photo, paste="box")
    assert result.shape == photo.shape and len(result.faces) == 2
    for face in result.faces:
        x1, y1, x2, y2 = face.box.astype(int)
        assert np.abs(result.image[y1:y2, x1:x2].astype(int) - photo[y1:y2, x1:x2]).mean() > 5
    assert np.array_equal(result.image[:5, :5], photo[:5, :5])  # far from the faces: the input's pixels


@pytest.mark.parametrize("heads", [1, 4])
def test_attention_official_sequence_is_the_same_function(heads):
    """official_ops() (the latency baseline) runs the official bmm-softmax-bmm attention; the fast path
    is scaled_dot_product_attention. float64: they agree to rounding."""
    from facerestore.archs.ops import official_ops
    from facerestore.archs.vqgan import spatial_attention

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 16, 5, 6, dtype=torch.float64, generator=gen) for _ in range(3))
    fast = spatial_attention(q, k, v, heads)
    with official_ops():
        official = spatial_attention(q, k, v, heads)
    torch.testing.assert_close(official, fast, rtol=0, atol=1e-12)
