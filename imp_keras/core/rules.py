"""The invariants of an IMP model, as rules on NumPy arrays: what every cycle must leave behind.

1. every mask is binary: each entry 0 or 1;
2. every masked weight is exactly 0.0, and so is the optimizer's state for it (momentum, Adam's
   moments, moving averages), so nothing can grow it back;
3. masks are monotone: no weight pruned in `previous_masks` is alive again;
4. the number of alive weights is the plan's after `cycle` cycles (within `tolerance`, half a
   block, for block-sparse Dense kernels).

The counts (4, and `previous_masks` for 3) are over the trainable masked tensors, those pruning
acts on: a layer frozen after `prunable` keeps its masks as they are, and is checked for 1 and 2.

Each flavour's `verify` reads its model into `TensorState`s and calls `check_invariants`.
"""

from collections.abc import Sequence
import dataclasses

import numpy as np

from imp_keras.core.checks import check_int
from imp_keras.core.plan import Plan

__all__ = ["InvariantError", "TensorState", "VerifyReport", "broken", "check_arguments", "check_invariants", "check_previous"]


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
class TensorState:
    """One prunable tensor as NumPy arrays: its mask, its weight, its optimizer slots by name, and
    whether the weight is trainable (pruned and counted) or frozen (checked, not counted)."""

    name: str
    mask: np.ndarray
    weight: np.ndarray
    slots: tuple[tuple[str, np.ndarray], ...] = ()
    trainable: bool = True


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What `verify` found in a model that keeps every invariant.

    names: the prunable (trainable masked) tensors, in model order (`layer/attribute`).
    masks: their masks as boolean arrays (True = alive): `previous_masks` for the next check.
    alive, total: alive and prunable weights over these tensors.
    expected_alive: the plan's alive count for the cycle checked (None without a plan).
    slots: optimizer state tensors checked to be 0.0 where the weights are pruned.
    frozen: masked tensors whose weights are not trainable: checked, not counted.
    """

    names: tuple[str, ...]
    masks: tuple[np.ndarray, ...] = dataclasses.field(repr=False)
    alive: int
    total: int
    expected_alive: int | None
    slots: int
    frozen: tuple[str, ...] = ()

    @property
    def sparsity(self) -> float:
        return 1.0 - self.alive / self.total if self.total else 0.0


def _first(where: np.ndarray) -> tuple[int, ...]:
    """The first index (C order) where `where` holds."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(where)), where.shape))


def check_arguments(plan: Plan | None, cycle: int | None) -> None:
    """Refuses a `plan`/`cycle` pair `verify` cannot check against."""
    if plan is not None and not isinstance(plan, Plan):
        raise TypeError(f"`plan` must be an imp_keras.Plan or None. Received: plan={plan!r}")
    if (plan is None) != (cycle is None):
        raise ValueError(f"`plan` and `cycle` go together: give both or neither. Received: plan={plan!r}, cycle={cycle!r}")
    if cycle is not None:
        check_int("cycle", cycle, 0)
        if cycle > plan.cycles:
            raise ValueError(f"`cycle` must be at most plan.cycles={plan.cycles}. Received: cycle={cycle}")


def check_previous(previous_masks: Sequence[np.ndarray], shapes: Sequence[tuple[str, tuple[int, ...]]]) -> list[np.ndarray]:
    """`previous_masks` as boolean arrays, checked against the (name, shape) of every prunable tensor."""
    listed = isinstance(previous_masks, Sequence) and not isinstance(previous_masks, (str, bytes))
    if not listed or len(previous_masks) != len(shapes):
        raise ValueError(
            f"`previous_masks` must be a list of {len(shapes)} masks, one per prunable tensor (e.g. an "
            f"earlier `VerifyReport.masks`). Received: previous_masks of type {type(previous_masks).__name__}"
            + (f" and length {len(previous_masks)}" if listed else "")
        )
    masks = [np.asarray(m) != 0 for m in previous_masks]
    for (name, shape), mask in zip(shapes, masks):
        if mask.shape != tuple(shape):
            raise ValueError(
                f"`previous_masks` does not fit the model: {name} has shape {tuple(shape)}, its previous mask {mask.shape}."
            )
    return masks


def _tensor_problems(state: TensorState, previous: np.ndarray | None) -> list[str]:
    problems = []
    binary = (state.mask == 0) | (state.mask == 1)
    if not binary.all():
        first = _first(~binary)
        problems.append(
            f"{state.name}: {int((~binary).sum())} mask entries are neither 0 nor 1 (first at {list(first)}: {state.mask[first]})"
        )
    pruned = state.mask == 0
    revived = pruned & (state.weight != 0)
    if revived.any():
        problems.append(f"{state.name}: {int(revived.sum())} pruned weights are not 0.0 (first at {list(_first(revived))})")
    for slot_name, slot in state.slots:
        moving = pruned & (slot != 0)
        if moving.any():
            problems.append(
                f"{state.name}: optimizer state {slot_name} is not 0.0 for {int(moving.sum())} pruned weights "
                f"(first at {list(_first(moving))}): they would move again"
            )
    if previous is not None:
        back = ~pruned & ~previous
        if back.any():
            problems.append(f"{state.name}: {int(back.sum())} weights pruned earlier are alive again (first at {list(_first(back))})")
    return problems


def check_invariants(
    states: Sequence[TensorState],
    plan: Plan | None = None,
    cycle: int | None = None,
    previous: Sequence[np.ndarray] | None = None,
    tolerance: int = 0,
) -> VerifyReport:
    """Checks every invariant over `states`; raises `InvariantError` listing each broken one.
    `previous` holds a mask per trainable state."""
    counted = [state for state in states if state.trainable]
    earlier = iter(previous) if previous is not None else None
    problems = []
    for state in states:
        problems += _tensor_problems(state, next(earlier) if earlier is not None and state.trainable else None)
    masks = [state.mask != 0 for state in counted]
    alive = sum(int(m.sum()) for m in masks)
    total = sum(m.size for m in masks)
    expected = None
    if plan is not None:
        expected = plan.alive_after(cycle, total)
        if abs(alive - expected) > tolerance:
            within = f" (within {tolerance}, half a block)" if tolerance else ""
            problems.append(f"{alive} of {total} prunable weights are alive, but after {cycle} cycle(s) the plan has {expected}{within}")
    if problems:
        raise broken(problems)
    slots = sum(len(state.slots) for state in states)
    frozen = tuple(s.name for s in states if not s.trainable)
    return VerifyReport(tuple(s.name for s in counted), tuple(masks), alive, total, expected, slots, frozen)
