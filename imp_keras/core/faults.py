"""Numerical faults: the error a NaN or Inf raises, and where in a plan it happened."""

from imp_keras.core.plan import Plan

__all__ = ["NonFiniteError", "describe_epoch"]


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
