"""One loaded restorer used from several threads at once (what a web server does) returns exactly what
the same calls return one after another, seeds included: seeded noise comes from per-call generators,
never from PyTorch's process-global RNG, and helpers built on first use (detector, parser, upsampler)
are built once. Small untrained configurations of the real architectures, the real 1 MB detector."""
from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch

import facerestore
from conftest import shared_path
from facerestore.archs.parsenet import ParseNet
from facerestore.archs.rrdbnet import RRDBNet
from facerestore.face.parse import FaceParser
from facerestore.registry import get_entry
from facerestore.upscale import Upscaler

DETECTOR = "weights/retinaface/mobilenet0.25_Final.pth"
PHOTOS = ["data/real/whole/Blake_Lively.jpg", "data/real/whole/00.jpg", "data/real/whole/10045.png"]
THREADS = 4


def small_restorer(name: str, **arch) -> facerestore.restorer.FaceRestorer:
    entry = get_entry(name)
    torch.manual_seed(0)
    restorer = facerestore.load(name, pretrained=False, device="cpu", detector="retinaface-mobile0.25-1mb",
                                detector_weights=str(shared_path(DETECTOR)), **arch)
    restorer.detector.detect_size = 320
    torch.manual_seed(1)  # a small ParseNet (the real architecture) for the parse paste-back
    restorer._parser = FaceParser(ParseNet(min_feat_size=256, base_ch=4, ch_range=(4, 4), res_depth=1), "parsenet",
                                  device="cpu")
    assert restorer.entry.family is entry.family
    return restorer


@pytest.fixture(scope="module")
def photos():
    """Four distinct photos with faces (the fourth a mirrored first), 240 px on the long side."""
    out = []
    for name in PHOTOS:
        img = cv2.imread(str(shared_path(name)))
        scale = 240 / max(img.shape[:2])
        out.append(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return out + [np.ascontiguousarray(out[0][:, ::-1])]


@pytest.fixture(scope="module")
def gfpgan():
    """GFP-GAN (clean arch, 64 px) with its noise injections switched on, so seeds matter, and a small
    Real-ESRGAN (RRDBNet) as background upsampler."""
    restorer = small_restorer("gfpgan-v1.4", **get_entry("gfpgan-v1.4").family.tiny)
    with torch.no_grad():
        for name, p in restorer.net.named_parameters():
            if name.startswith("stylegan_decoder.style_conv") and name.endswith(".weight") and p.numel() == 1:
                p.fill_(0.1)  # StyleConv's noise strength (untrained: 0, i.e. no noise at all)
    torch.manual_seed(2)
    restorer._upsampler = Upscaler(RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).eval(), device="cpu")
    return restorer


def run_both_ways(call, jobs):
    """The outputs of `call(*job)` for every job: sequentially, then from THREADS threads at once."""
    sequential = [call(*job) for job in jobs]
    start = threading.Barrier(THREADS)

    def threaded(job):
        start.wait()  # all threads enter the restorer together
        return call(*job)

    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(threaded, jobs))
    return sequential, concurrent


def test_gfpgan_with_seeds_parse_paste_and_upsampler_is_the_same_from_threads(gfpgan, photos):
    def call(img, seed):
        return gfpgan.restore(img, seed=seed, upscale=2, paste="parse")

    jobs = [(img, seed) for img, seed in zip(photos, (11, 22, 33, 44))]
    sequential, concurrent = run_both_ways(call, jobs)
    assert all(len(out.faces) >= 1 for out in sequential)
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a.image, b.image)  # bit for bit: nothing shared between the calls
    # the seeds matter (the noise is on): another seed changes the faces; a seeded call does not use
    # (or move) the global RNG
    crop, points = sequential[0].faces[0].crop[None], np.zeros((1, 5, 2), np.float32)
    state = torch.random.get_rng_state()
    first, again, other = (gfpgan.forward_faces(crop, points, seed=seed)[0] for seed in (11, 11, 12))
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(again, first)
    assert np.abs(other.astype(int) - first).mean() > 1


def test_codeformer_and_gpen_are_the_same_from_threads(photos):
    codeformer = small_restorer("codeformer", **get_entry("codeformer").family.tiny)
    gpen = small_restorer("gpen-bfr-256", size=64, style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.125)
    jobs = [(codeformer, photos[0], 0.3), (gpen, photos[1], None), (codeformer, photos[2], 0.8),
            (gpen, photos[3], 0.5)]

    def call(restorer, img, fidelity):
        return restorer.restore(img, fidelity=fidelity, seed=5, paste="box")  # (the parse paste: above)

    sequential, concurrent = run_both_ways(call, jobs)
    assert all(len(out.faces) >= 1 for out in sequential)
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a.image, b.image)


def test_helpers_are_built_once_when_threads_ask_together(monkeypatch):
    """Lazy helpers (detector, parser, upsampler) are built under a lock: four threads asking for the
    parser at the same moment get one and the same object, built once."""
    from facerestore.face import parse

    restorer = facerestore.load("gpen-bfr-256", pretrained=False, device="cpu", detector=None, size=64,
                                style_dim=32, n_mlp=2, channel_multiplier=1, narrow=0.125)
    built = []

    def slow_load_parser(*args, **kwargs):
        built.append(1)
        time.sleep(0.2)  # a wide window for a second build to start, were there no lock
        return FaceParser(ParseNet(min_feat_size=256, base_ch=4, ch_range=(4, 4), res_depth=1), "parsenet")

    monkeypatch.setattr(parse, "load_parser", slow_load_parser)
    start = threading.Barrier(THREADS)

    def get_parser(_):
        start.wait()
        return restorer.parser

    with ThreadPoolExecutor(THREADS) as pool:
        parsers = list(pool.map(get_parser, range(THREADS)))
    assert len(built) == 1 and all(p is parsers[0] for p in parsers)


def test_seeded_custom_nets_draw_reproducibly_from_threads():
    """A custom net (not one of facerestore's architectures) may draw from the global RNG; with a seed
    those draws are made under a process-wide lock, so each call gets exactly its seed's numbers."""
    from facerestore.registry import ZooEntry

    class NoisyNet(torch.nn.Module):
        def forward(self, x):
            return (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)

    base = get_entry("gpen-bfr-256")
    entry = dataclasses.replace(base, name="noisy", arch=NoisyNet, arch_config={}, face_size=16)
    assert isinstance(entry, ZooEntry)
    restorer = facerestore.load(entry, pretrained=False, device="cpu", detector=None)
    crop = np.full((1, 16, 16, 3), 128, np.uint8)
    points = np.zeros((1, 5, 2), np.float32)
    jobs = [(seed,) for seed in (1, 2, 3, 4) * 2]

    def call(seed):
        return restorer.forward_faces(crop, points, seed=seed)

    sequential, concurrent = run_both_ways(call, jobs[:THREADS])
    for a, b in zip(sequential, concurrent):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(sequential[0], sequential[1])
