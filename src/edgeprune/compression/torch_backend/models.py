"""PyTorch twins of the paper-2 detectors (SSD-MobileNet v1, SSD-SqueezeNet): plain
``nn.Module``s with the Keras models' layer names, widths, anchors and output layout.

* Modules are registered under the Keras layer names (``conv1_dw``, ``conv1_bn``,
  ``fire2_expand3x3``, ``head0_loc`` ...), so ``state_dict`` keys read ``conv1.weight``,
  ``conv1_bn.running_mean`` and a Keras layer and its torch module are found by one name.
* Widths come from the same :class:`~edgeprune.detection.models.DetectorSpec` (pruned widths
  included), so any Keras detector -- pruned or not -- has a torch twin of the same shape.
* TensorFlow's ``padding="same"`` pads asymmetrically for stride 2 on even inputs (nothing
  before, one after); :class:`SameConv2d` and :class:`SameMaxPool2d` pad exactly as TensorFlow
  does (max pooling pads with -inf, i.e. ignores the padding), so every feature map matches.
* :meth:`SSDTorch.forward` takes NCHW float images with pixel values 0..255 (the Keras
  ``Rescaling`` to [-1, 1] is inside, with Keras's constant :data:`INPUT_SCALE`) and returns
  ``(loc (B, A, 4), conf_logits (B, A, C+1))``; a head's NCHW output is permuted to NHWC
  before the reshape, which is what Keras's ``Reshape((-1, 4))`` of an NHWC map does, so
  anchors are in the same order.
* :class:`DeployModel` is the deployment contract of the Keras export: NHWC input ``image``
  (0..255), outputs ``loc`` and softmax ``conf`` -- what the project's runtimes (OpenVINO,
  LiteRT, TensorRT) and its evaluator read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.compression.cluster.backend import TORCH_ARCHS
from edgeprune.detection.boxes import AnchorSpec, generate_anchors
from edgeprune.detection.models import DetectorSpec, mobilenet_v1, resolve_widths, squeezenet
from edgeprune.errors import ConfigError

#: Keras defaults of the building blocks (edgeprune.detection.models.layers).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01   # torch's momentum = 1 - Keras's 0.99
#: The scale of Keras's ``Rescaling(1 / 127.5, offset=-1)`` as the layer applies it:
#: ``tf.cast`` of a Python float goes through float32 (in a float64 model too), so Keras
#: multiplies by float32(1 / 127.5), not by 1 / 127.5. The twin uses the same constant, which
#: makes its input normalisation bit-identical to Keras's in float32 and in float64.
INPUT_SCALE = float(np.float32(1.0 / 127.5))


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``padding="same"`` along one axis: (before, after)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(hw: tuple[int, int], kernel: int, stride: int) -> tuple[int, int, int, int]:
    """F.pad order (left, right, top, bottom) for an input of size ``hw``."""
    top, bottom = same_pads(hw[0], kernel, stride)
    left, right = same_pads(hw[1], kernel, stride)
    return left, right, top, bottom


def _out(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    return math.ceil(hw[0] / stride), math.ceil(hw[1] / stride)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``same`` padding for a fixed input size: symmetric padding
    goes into the convolution, an asymmetric one is an explicit zero pad first."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, hw: tuple[int, int],
                 groups: int = 1, bias: bool = False) -> None:
        left, right, top, bottom = _pads(hw, kernel, stride)
        symmetric = left == right and top == bottom
        super().__init__(cin, cout, kernel, stride, padding=(top, left) if symmetric else 0,
                         groups=groups, bias=bias)
        self.tf_pad = None if symmetric else (left, right, top, bottom)
        self.in_hw, self.out_hw = tuple(hw), _out(hw, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_pad is not None:
            x = F.pad(x, self.tf_pad)
        return super().forward(x)


class SameMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` with TensorFlow ``same`` padding (padded cells never win)."""

    def __init__(self, kernel: int, stride: int, hw: tuple[int, int]) -> None:
        super().__init__(kernel, stride)
        self.tf_pad = _pads(hw, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.tf_pad, value=float("-inf")))


