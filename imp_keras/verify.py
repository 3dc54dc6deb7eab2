"""The invariants of an IMP model, checked: what every cycle must leave behind.

    report = imp_keras.verify(model, plan, cycle=1)
    later = imp_keras.verify(model, plan, cycle=2, previous_masks=report.masks)

1. every mask is binary: each entry 0 or 1;
2. every masked weight is exactly 0.0, and so is the optimizer's state for it (momentum, Adam's
   moments, moving averages), so nothing can grow it back;
3. masks are monotone: no weight pruned in `previous_masks` is alive again;
4. the number of alive weights is the plan's after `cycle` cycles (within half a block for the
   Dense kernels of `IMPCallback(block_size=...)`).

`IMPCallback` verifies at the end of every cycle, against the masks of the cycle before, and
raises before the cycle's ladder model is saved.
"""

from collections.abc import Sequence
import dataclasses

import numpy as np

from imp_keras import masking
from imp_keras._keras import keras, require_tf_keras
from imp_keras.plan import Plan, _check_int
from imp_keras.selection import check_block_size

__all__ = ["InvariantError", "VerifyReport", "broken", "verify"]


class InvariantError(RuntimeError):
    """A pruned model breaks an invariant of IMP. `problems` lists each broken one, naming the tensor."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = tuple(problems)


def broken(problems: Sequence[str], where: str = "") -> InvariantError:
    """The error listing `problems`, found `where` (e.g. " at the end of IMP cycle 2 of 3 (epoch 8)")."""
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return InvariantError(f"IMP invariants broken{where}:\n{lines}", problems)


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What `verify` found in a model that keeps every invariant.

    names: the prunable tensors, in model order (`layer/attribute`).
    masks: their masks as boolean arrays (True = alive): `previous_masks` for the next check.
    alive, total: alive and prunable weights over all tensors.
    expected_alive: the plan's alive count for the cycle checked (None without a plan).
    slots: optimizer state tensors checked to be 0.0 where the weights are pruned.
    """

    names: tuple[str, ...]
    masks: tuple[np.ndarray, ...] = dataclasses.field(repr=False)
    alive: int
    total: int
    expected_alive: int | None
    slots: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.alive / self.total


def _first(where: np.ndarray) -> tuple[int, ...]:
    """The first index (C order) where `where` holds."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(where)), where.shape))


def _check_previous(previous_masks: Sequence[np.ndarray], entries: Sequence[masking.MaskedWeight]) -> list[np.ndarray]:
    listed = isinstance(previous_masks, Sequence) and not isinstance(previous_masks, (str, bytes))
    if not listed or len(previous_masks) != len(entries):
        raise ValueError(
            f"`previous_masks` must be a list of {len(entries)} masks, one per prunable tensor (e.g. an "
            f"earlier `VerifyReport.masks`). Received: previous_masks of type {type(previous_masks).__name__}"
            + (f" and length {len(previous_masks)}" if listed else "")
        )
    masks = [np.asarray(m) != 0 for m in previous_masks]
    for entry, mask in zip(entries, masks):
        if mask.shape != tuple(entry.mask.shape):
            raise ValueError(
                f"`previous_masks` does not fit the model: {entry.name} has shape {tuple(entry.mask.shape)}, "
                f"its previous mask {mask.shape}."
            )
    return masks


def verify(
    model: keras.Model,
    plan: Plan | None = None,
    *,
    cycle: int | None = None,
    previous_masks: Sequence[np.ndarray] | None = None,
    block_size: tuple[int, int] | None = None,
) -> VerifyReport:
    """Checks the invariants of IMP in `model` (a model built by `imp_keras.prunable`).

    Args:
      model: the model, with its optimizer (if compiled and built, its state is checked too).
      plan: the `Plan` the masks come from; with `cycle`, the alive count is checked against it.
      cycle: cycles done (0 before the first pruning); needs `plan`.
      previous_masks: masks from earlier in the run (e.g. `VerifyReport.masks` of the previous
        cycle): every weight they prune must still be pruned.
      block_size: the `block_size` given to `IMPCallback`: whole blocks land within half a block
        of the plan's count.

    Returns:
      A `VerifyReport` (its `masks` serve as the next call's `previous_masks`).

    Raises:
      InvariantError: an invariant is broken; the message lists every broken one, naming the
        tensor, how many entries and the first index.
      ValueError, TypeError: an argument is invalid.
    """
    require_tf_keras(model, "model", keras.Model)
    entries = masking.masked_weights(model)
    if not entries:
        raise ValueError(
            f"`model` {model.name!r} has no imp_keras mask holders: it is not a model built by `imp_keras.prunable`."
        )
    if plan is not None and not isinstance(plan, Plan):
        raise TypeError(f"`plan` must be an imp_keras.Plan or None. Received: plan={plan!r}")
    if (plan is None) != (cycle is None):
        raise ValueError(f"`plan` and `cycle` go together: give both or neither. Received: plan={plan!r}, cycle={cycle!r}")
    if cycle is not None:
        _check_int("cycle", cycle, 0)
        if cycle > plan.cycles:
            raise ValueError(f"`cycle` must be at most plan.cycles={plan.cycles}. Received: cycle={cycle}")
    previous = None if previous_masks is None else _check_previous(previous_masks, entries)
    sizes = masking.block_sizes(entries, None if block_size is None else check_block_size(block_size))

    optimizer = getattr(model, "optimizer", None)
    problems, masks, slots = [], [], 0
    for i, entry in enumerate(entries):
        mask = entry.mask.numpy()
        weight = entry.weight.numpy()
        binary = (mask == 0) | (mask == 1)
        if not binary.all():
            first = _first(~binary)
            problems.append(
                f"{entry.name}: {int((~binary).sum())} mask entries are neither 0 nor 1 (first at {list(first)}: {mask[first]})"
            )
        pruned = mask == 0
        revived = pruned & (weight != 0)
        if revived.any():
            problems.append(f"{entry.name}: {int(revived.sum())} pruned weights are not 0.0 (first at {list(_first(revived))})")
        for slot in masking.optimizer_slots(optimizer, entry.weight) if optimizer is not None else []:
            slots += 1
            moving = pruned & (slot.numpy() != 0)
            if moving.any():
                problems.append(
                    f"{entry.name}: optimizer state {slot.name} is not 0.0 for {int(moving.sum())} pruned weights "
                    f"(first at {list(_first(moving))}): they would move again"
                )
        if previous is not None:
            back = ~pruned & ~previous[i]
            if back.any():
                problems.append(
                    f"{entry.name}: {int(back.sum())} weights pruned earlier are alive again (first at {list(_first(back))})"
                )
        masks.append(~pruned)

    alive = sum(int(m.sum()) for m in masks)
    total = sum(m.size for m in masks)
    expected = None
    if plan is not None:
        expected = plan.alive_after(cycle, total)
        tolerance = masking.within_blocks(sizes)
        if abs(alive - expected) > tolerance:
            within = f" (within {tolerance}, half a block)" if tolerance else ""
            problems.append(
                f"{alive} of {total} prunable weights are alive, but after {cycle} cycle(s) the plan has {expected}{within}"
            )
    if problems:
        raise broken(problems)
    return VerifyReport(tuple(e.name for e in entries), tuple(masks), alive, total, expected, slots)
