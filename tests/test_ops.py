"""The fast op equivalents in facerestore.archs.ops against the plain PyTorch op sequences they replace."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facerestore.archs import ops
from facerestore.archs.ops import conv2d_act, fold_batch_norm, instance_norm, max_pool2x2, official_ops

CL = torch.channels_last


def seeded(*shape: int, seed: int = 0, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale + offset


@pytest.mark.parametrize("shape", [(2, 3, 8, 10), (1, 16, 9, 7), (1, 1, 4, 4)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool2x2_is_max_pool2d_bit_for_bit(shape, channels_last):
    x = seeded(*shape)
    x[0, 0, 0, 0] = float("nan")  # NaN propagates like max_pool2d's
    if channels_last:
        x = x.contiguous(memory_format=CL)
    with torch.inference_mode():
        torch.testing.assert_close(max_pool2x2(x), F.max_pool2d(x, 2, 2), rtol=0, atol=0, equal_nan=True)


def test_max_pool2x2_gradient_is_max_pool2d_gradient():
    x = seeded(1, 2, 6, 6).requires_grad_()
    max_pool2x2(x).sum().backward()
    expected = torch.zeros_like(x)
    _, indices = F.max_pool2d(x.detach(), 2, 2, return_indices=True)
    expected.flatten(2).scatter_(2, indices.flatten(2), 1.0)
    assert torch.equal(x.grad, expected)


def test_fold_batch_norm_equals_conv_then_eval_batch_norm():
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8).eval()
    with torch.no_grad():
        norm.running_mean.normal_(0, 0.5)
        norm.running_var.uniform_(0.2, 3.0)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 0.3)
    x = seeded(2, 6, 12, 12)
    weight, bias = fold_batch_norm(conv, norm)
    with torch.inference_mode():
        torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1), norm(conv(x)), rtol=0, atol=2e-6)


@pytest.mark.parametrize("shape", [(1, 16, 64, 64), (2, 155, 8, 8), (1, 64, 7, 9)])
def test_instance_norm_matches_pytorch_and_keeps_channels_last(shape):
    x = seeded(*shape, scale=3.0, offset=1.5)  # a mean far from 0 tests the two-pass variance
    expected = F.instance_norm(x.double()).float()
    for layout in (torch.contiguous_format, CL):
        out = instance_norm(x.contiguous(memory_format=layout))
        assert out.is_contiguous(memory_format=layout)
        torch.testing.assert_close(out, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_instance_norm_of_bfloat16_stays_within_bfloat16_rounding(batch):
    x = seeded(batch, 32, 16, 16, scale=2.0, offset=4.0).contiguous(memory_format=CL).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = instance_norm(x)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=CL)
    expected = F.instance_norm(x.double())
    assert expected.abs().max() < 4.5
    assert (out.double() - expected).abs().max() < 2 * 2 ** -6  # two bfloat16 steps for |values| in [2, 4)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
@pytest.mark.parametrize("with_residual", [False, True])
def test_conv2d_act_is_the_plain_op_sequence_bit_for_bit(channels_last, activation, with_residual):
    x, weight, bias, residual = seeded(2, 8, 12, 12, seed=1), seeded(8, 8, 3, 3, seed=2), seeded(8, seed=3), \
        seeded(2, 8, 12, 12, seed=4)
    if channels_last:
        x, weight, residual = (t.contiguous(memory_format=CL) for t in (x, weight, residual))
    expected = F.conv2d(x, weight, bias, padding=2, dilation=2)
    if with_residual:
        expected = expected + residual
    if activation == "relu":
        expected = F.relu(expected)
    elif activation == "leaky_relu":
        expected = F.leaky_relu(expected, 0.2)
    with torch.inference_mode():
        out = conv2d_act(x, weight, bias, 2, 2, activation, 0.2, residual if with_residual else None)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_conv2d_act_under_bf16_autocast_and_with_autograd():
    x, weight, bias = seeded(1, 4, 8, 8), seeded(4, 4, 3, 3, seed=1), seeded(4, seed=2)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv2d_act(x, weight, bias, 1, activation="relu")
        expected = F.relu(F.conv2d(x, weight, bias, padding=1))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    weight.requires_grad_()  # autograd: the plain ops run and gradients flow
    conv2d_act(x, weight, bias, 1, activation="relu").sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="activation"):
        conv2d_act(x, weight, bias, 1, activation="gelu")


def test_official_ops_switches_every_helper_back():
    assert ops.fast_ops_enabled()
    with official_ops():
        assert not ops.fast_ops_enabled()
        with official_ops():
            assert not ops.fast_ops_enabled()
        assert not ops.fast_ops_enabled()
        x = seeded(1, 4, 8, 8).contiguous(memory_format=CL)
        with torch.inference_mode():
            # PyTorch's instance norm copies channels_last input to NCHW; the fast one does not
            assert not instance_norm(x).is_contiguous(memory_format=CL)
    assert ops.fast_ops_enabled()


@pytest.mark.parametrize("norm", [nn.BatchNorm2d(6), nn.InstanceNorm2d(6)])
def test_conv_norm_act_is_the_official_sequence(norm):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, 3, padding=1, bias=False)
    norm.eval()
    if isinstance(norm, nn.BatchNorm2d):
        with torch.no_grad():
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.2, 3.0)
    x, residual = seeded(2, 6, 10, 10), seeded(2, 6, 10, 10, seed=1)
    with torch.inference_mode():
        expected = F.relu(norm(conv(x)) + residual)
        for layout in (torch.contiguous_format, CL):
            out = ops.conv_norm_act(x.contiguous(memory_format=layout), conv, norm, residual=residual)
            torch.testing.assert_close(out, expected, rtol=0, atol=2e-6)
        with official_ops():
            torch.testing.assert_close(ops.conv_norm_act(x, conv, norm, residual=residual), expected, rtol=0, atol=0)


def plain_upsample_conv(x, weight, bias, activation=None, negative_slope=0.01):
    out = F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), weight, bias, padding=1)
    return F.leaky_relu(out, negative_slope) if activation == "leaky_relu" else out


INTERLEAVE = ops._interleave2


@pytest.mark.parametrize("shape", [(2, 3, 128, 128), (1, 4, 130, 129), (1, 5, 2, 8200)])
def test_upsample_conv3x3_is_the_plain_sequence_in_float64(monkeypatch, shape):
    """One convolution at the input's resolution + interleave equals bilinear-upsample-then-conv to
    float64 rounding, borders (the resize's clamp, the conv's zero padding) and odd sizes included; with
    a bias, an activation, NCHW and channels_last."""
    x, weight, bias = seeded(*shape).double(), seeded(6, shape[1], 3, 3, seed=1).double(), seeded(6, seed=2).double()
    expected = plain_upsample_conv(x, weight, bias, "leaky_relu", 0.2)
    calls = []
    monkeypatch.setattr(ops, "_interleave2", lambda y, cl: calls.append(cl) or INTERLEAVE(y, cl))
    with torch.inference_mode():
        for layout in (torch.contiguous_format, CL):
            got = ops.upsample_conv3x3(x.contiguous(memory_format=layout), weight, bias, "leaky_relu", 0.2)
            assert got.shape == expected.shape and got.is_contiguous(memory_format=layout)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
        assert calls == [False, True]  # the one-convolution path ran (inputs above UPSAMPLE_CONV_MIN_PIXELS)
        with official_ops():  # the plain sequence itself
            torch.testing.assert_close(ops.upsample_conv3x3(x, weight), plain_upsample_conv(x, weight, None),
                                       rtol=0, atol=0)
        assert calls == [False, True]


def test_upsample_conv3x3_in_bfloat16_channels_last_and_with_autograd():
    x = seeded(1, 16, 128, 128).contiguous(memory_format=CL)
    weight, bias = seeded(8, 16, 3, 3, seed=1, scale=0.1), seeded(8, seed=2)
    expected = plain_upsample_conv(x, weight, bias)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = ops.upsample_conv3x3(x, weight, bias)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=CL)
    assert (got.float() - expected).abs().max() < 0.05 * expected.abs().max()  # bf16 rounding of inputs and taps
    # with autograd the plain sequence runs (its gradients are the official ones)
    weight.requires_grad_(True)
    ops.upsample_conv3x3(x, weight, bias).sum().backward()
    reference = weight.detach().clone().requires_grad_(True)
    plain_upsample_conv(x, reference, bias).sum().backward()
    torch.testing.assert_close(weight.grad, reference.grad)
