"""DFDNet: Blind Face Restoration via Deep Multi-scale Component Dictionaries (Li, Chen, Zhang, Zuo,
Zhang, Zhang; ECCV 2020). `UNetDictFace` is the generator of the official test script.

Forward: a VGG19 encoder gives features at 256, 128, 64 and 32 px (for a 512 face). At each scale the
four components (left eye, right eye, nose, mouth) are cropped with their boxes, every atom of that
component's dictionary is re-styled to the crop statistics (component AdaIN), the best atom by inner
product is written back into the feature map through a learned confidence (attention) block, and a
decoder (multi-scale dilated block + StyledUpBlocks) renders the face, taking the updated features
as style.

The module layout reproduces the official checkpoint key for key, with its quirks:
- `VggExtract.model` is a complete torchvision-layout VGG19 (the classifier included, 123.6 M
  parameters that never run); `VggExtract.features.<i>.<j>` re-registers the same conv layers in four
  slices, so a checkpoint stores every VGG weight twice;
- spectral-norm convs store bias, weight_orig, weight_u, weight_v (torch.nn.utils.spectral_norm);
- `to_rgb0..3` exist in the checkpoint but are never called.
The dictionaries are not part of the state dict: they are 16 `.npy` files loaded with
`load_dictionaries` (numpy is imported there only) or given to `set_dictionaries`.

Speed-ups over the official forward (same output): each dictionary is normalised (per-atom channel
mean/std) once when it is set instead of in every forward, and the matching score is computed from
the normalised atoms with one matrix product, folding the crop statistics into the query vector:
    <crop, atom_norm * s + m> = <crop * s, atom_norm> + sum_c m_c * sum_xy crop_c.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ops import FusedSequential, conv2d_act, conv_parameters, run_fused

PARTS = ("left_eye", "right_eye", "nose", "mouth")
ATTENTION_PREFIX = {"left_eye": "le", "right_eye": "re", "nose": "no", "mouth": "mo"}
SCALES = (256, 128, 64, 32)  # feature-map sides for a 512 input: VGG strides 2, 4, 8, 16
FEATURE_CHANNELS = {256: 128, 128: 256, 64: 512, 32: 512}
PART_SIZES_512 = {"left_eye": 80, "right_eye": 80, "nose": 50, "mouth": 110}  # official part sizes at 512
ADAIN_EPS = 1e-5
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")
# Where the four official VGG slices end ([0:8], [8:17], [17:26], [26:35]). torchvision's ReLUs are
# in-place, so the ReLU opening the next slice overwrites the stored output: the features the official
# net uses are relu2_2, relu3_4, relu4_4 (post-ReLU) and conv5_4 (pre-ReLU). We run up to these stops.
VGG_FEATURE_STOPS = (9, 18, 27, 35)
OFFICIAL_SLICES = ((0, 8), (8, 17), (17, 26), (26, 35))


def dictionary_shape(part: str, scale: int) -> tuple[int, int, int]:
    """(C, S, S) of one dictionary atom: S = official part size // (512 / scale)."""
    side = PART_SIZES_512[part] // (512 // scale)
    return FEATURE_CHANNELS[scale], side, side


def dictionary_key(part: str, scale: int) -> str:
    """`left_eye_256`: the key of a dictionary in set_dictionaries and the stem of its file (+ `_center`)."""
    return f"{part}_{scale}"


def normalize_atoms(atoms: torch.Tensor, eps: float = ADAIN_EPS) -> torch.Tensor:
    """Per-atom, per-channel standardisation (K,C,S,S) with the unbiased variance, as the official
    component AdaIN normalises its content: (x - mean) / sqrt(var + eps)."""
    flat = atoms.flatten(2)
    mean = flat.mean(dim=2)[..., None, None]
    std = (flat.var(dim=2) + eps).sqrt()[..., None, None]
    return (atoms - mean) / std


