"""The shared StyleGAN2 layers: upfirdn2d against its definition, the fused activation, and the
modulated convolution's batch and single-sample formulations against the reference (per-sample
weights, grouped convolution)."""
from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F

import facerestore
from facerestore.archs.ops import official_ops
from facerestore.archs.stylegan2 import (CLEAN, ORIGINAL, FIRFilter, ModulatedConv2d, StyleConv, StyledConv,
                                         Variant, fused_leaky_relu, log2_size, make_fir_kernel, upfirdn2d,
                                         upfirdn2d_reference)


def upfirdn2d_by_definition(x, kernel, up, down, pad):
    """Zero insertion, zero padding (negative: cropping), true convolution, decimation; one channel
    at a time, written for clarity."""
    n, c, h, w = x.shape
    u = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    u[:, :, ::up, ::up] = x
    p0, p1 = pad
    u = F.pad(u, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    u = u[:, :, max(-p0, 0):u.shape[2] - max(-p1, 0), max(-p0, 0):u.shape[3] - max(-p1, 0)]
    flipped = kernel.flip(0, 1)[None, None]
    out = F.conv2d(u.reshape(n * c, 1, *u.shape[2:]), flipped).reshape(n, c, -1, u.shape[3] - kernel.shape[1] + 1)
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [
    (1, 1, (1, 1)), (1, 1, (2, 1)), (1, 1, (0, -1)), (1, 2, (2, 2)), (1, 2, (1, 1)), (1, 2, (1, 0)),
    (2, 1, (2, 1)), (2, 1, (1, 1)), (2, 1, (0, 0)), (2, 1, (3, 2)), (2, 1, (-1, 1)), (2, 2, (1, 2)),
    (4, 1, (3, 1)),
])
def test_upfirdn2d_matches_its_definition(up, down, pad):
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    kernel = torch.randn(4, 4, dtype=torch.float64)  # asymmetric: catches a missing or extra flip
    expected = upfirdn2d_by_definition(x, kernel, up, down, pad)
    actual = upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    assert actual.shape == expected.shape
    torch.testing.assert_close(upfirdn2d_reference(x, kernel, up, down, pad), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    # channels_last input gives the same result
    actual_cl = upfirdn2d(x.contiguous(memory_format=torch.channels_last), kernel, up=up, down=down, pad=pad)
    torch.testing.assert_close(actual_cl, expected, rtol=0, atol=1e-12)


def test_fir_kernel_and_resampling_sizes():
    k = make_fir_kernel([1, 3, 3, 1])
    torch.testing.assert_close(k, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    x = torch.randn(1, 2, 8, 8)
    assert FIRFilter.upsample(ORIGINAL)(x).shape[-1] == 16
    assert FIRFilter.blur_after_upsample(ORIGINAL, 3)(torch.randn(1, 2, 17, 17)).shape[-1] == 16  # after convT
    assert FIRFilter.blur_before_downsample(ORIGINAL, 3)(x).shape[-1] == 9  # then a 3x3 stride-2 conv -> 4
    # upsampling keeps a constant image constant (away from the border): kernel gain = factor**2
    up = FIRFilter.upsample(ORIGINAL)(torch.ones(1, 1, 8, 8))
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))
    assert "kernel" not in FIRFilter.upsample(ORIGINAL).state_dict()
    assert "kernel" in FIRFilter.upsample(Variant(kernels_in_state_dict=True)).state_dict()


def test_fused_leaky_relu_definition():
    x, b = torch.randn(2, 5, 3, 3), torch.randn(5)
    expected = F.leaky_relu(x + b.view(1, 5, 1, 1), 0.2) * math.sqrt(2)
    torch.testing.assert_close(fused_leaky_relu(x, b), expected)
    torch.testing.assert_close(fused_leaky_relu(torch.randn(4, 5), b).shape, torch.Size([4, 5]))


