"""Unit tests of facerestore.losses: known values and properties (zero on identical inputs,
gradients reach what they should, symmetry). Loss networks use random weights."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from facerestore import hub
from facerestore.losses import (
    GANLoss, IdentityLoss, PerceptualLoss, PixelLoss, ResNetArcFace, VGG19Features, component_style_loss,
    crop_components, feature_consistency_loss, feature_matching_loss, gan_loss, gradient_l1, gram_matrix,
    gray_resize, image_pyramid, light_loss, pixel_loss, pyramid_loss, r1_penalty,
)
from facerestore.losses.perceptual import VGG19_FILE
from facerestore.losses.weights import loss_weights_path


# ---- pixel ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, expected", [("l1", 1.25), ("l2", 2.125), ("smooth_l1", 0.8125)])
def test_pixel_loss_known_values(kind, expected):
    pred, target = torch.tensor([1.5, 3.0]), torch.tensor([1.0, 1.0])
    assert pixel_loss(pred, target, kind).item() == pytest.approx(expected)
    assert PixelLoss(kind, loss_weight=0.5, reduction="sum")(pred, target).item() == pytest.approx(expected)
    assert pixel_loss(pred, target, kind, reduction="none").shape == (2,)


def test_pixel_loss_rejects_unknown_kind_and_reduction():
    with pytest.raises(ValueError, match="l1"):
        PixelLoss("l3")
    with pytest.raises(ValueError, match="reduction"):
        PixelLoss("l1", reduction="avg")


# ---- perceptual / style --------------------------------------------------------------------------
def test_gram_matrix_known_value():
    x = torch.ones(1, 2, 2, 2)
    x[0, 1] = 2.0
    # entries: sum over 4 pixels of a_i * a_j / (C*H*W = 8)
    expected = torch.tensor([[[4.0, 8.0], [8.0, 16.0]]]) / 8
    assert torch.allclose(gram_matrix(x), expected)


def test_vgg_features_are_named_layers_with_pre_relu_convs():
    vgg = VGG19Features(["conv1_1", "relu1_1", "conv2_2"], pretrained=False)
    assert len(vgg.body) == 8  # conv1_1 .. conv2_2
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    feats = vgg(x)
    assert set(feats) == {"conv1_1", "relu1_1", "conv2_2"}
    assert feats["conv1_1"].min() < 0  # not overwritten by an in-place ReLU
    assert torch.equal(feats["relu1_1"], feats["conv1_1"].clamp_min(0))
    assert feats["conv2_2"].shape == (1, 128, 8, 8)
    # range_norm + ImageNet normalisation happen before the first conv
    manual = vgg.body[0](((x + 1) / 2 - vgg.mean) / vgg.std)
    assert torch.allclose(feats["conv1_1"], manual, atol=1e-6)
    assert not any(p.requires_grad for p in vgg.parameters())


def test_perceptual_and_style_losses_zero_on_identical_and_grad_to_input():
    loss = PerceptualLoss({"conv1_2": 0.1, "conv2_2": 1.0}, perceptual_weight=1.0, style_weight=50.0, pretrained=False)
    gt = torch.rand(2, 3, 16, 16) * 2 - 1
    perceptual, style = loss(gt.clone(), gt)
    assert perceptual.item() == 0 and style.item() == 0
    x = (gt + 0.3 * torch.randn_like(gt)).requires_grad_(True)
    perceptual, style = loss(x, gt)
    assert perceptual.item() > 0 and style.item() > 0
    (perceptual + style).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert PerceptualLoss({"conv1_1": 1.0}, style_weight=0.0, pretrained=False)(x, gt)[1] is None


def test_perceptual_weighting_is_linear_in_layer_weights():
    gt = torch.rand(1, 3, 16, 16) * 2 - 1
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    one = PerceptualLoss({"conv1_2": 1.0}, pretrained=False)
    torch.manual_seed(0)
    three = PerceptualLoss({"conv1_2": 3.0}, perceptual_weight=2.0, pretrained=False)
    three.vgg.load_state_dict(one.vgg.state_dict())
    assert three(x, gt)[0].item() == pytest.approx(6 * one(x, gt)[0].item(), rel=1e-5)


def test_vgg_weights_load_from_facerestore_home(tmp_path, monkeypatch):
    # Only the kept layers are read, so a file with the first conv is enough for conv1_1.
    conv = nn.Conv2d(3, 64, 3, padding=1)
    weights_dir = hub.weights_dir()
    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"features.0.weight": conv.weight.detach(), "features.0.bias": conv.bias.detach()},
               weights_dir / VGG19_FILE)
    vgg = VGG19Features(["conv1_1"], pretrained=True)
    assert torch.equal(vgg.body[0].weight, conv.weight)


def test_missing_loss_weights_error_names_file_and_folder():
    with pytest.raises(hub.WeightsError) as info:
        loss_weights_path(VGG19_FILE, "https://example.invalid/vgg19-dcbb9e9d.pth", download=False)
    message = str(info.value)
    assert VGG19_FILE in message and str(hub.weights_dir() / VGG19_FILE) in message and "FACERESTORE_HOME" in message


def test_unknown_vgg_layer_is_reported():
    with pytest.raises(ValueError, match="conv6_1"):
        VGG19Features(["conv6_1"], pretrained=False)


# ---- GAN -----------------------------------------------------------------------------------------
def test_gan_losses_known_values():
    zero = torch.zeros(4)
    assert gan_loss(zero, True, "vanilla").item() == pytest.approx(math.log(2))
    assert gan_loss(zero, False, "wgan_softplus").item() == pytest.approx(math.log(2))
    assert gan_loss(torch.full((4,), 0.5), True, "lsgan").item() == pytest.approx(0.25)
    assert gan_loss(torch.full((4,), 0.5), False, "lsgan").item() == pytest.approx(0.25)
    scores = torch.tensor([1.0, 3.0])
    assert gan_loss(scores, True, "wgan").item() == pytest.approx(-2.0)
    assert gan_loss(scores, False, "wgan").item() == pytest.approx(2.0)
    assert gan_loss(torch.tensor([0.5, 2.0]), True, "hinge", is_disc=True).item() == pytest.approx(0.25)
    assert gan_loss(torch.tensor([-0.5, -2.0]), False, "hinge", is_disc=True).item() == pytest.approx(0.25)
    assert gan_loss(scores, True, "hinge", is_disc=False).item() == pytest.approx(-2.0)


def test_gan_loss_weight_only_for_generator_and_lists_are_averaged():
    loss = GANLoss("hinge", loss_weight=0.1)
    scores = torch.tensor([1.0, 3.0])
    assert loss(scores, True, is_disc=False).item() == pytest.approx(-0.2)
    assert loss(scores, False, is_disc=True).item() == pytest.approx(3.0)  # relu(1 + s): 2, 4
    multi = [torch.tensor([1.0]), torch.tensor([3.0])]
    assert loss(multi, True, is_disc=False).item() == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="gan type"):
        GANLoss("wasserstein")


def test_gan_loss_pushes_fake_scores_up_for_generator():
    for gan_type in ("vanilla", "lsgan", "wgan", "wgan_softplus", "hinge"):
        scores = torch.zeros(3, requires_grad=True)
        GANLoss(gan_type)(scores, True).backward()
        assert (scores.grad < 0).all(), gan_type  # descending the loss raises D(G(z))


def test_r1_penalty_known_value_and_reaches_discriminator():
    real = torch.rand(2, 3, 4, 4, requires_grad=True)
    pred = (3 * real).sum((1, 2, 3))  # dD/dx = 3 everywhere
    assert r1_penalty(pred, real).item() == pytest.approx(9 * 3 * 4 * 4)
    disc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 2))
    real = torch.rand(2, 3, 4, 4, requires_grad=True)
    penalty = r1_penalty(disc(real), real)
    penalty.backward()
    assert penalty.item() > 0 and disc[0].weight.grad.abs().sum() > 0


# ---- GFP-GAN -------------------------------------------------------------------------------------
def test_pyramid_loss_zero_on_downsampled_gt_and_one_per_level_offset():
    gt = torch.rand(2, 3, 32, 32)
    pyramid = image_pyramid(gt, [8, 16, 32])
    assert [p.shape[-1] for p in pyramid] == [8, 16, 32] and torch.equal(pyramid[-1], gt)
    assert pyramid_loss(pyramid, gt).item() == 0
    assert pyramid_loss([p + 1 for p in pyramid], gt).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="halved"):
        image_pyramid(gt, [12])


def test_crop_components_samples_bin_centres():
    ramp = torch.arange(32.0).repeat(32, 1)[None, None]  # value = x coordinate
    boxes = torch.tensor([[4.0, 8.0, 12.0, 16.0]])
    crop = crop_components(ramp, boxes, 4)
    assert crop.shape == (1, 1, 4, 4)
    expected = 4.0 + (torch.arange(4) + 0.5) * 2.0  # bin centres of [4, 12) in 4 bins
    assert torch.allclose(crop[0, 0], expected.repeat(4, 1), atol=1e-5)
    with pytest.raises(ValueError, match="one box per image"):
        crop_components(ramp, boxes.repeat(2, 1), 4)


def test_component_style_loss_properties():
    real = [torch.rand(2, 8, 6, 6, requires_grad=True), torch.rand(2, 16, 3, 3, requires_grad=True)]
    assert component_style_loss([r.detach().clone() for r in real], real).item() == 0
    fake = [torch.rand(2, 8, 6, 6, requires_grad=True), torch.rand(2, 16, 3, 3, requires_grad=True)]
    loss = component_style_loss(fake, real)
    loss.backward()
    assert loss.item() > 0 and fake[0].grad is not None and real[0].grad is None
    # the per-level weights scale each level's Gram L1
    only_first = component_style_loss(fake, real, (1.0, 0.0)).item()
    only_second = component_style_loss(fake, real, (0.0, 1.0)).item()
    assert loss.item() == pytest.approx(0.5 * only_first + only_second, rel=1e-5)


def test_gray_resize_luma_weights():
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1.0
    gray = gray_resize(red, 128)
    assert gray.shape == (1, 1, 128, 128)
    assert torch.allclose(gray, torch.full_like(gray, 0.2989))


def test_arcface_embedding_shape_and_identity_loss():
    loss = IdentityLoss(loss_weight=10.0, pretrained=False).train()
    assert isinstance(loss.net, ResNetArcFace) and loss.net.fc5.in_features == 512 * 8 * 8
    assert not loss.net.training  # stays in eval mode inside a training loop
    gt = torch.rand(2, 3, 64, 64) * 2 - 1
    assert loss(gt.clone(), gt).item() == 0
    restored = (gt + 0.5 * torch.randn_like(gt)).requires_grad_(True)
    value = loss(restored, gt)
    value.backward()
    assert value.item() > 0 and restored.grad.abs().sum() > 0


# ---- GPEN ----------------------------------------------------------------------------------------
def test_feature_matching_loss_known_values():
    real = [torch.rand(2, 4, 8, 8), torch.rand(2, 8, 4, 4)]
    assert feature_matching_loss([r.clone() for r in real], real).item() == 0
    fake = [r + 2 for r in real]
    assert feature_matching_loss(fake, real, "l2").item() == pytest.approx(4.0)
    assert feature_matching_loss(fake, real, "l1").item() == pytest.approx(2.0)
    fake = [r.clone().requires_grad_(True) + 1 for r in real]
    with pytest.raises(ValueError, match="same"):
        feature_matching_loss(fake[:1], real)


# ---- DPR -----------------------------------------------------------------------------------------
def test_gradient_l1_ignores_constant_offsets_and_has_known_value():
    img = torch.rand(2, 1, 8, 8)
    assert gradient_l1(img + 0.25, img).item() == pytest.approx(0, abs=1e-7)
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # d/dx = 1, d/dy = 0
    assert gradient_l1(ramp, torch.zeros_like(ramp)).item() == pytest.approx(1.0)
    assert gradient_l1(torch.zeros_like(ramp), ramp).item() == pytest.approx(1.0)  # symmetric


def test_light_and_feature_consistency_losses():
    sh = torch.randn(3, 9)
    assert light_loss(sh[:, :, None, None], sh).item() == 0
    assert light_loss(sh[:, :, None, None] + 1, sh).item() == pytest.approx(1.0)
    a, b = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    assert feature_consistency_loss(a, b).item() == pytest.approx(feature_consistency_loss(b, a).item())
    assert feature_consistency_loss(a, a).item() == 0
