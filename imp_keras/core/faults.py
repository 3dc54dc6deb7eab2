"""Numerical faults: the error a NaN or Inf raises, where in a plan it happened, and when
`NaNGuard` looks for one."""

import math
from typing import Any

import numpy as np

from imp_keras.core.plan import Plan

__all__ = ["NaNGuardBase", "NonFiniteError", "describe_epoch"]


class NonFiniteError(FloatingPointError):
    """A loss, weight or optimizer state became NaN or Inf; the message names the epoch and the IMP cycle."""


def describe_epoch(plan: Plan | None, epoch: int) -> str:
    """`epoch` and where it is in `plan`: "epoch 7 (IMP cycle 2 of 3, retraining at 78.46 % sparsity)"."""
    if plan is None:
        return f"epoch {epoch}"
    cycle = plan.cycle_at(epoch)
    if cycle == 0:
        return f"epoch {epoch} (dense pretraining, before IMP cycle 1 of {plan.cycles})"
    return f"epoch {epoch} (IMP cycle {cycle} of {plan.cycles}, retraining at {plan.sparsity_after(cycle):.2%} sparsity)"


class NaNGuardBase:
    """NaNGuard without Keras: when to check, what and what to raise. A flavour's `NaNGuard` lists
    it before `keras.callbacks.Callback`, with its `masking` module and `_float_values`."""

    masking: Any

    def __init__(self, plan: Plan | None = None):
        super().__init__()
        if plan is not None and not isinstance(plan, Plan):
            raise TypeError(f"`plan` must be an imp_keras.Plan or None. Received: plan={plan!r}")
        self.plan = plan
        self._epoch = 0

    def _float_values(self, variable: Any) -> Any:
        """`variable` as a NumPy array if it holds floats, else None."""
        raise NotImplementedError

    def _bad_variables(self) -> list[str]:
        """The names of the model's weights and optimizer states that hold a NaN or Inf."""
        variables = list(self.model.weights)
        optimizer = self.model.optimizer
        if optimizer is not None:
            variables += [s for v in self.model.trainable_variables for s in self.masking.optimizer_slots(optimizer, v)]
        bad = []
        for variable in variables:
            values = self._float_values(variable)
            if values is not None and not np.isfinite(values).all():
                bad.append(getattr(variable, "path", variable.name))  # Keras 3 names a variable by its path
        return bad

    def _fail(self, what: str, batch: int | None = None) -> None:
        at = f"batch {batch} of " if batch is not None else ""
        raise NonFiniteError(f"{what} at {at}{describe_epoch(self.plan, self._epoch)}.")

    def _check_variables(self, batch: int | None) -> None:
        bad = self._bad_variables()
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            self._fail(f"NaN or Inf in {len(bad)} variable(s) ({shown}) after the last step", batch)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._checked = False

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"The training loss is {float(loss)}", batch)
        # `>=`: with steps_per_execution, Keras 3 reports the last call's batch past the last step.
        if self.params.get("steps") and batch >= self.params["steps"] - 1:
            self._check_variables(batch)
            self._checked = True

    def on_epoch_end(self, epoch, logs=None):
        if not self._checked:  # fit did not know the epoch's last batch, or never reported it
            self._check_variables(None)
        loss = (logs or {}).get("val_loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"The validation loss is {float(loss)}")
