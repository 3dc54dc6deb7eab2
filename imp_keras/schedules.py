"""The learning rate of an IMP run: the dense base schedule, then one restarted schedule per cycle.

Notation (Zimmer, Spiegel & Pokutta, arXiv 2111.00843): the base schedule eta_o spans the L steps of
the dense training it describes; eta_max is its maximum, eta_min its minimum outside its warm-up.
Cycle j has N = E_j * steps_per_epoch steps, a warm-up of W = floor(0.1 N) steps for SLR, CLR, LLR
and ALLR (none for FT and LRW), R = N - W, k the step within the cycle and tau = k - W. The warm-up
rises as eta* (1 - cos(pi k / W)) / 2 from 0 to the cycle's peak eta*.
"""

import math
from typing import Any

import numpy as np
import tensorflow as tf

from imp_keras._keras import keras, require_tf_keras
from imp_keras.plan import Plan

__all__ = ["KINDS", "RetrainSchedule", "allr_peak", "learning_rates"]

KINDS = ("ft", "lrw", "slr", "clr", "llr", "allr", "constant", "linear", "cosine")
_PAPER_WARMUP = 0.1
_TUNABLE = ("constant", "linear", "cosine")
_NEEDS_BASE_SHAPE = ("lrw", "slr")
_PLAN_FIELDS = ("goal_sparsity", "cycles", "pretrain_epochs", "retrain_epochs", "exact_goal")

Schedule = keras.optimizers.schedules.LearningRateSchedule


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


def learning_rates(schedule: Schedule | float, steps: np.ndarray) -> np.ndarray:
    """The learning rate of `schedule` at every optimizer step in `steps`, as float64."""
    steps = np.asarray(steps, np.int64)
    if not isinstance(schedule, Schedule):
        return np.full(steps.shape, float(schedule), dtype=np.float64)
    values = tf.vectorized_map(lambda s: tf.cast(schedule(s), tf.float32), tf.constant(steps), fallback_to_while_loop=True)
    return values.numpy().astype(np.float64)