def channel_mean_std(x: torch.Tensor, eps: float = ADAIN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,C,H,W) -> mean, sqrt(unbiased var + eps), each (N,C,1,1)."""
    flat = x.flatten(2)
    return flat.mean(dim=2)[..., None, None], (flat.var(dim=2) + eps).sqrt()[..., None, None]


def as_part_boxes(part_locations: Any, batch: int) -> list[list[list[int]]]:
    """Boxes as Python ints [sample][part][x1, y1, x2, y2] from either the official 4-tuple of (N,4)
    tensors (left_eye, right_eye, nose, mouth) or an (N,4,4) tensor/array [sample, part, xyxy]."""
    if isinstance(part_locations, (tuple, list)) and len(part_locations) == len(PARTS):
        per_part = [torch.as_tensor(p).reshape(-1, 4) for p in part_locations]
        boxes = torch.stack(per_part, dim=1)
    else:
        boxes = torch.as_tensor(part_locations).reshape(-1, len(PARTS), 4)
    if boxes.shape[0] != batch:
        raise ValueError(f"part_locations hold boxes for {boxes.shape[0]} faces, the input has {batch}")
    if boxes.is_floating_point():
        boxes = boxes.floor()
    return boxes.to("cpu", torch.int64).tolist()


class SpectralNormConv2d(nn.Module):
    """Conv2d with spectral normalisation exactly as torch.nn.utils.spectral_norm (one power
    iteration, eps 1e-12), with its state-dict keys bias, weight_orig, weight_u, weight_v.

    In train mode every forward does one power iteration and updates weight_u/weight_v in place (what
    the official test script does, as it never calls eval()); in eval mode the stored u, v are used as
    they are. Without autograd in eval mode the normalised weight is computed once and reused until
    weight_orig, u or v change (tracked by their version counters) or the module is moved/cast."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 dilation: int = 1, eps: float = 1e-12) -> None:
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation)
        self.padding, self.dilation, self.eps = padding, dilation, eps
        self.bias = conv.bias
        self.weight_orig = conv.weight
        rows, cols = out_channels, in_channels * kernel_size * kernel_size
        self.register_buffer("weight_u", F.normalize(torch.randn(rows), dim=0, eps=eps))
        self.register_buffer("weight_v", F.normalize(torch.randn(cols), dim=0, eps=eps))
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def _apply(self, fn, recurse=True):  # .to(), .half(), ...: the cached weight is stale
        self._cache = None
        return super()._apply(fn, recurse)

    def _cache_key(self) -> tuple | None:
        try:
            return (self.weight_orig._version, self.weight_u._version, self.weight_v._version,
                    self.weight_orig.data_ptr(), self.weight_u.data_ptr(), self.weight_v.data_ptr())
        except RuntimeError:  # inference tensors have no version counter: do not cache
            return None

    def weight(self) -> torch.Tensor:
        matrix = self.weight_orig.flatten(1)
        if self.training:
            with torch.no_grad():
                v = F.normalize(torch.mv(matrix.t(), self.weight_u), dim=0, eps=self.eps)
                self.weight_v.copy_(v)
                u = F.normalize(torch.mv(matrix, v), dim=0, eps=self.eps)
                self.weight_u.copy_(u)
            u, v = u.clone(), v.clone()
            return self.weight_orig / torch.dot(u, torch.mv(matrix, v))
        if torch.is_grad_enabled():
            return self.weight_orig / torch.dot(self.weight_u, torch.mv(matrix, self.weight_v))
        key = self._cache_key()
        if key is None or self._cache is None or self._cache[0] != key:
            weight = self.weight_orig / torch.dot(self.weight_u, torch.mv(matrix, self.weight_v))
            self._cache = (key, weight) if key is not None else None
            return weight
        return self._cache[1]

    def conv_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        """(weight, bias, padding, dilation) for ops.conv2d_act; in train mode this runs the power
        iteration, like a call does."""
        return self.weight(), self.bias, self.padding, self.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding, dilation=self.dilation)


def sn_conv_pair(in_channels: int, mid_channels: int, out_channels: int, dilation: int = 1) -> FusedSequential:
    """SN conv3x3 -> LeakyReLU(0.2) -> SN conv3x3: the official AttentionBlock, convU, ToRGB and the
    StyledUpBlock's scale/shift branches all have this layout (keys .0 and .2)."""
    return FusedSequential(
        SpectralNormConv2d(in_channels, mid_channels, padding=dilation, dilation=dilation),
        nn.LeakyReLU(0.2),
        SpectralNormConv2d(mid_channels, out_channels, padding=dilation, dilation=dilation),
    )