def modulated_conv_reference(conv: ModulatedConv2d, x, style):
    """The reference formulation: per-sample modulated weights, one grouped convolution."""
    b, c, h, w = x.shape
    s = conv.modulation(style).view(b, 1, c, 1, 1)
    weight = conv.weight * conv.weight_gain * s
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
    k = conv.kernel_size
    if conv.upsample and not conv.clean:
        weight = weight.transpose(1, 2).reshape(b * c, conv.out_channels, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * c, h, w), weight, stride=2, groups=b)
        return conv.blur(out.view(b, conv.out_channels, *out.shape[2:]))
    if conv.upsample:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    out = F.conv2d(x.reshape(1, b * c, *x.shape[2:]), weight.view(b * conv.out_channels, c, k, k),
                   padding=k // 2, groups=b)
    return out.view(b, conv.out_channels, *out.shape[2:])


@pytest.mark.parametrize("variant", [ORIGINAL, CLEAN], ids=["original", "clean"])
@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_reference_for_batches_and_single_samples(variant, upsample, demodulate):
    conv = ModulatedConv2d(6, 5, 3, 8, demodulate=demodulate, upsample=upsample, variant=variant).double()
    x, style = torch.randn(3, 6, 5, 5, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    expected = modulated_conv_reference(conv, x, style)
    torch.testing.assert_close(conv(x, style), expected, rtol=0, atol=1e-12)  # batch: activation modulation
    for i in range(3):  # one sample: weight modulation
        torch.testing.assert_close(conv(x[i:i + 1], style[i:i + 1]), expected[i:i + 1], rtol=0, atol=1e-12)
    # the fused output gain and bias
    bias = torch.randn(5, dtype=torch.float64)
    fused = expected * 1.7 + bias.view(1, 5, 1, 1)
    torch.testing.assert_close(conv(x, style, gain=1.7, bias=bias), fused, rtol=0, atol=1e-12)
    torch.testing.assert_close(conv(x[:1], style[:1], gain=1.7, bias=bias), fused[:1], rtol=0, atol=1e-12)


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    return module.double()


@pytest.mark.parametrize("batch", [1, 2])
def test_style_convs_follow_the_official_formulas(batch):
    x, style = torch.randn(batch, 4, 6, 6, dtype=torch.float64), torch.randn(batch, 8, dtype=torch.float64)
    noise = torch.randn(batch, 1, 6, 6, dtype=torch.float64)
    sqrt2 = math.sqrt(2)
    # BasicSR (GFPGANv1): fused_leaky_relu(conv + w * noise, activate.bias)
    layer = randomize(StyleConv(4, 3, 3, 8, variant=ORIGINAL))
    conv = modulated_conv_reference(layer.modulated_conv, x, style)
    expected = F.leaky_relu(conv + layer.weight * noise + layer.activate.bias.view(1, 3, 1, 1), 0.2) * sqrt2
    torch.testing.assert_close(layer(x, style, noise), expected, rtol=0, atol=1e-12)
    # GFPGANv1Clean: leaky_relu(conv * sqrt(2) + w * noise + bias)
    layer = randomize(StyleConv(4, 3, 3, 8, variant=CLEAN))
    conv = modulated_conv_reference(layer.modulated_conv, x, style)
    expected = F.leaky_relu(conv * sqrt2 + layer.weight * noise + layer.bias, 0.2)
    torch.testing.assert_close(layer(x, style, noise), expected, rtol=0, atol=1e-12)
    # GPEN: fused_leaky_relu(cat([conv, w * feature]) or conv + w * noise, activate.bias)
    feature = torch.randn(batch, 3, 6, 6, dtype=torch.float64)
    for isconcat, injected in [(True, feature), (False, noise)]:
        layer = randomize(StyledConv(4, 3, 3, 8, isconcat=isconcat))
        conv = modulated_conv_reference(layer.conv, x, style)
        mixed = torch.cat([conv, layer.noise.weight * injected], 1) if isconcat else conv + layer.noise.weight * injected
        expected = F.leaky_relu(mixed + layer.activate.bias.view(1, -1, 1, 1), 0.2) * sqrt2
        torch.testing.assert_close(layer(x, style, injected), expected, rtol=0, atol=1e-12)


def test_log2_size_rejects_non_powers_of_two():
    assert log2_size(512) == 9
    with pytest.raises(ValueError, match="power of two"):
        log2_size(500)


@pytest.mark.parametrize("name", ["gfpgan-v1.4", "gfpgan-v1", "gpen-bfr-256"])
@pytest.mark.parametrize("batch", [1, 2])
def test_official_ops_run_the_reference_sequence_with_the_same_result(name, batch):
    """official_ops() (the speed baseline of benchmarks/latency.py) switches the StyleGAN2 layers to the
    reference op sequence (per-sample weights, grouped convolution, upfirdn2d by reshape and pad,
    separate bias/noise/activation passes); the whole network computes the same function (float32
    rounding of a different summation order: ~2e-6 seen on outputs of magnitude ~3)."""
    entry = facerestore.get_entry(name)
    torch.manual_seed(0)
    restorer = facerestore.load(entry, pretrained=False, device="cpu", **entry.family.tiny)
    with torch.no_grad():
        for tensor_name, p in restorer.net.named_parameters():
            if tensor_name.endswith("weight") and p.numel() == 1:
                p.fill_(0.3)  # noise strengths (zero when untrained): the noise path counts too
    size = restorer.entry.face_size
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    outputs = []
    for context in (contextlib.nullcontext(), official_ops()):
        torch.manual_seed(2)  # the same fresh noise in both runs
        with torch.no_grad(), context:
            out = restorer.net(x, **entry.forward_kwargs)
        outputs.append(out[0] if isinstance(out, tuple) else out)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=2e-5)
