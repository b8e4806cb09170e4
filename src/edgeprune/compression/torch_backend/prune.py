"""Filter removal on torch detectors through Torch-Pruning's ``DependencyGraph``.

The plan -- which filters of which layers go -- is the framework-neutral one of
:mod:`edgeprune.compression.cluster.algorithm` (θ_MW ranking, filter schedule, Algorithm 1);
only the surgery differs from the Keras backend: for each pruned convolution,
``DG.get_pruning_group(conv, tp.prune_conv_out_channels, idxs)`` collects every coupled layer
(its batch norm, the next depthwise convolution and its batch norm, the concatenation of a fire
module and the input channels of every consumer: next pointwise or squeeze layer, extra layers,
SSD heads) and ``group.prune()`` removes them in place. No coupling is written by hand here.

:class:`ThetaMW` is θ_MW (paper 2, Eq. 3) as a Torch-Pruning importance: the mean of the squared
weights of each filter of the group's root convolution (float64, as the Keras ranking).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from edgeprune.compression.cluster.importance import theta_mw
from edgeprune.compression.cluster.surgery import _keep_indices
from edgeprune.compression.torch_backend.models import SSDTorch, spec_of, widths_of
from edgeprune.detection.models import DetectorSpec
from edgeprune.errors import ConfigError


class ThetaMW(tp.importance.Importance):
    """θ_MW of the group's root filters: ``mean(w[f] ** 2)`` over the ``c_in x kh x kw``
    weights of each filter ``f`` of the root convolution, in float64 (coupled layers do not
    vote: the paper ranks a layer's filters by their own weights)."""

    @torch.no_grad()
    def __call__(self, group: Any) -> torch.Tensor:
        dep, idxs = group[0]
        layer = dep.target.module
        if dep.handler is not tp.prune_conv_out_channels or not isinstance(layer, nn.Conv2d):
            raise ConfigError(f"θ_MW ranks convolution filters; the group's root is "
                              f"{type(layer).__name__} pruned by {dep.handler}")
        # The Keras kernel layout (kh, kw, c_in, c_out), contiguous, through the same function
        # as the Keras ranking: equal weights give bit-identical scores and ties.
        kernel = np.ascontiguousarray(layer.weight.detach().permute(2, 3, 1, 0).cpu().numpy())
        return torch.from_numpy(theta_mw(kernel)[np.asarray(idxs, dtype=np.int64)])


def example_input(model: SSDTorch) -> torch.Tensor:
    """One zero image (1, 3, H, W) for tracing."""
    h, w = model.spec.input_size
    return torch.zeros(1, 3, int(h), int(w))


def dependency_graph(model: SSDTorch) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of ``model`` (traced on one zero image)."""
    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input(model),
                                                     verbose=False)


def _conv(model: SSDTorch, layer: str) -> nn.Conv2d:
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ConfigError(f"layer {layer!r} does not exist in the torch {model.spec.arch}") \
            from None
    if not isinstance(module, nn.Conv2d) or module.groups != 1:
        raise ConfigError(f"layer {layer!r} is not a (non-depthwise) convolution; only "
                          "convolution filters can be ranked and pruned")
    return module


def layer_groups(model: SSDTorch, layers: Sequence[str],
                 graph: tp.DependencyGraph | None = None) -> dict[str, Any]:
    """The full pruning group (all filters) of each named layer."""
    dg = graph or dependency_graph(model)
    out = {}
    for name in layers:
        conv = _conv(model, name)
        out[name] = dg.get_pruning_group(conv, tp.prune_conv_out_channels,
                                         list(range(conv.out_channels)))
    return out


def torch_layer_scores(model: SSDTorch, layers: Sequence[str],
                       graph: tp.DependencyGraph | None = None) -> dict[str, np.ndarray]:
    """θ_MW per filter of each named layer, through :class:`ThetaMW` on the layer's group
    (the torch counterpart of :func:`edgeprune.compression.cluster.importance.layer_scores`)."""
    imp = ThetaMW()
    return {name: imp(group).numpy() for name, group in
            layer_groups(model, layers, graph).items()}


def prune_in_place(model: SSDTorch, remove: Mapping[str, Sequence[int]]) -> dict[str, list[str]]:
    """Remove filters ``remove[layer]`` (indices into each layer's current filters) and every
    coupled channel, in place, one dependency group per layer. Returns, per pruned layer, the
    names of the modules its group touched (for logs and tests)."""
    arch = model.spec.arch
    keep = _keep_indices(widths_of(model), remove, arch)
    dg = dependency_graph(model)
    names = {m: n for n, m in model.named_modules()}
    touched: dict[str, list[str]] = {}
    for layer, kept in keep.items():
        conv = _conv(model, layer)
        drop = sorted(set(range(conv.out_channels)) - {int(i) for i in kept})
        if not drop:
            continue
        group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, drop)
        if not dg.check_pruning_group(group):
            raise ConfigError(f"layer {layer!r}: Torch-Pruning refuses to remove {len(drop)} "
                              "filters (a coupled layer would be left empty)")
        touched[layer] = sorted({names.get(dep.target.module, "?") for dep, _ in group})
        group.prune()
    return touched


def prune_torch(model: SSDTorch, spec: DetectorSpec | None,
                remove: Mapping[str, Sequence[int]]) -> tuple[SSDTorch, DetectorSpec]:
    """A thinner copy of ``model`` without the filters ``remove[layer]`` (``model`` is left
    as it is); returns it and its spec -- the torch counterpart of
    :func:`edgeprune.compression.cluster.surgery.prune_filters`."""
    thin = copy.deepcopy(model)
    prune_in_place(thin, remove)
    return thin.eval(), spec_of(thin)
