"""DFDNet (Li et al., ECCV 2020): the official generator with its component dictionaries, the part
locations it needs (from 68 or 5 landmarks), and `DFDNetRestorer`, which feeds them to the network.

Part locations are four boxes [x1, y1, x2, y2] (left eye, right eye, nose, mouth; "left" = image
left) in the 512x512 aligned face. The official test script gets them from 68 landmarks
(`part_locations_from_landmarks68`, its `get_part_location`). The shared face pipeline only has the 5
landmarks of the aligned crop, so by default the boxes come from `part_locations_from_landmarks5`,
whose proportions were calibrated to reproduce the 68-point boxes of a typical aligned face (the
golden cases' 68-point layout around the FFHQ template): within 1-2 px there.
"""
from __future__ import annotations

import numpy as np
import torch

from ...archs.dfdnet import PARTS, SCALES, UNetDictFace, dictionary_key
from ...face.parts import part_locations_from_landmarks5, part_locations_from_landmarks68
from ...registry import Family, TrainingSpec, WeightFile, ZooEntry, register
from ...restorer import FaceRestorer

_REPO = "https://github.com/csxmli2016/DFDNet"
_PAPER = ("Li, Chen, Zhang, Zuo, Zhang, Zhang. Blind Face Restoration via Deep Multi-scale Component "
          "Dictionaries. ECCV 2020")
_LICENSE = "CC BY-NC-SA 4.0 (non-commercial)"


class DFDNetRestorer(FaceRestorer):
    """FaceRestorer for DFDNet: every face gets its own component boxes, computed from its landmarks
    in the aligned crop (5 points from the face pipeline by default; pass (N,68,2) landmarks to
    `forward_faces` for the official 68-point boxes). All faces of a photo are restored (the official
    script restores only the largest)."""

    @staticmethod
    def part_locations(crop_landmarks: np.ndarray, size: int = 512) -> np.ndarray:
        """(N,4,4) boxes from (N,5,2) landmarks (default path) or (N,68,2) ones (the official boxes;
        68-point landmarks are taken in 512 px, as the official get_part_location does)."""
        landmarks = np.asarray(crop_landmarks, dtype=np.float64)
        if landmarks.shape[-2] == 68:
            return part_locations_from_landmarks68(landmarks)
        return part_locations_from_landmarks5(landmarks, size)

    def forward_faces(self, crops: np.ndarray, crop_landmarks: np.ndarray, seed: int | None = None) -> np.ndarray:
        if not getattr(self.net, "has_dictionaries", False):
            raise RuntimeError(
                "DFDNet needs its component dictionaries: load('dfdnet') fetches the official ones; with "
                "pretrained=False call restorer.net.load_dictionaries(folder) (16 <part>_<scale>_center.npy "
                "files) or build your own with `facerestore build-dictionary` (see models/dfdnet.md)"
            )
        size = crops.shape[1]
        if size != self.entry.face_size:
            raise ValueError(f"DFDNet restores {self.entry.face_size}x{self.entry.face_size} aligned faces, got {size}")
        boxes = self.part_locations(crop_landmarks, size)
        outputs = []
        with self.inference(seed):
            for start in range(0, len(crops), self.batch_size):
                stop = start + self.batch_size
                out = self.net(self.to_tensor(crops[start:stop]), torch.from_numpy(boxes[start:stop]))
                outputs.append(self.to_image(out))
        return np.concatenate(outputs) if outputs else crops[:0].copy()


def train_forward(net, batch: dict, want_rgbs: bool) -> dict:
    return {"image": net(batch["lq"], batch["boxes"])}


FAMILY = Family(
    name="dfdnet",
    archs=(UNetDictFace,),
    runner="facerestore.zoo.dfdnet:DFDNetRestorer",
    training=TrainingSpec(config_archs={"dfdnet": "dfdnet"}, forward=train_forward, discriminator="multiscale",
                          part_boxes=True,
                          # the dictionaries were clustered from these VGG features: the encoder stays fixed
                          frozen=("VggExtract",), idle_layers=True),  # to_rgb0..3 are never called
    export="facerestore.zoo.dfdnet:export_spec",
    paste="feather",  # the official test script pastes with its own warp; facerestore's soft square is used
    tiny={},  # the architecture fixes its widths (VGG19 features, 512 px faces)
)


