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

from ..archs.dfdnet import PARTS, SCALES, UNetDictFace, dictionary_key
from ..registry import WeightFile, ZooEntry, register
from ..restorer import FaceRestorer

_REPO = "https://github.com/csxmli2016/DFDNet"
_PAPER = ("Li, Chen, Zhang, Zuo, Zhang, Zhang. Blind Face Restoration via Deep Multi-scale Component "
          "Dictionaries. ECCV 2020")
_LICENSE = "CC BY-NC-SA 4.0 (non-commercial)"

# iBUG 68-point indices of each component, as in the official get_part_location.
LANDMARKS68_PARTS = {
    "left_eye": list(range(17, 22)) + list(range(36, 42)),  # brow + eye
    "right_eye": list(range(22, 27)) + list(range(42, 48)),
    "nose": list(range(29, 36)),
    "mouth": list(range(48, 68)),
}
MIN_HALF_SIZE_512 = 16  # the official lower bound of a box's half side, in 512 px

# Box of each component from the 5 points, in units of the eye distance d, in the face frame
# (x along the eye line, image-left to image-right; y perpendicular, downwards). Calibrated on the
# golden 68-point layout: the eye box holds brow + eye (centre 0.112 d above the eye, half side 0.33
# d), the nose box the points 29-35 (centre 0.083 d below the tip), the mouth box spans the corners.
EYE_OUTWARD, EYE_UP, EYE_HALF = 0.010, 0.112, 0.330
NOSE_DOWN, NOSE_HALF = 0.083, 0.185
MOUTH_DOWN, MOUTH_HALF_OF_WIDTH = 0.007, 0.5


def _boxes_from_centres(centres: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """The official box rule: int-cast (truncation) of [cx-L+1, cy-L+1, cx+L, cy+L]."""
    halves = halves[..., None]
    return np.concatenate([centres - halves + 1, centres + halves], axis=-1).astype(np.int64)


def part_locations_from_landmarks68(landmarks: np.ndarray) -> np.ndarray:
    """Official `get_part_location`: (68,2) or (N,68,2) iBUG landmarks in 512 px -> (4,4) or (N,4,4)
    int64 boxes [x1,y1,x2,y2] (left eye, right eye, nose, mouth).

    Centre = mean of the component's points; half side L = max(largest x/y extent / 2, 16)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"expected 68 landmarks of shape (68, 2) or (N, 68, 2), got {points.shape}")
    centres, halves = [], []
    for part in PARTS:
        group = points[..., LANDMARKS68_PARTS[part], :]
        centres.append(group.mean(axis=-2))
        extent = (group.max(axis=-2) - group.min(axis=-2)).max(axis=-1)
        halves.append(np.maximum(extent / 2, MIN_HALF_SIZE_512))
    return _boxes_from_centres(np.stack(centres, axis=-2), np.stack(halves, axis=-1))


def part_locations_from_landmarks5(landmarks: np.ndarray, size: int = 512) -> np.ndarray:
    """Component boxes from the 5 points (left eye, right eye, nose, left and right mouth corner) of
    an aligned face of `size` px: (5,2) or (N,5,2) -> (4,4) or (N,4,4) int64 [x1,y1,x2,y2] in the
    same pixel frame, clipped to the image.

    Same box rule as the 68-point path (square, truncated, half side >= 16 px at 512), with centres
    and sizes placed relative to the eyes/nose/mouth as on a typical face (see the constants above)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape[-2:] != (5, 2):
        raise ValueError(f"expected 5 landmarks of shape (5, 2) or (N, 5, 2), got {points.shape}")
    left_eye, right_eye, nose, mouth_left, mouth_right = (points[..., i, :] for i in range(5))
    axis_x = right_eye - left_eye
    eye_distance = np.linalg.norm(axis_x, axis=-1, keepdims=True)
    axis_x = axis_x / np.maximum(eye_distance, 1e-6)
    axis_y = np.stack([-axis_x[..., 1], axis_x[..., 0]], axis=-1)  # x rotated +90 deg: image "down"
    d = eye_distance
    centres = np.stack([
        left_eye - EYE_OUTWARD * d * axis_x - EYE_UP * d * axis_y,
        right_eye + EYE_OUTWARD * d * axis_x - EYE_UP * d * axis_y,
        nose + NOSE_DOWN * d * axis_y,
        (mouth_left + mouth_right) / 2 + MOUTH_DOWN * d * axis_y,
    ], axis=-2)
    mouth_width = np.linalg.norm(mouth_right - mouth_left, axis=-1)
    d = d[..., 0]
    halves = np.stack([EYE_HALF * d, EYE_HALF * d, NOSE_HALF * d, MOUTH_HALF_OF_WIDTH * mouth_width], axis=-1)
    halves = np.maximum(halves, MIN_HALF_SIZE_512 * size / 512)
    return np.clip(_boxes_from_centres(centres, halves), 0, size)


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


_DICTIONARY_FOLDER = "DictionaryCenter512"
_FILES = (
    WeightFile("facefh_dictionary/latest_net_G.pth", (_REPO,), role="weights"),
    *(WeightFile(f"{_DICTIONARY_FOLDER}/{dictionary_key(part, scale)}_center.npy", (_REPO,), role="dictionary")
      for part in PARTS for scale in SCALES),
)

register(ZooEntry(
    name="dfdnet",
    arch=UNetDictFace,
    arch_config={"ngf": 64},
    files=_FILES,
    task="restore",
    restorer="facerestore.zoo.dfdnet:DFDNetRestorer",
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
