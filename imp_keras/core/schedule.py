"""The learning rate of an IMP run, in closed form: the dense base schedule, then one restarted
schedule per cycle. Written once against an array namespace (`ops`: NumPy, `keras.ops`, or
TensorFlow), so every flavour's `RetrainSchedule` computes the same values from the same code.

Notation (Zimmer, Spiegel & Pokutta, arXiv 2111.00843): the base schedule eta_o spans the L steps of
the dense training it describes; eta_max is its maximum, eta_min its minimum outside its warm-up.
Cycle j has N = E_j * steps_per_epoch steps, a warm-up of W = floor(0.1 N) steps for SLR, CLR, LLR
and ALLR (none for FT and LRW), R = N - W, k the step within the cycle and tau = k - W. The warm-up
rises as eta* (1 - cos(pi k / W)) / 2 from 0 to the cycle's peak eta*.
"""

from collections.abc import Callable, Sequence
import dataclasses
import math
import numbers
import types
from typing import Any

import numpy as np

from imp_keras.core.checks import check_int, check_learning_rate
from imp_keras.core.plan import Plan

__all__ = [
    "KINDS",
    "NUMPY_OPS",
    "PAPER_WARMUP",
    "PLAN_FIELDS",
    "RetrainScheduleBase",
    "RetrainShape",
    "TUNABLE",
    "UNMEASURED",
    "allr_peak",
    "learning_rate",
    "split_plan",
]

KINDS = ("ft", "lrw", "slr", "clr", "llr", "allr", "constant", "linear", "cosine")
UNMEASURED = -1.0
"""ALLR's d of a cycle not pruned yet (d >= 0). Not NaN: in a multi-process JAX run a variable laid
out on the devices is checked to hold the same value on every process, and NaN != NaN ("passed to
device_put is not the same on each process ... Expected: [nan nan nan nan]")."""
TUNABLE = ("constant", "linear", "cosine")
PAPER_WARMUP = 0.1
PLAN_FIELDS = ("goal_sparsity", "cycles", "pretrain_epochs", "retrain_epochs", "exact_goal")
_NEEDS_BASE_SHAPE = ("lrw", "slr")

# The names `learning_rate` uses, as `keras.ops` spells them; NumPy's and TensorFlow's namespaces
# are built to match.
NUMPY_OPS = types.SimpleNamespace(
    convert_to_tensor=lambda x, dtype: np.asarray(x, dtype),
    cast=lambda x, dtype: np.asarray(x).astype(dtype),
    where=np.where,
    take=np.take,
    cos=np.cos,
    clip=np.clip,
    maximum=np.maximum,
    minimum=np.minimum,
    sum=np.sum,
    expand_dims=np.expand_dims,
    floor_divide=np.floor_divide,
)


def allr_peak(d: float, max_learning_rate: float, fraction: float, retrain_epochs: int, base_epochs: int) -> float:
    """ALLR's peak learning rate: clip(eta_max * d / sqrt(p), eta_max * min(E / T, 1), eta_max).

    Args:
      d: relative norm of what the pruning removed, ||theta_before - theta_after|| / ||theta_before||.
      max_learning_rate: eta_max of the base schedule.
      fraction: p, the fraction of alive weights the cycle pruned.
      retrain_epochs: E, the cycle's length in epochs.
      base_epochs: T, the length of the dense training in epochs.
    """
    upper = max_learning_rate
    lower = max_learning_rate * min(retrain_epochs / base_epochs, 1.0)
    if fraction <= 0:
        return upper
    return float(np.clip(max_learning_rate * d / math.sqrt(fraction), lower, upper))


def _check_tunable(kind: str, initial_learning_rate: Any, warmup_fraction: Any, max_learning_rate: Any, min_learning_rate: Any) -> None:
    if kind in TUNABLE:
        rate = initial_learning_rate
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 < rate < math.inf:
            raise ValueError(
                f"kind={kind!r} needs a finite `initial_learning_rate` > 0. Received: initial_learning_rate={rate!r}"
            )
        if max_learning_rate is not None or min_learning_rate is not None:
            raise ValueError(
                f"`max_learning_rate` and `min_learning_rate` are the paper's eta_max and eta_min, which kind={kind!r} "
                "does not use: its cycles run from `initial_learning_rate` (to 0 for 'linear' and 'cosine'). "
                f"Received: max_learning_rate={max_learning_rate!r}, min_learning_rate={min_learning_rate!r}"
            )
    elif initial_learning_rate is not None or warmup_fraction is not None:
        raise ValueError(
            f"`initial_learning_rate` and `warmup_fraction` apply to kinds {TUNABLE} only, "
            f"not kind={kind!r} (its warm-up is fixed by the paper at 10 %). Received: "
            f"initial_learning_rate={initial_learning_rate!r}, warmup_fraction={warmup_fraction!r}"
        )
    if warmup_fraction is not None and not (
        isinstance(warmup_fraction, numbers.Real) and not isinstance(warmup_fraction, bool) and 0 <= warmup_fraction < 1
    ):
        raise ValueError(f"`warmup_fraction` must be in [0, 1). Received: warmup_fraction={warmup_fraction!r}")


