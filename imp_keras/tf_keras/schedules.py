"""The learning rate of an IMP run on tf_keras: `imp_keras.core.schedule`'s closed form, evaluated
with TensorFlow ops inside a tf_keras `LearningRateSchedule`."""

import numbers
import types
from typing import Any

import numpy as np
import tensorflow as tf

from imp_keras.core.schedule import KINDS, RetrainScheduleBase, allr_peak
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
class RetrainSchedule(RetrainScheduleBase, Schedule, tf.Module):
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

    _schedules = keras.optimizers.schedules
    _ops = TF_OPS
    _name_scope = tf.name_scope
    _learning_rates = learning_rates

    def _set_name(self, name: str) -> None:
        tf.Module.__init__(self, name=name)

    def _check_base(self, base: Any) -> float | None:
        if base is None or isinstance(base, numbers.Real):  # the core checks the number (and refuses a bool)
            return base
        require_tf_keras(base, "base", Schedule)
        return None

    def _variable(self, values: np.ndarray, name: str) -> tf.Variable:
        return tf.Variable(values, trainable=False, name=name)
