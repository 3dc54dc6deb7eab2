"""Sparsity of a model, per prunable tensor and overall, as data and as a text table."""

import dataclasses
from typing import Any

import numpy as np

from imp_keras._keras import keras, require_tf_keras
from imp_keras.masking import MaskHolder, layers_of, masked_weights, plain_kernels

__all__ = ["LayerSparsity", "SparsityReport", "sparsity_report"]


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    name: str
    shape: tuple[int, ...]
    total: int
    pruned: int

    @property
    def sparsity(self) -> float:
        return self.pruned / self.total if self.total else 0.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-tensor and global sparsity; `str(report)` is a table."""

    layers: tuple[LayerSparsity, ...]

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers)

    @property
    def pruned(self) -> int:
        return sum(layer.pruned for layer in self.layers)

    @property
    def sparsity(self) -> float:
        return self.pruned / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "layers": [{**dataclasses.asdict(layer), "sparsity": layer.sparsity} for layer in self.layers],
            "total": self.total,
            "pruned": self.pruned,
            "sparsity": self.sparsity,
        }

    def __str__(self) -> str:
        rows = [(layer.name, "x".join(map(str, layer.shape)), layer.total, layer.total - layer.pruned, layer.sparsity) for layer in self.layers]
        rows.append(("global", "", self.total, self.total - self.pruned, self.sparsity))
        width = max(len(r[0]) for r in rows + [("tensor",)])
        shape_width = max(len(r[1]) for r in rows + [("", "shape")])
        lines = [f"{'tensor':<{width}}  {'shape':>{shape_width}}  {'weights':>10}  {'alive':>10}  {'sparsity':>8}"]
        lines.append("-" * len(lines[0]))
        for i, (name, shape, total, alive, sparsity) in enumerate(rows):
            if i == len(rows) - 1:
                lines.append("-" * len(lines[0]))
            lines.append(f"{name:<{width}}  {shape:>{shape_width}}  {total:>10d}  {alive:>10d}  {sparsity:>8.2%}")
        return "\n".join(lines)


def _plain_tensors(model: keras.Model) -> list[LayerSparsity]:
    found = []
    for name, variable in plain_kernels(model):
        value = np.asarray(variable.numpy())
        found.append(LayerSparsity(name, value.shape, value.size, value.size - int(np.count_nonzero(value))))
    return found


def sparsity_report(model: keras.Model) -> SparsityReport:
    """Sparsity of every prunable tensor of `model` and overall.

    For a model from `imp_keras.prunable`, pruned means masked out; for a plain (stripped) model,
    exact zeros in its Dense, Conv and depthwise kernels.

    Example:
    >>> print(imp_keras.sparsity_report(model))  # doctest: +SKIP
    tensor            shape   weights       alive  sparsity
    ...
    """
    require_tf_keras(model, "model", keras.Model)
    if any(isinstance(layer, MaskHolder) for layer in layers_of(model)):
        layers = []
        for entry in masked_weights(model):
            mask = entry.mask.numpy()
            layers.append(LayerSparsity(entry.name, tuple(mask.shape), mask.size, mask.size - int(np.count_nonzero(mask))))
        return SparsityReport(tuple(layers))
    return SparsityReport(tuple(_plain_tensors(model)))
