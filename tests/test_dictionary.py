"""Building DFDNet component dictionaries (facerestore.zoo.dfdnet.dictionary) and the build-dictionary command.

The end-to-end tests encode 2-3 real FFHQ faces with a random-weight VGG19 at 512 (a few seconds per
face on the CPU) and run one DFDNet forward with the result."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import shared_path

from facerestore.archs.dfdnet import PARTS, SCALES, UNetDictFace, VGGFeat, dictionary_key, dictionary_shape
from facerestore.cli import main
from facerestore.zoo.dfdnet.dictionary import build_dictionaries, component_features, kmeans, list_images, load_encoder
from facerestore.face.align import template
from facerestore.hub import WeightsError
from facerestore.registry import get_entry
from facerestore.zoo.dfdnet import DFDNetRestorer, part_locations_from_landmarks5

FFHQ_512 = template("ffhq", 512)


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in 50 dimensions: (300, 50) data and the blob centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (3, 50))
    data = np.concatenate([c + rng.normal(0, 0.5, (100, 50)) for c in centres]).astype(np.float32)
    return data, centres


def test_kmeans_finds_separated_clusters():
    data, centres = blobs()
    found, labels = kmeans(data, 3, seed=0, chunk_rows=64)
    assert found.shape == (3, 50) and found.dtype == np.float32
    assert sorted(np.bincount(labels).tolist()) == [100, 100, 100]
    for label in range(3):  # each centre is the mean of its members (Lloyd's fixed point)
        np.testing.assert_allclose(found[label], data[labels == label].mean(0), atol=1e-4)
    nearest = np.linalg.norm(found[:, None] - centres[None], axis=2).min(1)
    assert nearest.max() < 0.5


def test_kmeans_is_deterministic_and_reads_memory_maps(tmp_path):
    data, _ = blobs(1)
    np.save(tmp_path / "rows.npy", data)
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    a, labels_a = kmeans(data, 4, seed=3)
    b, labels_b = kmeans(mapped, 4, seed=3, chunk_rows=7)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.array_equal(labels_a, labels_b)


def test_kmeans_with_one_cluster_per_sample_returns_the_samples():
    data, _ = blobs(2)
    found, labels = kmeans(data[:5], 5)
    np.testing.assert_allclose(found[labels], data[:5], atol=1e-5)
    with pytest.raises(ValueError, match="clusters"):
        kmeans(data[:5], 6)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNetDictFace().eval()


@pytest.fixture
def hq_faces(tmp_path):
    folder = tmp_path / "hq"
    folder.mkdir()
    for path in list_images(shared_path("data/ffhq/hq"))[:3]:
        shutil.copy(path, folder / path.name)
    return folder


def test_build_dictionaries_from_ffhq_faces_and_restore(net, hq_faces, tmp_path):
    out = tmp_path / "dictionaries"
    written = build_dictionaries(hq_faces, out, clusters=3, encoder=net, progress=False)
    assert sorted(written) == sorted(dictionary_key(p, s) for p in PARTS for s in SCALES)
    for key, path in written.items():
        part, scale = key.rsplit("_", 1)
        array = np.load(path)
        assert path.name == f"{key}_center.npy" and array.dtype == np.float32
        assert array.shape == (3, *dictionary_shape(part, int(scale)))

    # three faces, three clusters: the atoms are the faces' component features (checked for one face)
    import cv2

    face = cv2.resize(cv2.imread(str(list_images(hq_faces)[0])), (512, 512), interpolation=cv2.INTER_AREA)
    boxes = part_locations_from_landmarks5(FFHQ_512[None])
    with torch.inference_mode():
        features = component_features(net.VggExtract, face[None], boxes)
    for key in ("left_eye_256", "nose_128"):  # (deep random-weight features hardly depend on the face)
        atoms = np.load(written[key]).reshape(3, -1)
        distance = np.abs(atoms - features[key].numpy()).max(1)
        assert distance.min() < 1e-4 * np.sort(distance)[1]  # one atom is this face, the others are not

    net.load_dictionaries(out)
    assert set(net.dictionary_sizes().values()) == {3}
    restorer = DFDNetRestorer(net, get_entry("dfdnet"), device="cpu", detector=None)
    result = restorer.restore(face, aligned=True)
    assert result.shape == face.shape and np.abs(result.image.astype(int) - face).mean() > 1


def test_load_encoder_reads_dfdnet_and_torchvision_checkpoints(net, tmp_path):
    vgg = net.VggExtract
    features = {f"features.{k}": v for k, v in vgg.model.features.state_dict().items()}
    torch.save(features, tmp_path / "vgg19.pth")
    encoder = load_encoder(tmp_path / "vgg19.pth")
    assert isinstance(encoder, VGGFeat) and not hasattr(encoder.model, "classifier")
    assert torch.equal(encoder.model.features[34].weight, vgg.model.features[34].weight)
    assert torch.allclose(encoder.RGB_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))

    generator = {f"VggExtract.model.{k}": v for k, v in features.items()}
    generator["VggExtract.RGB_mean"] = torch.full((1, 3, 1, 1), 0.5)
    generator["VggExtract.RGB_std"] = torch.full((1, 3, 1, 1), 0.25)
    torch.save(generator, tmp_path / "latest_net_G.pth")
    encoder = load_encoder(tmp_path / "latest_net_G.pth")
    assert torch.equal(encoder.RGB_std, generator["VggExtract.RGB_std"])
    assert torch.equal(encoder.model.features[0].bias, vgg.model.features[0].bias)

    torch.save({"something.else": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="neither a DFDNet generator"):
        load_encoder(tmp_path / "other.pth")


def test_build_dictionary_command(net, hq_faces, tmp_path):
    features = {f"features.{k}": v for k, v in net.VggExtract.model.features.state_dict().items()}
    torch.save(features, tmp_path / "vgg19.pth")
    for path in list_images(hq_faces)[2:]:
        path.unlink()  # two faces are enough here
    out = tmp_path / "dict"
    code = main(["build-dictionary", str(hq_faces), "--clusters", "2", "-o", str(out),
                 "--weights", str(tmp_path / "vgg19.pth"), "--iterations", "5"])
    assert code == 0
    assert len(list(out.glob("*_center.npy"))) == 16
    assert np.load(out / "nose_64_center.npy").shape == (2, 512, 6, 6)
    # asking for more clusters than faces is a clear error
    assert main(["build-dictionary", str(hq_faces), "--clusters", "5", "-o", str(out),
                 "--weights", str(tmp_path / "vgg19.pth")]) == 1


def test_build_from_photos_detects_every_face(net, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(shared_path("data/real/whole/Blake_Lively.jpg"), folder)  # two faces
    out = tmp_path / "dict"
    build_dictionaries(folder, out, clusters=2, encoder=net, aligned=False, detector="retinaface-mobile0.25-1mb",
                       detector_weights=str(shared_path("weights/retinaface/mobilenet0.25_Final.pth")),
                       progress=False)
    atoms = np.load(out / "right_eye_128_center.npy")
    assert atoms.shape == (2, 256, 20, 20)
    assert np.abs(atoms[0] - atoms[1]).max() > 0  # one atom per detected face
