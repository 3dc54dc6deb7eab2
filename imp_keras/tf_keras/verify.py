"""`verify` for tf_keras models: reads masks, weights and optimizer slots into NumPy and checks
`imp_keras.core.rules`' invariants.

    report = imp_keras.verify(model, plan, cycle=1)
    later = imp_keras.verify(model, plan, cycle=2, previous_masks=report.masks)

`IMPCallback` verifies at the end of every cycle, against the masks of the cycle before, and
raises before the cycle's ladder model is saved.
"""

from collections.abc import Sequence

import numpy as np

from imp_keras.core.plan import Plan
from imp_keras.core.rules import InvariantError, TensorState, VerifyReport, broken, check_arguments, check_invariants, check_previous
from imp_keras.core.selection import check_block_size, within_blocks
from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras, require_tf_keras

__all__ = ["InvariantError", "VerifyReport", "broken", "verify"]


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

    Masked weights that are not trainable now (a layer frozen after `prunable`) are checked too
    (binary masks, pruned weights and their optimizer state 0.0), but pruning leaves them as they
    are, so the plan's counts and `previous_masks` are over the trainable ones;
    `VerifyReport.frozen` names the others.

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
    check_arguments(plan, cycle)
    counted = [e for e in entries if e.trainable]  # what pruning acts on, and what the plan counts
    previous = None if previous_masks is None else check_previous(previous_masks, [(e.name, tuple(e.mask.shape)) for e in counted])
    sizes = masking.block_sizes(counted, None if block_size is None else check_block_size(block_size))
    optimizer = getattr(model, "optimizer", None)
    states = [
        TensorState(
            e.name, e.mask.numpy(), e.weight.numpy(),
            tuple((s.name, s.numpy()) for s in (masking.optimizer_slots(optimizer, e.weight) if optimizer is not None else [])),
            e.trainable,
        )
        for e in entries
    ]
    return check_invariants(states, plan, cycle, previous, within_blocks(sizes))
