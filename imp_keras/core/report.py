"""Sparsity of a model, per tensor and overall, as data and as a text table.

A report states two sparsities: of the masked tensors (what IMP prunes and the plan counts) and of
all trainable kernels, the masked ones plus the kernels no mask holds (`unmasked`, whose exact
zeros count as pruned). A model and its stripped copy give the same report. Frozen kernels are in
neither, masked or not: a layer frozen after `prunable` is left out as pruning leaves it.
"""

from collections.abc import Iterable, Sequence
import dataclasses
from typing import Any

import numpy as np

__all__ = ["LayerSparsity", "SparsityReport", "report_of"]


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    name: str
    shape: tuple[int, ...]
    total: int
    pruned: int

    @property
    def sparsity(self) -> float:
        return self.pruned / self.total if self.total else 0.0


def _layer_dicts(layers: tuple[LayerSparsity, ...]) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(layer), "sparsity": layer.sparsity} for layer in layers]


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-tensor and global sparsity; `str(report)` is a table.

    Attributes:
      layers: the masked tensors (pruned = masked out).
      unmasked: the other trainable kernels, embedding tables included (pruned = exact zeros).
    """

    layers: tuple[LayerSparsity, ...]
    unmasked: tuple[LayerSparsity, ...] = ()

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers)

    @property
    def pruned(self) -> int:
        return sum(layer.pruned for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Of the masked tensors."""
        return self.pruned / self.total if self.total else 0.0

    @property
    def kernel_total(self) -> int:
        return self.total + sum(layer.total for layer in self.unmasked)

    @property
    def kernel_pruned(self) -> int:
        return self.pruned + sum(layer.pruned for layer in self.unmasked)

    @property
    def kernel_sparsity(self) -> float:
        """Of all trainable kernels, masked or not."""
        return self.kernel_pruned / self.kernel_total if self.kernel_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "layers": _layer_dicts(self.layers),
            "total": self.total,
            "pruned": self.pruned,
            "sparsity": self.sparsity,
            "unmasked": _layer_dicts(self.unmasked),
            "kernel_total": self.kernel_total,
            "kernel_pruned": self.kernel_pruned,
            "kernel_sparsity": self.kernel_sparsity,
        }

    def __str__(self) -> str:
        def row(name: str, shape: tuple[int, ...], total: int, pruned: int) -> tuple[str, str, int, int, float]:
            return (name, "x".join(map(str, shape)), total, total - pruned, pruned / total if total else 0.0)

        rows = [row(l.name, l.shape, l.total, l.pruned) for l in self.layers]
        rows.append(row("global", (), self.total, self.pruned))
        unmasked = [row(f"{l.name} (unmasked)", l.shape, l.total, l.pruned) for l in self.unmasked]
        if unmasked:
            unmasked.append(row("all trainable kernels", (), self.kernel_total, self.kernel_pruned))
        width = max(len(r[0]) for r in rows + unmasked + [("tensor",)])
        shape_width = max(len(r[1]) for r in rows + unmasked + [("", "shape")])
        header = f"{'tensor':<{width}}  {'shape':>{shape_width}}  {'weights':>10}  {'alive':>10}  {'sparsity':>8}"
        rule = "-" * len(header)

        def lines(block: list[tuple[str, str, int, int, float]]) -> list[str]:
            body = [f"{n:<{width}}  {s:>{shape_width}}  {t:>10d}  {a:>10d}  {p:>8.2%}" for n, s, t, a, p in block]
            return [*body[:-1], rule, body[-1]]

        return "\n".join([header, rule, *lines(rows), *([""] + lines(unmasked) if unmasked else [])])


def _zeros(name: str, value: np.ndarray) -> LayerSparsity:
    return LayerSparsity(name, tuple(value.shape), value.size, value.size - int(np.count_nonzero(value)))


def report_of(
    kernels: Sequence[tuple[str, np.ndarray]],
    masks: Sequence[tuple[str, np.ndarray]],
    masked: Iterable[str] | None,
    default_masked: Iterable[str],
) -> SparsityReport:
    """The report of a model from its trainable kernels (name, values) and the masks of its
    trainable masked tensors (name, mask): masked tensors count masked-out entries; without masks,
    the kernels named in `masked` (by default those of `default_masked` that are trainable) count
    exact zeros. Every other kernel is unmasked, exact zeros counting."""
    if isinstance(masked, (str, bytes)):
        raise TypeError(f"`masked` must be a list of tensor names, e.g. ['dense/kernel']. Received: masked={masked!r}")
    if masks:
        if masked is not None:
            raise ValueError("`masked` is for plain models; this model's mask holders say what is masked.")
        layers = [_zeros(name, mask) for name, mask in masks]
        names = {name for name, _ in masks}
    else:
        trainable = {name for name, _ in kernels}
        # A tensor masked once but frozen since is no trainable kernel: left out, as for the model it was stripped from.
        names = set(default_masked) & trainable if masked is None else set(masked)
        unknown = sorted(names - trainable)
        if unknown:
            raise ValueError(f"`masked` names tensors that are not trainable kernels of the model: {unknown}")
        layers = [_zeros(name, value) for name, value in kernels if name in names]
    return SparsityReport(tuple(layers), tuple(_zeros(name, value) for name, value in kernels if name not in names))
