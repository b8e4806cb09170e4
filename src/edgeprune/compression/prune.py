"""Unstructured low-magnitude pruning with tfmot (paper 1): every Conv2D of the detector, per-layer
targets (tfmot's own behaviour) or one magnitude threshold across all pruned layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeprune.errors import ConfigError

Scope = Literal["per_layer", "global"]
Schedule = Literal["polynomial", "constant"]


@dataclass(frozen=True)
class PruneConfig:
    """How pruning is applied during fine-tuning."""

    scope: Scope = "per_layer"
    schedule: Schedule = "polynomial"
    layer_types: tuple[str, ...] = ("Conv2D",)
    end_fraction: float = 0.6  # the schedule reaches its target after this fraction of steps
    frequency: int | None = None  # steps between mask updates (None: derived from step count)


def variant_name(sparsity: float) -> str:
    """File/table name of a sparsity level: 0 -> ``base``, 0.5 -> ``prune50``, 0.725 ->
    ``prune72p5``."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity {sparsity} outside [0, 1)")
    if sparsity == 0:
        return "base"
    pct = round(sparsity * 100, 4)
    text = f"{pct:g}".replace(".", "p")
    return f"prune{text}"


def sparsity_of(variant: str) -> float:
    """Inverse of :func:`variant_name`."""
    if variant == "base":
        return 0.0
    if not variant.startswith("prune"):
        raise ConfigError(f"variant {variant!r} is not a pruning level (base or prune<pct>)")
    try:
        value = float(variant[5:].replace("p", ".")) / 100
    except ValueError:
        raise ConfigError(f"variant {variant!r}: expected prune<pct>, e.g. prune50") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"variant {variant!r}: sparsity must lie in (0, 1)")
    return value


def prunable_layers(model: Any, layer_types: Sequence[str]) -> list[str]:
    """Names of layers whose class name is one of ``layer_types`` (exact, so DepthwiseConv2D is
    not taken for Conv2D unless listed)."""
    return [layer.name for layer in model.layers if type(layer).__name__ in layer_types]


#: Highest sparsity the global scope gives one layer: tfmot refuses a target of 1.0, and a layer
#: with no weight left would cut the network.
MAX_LAYER_SPARSITY = 0.99


def global_layer_sparsities(model: Any, names: Sequence[str], sparsity: float,
                            max_layer: float = MAX_LAYER_SPARSITY) -> dict[str, float]:
    """Per-layer targets implied by one magnitude threshold over all ``names`` kernels.

    The ``round(sparsity * n)`` smallest-magnitude weights of all layers together are chosen
    (ties broken by layer order, then position, so exactly that many are chosen whatever the
    ties); each layer's target is the fraction of its own weights chosen. No layer gets more than
    ``max_layer``: weights a full layer would lose beyond that go to the next-smallest weights of
    the other layers, so the overall sparsity stays ``sparsity``."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity {sparsity} outside [0, 1)")
    kernels = [np.abs(model.get_layer(n).get_weights()[0]).ravel() for n in names]
    sizes = np.asarray([k.size for k in kernels], dtype=np.int64)
    caps = np.floor(sizes * max_layer).astype(np.int64)
    k = int(round(sparsity * int(sizes.sum())))
    if k > int(caps.sum()):
        raise ConfigError(f"global sparsity {sparsity} needs more than {max_layer:.0%} of some "
                          f"layer's weights; lower paper1.prune sparsities or use per_layer")
    flat = np.concatenate(kernels)
    layer_of = np.repeat(np.arange(len(names)), sizes)
    order = np.argsort(flat, kind="stable")  # ascending magnitude; ties keep layer/position order
    ranked_layer = layer_of[order]
    # Rank of each weight within its own layer (0 = the layer's smallest) in the global order.
    rank_in_layer = np.empty(order.size, dtype=np.int64)
    for i in range(len(names)):
        where = np.nonzero(ranked_layer == i)[0]
        rank_in_layer[where] = np.arange(where.size)
    eligible = np.nonzero(rank_in_layer < caps[ranked_layer])[0][:k]
    chosen = np.bincount(ranked_layer[eligible], minlength=len(names))
    return {n: float(chosen[i] / sizes[i]) for i, n in enumerate(names)}


def schedule_steps(total_steps: int, cfg: PruneConfig) -> tuple[int, int]:
    """(frequency, end_step) so that the last mask update lands exactly on the target."""
    end = max(1, int(total_steps * cfg.end_fraction))
    freq = cfg.frequency or max(1, end // 10)
    end = max(freq, (end // freq) * freq)
    return freq, end


def apply_pruning(model: Any, sparsity: float, total_steps: int, cfg: PruneConfig) -> Any:
    """Wrap the selected layers of ``model`` with ``prune_low_magnitude``."""
    import tensorflow_model_optimization as tfmot

    from edgeprune.tfenv import setup

    _, keras = setup()
    names = prunable_layers(model, cfg.layer_types)
    if not names:
        raise ConfigError(f"paper1.prune.layer_types {list(cfg.layer_types)} matches no layer")
    if cfg.scope == "global":
        targets = global_layer_sparsities(model, names, sparsity)
    else:
        targets = {n: sparsity for n in names}
    freq, end = schedule_steps(total_steps, cfg)
    sched = tfmot.sparsity.keras

    def schedule_for(target: float) -> Any:
        if cfg.schedule == "constant":
            return sched.ConstantSparsity(target, begin_step=0, frequency=freq)
        return sched.PolynomialDecay(0.0, target, begin_step=0, end_step=end, frequency=freq)

    def clone(layer: Any) -> Any:
        if layer.name in targets and targets[layer.name] > 0:
            return sched.prune_low_magnitude(layer, pruning_schedule=schedule_for(
                targets[layer.name]))
        return layer.__class__.from_config(layer.get_config())

    pruned = keras.models.clone_model(model, clone_function=clone)
    _copy_weights(model, pruned)
    return pruned


def _copy_weights(src: Any, dst: Any) -> None:
    """Copy weights layer by layer (pruning wrappers hold extra mask/threshold variables)."""
    for layer in dst.layers:
        inner = getattr(layer, "layer", layer)
        weights = src.get_layer(inner.name).get_weights()
        if weights:
            inner.set_weights(weights)


def update_step_callback() -> Any:
    """tfmot's callback that advances the pruning step (drive it from the training loop)."""
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.UpdatePruningStep()


def strip(model: Any) -> Any:
    """Remove pruning wrappers, leaving plain layers with zeroed weights."""
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


def measured_sparsity(model: Any, names: Sequence[str]) -> dict[str, Any]:
    """Fraction of exactly-zero kernel weights over ``names`` (overall and per layer)."""
    per_layer = {}
    zeros = total = 0
    for n in names:
        k = model.get_layer(n).get_weights()[0]
        z = int(k.size - np.count_nonzero(k))
        per_layer[n] = z / k.size
        zeros += z
        total += k.size
    return {"sparsity": zeros / max(total, 1), "pruned_weights": total, "per_layer": per_layer}