def _int_at_least(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")
    return int(value)


def _positive_int(name: str, value: Any) -> int:
    return _int_at_least(name, value, 1)


def _learning_rate(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not 0 <= value < math.inf:
        raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="imp_keras")
class RetrainSchedule(Schedule, tf.Module):
    """Learning rate of a whole IMP run as a pure function of the optimizer's step.

    Steps of the dense pretraining follow `base` unchanged; each cycle restarts its own schedule:

      - `ft`: constant eta_min (fine-tuning).
      - `lrw`: learning-rate rewinding, eta(k) = eta_o(L - N + k) (Renda et al., 2020).
      - `slr`: scaled restarting: warm-up to eta_max, then the whole base schedule (its warm-up
        replaced by eta_max) compressed into R steps (Le & Hua, 2021).
      - `clr`: warm-up to eta_max, then cosine from eta_max to eta_min.
      - `llr`: warm-up to eta_max, then linear to 0.
      - `allr`: as `llr`, with a peak measured at each pruning (`allr_peak`); `IMPCallback` records
        it, and it is saved with the optimizer, so a resumed run keeps it.
      - `constant`, `linear`, `cosine`: tunable, peak `initial_learning_rate` after a warm-up of
        `warmup_fraction` of the cycle, then constant, linear to 0, or cosine to 0.

    Args:
      base: the dense schedule (a tf_keras `LearningRateSchedule` or a float), spanning `base_epochs`.
        May be None for `constant`/`linear`/`cosine` (and for `ft`/`clr`/`llr`/`allr` given
        `max_learning_rate`/`min_learning_rate`) when there is no pretraining.
      plan: the `Plan` of the run.
      steps_per_epoch: optimizer steps per epoch; must match the data given to `fit`.
      kind: one of `KINDS`.
      base_epochs: epochs the base schedule spans (T). Defaults to `plan.pretrain_epochs`; required
        when starting from a trained model (`pretrain_epochs=0`): the epochs it was trained for.
      base_warmup_steps: warm-up steps of `base`, excluded from eta_min and replaced by eta_max in
        SLR. Defaults to `base.warmup_steps` when the base has one, else 0.
      initial_learning_rate: the peak of the tunable kinds.
      warmup_fraction: warm-up of the tunable kinds, as a fraction of the cycle. Defaults to 0.1.
      max_learning_rate, min_learning_rate: eta_max and eta_min; computed from `base` when omitted.
      name: name of the schedule.

    Example:
    ```python
    plan = imp_keras.Plan(goal_sparsity=0.9, cycles=3, pretrain_epochs=30, retrain_epochs=5)
    base = keras.optimizers.schedules.PiecewiseConstantDecay([15 * 469, 25 * 469], [0.1, 0.01, 0.001])
    lr = imp_keras.RetrainSchedule(base, plan, steps_per_epoch=469, kind="slr")
    model.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True), ...)
    ```
    """

    def __init__(
        self,
        base: Schedule | float | None,
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
        tf.Module.__init__(self, name=name or "RetrainSchedule")
        if not isinstance(plan, Plan):
            raise TypeError(f"`plan` must be an imp_keras.Plan. Received: plan={plan!r}")
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
        if base is not None and (isinstance(base, bool) or not isinstance(base, (int, float))):
            require_tf_keras(base, "base", Schedule)
        elif base is not None:
            _learning_rate("base", base)
        self.base = base
        self.plan = plan
        self.kind = kind
        self.steps_per_epoch = _positive_int("steps_per_epoch", steps_per_epoch)
        self._check_tunable(initial_learning_rate, warmup_fraction)
        self.initial_learning_rate = None if initial_learning_rate is None else float(initial_learning_rate)
        self.warmup_fraction = float(warmup_fraction if warmup_fraction is not None else _PAPER_WARMUP)

        uses_base = base is not None and (plan.pretrain_epochs > 0 or kind not in _TUNABLE)
        if base is None and (plan.pretrain_epochs > 0 or kind in _NEEDS_BASE_SHAPE):
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
        self.base_epochs = _int_at_least("base_epochs", base_epochs, 1 if uses_base else 0)
        if base_warmup_steps is None:
            base_warmup_steps = int(getattr(base, "warmup_steps", 0) or 0)
        self.base_warmup_steps = _int_at_least("base_warmup_steps", base_warmup_steps, 0)
        max_learning_rate = _learning_rate("max_learning_rate", max_learning_rate)
        min_learning_rate = _learning_rate("min_learning_rate", min_learning_rate)
        self._base_steps = self.base_epochs * self.steps_per_epoch

        if (max_learning_rate is None or min_learning_rate is None) and kind not in _TUNABLE:
            if base is None:
                raise ValueError(f"kind={kind!r} without `base` needs `max_learning_rate` and `min_learning_rate`.")
            values = learning_rates(base, np.arange(self._base_steps))
            if max_learning_rate is None:
                max_learning_rate = float(values.max())
            if min_learning_rate is None:
                outside_warmup = values[self.base_warmup_steps :]
                min_learning_rate = float(outside_warmup.min() if outside_warmup.size else values.min())
        if max_learning_rate is not None and min_learning_rate is not None and min_learning_rate > max_learning_rate:
            raise ValueError(
                f"`min_learning_rate` must not exceed `max_learning_rate`. Received: "
                f"min_learning_rate={min_learning_rate}, max_learning_rate={max_learning_rate}"
            )
        self.max_learning_rate = max_learning_rate
        self.min_learning_rate = min_learning_rate

        spe = self.steps_per_epoch
        self._pretrain_steps = plan.pretrain_epochs * spe
        self._starts = np.array(plan.cycle_start_epochs, np.int64) * spe
        self._lengths = np.array(plan.retrain_epochs, np.int64) * spe
        warmup = 0.0 if kind in ("ft", "lrw") else self.warmup_fraction
        self._warmups = np.floor(warmup * self._lengths).astype(np.int64)
        if kind == "lrw" and max(self._lengths) > self._base_steps:
            raise ValueError(
                f"kind='lrw' rewinds to the last N steps of the base schedule, but a cycle of "
                f"{max(plan.retrain_epochs)} epochs is longer than the base schedule's {self.base_epochs} epochs."
            )
        if kind == "allr":
            if self.base_epochs == 0:
                raise ValueError("kind='allr' needs `base_epochs` >= 1: its lower bound is eta_max * min(E / T, 1).")
            self.eta_star = tf.Variable(
                np.full(plan.cycles, self.max_learning_rate, np.float32), trainable=False, name="eta_star"
            )
            self.allr_d = tf.Variable(np.full(plan.cycles, np.nan, np.float32), trainable=False, name="allr_d")

    def _check_tunable(self, initial_learning_rate: float | None, warmup_fraction: float | None) -> None:
        if self.kind in _TUNABLE:
            rate = initial_learning_rate
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
                raise ValueError(
                    f"kind={self.kind!r} needs a finite `initial_learning_rate` > 0. Received: initial_learning_rate={rate!r}"
                )
        elif initial_learning_rate is not None or warmup_fraction is not None:
            raise ValueError(
                f"`initial_learning_rate` and `warmup_fraction` apply to kinds {_TUNABLE} only, "
                f"not kind={self.kind!r} (its warm-up is fixed by the paper at 10 %)."
            )
        if warmup_fraction is not None and not (isinstance(warmup_fraction, (int, float)) and 0 <= warmup_fraction < 1):
            raise ValueError(f"`warmup_fraction` must be in [0, 1). Received: warmup_fraction={warmup_fraction!r}")

    @classmethod
    def budgeted(cls, initial_learning_rate: float, plan: Plan, steps_per_epoch: int, name: str | None = None) -> "RetrainSchedule":
        """BIMP's schedule: linear from `initial_learning_rate` to 0 over the T0 dense epochs of a
        `Plan.budgeted` plan, then ALLR cycles with T0 as the T of its bound."""
        if plan.pretrain_epochs < 1:
            raise ValueError("BIMP needs plan.pretrain_epochs (T0) >= 1.")
        if _learning_rate("initial_learning_rate", initial_learning_rate) == 0:
            raise ValueError("`initial_learning_rate` must be > 0. Received: initial_learning_rate=0")
        base = keras.optimizers.schedules.PolynomialDecay(
            initial_learning_rate, plan.pretrain_epochs * steps_per_epoch, end_learning_rate=0.0, power=1.0
        )
        return cls(
            base, plan, steps_per_epoch, "allr",
            max_learning_rate=float(initial_learning_rate), min_learning_rate=0.0, name=name,
        )

    def record_allr(self, cycle: int, d: float) -> float:
        """Sets ALLR's peak for `cycle` (1-based) from d measured at its pruning; returns the peak."""
        if self.kind != "allr":
            raise ValueError(f"record_allr applies to kind='allr' only, not kind={self.kind!r}.")
        peak = allr_peak(d, self.max_learning_rate, self.plan.fraction, self.plan.retrain_epochs[cycle - 1], self.base_epochs)
        # Whole-vector assigns: a slice of a mirrored variable (created in a strategy scope) is a tensor.
        for variable, value in ((self.eta_star, peak), (self.allr_d, d)):
            values = variable.numpy()
            values[cycle - 1] = value
            variable.assign(values)
        return peak

    def _base_at(self, step: tf.Tensor) -> tf.Tensor:
        if isinstance(self.base, Schedule):
            return tf.cast(self.base(step), tf.float32)
        return tf.constant(float(self.base), tf.float32)

    def _peak(self, cycle_index: tf.Tensor) -> tf.Tensor:
        if self.kind == "allr":
            return tf.gather(tf.convert_to_tensor(self.eta_star), cycle_index)
        if self.kind in _TUNABLE:
            return tf.constant(self.initial_learning_rate, tf.float32)
        return tf.constant(self.max_learning_rate, tf.float32)

    def _after_warmup(self, tau: tf.Tensor, rest: tf.Tensor, peak: tf.Tensor, k: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
        progress = tf.cast(tau, tf.float32) / tf.cast(rest, tf.float32)
        kind = self.kind
        if kind == "ft":
            return tf.constant(self.min_learning_rate, tf.float32)
        if kind == "lrw":
            return self._base_at(self._base_steps - length + k)
        if kind == "slr":
            source = (tau * self._base_steps) // rest
            return tf.where(source < self.base_warmup_steps, tf.constant(self.max_learning_rate, tf.float32), self._base_at(source))
        if kind == "clr":
            eta_min, eta_max = self.min_learning_rate, self.max_learning_rate
            return eta_min + (eta_max - eta_min) * (1.0 + tf.cos(math.pi * progress)) / 2.0
        if kind == "constant":
            return peak
        if kind == "cosine":
            return peak * (1.0 + tf.cos(math.pi * progress)) / 2.0
        return peak * (1.0 - progress)  # llr, allr, linear

    def __call__(self, step):
        with tf.name_scope(self.name):
            step = tf.cast(step, tf.int64)
            starts = tf.constant(self._starts, tf.int64)
            index = tf.maximum(tf.reduce_sum(tf.cast(step >= starts, tf.int32)) - 1, 0)
            length = tf.gather(tf.constant(self._lengths, tf.int64), index)
            warmup = tf.gather(tf.constant(self._warmups, tf.int64), index)
            k = tf.clip_by_value(step - tf.gather(starts, index), 0, length - 1)
            peak = self._peak(index)
            rising = peak * (1.0 - tf.cos(math.pi * tf.cast(k, tf.float32) / tf.cast(tf.maximum(warmup, 1), tf.float32))) / 2.0
            after = self._after_warmup(k - warmup, length - warmup, peak, k, length)
            cycle_lr = tf.where(k < warmup, rising, after)
            if self._pretrain_steps == 0:
                return cycle_lr
            return tf.where(step < self._pretrain_steps, self._base_at(tf.minimum(step, self._pretrain_steps)), cycle_lr)

    def get_config(self) -> dict[str, Any]:
        base = self.base
        if isinstance(base, Schedule):
            base = keras.optimizers.schedules.serialize(base)
        config = {
            "base": base,
            "kind": self.kind,
            "steps_per_epoch": self.steps_per_epoch,
            **self.plan.get_config(),
            "base_epochs": self.base_epochs,
            "base_warmup_steps": self.base_warmup_steps,
            "initial_learning_rate": self.initial_learning_rate,
            "warmup_fraction": self.warmup_fraction if self.kind in _TUNABLE else None,
            "max_learning_rate": self.max_learning_rate,
            "min_learning_rate": self.min_learning_rate,
            "name": self.name,
        }
        if self.kind == "allr":
            config["eta_star"] = [float(v) for v in self.eta_star.numpy()]
            config["allr_d"] = [None if np.isnan(v) else float(v) for v in self.allr_d.numpy()]  # None: not measured yet
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "RetrainSchedule":
        config = dict(config)
        plan = Plan.from_config({field: config.pop(field) for field in _PLAN_FIELDS})
        eta_star, allr_d = config.pop("eta_star", None), config.pop("allr_d", None)
        base = config.pop("base")
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        schedule = cls(base, plan, **config)
        if eta_star is not None:
            schedule.eta_star.assign(eta_star)
            schedule.allr_d.assign([np.nan if v is None else v for v in allr_d])
        return schedule