class Blur(nn.Module):
    """Depthwise [1,2,1]x[1,2,1]/16 blur; `weight_flip` is stored (the official backward uses it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
        kernel = (kernel / kernel.sum()).view(1, 1, 3, 3)
        self.register_buffer("weight", kernel.repeat(channels, 1, 1, 1))
        self.register_buffer("weight_flip", torch.flip(kernel, [2, 3]).repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1, groups=x.shape[1])


class MSDilateBlock(nn.Module):
    """Four dilated SN conv pairs in parallel, concatenated, fused by an SN conv, plus the input."""

    def __init__(self, channels: int, dilations: Sequence[int] = (4, 3, 2, 1)) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.conv4 = (sn_conv_pair(channels, channels, channels, d)
                                                          for d in dilations)
        self.convi = SpectralNormConv2d(channels * 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.conv1(x), self.conv2(x), self.conv3(x), self.conv4(x)]
        return conv2d_act(torch.cat(branches, 1), *conv_parameters(self.convi), residual=x)


class StyledUpBlock(nn.Module):
    """Blur -> SN conv -> LeakyReLU, a second LeakyReLU (official quirk: slope 0.04 overall),
    spatial modulation `out * Scale(style) + Shift(style)` (Shift ends in a sigmoid), then bilinear x2
    -> SN conv -> LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = FusedSequential(Blur(in_channels), SpectralNormConv2d(in_channels, out_channels),
                                   nn.LeakyReLU(0.2))
        self.convup = FusedSequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    SpectralNormConv2d(out_channels, out_channels), nn.LeakyReLU(0.2))
        self.lrelu = nn.LeakyReLU(0.2)
        self.ScaleModel1 = sn_conv_pair(in_channels, out_channels, out_channels)
        self.ShiftModel1 = FusedSequential(*sn_conv_pair(in_channels, out_channels, out_channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.conv1(x))
        out = out * self.ScaleModel1(style) + self.ShiftModel1(style)
        return self.convup(out)


class UpResBlock(nn.Module):
    """x + conv(LeakyReLU(conv(x))) with plain convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.Model = FusedSequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_fused(self.Model, x, residual=x)  # = x + Model(x)


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear layer filled with zeros without running the (slow, here pointless) random init."""
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    return layer


class VGG19(nn.Module):
    """torchvision's vgg19 module layout (`features`, `avgpool`, `classifier`), built in-house so no
    weights are downloaded. Only `features` ever runs; the classifier exists for the checkpoint layout
    (zero-initialised; `classifier=False` leaves it out, for a features-only encoder)."""

    def __init__(self, classifier: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        if classifier:
            self.classifier = nn.Sequential(
                zero_linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                zero_linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                zero_linear(4096, 1000),
            )


class VGGFeat(nn.Module):
    """The official encoder: normalisation with learnable RGB_mean/RGB_std (nn.Parameters holding the
    ImageNet values at construction; a trained checkpoint may hold others), then VGG19 features.

    Returns [relu2_2 (128 ch, /2), relu3_4 (256, /4), relu4_4 (512, /8), conv5_4 pre-ReLU (512, /16)]."""

    def __init__(self, classifier: bool = True) -> None:
        super().__init__()
        self.model = VGG19(classifier=classifier)
        # The official class re-registers the conv layers in four slices: same modules, second key set.
        self.features = nn.ModuleList(
            nn.Sequential(OrderedDict((str(j), self.model.features[j]) for j in range(start, stop)))
            for start, stop in OFFICIAL_SLICES
        )
        self.register_parameter("RGB_mean", nn.Parameter(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)))
        self.register_parameter("RGB_std", nn.Parameter(torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x + 1) / 2
        x = (x - self.RGB_mean) / self.RGB_std
        if x.shape[3] < 224:
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        features, start = [], 0
        for stop in VGG_FEATURE_STOPS:
            x = run_fused(self.model.features[start:stop], x)
            features.append(x)
            start = stop
        return features


class UNetDictFace(nn.Module):
    """The DFDNet generator (official `UNetDictFace(ngf=64)`).

    Call `net(input, part_locations)`: input (N,3,512,512) RGB in [-1,1]; part_locations either the
    official 4-tuple (left_eye, right_eye, nose, mouth) of int64 tensors (N,4) [x1,y1,x2,y2] in 512
    pixel coordinates, or an (N,4,4) tensor/array [face, part, xyxy]. Returns (N,3,512,512) in [-1,1].
    Each face of a batch uses its own boxes (the official code handles batch size 1 only).

    Dictionaries: `dictionary_path` (the official folder of 16 `<part>_<scale>_center.npy` files) or
    later `load_dictionaries(path)` / `set_dictionaries(mapping)`. They are not in the state dict.
    """

    def __init__(self, ngf: int = 64, dictionary_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        # Attention (confidence) blocks; registration order = the checkpoint's key order.
        for part in PARTS:
            for scale in SCALES:
                channels = FEATURE_CHANNELS[scale]
                self.add_module(f"{ATTENTION_PREFIX[part]}_{scale}", sn_conv_pair(channels, channels, channels))
        self.VggExtract = VGGFeat()
        self.MSDilate = MSDilateBlock(ngf * 8, dilations=(4, 3, 2, 1))
        self.up0 = StyledUpBlock(ngf * 8, ngf * 8)
        self.up1 = StyledUpBlock(ngf * 8, ngf * 4)
        self.up2 = StyledUpBlock(ngf * 4, ngf * 2)
        self.up3 = StyledUpBlock(ngf * 2, ngf)
        self.up4 = FusedSequential(
            SpectralNormConv2d(ngf, ngf), nn.LeakyReLU(0.2), UpResBlock(ngf), UpResBlock(ngf),
            nn.Conv2d(ngf, 3, kernel_size=3, stride=1, padding=1), nn.Tanh(),
        )
        # Built by the official constructor, never called: kept for the checkpoint layout.
        for index, channels in enumerate((ngf * 8, ngf * 4, ngf * 2, ngf)):
            self.add_module(f"to_rgb{index}", sn_conv_pair(channels, channels, 3))
        for part in PARTS:
            for scale in SCALES:
                self.register_buffer(self._dictionary_attr(part, scale), None, persistent=False)
        if dictionary_path is not None:
            self.load_dictionaries(dictionary_path)

    # ------------------------------------------------------------------ dictionaries
    @staticmethod
    def _dictionary_attr(part: str, scale: int) -> str:
        return f"dictionary_{part}_{scale}"

    @property
    def has_dictionaries(self) -> bool:
        return all(getattr(self, self._dictionary_attr(p, s)) is not None for p in PARTS for s in SCALES)

    def dictionary_sizes(self) -> dict[str, int]:
        """Number of atoms K of every loaded dictionary, by key (`left_eye_256`, ...)."""
        sizes = {}
        for part in PARTS:
            for scale in SCALES:
                atoms = getattr(self, self._dictionary_attr(part, scale))
                if atoms is not None:
                    sizes[dictionary_key(part, scale)] = atoms.shape[0]
        return sizes

    def set_dictionaries(self, dictionaries: Mapping[str, Any]) -> None:
        """Set all 16 dictionaries from a mapping `<part>_<scale>` -> array/tensor with K atoms first
        (any shape holding K*C*S*S values, e.g. (K,C,S,S) or (K,C*S*S)); upcast to float32.

        They are stored normalised (the part of the official component AdaIN that does not depend on
        the input), on the device of the network."""
        missing = [dictionary_key(p, s) for p in PARTS for s in SCALES if dictionary_key(p, s) not in dictionaries]
        if missing:
            raise ValueError(f"dictionaries missing for {', '.join(missing)}; all 16 <part>_<scale> keys are needed")
        device = self.VggExtract.RGB_mean.device
        for part in PARTS:
            for scale in SCALES:
                key = dictionary_key(part, scale)
                atoms = torch.as_tensor(dictionaries[key]).to(device=device, dtype=torch.float32)
                channels, side, _ = dictionary_shape(part, scale)
                per_atom = channels * side * side
                if atoms.ndim == 0 or atoms.shape[0] == 0 or atoms.numel() != atoms.shape[0] * per_atom:
                    raise ValueError(
                        f"dictionary {key} has shape {tuple(atoms.shape)}; expected (K, {channels}, {side}, {side}) "
                        f"or anything with K atoms of {per_atom} values"
                    )
                atoms = atoms.reshape(atoms.shape[0], channels, side, side)
                # Stored as a (K, C*S*S) matrix: the matching is one matrix product, and a 2-D
                # buffer is left alone by .to(memory_format=channels_last).
                setattr(self, self._dictionary_attr(part, scale), normalize_atoms(atoms).flatten(1))

    def load_dictionaries(self, path: str | os.PathLike) -> None:
        """Load the official dictionaries: a folder with `<part>_<scale>_center.npy` for part in
        left_eye, right_eye, nose, mouth and scale in 256, 128, 64, 32 (any number of atoms K), or an
        .npz file holding arrays named `<part>_<scale>`."""
        import numpy as np  # only to read .npy/.npz files

        path = Path(path).expanduser()
        arrays: dict[str, Any] = {}
        if path.is_file() and path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        elif path.is_dir():
            files = {dictionary_key(p, s): path / f"{dictionary_key(p, s)}_center.npy" for p in PARTS for s in SCALES}
            missing = [f.name for f in files.values() if not f.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{path} lacks the DFDNet dictionary files {', '.join(missing)}. Use the official "
                    "DictionaryCenter512 folder (see models/dfdnet.md) or build your own with "
                    "`facerestore build-dictionary`."
                )
            for key, file in files.items():
                try:
                    arrays[key] = np.load(file, allow_pickle=False)
                except (ValueError, OSError) as exc:
                    raise ValueError(
                        f"{file} is not a readable .npy array ({exc}); if it came from a failed download "
                        "(e.g. an HTML page), delete it and fetch the official file by hand (models/dfdnet.md)"
                    ) from exc
        else:
            raise FileNotFoundError(f"dictionary folder or .npz file {path} does not exist")
        self.set_dictionaries(arrays)

    def _dictionary(self, part: str, scale: int) -> torch.Tensor:
        atoms = getattr(self, self._dictionary_attr(part, scale))
        if atoms is None:
            raise RuntimeError(
                "DFDNet has no component dictionaries: call net.load_dictionaries(folder) with the official "
                "DictionaryCenter512 folder (16 <part>_<scale>_center.npy files), net.set_dictionaries(...), "
                "or build your own with `facerestore build-dictionary` (see models/dfdnet.md)"
            )
        return atoms

    # ------------------------------------------------------------------ forward
    def swap_components(
        self, features: Sequence[torch.Tensor], boxes: Sequence[Sequence[Sequence[int]]]
    ) -> tuple[list[torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
        """Replace each component of the VGG features by its best dictionary atom.

        features: the four VGG maps (256, 128, 64, 32 for a 512 input); boxes: [face][part][xyxy] ints
        in 512 px. Returns the updated maps and, per `<part>_<scale>`, the raw matching `scores` (N,K)
        and the selected `index` (N,)."""
        updated, matches = [], {}
        for feature, scale in zip(features, SCALES):
            factor = 512 // scale
            out = feature.clone()
            for p, part in enumerate(PARTS):
                atoms = self._dictionary(part, scale)
                channels, side, _ = dictionary_shape(part, scale)
                crops, resized = [], []
                for b, face_boxes in enumerate(boxes):
                    x1, y1, x2, y2 = (v // factor for v in face_boxes[p])
                    crop = feature[b:b + 1, :, y1:y2, x1:x2]  # from the un-updated map, as the official
                    if crop.shape[2] == 0 or crop.shape[3] == 0:
                        raise ValueError(
                            f"the {part} box {face_boxes[p]} of face {b} is empty at scale {scale}; "
                            "boxes must lie inside the 512x512 face with x2 > x1 and y2 > y1"
                        )
                    crops.append(crop)
                    resized.append(F.interpolate(crop.float(), (side, side), mode="bilinear", align_corners=False))
                resized_all = torch.cat(resized)
                mean, std = channel_mean_std(resized_all)
                with torch.autocast(resized_all.device.type, enabled=False):
                    # <r, a_norm * std + mean> for every atom at once, in float32.
                    query = (resized_all * std).flatten(1)
                    constant = (mean * resized_all.sum((2, 3), keepdim=True)).sum((1, 2, 3))
                    scores = query @ atoms.float().t() + constant[:, None]
                index = scores.argmax(dim=1)
                chosen = atoms.index_select(0, index).view(-1, channels, side, side).float() * std + mean
                matches[dictionary_key(part, scale)] = {"scores": scores, "index": index}
                for b, crop in enumerate(crops):
                    swap = F.interpolate(chosen[b:b + 1], size=crop.shape[2:]).to(crop.dtype)  # legacy nearest
                    attention = getattr(self, f"{ATTENTION_PREFIX[part]}_{scale}")(swap - crop)
                    x1, y1, x2, y2 = (v // factor for v in boxes[b][p])
                    out[b:b + 1, :, y1:y2, x1:x2] = crop + attention * swap
            updated.append(out)
        return updated, matches

    def decode(self, features: Sequence[torch.Tensor], updated: Sequence[torch.Tensor]) -> torch.Tensor:
        """MSDilate on the ORIGINAL 32 feature, then the StyledUpBlocks with the updated maps as style."""
        x = self.MSDilate(features[3])
        x = self.up0(x, updated[3])
        x = self.up1(x, updated[2])
        x = self.up2(x, updated[1])
        x = self.up3(x, updated[0])
        return self.up4(x)

    def forward(self, input: torch.Tensor, part_locations: Any) -> torch.Tensor:
        boxes = as_part_boxes(part_locations, input.shape[0])
        features = self.VggExtract(input)
        updated, _ = self.swap_components(features, boxes)
        return self.decode(features, updated)
