"""`verify` for Keras 3 models: reads masks, weights and optimizer slots into NumPy and checks
`imp_keras.core.rules`' invariants."""

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from imp_keras.core.plan import Plan
from imp_keras.core.rules import TensorState, VerifyReport, check_arguments, check_invariants, check_previous
from imp_keras.core.selection import check_block_size, within_blocks
from imp_keras.keras3 import masking

__all__ = ["verify"]


def verify(
    model: keras.Model,
    plan: Plan | None = None,
    *,
    cycle: int | None = None,
    previous_masks: Sequence[np.ndarray] | None = None,
    block_size: tuple[int, int] | None = None,
) -> VerifyReport:
    """Checks the invariants of IMP in a Keras 3 `model` with `MaskHolder`s (see
    `imp_keras.tf_keras.verify` for the arguments); raises `InvariantError` listing each broken one."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 model. Received: model={model!r}")
    entries = masking.masked_weights(model)
    if not entries:
        raise ValueError(f"`model` {model.name!r} has no imp_keras mask holders: it is not a model built by `imp_keras.prunable`.")
    check_arguments(plan, cycle)
    counted = [e for e in entries if e.trainable]  # what pruning acts on, and what the plan counts
    previous = None if previous_masks is None else check_previous(previous_masks, [(e.name, tuple(e.mask.shape)) for e in counted])
    sizes = masking.block_sizes(counted, None if block_size is None else check_block_size(block_size))
    optimizer = getattr(model, "optimizer", None)
    states = [
        TensorState(
            e.name, ops.convert_to_numpy(e.mask), ops.convert_to_numpy(e.weight),
            tuple((s.path, ops.convert_to_numpy(s)) for s in masking.optimizer_slots(optimizer, e.weight)),
            e.trainable,
        )
        for e in entries
    ]
    return check_invariants(states, plan, cycle, previous, within_blocks(sizes))