@dataclasses.dataclass(frozen=True)
class RetrainShape:
    """Everything a `RetrainSchedule` computes with, but the base schedule itself: checked numbers.

    Build it with `RetrainShape.create`; `learning_rate` evaluates it at any step.
    """

    kind: str
    plan: Plan
    steps_per_epoch: int
    has_base: bool
    base_epochs: int
    base_warmup_steps: int
    initial_learning_rate: float | None
    warmup_fraction: float
    max_learning_rate: float | None
    min_learning_rate: float | None

    @classmethod
    def create(
        cls,
        kind: str,
        plan: Plan,
        steps_per_epoch: int,
        *,
        base: float | None,
        base_values: Callable[[np.ndarray], np.ndarray] | None,
        base_epochs: int | None = None,
        base_warmup_steps: int | None = None,
        initial_learning_rate: float | None = None,
        warmup_fraction: float | None = None,
        max_learning_rate: float | None = None,
        min_learning_rate: float | None = None,
    ) -> "RetrainShape":
        """Checks a schedule's arguments and derives eta_max and eta_min.

        Args:
          base: the base learning rate when it is a number; None when it is a schedule (then
            `base_values` evaluates it) or when there is no base.
          base_values: the base schedule's learning rate at an array of steps (float64), or None
            when the base is a number or absent.
          Others: as `RetrainSchedule`'s.
        """
        if not isinstance(plan, Plan):
            raise TypeError(f"`plan` must be an imp_keras.Plan. Received: plan={plan!r}")
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
        if base_values is None and base is not None:
            if isinstance(base, bool) or not isinstance(base, numbers.Real):
                raise TypeError(f"`base` must be a learning-rate schedule, a number or None. Received: base={base!r}")
            check_learning_rate("base", base)
            constant = float(base)
            base_values = lambda steps: np.full(np.shape(steps), constant, np.float64)  # noqa: E731
        has_base = base_values is not None
        steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
        _check_tunable(kind, initial_learning_rate, warmup_fraction, max_learning_rate, min_learning_rate)
        uses_base = has_base and (plan.pretrain_epochs > 0 or kind not in TUNABLE)
        if not has_base and (plan.pretrain_epochs > 0 or kind in _NEEDS_BASE_SHAPE):
            raise ValueError(
                f"`base` is required for kind={kind!r} with pretrain_epochs={plan.pretrain_epochs}: "
                "it gives the learning rate of the dense training."
            )
        if base_epochs is None:
            if uses_base and plan.pretrain_epochs == 0:
                raise ValueError(
                    "`base_epochs` is required when plan.pretrain_epochs=0: pass the number of epochs the "
                    "dense model was trained for with `base`."
                )
            base_epochs = plan.pretrain_epochs
        base_epochs = check_int("base_epochs", base_epochs, 1 if uses_base else 0)
        base_warmup_steps = check_int("base_warmup_steps", base_warmup_steps or 0, 0)
        max_learning_rate = check_learning_rate("max_learning_rate", max_learning_rate)
        min_learning_rate = check_learning_rate("min_learning_rate", min_learning_rate)
        if (max_learning_rate is None or min_learning_rate is None) and kind not in TUNABLE:
            if not has_base:
                raise ValueError(f"kind={kind!r} without `base` needs `max_learning_rate` and `min_learning_rate`.")
            values = base_values(np.arange(base_epochs * steps_per_epoch))
            if max_learning_rate is None:
                max_learning_rate = float(values.max())
            if min_learning_rate is None:
                outside_warmup = values[base_warmup_steps:]
                min_learning_rate = float(outside_warmup.min() if outside_warmup.size else values.min())
        if max_learning_rate is not None and min_learning_rate is not None and min_learning_rate > max_learning_rate:
            raise ValueError(
                f"`min_learning_rate` must not exceed `max_learning_rate`. Received: "
                f"min_learning_rate={min_learning_rate}, max_learning_rate={max_learning_rate}"
            )
        if kind == "lrw" and max(plan.retrain_epochs) > base_epochs:
            raise ValueError(
                f"kind='lrw' rewinds to the last N steps of the base schedule, but a cycle of "
                f"{max(plan.retrain_epochs)} epochs is longer than the base schedule's {base_epochs} epochs."
            )
        if kind == "allr" and base_epochs == 0:
            raise ValueError("kind='allr' needs `base_epochs` >= 1: its lower bound is eta_max * min(E / T, 1).")
        return cls(
            kind, plan, steps_per_epoch, has_base, base_epochs, base_warmup_steps,
            None if initial_learning_rate is None else float(initial_learning_rate),
            float(warmup_fraction if warmup_fraction is not None else PAPER_WARMUP),
            max_learning_rate, min_learning_rate,
        )

    @property
    def base_steps(self) -> int:
        return self.base_epochs * self.steps_per_epoch

    @property
    def pretrain_steps(self) -> int:
        return self.plan.pretrain_epochs * self.steps_per_epoch

    @property
    def cycle_starts(self) -> np.ndarray:
        return np.array(self.plan.cycle_start_epochs, np.int64) * self.steps_per_epoch

    @property
    def cycle_lengths(self) -> np.ndarray:
        return np.array(self.plan.retrain_epochs, np.int64) * self.steps_per_epoch

    @property
    def cycle_warmups(self) -> np.ndarray:
        warmup = 0.0 if self.kind in ("ft", "lrw") else self.warmup_fraction
        return np.floor(warmup * self.cycle_lengths).astype(np.int64)

    def fixed_peak(self) -> float:
        """The peak of every cycle for the kinds whose peak is not measured (all but ALLR)."""
        return self.initial_learning_rate if self.kind in TUNABLE else self.max_learning_rate

    def allr_peak(self, cycle: int, d: float) -> float:
        """ALLR's peak of `cycle` (1-based) from d measured at its pruning."""
        return allr_peak(d, self.max_learning_rate, self.plan.fraction, self.plan.retrain_epochs[cycle - 1], self.base_epochs)

    def config(self) -> dict[str, Any]:
        """The schedule's arguments, plan fields included (flat), for `get_config`."""
        return {
            "kind": self.kind,
            "steps_per_epoch": self.steps_per_epoch,
            **self.plan.get_config(),
            "base_epochs": self.base_epochs,
            "base_warmup_steps": self.base_warmup_steps,
            "initial_learning_rate": self.initial_learning_rate,
            "warmup_fraction": self.warmup_fraction if self.kind in TUNABLE else None,
            "max_learning_rate": self.max_learning_rate,
            "min_learning_rate": self.min_learning_rate,
        }