def export_spec(net: UNetDictFace, entry: ZooEntry, size: int | None = None, batch: int = 1,
                part_locations: np.ndarray | None = None, **_options):
    """DFDNet's export signature: image -> image with a fixed size and batch; the component boxes are
    constants of the graph (those of the FFHQ template by default)."""
    from ...export import ExportSpec, face_image_io

    make, metadata, _ = face_image_io(net, entry, size)
    if not net.has_dictionaries:
        raise ValueError("DFDNet needs its component dictionaries before export: load('dfdnet') with the "
                         "official files, or net.load_dictionaries(folder) (see models/dfdnet.md)")
    boxes = _export_boxes(part_locations, batch)
    metadata["notes"] = ("fixed input size and batch; the component boxes [x1,y1,x2,y2] (left eye, right eye, "
                         f"nose, mouth) are constants: {boxes.tolist()}")
    return ExportSpec(DFDNetExport(net, boxes), make, ("image",), ("output",), False, batch, metadata)


def _export_boxes(part_locations: np.ndarray | None, batch: int) -> np.ndarray:
    if part_locations is None:
        from ...face.align import template

        part_locations = part_locations_from_landmarks5(template("ffhq", 512))
    boxes = np.asarray(part_locations, dtype=np.int64)
    if boxes.shape == (4, 4):
        boxes = np.repeat(boxes[None], batch, axis=0)
    if boxes.shape != (batch, 4, 4):
        raise ValueError(f"part_locations must be (4, 4) or ({batch}, 4, 4) boxes, got {boxes.shape}")
    return boxes


class DFDNetExport(torch.nn.Module):
    """image -> image for DFDNet, with the component boxes of every face fixed at export time."""

    def __init__(self, net: UNetDictFace, part_locations: np.ndarray) -> None:
        super().__init__()
        self.net = net
        # [face][part][x1, y1, x2, y2] as Python ints: constants of the traced graph. (The network's own
        # forward converts a box tensor with .tolist(), which torch.export cannot see through.)
        self.boxes = np.asarray(part_locations, dtype=np.int64).tolist()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[0] != len(self.boxes):
            raise ValueError(f"this DFDNet export takes batches of {len(self.boxes)} faces, got {image.shape[0]}")
        features = self.net.VggExtract(image)
        updated, _ = self.net.swap_components(features, self.boxes)
        return self.net.decode(features, updated)


_DICTIONARY_FOLDER = "DictionaryCenter512"
_FILES = (
    WeightFile("facefh_dictionary/latest_net_G.pth", (_REPO,), role="weights"),
    *(WeightFile(f"{_DICTIONARY_FOLDER}/{dictionary_key(part, scale)}_center.npy", (_REPO,), role="dictionary")
      for part in PARTS for scale in SCALES),
)

register(ZooEntry(
    name="dfdnet",
    family=FAMILY,
    arch=UNetDictFace,
    arch_config={"ngf": 64},
    files=_FILES,
    task="restore",
    face_size=512,
    template="ffhq",
    color="rgb",
    input_range=(-1.0, 1.0),
    forward_kwargs={},  # part locations are computed per face by DFDNetRestorer
    precisions=("fp32", "bf16", "fp16"),
    channels_last=True,
    license=_LICENSE,
    commercial_use=False,
    paper=_PAPER,
    source=_REPO,
    description="DFDNet: VGG features, per-component dictionary matching (eyes, nose, mouth) at 4 scales, "
                "StyledUp decoder; 512x512 aligned faces",
    notes=(
        "The official generator (checkpoints/facefh_dictionary/latest_net_G.pth) and dictionaries "
        "(DictionaryCenter512/, 16 .npy files) are distributed only through the Google Drive and "
        "BaiduNetDisk folders linked from the repository README, which have no direct file URLs: the "
        "listed URL is that README. Download the folder by hand and pass it with load('dfdnet', "
        "weights='/path/to/DFDNet') (files are found under their official relative paths), or copy the "
        "files into the cache. BasicSR's converted DFDNet files (a single .pth dictionary and renamed "
        "generator keys) are a different format and do not load here. The official weights/vgg19.pth is "
        "not needed (the generator checkpoint holds the VGG weights). Boxes come from the 5 aligned "
        "landmarks by default (see models/dfdnet.md); you can build your own dictionaries with "
        "`facerestore build-dictionary`."
    ),
))
