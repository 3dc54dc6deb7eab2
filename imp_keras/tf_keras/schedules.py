"""The learning rate of an IMP run on tf_keras: `imp_keras.core.schedule`'s closed form, evaluated
with TensorFlow ops inside a tf_keras `LearningRateSchedule`."""

import types
from typing import Any

import numpy as np
import tensorflow as tf

from imp_keras.core.plan import Plan
from imp_keras.core.schedule import KINDS, RetrainShape, allr_peak, learning_rate, split_plan
from imp_keras.core.checks import check_learning_rate
from imp_keras.tf_keras._keras import keras, require_tf_keras

__all__ = ["KINDS", "RetrainSchedule", "allr_peak", "learning_rates"]

Schedule = keras.optimizers.schedules.LearningRateSchedule

TF_OPS = types.SimpleNamespace(
    convert_to_tensor=tf.convert_to_tensor,
    cast=tf.cast,
    where=tf.where,
    take=tf.gather,
    cos=tf.cos,
    clip=tf.clip_by_value,
    maximum=tf.maximum,
    minimum=tf.minimum,
    sum=tf.reduce_sum,
    expand_dims=tf.expand_dims,
    floor_divide=tf.math.floordiv,
)


def learning_rates(schedule: Schedule | float, steps: np.ndarray) -> np.ndarray:
    """The learning rate of `schedule` at every optimizer step in `steps`, as float64."""
    steps = np.asarray(steps, np.int64)
    if not isinstance(schedule, Schedule):
        return np.full(steps.shape, float(schedule), dtype=np.float64)
    values = tf.vectorized_map(lambda s: tf.cast(schedule(s), tf.float32), tf.constant(steps), fallback_to_while_loop=True)
    return values.numpy().astype(np.float64)


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
        is_schedule = base is not None and not isinstance(base, (int, float)) or isinstance(base, bool)
        if is_schedule:
            require_tf_keras(base, "base", Schedule)
        if base_warmup_steps is None:
            base_warmup_steps = int(getattr(base, "warmup_steps", 0) or 0)
        self.shape = RetrainShape.create(
            kind, plan, steps_per_epoch,
            base=None if is_schedule else base,
            base_values=(lambda steps: learning_rates(base, steps)) if is_schedule else None,
            base_epochs=base_epochs, base_warmup_steps=base_warmup_steps,
            initial_learning_rate=initial_learning_rate, warmup_fraction=warmup_fraction,
            max_learning_rate=max_learning_rate, min_learning_rate=min_learning_rate,
        )
        self.base = base
        if self.kind == "allr":
            self.eta_star = tf.Variable(np.full(plan.cycles, self.max_learning_rate, np.float32), trainable=False, name="eta_star")
            self.allr_d = tf.Variable(np.full(plan.cycles, np.nan, np.float32), trainable=False, name="allr_d")

    def __getattr__(self, name: str) -> Any:
        # plan, kind, steps_per_epoch, base_epochs, ..., max_learning_rate: the checked numbers.
        if name != "shape" and "shape" in self.__dict__ and name in RetrainShape.__dataclass_fields__:
            return getattr(self.__dict__["shape"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def budgeted(cls, initial_learning_rate: float, plan: Plan, steps_per_epoch: int, name: str | None = None) -> "RetrainSchedule":
        """BIMP's schedule: linear from `initial_learning_rate` to 0 over the T0 dense epochs of a
        `Plan.budgeted` plan, then ALLR cycles with T0 as the T of its bound."""
        if plan.pretrain_epochs < 1:
            raise ValueError("BIMP needs plan.pretrain_epochs (T0) >= 1.")
        if check_learning_rate("initial_learning_rate", initial_learning_rate) == 0:
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
        peak = self.shape.allr_peak(cycle, d)
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

    def __call__(self, step):
        with tf.name_scope(self.name):
            if self.kind == "allr":
                peaks = self.eta_star
            else:
                peaks = np.full(self.plan.cycles, self.shape.fixed_peak(), np.float32)
            return learning_rate(TF_OPS, self.shape, step, self._base_at, peaks)

    def get_config(self) -> dict[str, Any]:
        base = self.base
        if isinstance(base, Schedule):
            base = keras.optimizers.schedules.serialize(base)
        config = {"base": base, **self.shape.config(), "name": self.name}
        if self.kind == "allr":
            config["eta_star"] = [float(v) for v in self.eta_star.numpy()]
            config["allr_d"] = [None if np.isnan(v) else float(v) for v in self.allr_d.numpy()]  # None: not measured yet
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "RetrainSchedule":
        plan, config = split_plan(config)
        eta_star, allr_d = config.pop("eta_star", None), config.pop("allr_d", None)
        base = config.pop("base")
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        schedule = cls(base, plan, **config)
        if eta_star is not None:
            schedule.eta_star.assign(eta_star)
            schedule.allr_d.assign([np.nan if v is None else v for v in allr_d])
        return schedule
