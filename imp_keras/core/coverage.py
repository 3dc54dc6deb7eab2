"""Which weights are kernels, and what `prunable` leaves unmasked: the rules and wording both
flavours share, on names, ranks and counts.

A kernel is a weight of rank >= 2 that is not a bias or a normalisation parameter; an embedding
table is a kernel whose name says `embedding`. `prunable` masks every trainable kernel it can hold
a mask for; every other kernel is listed once per layer type and reason (`Skipped`), and a model
whose unmasked kernels hold most of its trainable kernel weights for a reason the user did not
choose is refused (`check_coverage`), so a report never calls a model sparse whose bulk was never
masked.
"""

from collections.abc import Iterable, Sequence
import dataclasses
import fnmatch

__all__ = [
    "DEPTHWISE",
    "EMBEDDING",
    "EXCLUDED",
    "FROZEN",
    "NOT_AN_ATTRIBUTE",
    "NOT_INCLUDED",
    "Skipped",
    "check_coverage",
    "check_names",
    "group_skipped",
    "kernel_role",
]

_NOT_KERNELS = ("bias", "gamma", "beta", "moving_mean", "moving_variance", "scale", "offset")

FROZEN = "frozen: trainable=False, never pruned"
EMBEDDING = "embedding table: pass embeddings=True to prune it"
DEPTHWISE = "depthwise kernel: depthwise=False was passed"
EXCLUDED = "excluded by `exclude`"
NOT_INCLUDED = "not matched by `include`"
NOT_AN_ATTRIBUTE = (
    "not held as a layer attribute (in a list or dict?), so no mask can be handed to the layer: "
    "assign it as `self.<name> = self.add_weight(...)`, or exclude the layer"
)
# Reasons the user chose; any other reason for an unmasked trainable kernel counts against coverage.
_CHOSEN = (FROZEN, DEPTHWISE, EXCLUDED, NOT_INCLUDED)


def kernel_role(name: str, rank: int) -> str:
    """`kernel`, `embedding` or `other` (biases, normalisation parameters, vectors) for a weight
    whose last name part (attribute or variable name) is `name`."""
    if rank < 2 or any(part in name for part in _NOT_KERNELS):
        return "other"
    return "embedding" if "embedding" in name else "kernel"


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Kernels `prunable` left unmasked, grouped by layer type and reason."""

    layer_type: str
    reason: str
    tensors: tuple[str, ...]
    weights: int

    def __str__(self) -> str:
        return f"{self.layer_type}: {len(self.tensors)} tensor(s), {self.weights:,} weights not masked ({self.reason})"


def group_skipped(kernels: Iterable[tuple[str, str, str, int]]) -> list[Skipped]:
    """One `Skipped` per (layer type, reason) from (layer type, reason, tensor name, size) rows,
    sorted by layer type and reason; tensors in the order given."""
    groups: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for layer_type, reason, name, size in kernels:
        groups.setdefault((layer_type, reason), []).append((name, size))
    return [
        Skipped(layer_type, reason, tuple(n for n, _ in rows), sum(s for _, s in rows))
        for (layer_type, reason), rows in sorted(groups.items())
    ]


def check_coverage(model_name: str, masked: int, skipped: Sequence[Skipped]) -> None:
    """Raises when the kernels left unmasked for a reason the user did not choose (not frozen,
    not excluded) hold most of the trainable kernel weights.

    >>> check_coverage("m", 100, [Skipped("Embedding", EMBEDDING, ("e/embeddings",), 160)])
    Traceback (most recent call last):
    ...
    ValueError: Model 'm': 160 of its 260 trainable kernel weights (61.54%) would not be masked: Embedding: 1 tensor(s), 160 weights not masked (embedding table: pass embeddings=True to prune it). Prune them as said, or keep them dense explicitly with `exclude=[...]` (layer names or classes).
    """
    trainable = masked + sum(s.weights for s in skipped if s.reason != FROZEN)
    unchosen = [s for s in skipped if s.reason not in _CHOSEN]
    left = sum(s.weights for s in unchosen)
    if trainable and 2 * left > trainable:
        raise ValueError(
            f"Model {model_name!r}: {left:,} of its {trainable:,} trainable kernel weights ({left / trainable:.2%}) "
            f"would not be masked: {'; '.join(map(str, unchosen))}. Prune them as said, or keep them dense "
            "explicitly with `exclude=[...]` (layer names or classes)."
        )


def check_names(argument: str, names: Iterable[str], layer_names: Iterable[str], patterns: bool = False) -> None:
    """Raises when a layer name in `argument` (`exclude`, `include`) matches no layer of the model:
    almost always a typo, which would otherwise prune a layer the user meant to keep dense.

    With `patterns`, a name is also an fnmatch pattern and is refused only when it matches no
    layer either: a pattern is typed for this model like a name, so one that matches nothing is as
    likely a typo. Layer classes are not checked: a class is a rule reusable across models (keep
    every Embedding dense), and matching none of this model's layers is no mistake.

    >>> check_names("exclude", ["conv*", "fc"], ["conv1", "dense"], patterns=True)
    Traceback (most recent call last):
    ...
    ValueError: `exclude` names layers that are not in the model: ['fc']
    """
    layer_names = set(layer_names)
    unknown = {
        name for name in names
        if name not in layer_names and not (patterns and any(fnmatch.fnmatchcase(layer, name) for layer in layer_names))
    }
    if unknown:
        raise ValueError(f"`{argument}` names layers that are not in the model: {sorted(unknown)}")