def split_plan(config: dict[str, Any]) -> tuple[Plan, dict[str, Any]]:
    """The `Plan` of a flat schedule config and the config without its plan fields."""
    config = dict(config)
    return Plan.from_config({field: config.pop(field) for field in PLAN_FIELDS}), config


def learning_rate(ops: Any, shape: RetrainShape, step: Any, base_at: Callable[[Any], Any], peaks: Sequence[float] | Any) -> Any:
    """The learning rate at optimizer `step` (a scalar or an array of steps), as float32.

    Args:
      ops: the array namespace (`NUMPY_OPS`, `keras.ops`, or TensorFlow's equivalent).
      shape: the schedule's numbers.
      step: the optimizer's step count.
      base_at: the base schedule's learning rate at an integer step tensor (float32).
      peaks: the peak eta* of every cycle (ALLR's measured ones; otherwise all equal).
    """
    f32, i64 = "float32", "int64"
    step = ops.cast(step, i64)
    starts = ops.convert_to_tensor(shape.cycle_starts, i64)
    index = ops.maximum(ops.sum(ops.cast(ops.expand_dims(step, -1) >= starts, "int32"), axis=-1) - 1, 0)
    length = ops.take(ops.convert_to_tensor(shape.cycle_lengths, i64), index)
    warmup = ops.take(ops.convert_to_tensor(shape.cycle_warmups, i64), index)
    k = ops.clip(step - ops.take(starts, index), 0, length - 1)
    peak = ops.take(ops.convert_to_tensor(peaks, f32), index)
    rising = peak * (1.0 - ops.cos(math.pi * ops.cast(k, f32) / ops.cast(ops.maximum(warmup, 1), f32))) / 2.0
    after = _after_warmup(ops, shape, k - warmup, length - warmup, peak, k, length, base_at)
    cycle_lr = ops.where(k < warmup, rising, after)
    if shape.pretrain_steps == 0:
        return cycle_lr
    dense = base_at(ops.minimum(step, shape.pretrain_steps))
    return ops.where(step < shape.pretrain_steps, dense, cycle_lr)


