"""Sparsity of a model, per prunable tensor and overall, as data and as a text table."""

import dataclasses
from typing import Any

__all__ = ["LayerSparsity", "SparsityReport"]


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