class SSDTorch(nn.Module):
    """SSD detector of ``spec`` (``ssd_mobilenet_v1`` or ``ssd_squeezenet``); see the module
    docstring for names, layout and input/output contract."""

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__()
        if spec.arch not in TORCH_ARCHS:
            raise ConfigError(f"no torch model for architecture {spec.arch!r}; the torch "
                              f"backend has {list(TORCH_ARCHS)}")
        if spec.first_stride not in (8, 16):
            raise ConfigError(f"first_stride must be 8 or 16, got {spec.first_stride}")
        self.spec = spec
        self.widths = resolve_widths(spec)
        self._hw = tuple(int(v) for v in spec.input_size)
        self._ch = 3
        self.program: list[tuple[str, ...]] = []
        if spec.arch == "ssd_mobilenet_v1":
            taps = self._build_mobilenet_v1()
        else:
            taps = self._build_squeezenet()
        if spec.first_stride == 16:
            taps = taps[1:]
        self.taps = [name for name, _, _ in taps]
        ch, hw = taps[-1][1], taps[-1][2]
        self._ch, self._hw = ch, hw
        self.extras: list[tuple[str, str]] = []
        for i in range(1, 6 - len(taps) + 1):
            a = self._cbr(f"extra{i}_1", 1, 1)
            b = self._cbr(f"extra{i}_2", 3, 2)
            self.extras.append((a, b))
            taps.append((b, self._ch, self._hw))
        k_per = len(spec.aspect_ratios) + 1
        self.num_classes = spec.num_classes
        self.feature_sizes: tuple[tuple[int, int], ...] = tuple(hw for _, _, hw in taps)
        for i, (_, ch, hw) in enumerate(taps):
            self.add_module(f"head{i}_loc", SameConv2d(ch, k_per * 4, 3, 1, hw, bias=True))
            self.add_module(f"head{i}_conf", SameConv2d(ch, k_per * (spec.num_classes + 1), 3,
                                                        1, hw, bias=True))
        self.n_heads = len(taps)

    # -- building ---------------------------------------------------------------------------

    def _cbr(self, name: str, kernel: int, stride: int, relu: bool = True) -> str:
        """Conv (no bias) + BN named like the Keras block; ReLU6 (``<name>_relu`` in Keras) is a
        clamp in :meth:`_block`."""
        filters = self.widths[name]
        self.add_module(name, SameConv2d(self._ch, filters, kernel, stride, self._hw))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(filters, eps=BN_EPS, momentum=BN_MOMENTUM))
        self._ch, self._hw = filters, _out(self._hw, stride)
        return name

    def _dw(self, name: str, stride: int) -> str:
        self.add_module(name, SameConv2d(self._ch, self._ch, 3, stride, self._hw,
                                         groups=self._ch))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(self._ch, eps=BN_EPS,
                                                     momentum=BN_MOMENTUM))
        self._hw = _out(self._hw, stride)
        return name

    def _build_mobilenet_v1(self) -> list[tuple[str, int, tuple[int, int]]]:
        self.program.append(("cbr", self._cbr("conv0", 3, 2)))
        taps = []
        for i, stride in enumerate(mobilenet_v1.STRIDES, start=1):
            self.program.append(("cbr", self._dw(f"conv{i}_dw", stride)))
            self.program.append(("cbr", self._cbr(f"conv{i}", 1, 1)))
            if i in (5, 11, 13):
                self.program.append(("tap", f"conv{i}"))
                taps.append((f"conv{i}", self._ch, self._hw))
        return taps

    def _pool(self, name: str) -> None:
        self.add_module(name, SameMaxPool2d(3, 2, self._hw))
        self._hw = _out(self._hw, 2)
        self.program.append(("pool", name))

    def _build_squeezenet(self) -> list[tuple[str, int, tuple[int, int]]]:
        self.program.append(("cbr", self._cbr("conv1", 3, 2)))
        self._pool("pool1")
        taps = []
        for i in range(2, 10):
            hw = self._hw
            s = self._cbr(f"fire{i}_squeeze1x1", 1, 1)
            e1 = self._cbr(f"fire{i}_expand1x1", 1, 1)
            self._ch, self._hw = self.widths[s], hw
            e3 = self._cbr(f"fire{i}_expand3x3", 3, 1)
            self._ch = self.widths[e1] + self.widths[e3]
            self.program.append(("fire", s, e1, e3))
            if i in (5, 8):
                self.program.append(("tap", f"fire{i}"))
                taps.append((f"fire{i}", self._ch, self._hw))
            if f"fire{i}" in squeezenet._POOL_AFTER:
                self._pool(f"pool{i}")
        self.program.append(("tap", "fire9"))
        taps.append(("fire9", self._ch, self._hw))
        return taps

    # -- running ----------------------------------------------------------------------------

    def _block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        x = self.get_submodule(f"{name}_bn")(self.get_submodule(name)(x))
        return torch.clamp(x, 0.0, 6.0)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six feature maps the SSD heads read (NCHW), first to last."""
        x = x * INPUT_SCALE - 1.0
        maps: list[torch.Tensor] = []
        for op in self.program:
            if op[0] == "cbr":
                x = self._block(op[1], x)
            elif op[0] == "pool":
                x = self.get_submodule(op[1])(x)
            elif op[0] == "fire":
                s = self._block(op[1], x)
                x = torch.cat([self._block(op[2], s), self._block(op[3], s)], dim=1)
            else:  # tap
                maps.append(x)
        maps = maps[len(maps) - len(self.taps):]
        x = maps[-1]
        for a, b in self.extras:
            x = self._block(b, self._block(a, x))
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """NCHW images (0..255) -> ``(loc (B, A, 4), conf_logits (B, A, C+1))``."""
        locs, confs = [], []
        c = self.num_classes + 1
        for i, fmap in enumerate(self.features(x)):
            loc = self.get_submodule(f"head{i}_loc")(fmap).permute(0, 2, 3, 1)
            conf = self.get_submodule(f"head{i}_conf")(fmap).permute(0, 2, 3, 1)
            locs.append(loc.reshape(loc.shape[0], -1, 4))
            confs.append(conf.reshape(conf.shape[0], -1, c))
        return torch.cat(locs, dim=1), torch.cat(confs, dim=1)


class DeployModel(nn.Module):
    """The deployment graph of a torch detector, with the Keras export's contract: NHWC float
    input (pixel values 0..255), outputs ``loc`` (B, A, 4) and softmax ``conf`` (B, A, C+1)."""

    def __init__(self, detector: SSDTorch) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, logits = self.detector(image.permute(0, 3, 1, 2))
        return loc, torch.softmax(logits, dim=-1)


def build_torch_detector(spec: DetectorSpec, seed: int | None = None) -> SSDTorch:
    """A torch detector of ``spec`` in eval mode (seeded initialisation when ``seed`` is
    given; a port from Keras overwrites every weight anyway)."""
    if seed is not None:
        torch.manual_seed(seed)
    return SSDTorch(spec).eval()


def widths_of(model: SSDTorch) -> dict[str, int]:
    """Filters per width layer, read from the modules (current after Torch-Pruning); a width
    layer the network does not build (``extra4_*`` with ``first_stride`` 8) keeps its spec
    value, as in the Keras spec."""
    modules = dict(model.named_modules())
    return {name: int(modules[name].out_channels) if name in modules else int(w)
            for name, w in model.widths.items()}


def spec_of(model: SSDTorch) -> DetectorSpec:
    """The spec of ``model`` as it is now: its build spec with the current widths."""
    return replace(model.spec, widths=widths_of(model))


def anchors_of(model: SSDTorch) -> np.ndarray:
    """Anchors (A, 4) in the order of the model's outputs (same as the Keras twin's)."""
    s = model.spec
    return generate_anchors(AnchorSpec(model.feature_sizes, s.min_scale, s.max_scale,
                                       tuple(s.aspect_ratios)))


def spec_dict(model: SSDTorch) -> dict[str, Any]:
    """The spec JSON of :func:`edgeprune.detection.model_io.save_spec` for a torch model
    (current widths and the head feature sizes), plus ``backend: torch``."""
    return {**spec_of(model).to_dict(),
            "feature_sizes": [list(s) for s in model.feature_sizes], "backend": "torch"}


def save_torch(model: SSDTorch, path: Any) -> None:
    """Write ``model.state_dict()`` atomically (``torch.save``); rebuild with
    :func:`load_torch` and the spec (widths included)."""
    from edgeprune.fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def load_torch(path: Any, spec: DetectorSpec | Mapping[str, Any]) -> SSDTorch:
    """Rebuild a torch detector of ``spec`` and load its ``state_dict`` from ``path``."""
    from pathlib import Path

    from edgeprune.errors import DataError

    if not Path(path).is_file():
        raise DataError(f"torch state_dict {path} does not exist")
    if not isinstance(spec, DetectorSpec):
        spec = DetectorSpec.from_dict(spec)
    model = build_torch_detector(spec)
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: state_dict does not fit a {spec.arch} of the given widths "
                        f"({first})") from None
    return model.eval()