def _scaled_floor(ops, tau, numerator: int, denominator):
    """floor(tau * numerator / denominator), exactly, for integers 0 <= tau, numerator < denominator.

    On JAX without x64 the steps are int32, and tau * numerator overflows from R > 46,341 steps
    (ImageNet sizes). A float32 estimate is within one of the result; the residual
    tau * numerator - estimate * denominator is small, and integer arithmetic wraps around
    (XLA's int32, as int64 elsewhere), so it is exact however large the products, and corrects
    the estimate."""
    f32 = "float32"  # the float estimate is >= 0: casting it to an integer is its floor
    estimate = ops.cast(ops.cast(tau, f32) * ops.cast(numerator, f32) / ops.cast(denominator, f32), "int64")
    residual = tau * numerator - estimate * denominator
    return estimate + ops.floor_divide(residual, denominator)


def _after_warmup(ops, shape: RetrainShape, tau, rest, peak, k, length, base_at):
    f32 = "float32"
    progress = ops.cast(tau, f32) / ops.cast(rest, f32)
    kind = shape.kind
    if kind == "ft":
        return ops.convert_to_tensor(shape.min_learning_rate, f32)
    if kind == "lrw":
        return base_at(shape.base_steps - length + k)
    if kind == "slr":
        quotient, remainder = shape.base_steps // rest, shape.base_steps % rest
        source = tau * quotient + _scaled_floor(ops, tau, remainder, rest)
        return ops.where(source < shape.base_warmup_steps, ops.convert_to_tensor(shape.max_learning_rate, f32), base_at(source))
    if kind == "clr":
        eta_min, eta_max = shape.min_learning_rate, shape.max_learning_rate
        return eta_min + (eta_max - eta_min) * (1.0 + ops.cos(math.pi * progress)) / 2.0
    if kind == "constant":
        return peak
    if kind == "cosine":
        return peak * (1.0 + ops.cos(math.pi * progress)) / 2.0
    return peak * (1.0 - progress)  # llr, allr, linear


class RetrainScheduleBase:
    """RetrainSchedule without Keras: its arguments, ALLR's record, its value and its config.

    A flavour's `RetrainSchedule` lists it before its `LearningRateSchedule` and supplies
    `_schedules` (its `keras.optimizers.schedules`), `_ops` (its array namespace), `_name_scope`,
    `_learning_rates` (a base schedule's rates at an array of steps) and the hooks below.
    """

    _schedules: Any
    _ops: Any
    _name_scope: Callable[[str], Any]
    _learning_rates: Callable[[Any, np.ndarray], np.ndarray]

    def __init__(
        self,
        base: Any,
        plan: Plan,
        steps_per_epoch: int,
        kind: str = "slr",
        *,
        base_epochs: int | None = None,
        base_warmup_steps: int | None = None,
        initial_learning_rate: float | None = None,
        warmup_fraction: float | None = None,
        max_learning_rate: float | None = None,
        min_learning_rate: float | None = None,
        name: str | None = None,
    ):
        if name is not None and not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"`name` must be a Python identifier (letters, digits, underscores). Received: name={name!r}")
        self._set_name(name or "RetrainSchedule")
        number = self._check_base(base)
        if base_warmup_steps is None:
            base_warmup_steps = int(getattr(base, "warmup_steps", 0) or 0)
        is_schedule = isinstance(base, self._schedules.LearningRateSchedule)
        self.shape = RetrainShape.create(
            kind, plan, steps_per_epoch,
            base=number,
            base_values=(lambda steps: type(self)._learning_rates(base, steps)) if is_schedule else None,
            base_epochs=base_epochs, base_warmup_steps=base_warmup_steps,
            initial_learning_rate=initial_learning_rate, warmup_fraction=warmup_fraction,
            max_learning_rate=max_learning_rate, min_learning_rate=min_learning_rate,
        )
        self.base = base
        if self.kind == "allr":
            self.eta_star = self._variable(np.full(plan.cycles, self.max_learning_rate, np.float32), "eta_star")
            self.allr_d = self._variable(np.full(plan.cycles, UNMEASURED, np.float32), "allr_d")

    def _set_name(self, name: str) -> None:
        raise NotImplementedError

    def _check_base(self, base: Any) -> float | None:
        """`base` for `RetrainShape.create`: None for a schedule of this flavour, else `base`
        (which it checks); a schedule of another flavour is refused here."""
        raise NotImplementedError

    def _variable(self, values: np.ndarray, name: str) -> Any:
        """A non-trainable variable of this flavour holding `values`."""
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        # plan, kind, steps_per_epoch, base_epochs, ..., max_learning_rate: the checked numbers.
        if name != "shape" and "shape" in self.__dict__ and name in RetrainShape.__dataclass_fields__:
            return getattr(self.__dict__["shape"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def budgeted(cls, initial_learning_rate: float, plan: Plan, steps_per_epoch: int, name: str | None = None) -> Any:
        """BIMP's schedule: linear from `initial_learning_rate` to 0 over the T0 dense epochs of a
        `Plan.budgeted` plan, then ALLR cycles with T0 as the T of its bound."""
        if plan.pretrain_epochs < 1:
            raise ValueError("BIMP needs plan.pretrain_epochs (T0) >= 1.")
        if check_learning_rate("initial_learning_rate", initial_learning_rate) == 0:
            raise ValueError("`initial_learning_rate` must be > 0. Received: initial_learning_rate=0")
        base = cls._schedules.PolynomialDecay(
            initial_learning_rate, plan.pretrain_epochs * steps_per_epoch, end_learning_rate=0.0, power=1.0
        )
        return cls(
            base, plan, steps_per_epoch, "allr",
            max_learning_rate=float(initial_learning_rate), min_learning_rate=0.0, name=name,
        )

    def record_allr(self, cycle: int, d: float) -> float:
        """Sets ALLR's peak for `cycle` (1-based) from d measured at its pruning; returns the peak.

        On Keras 3 with JAX, call it between epochs (`on_epoch_begin`): inside an epoch `fit` holds
        the values of attached variables in its own state.
        """
        if self.kind != "allr":
            raise ValueError(f"record_allr applies to kind='allr' only, not kind={self.kind!r}.")
        cycle = check_int("cycle", cycle, 1, self.plan.cycles)
        d = check_learning_rate("d", d)
        peak = self.shape.allr_peak(cycle, d)
        # Whole-vector assigns: a slice of a mirrored variable (created in a strategy scope) is a tensor.
        for variable, value in ((self.eta_star, peak), (self.allr_d, d)):
            values = np.array(variable.numpy())
            values[cycle - 1] = value
            variable.assign(values)
        return peak

    def _base_at(self, step: Any) -> Any:
        if isinstance(self.base, self._schedules.LearningRateSchedule):
            return self._ops.cast(self.base(step), "float32")
        return self._ops.convert_to_tensor(float(self.base), "float32")

    def __call__(self, step: Any) -> Any:
        with type(self)._name_scope(self.name):
            if self.kind == "allr":
                peaks = self.eta_star
            else:
                peaks = np.full(self.plan.cycles, self.shape.fixed_peak(), np.float32)
            return learning_rate(self._ops, self.shape, step, self._base_at, peaks)

    def get_config(self) -> dict[str, Any]:
        base = self.base
        if isinstance(base, self._schedules.LearningRateSchedule):
            base = self._schedules.serialize(base)
        config = {"base": base, **self.shape.config(), "name": self.name}
        if self.kind == "allr":
            config["eta_star"] = [float(v) for v in self.eta_star.numpy()]
            config["allr_d"] = [None if v == UNMEASURED else float(v) for v in self.allr_d.numpy()]  # None: not measured yet
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        plan, config = split_plan(config)
        eta_star, allr_d = config.pop("eta_star", None), config.pop("allr_d", None)
        base = config.pop("base")
        if isinstance(base, dict):
            base = cls._schedules.deserialize(base)
        schedule = cls(base, plan, **config)
        if eta_star is not None:
            schedule.eta_star.assign(np.array(eta_star, np.float32))
            schedule.allr_d.assign(np.array([UNMEASURED if v is None else v for v in allr_d], np.float32))
        return schedule
