"""The learning rate of an IMP run on Keras 3: `imp_keras.core.schedule`'s closed form, evaluated
with `keras.ops` inside a Keras 3 `LearningRateSchedule`, on any backend (TensorFlow, JAX, PyTorch).
Importing it imports no TensorFlow unless Keras 3 runs on it."""

from typing import Any

import keras
import numpy as np

from imp_keras._flavour import flavour_of
from imp_keras.core.schedule import KINDS, RetrainScheduleBase, allr_peak

__all__ = ["KINDS", "RetrainSchedule", "allr_peak", "learning_rates"]

Schedule = keras.optimizers.schedules.LearningRateSchedule


def learning_rates(schedule: Schedule | float, steps: np.ndarray) -> np.ndarray:
    """The learning rate of `schedule` at every optimizer step in `steps`, as float64.

    The schedule is called once on the whole array of steps (Keras 3's built-in schedules accept
    one on TensorFlow and JAX), else mapped over it with `keras.ops.vectorized_map` (those with an
    `ops.cond`, such as `CosineDecay` with a warm-up), else called step by step (PyTorch: 200 epochs
    of 391 steps take a few seconds).
    """
    steps = np.asarray(steps, np.int64)
    if not isinstance(schedule, Schedule):
        return np.full(steps.shape, float(schedule), dtype=np.float64)
    tensor = keras.ops.convert_to_tensor(steps)
    for attempt in (lambda: schedule(tensor), lambda: keras.ops.vectorized_map(schedule, tensor)):
        # A schedule written for one step fails on an array in a way that depends on the backend
        # (TypeError, ValueError, tf.errors, torch's RuntimeError); the step-by-step calls below
        # raise its real errors, if any.
        try:
            values = keras.ops.convert_to_numpy(attempt())
        except Exception:
            continue
        if values.shape == steps.shape:  # a schedule that ignores `step` returns one value
            return values.astype(np.float64)
    values = [keras.ops.convert_to_numpy(schedule(keras.ops.convert_to_tensor(step))) for step in steps.ravel()]
    return np.array(values, np.float64).reshape(steps.shape)


def _check_base(base: Any) -> Any:
    """The `base` argument of `RetrainShape.create` (a number or None, which checks it): None for a
    Keras 3 schedule; a tf_keras schedule is refused here, with how to build a Keras 3 one."""
    if flavour_of(base) == "tf_keras":
        cls = type(base)
        raise TypeError(
            f"`base` is a tf_keras (Keras 2) object ({cls.__module__}.{cls.__qualname__}), but "
            "imp_keras.keras3.RetrainSchedule needs a Keras 3 `LearningRateSchedule`, a number or None. "
            "Build it with `import keras` (Keras 3), e.g. "
            "`keras.optimizers.schedules.PiecewiseConstantDecay(...)`, or use "
            "imp_keras.tf_keras.RetrainSchedule for a tf_keras model."
        )
    return None if isinstance(base, Schedule) else base


def _place_on_distribution(variable: keras.Variable) -> None:
    """Lays `variable` out as the active `keras.distribution` lays out its own (JAX).

    A schedule built before `with distribution.scope():` holds its ALLR peaks on one device, and
    JAX refuses a step that mixes them with the mesh's variables: "Received incompatible devices
    for jitted computation. Got argument state[0][0] ... with device ids [0, 1] ... and explicit
    output sharding with device ids [0]" (measured with DataParallel on 2 CPU devices).
    """
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None or variable._layout is not None:
        return
    variable._initialize_layout()  # Keras' own step when a variable is created under a distribution
    variable.assign(variable.value)  # assigning distributes the value along the new layout


@keras.saving.register_keras_serializable(package="imp_keras")
class RetrainSchedule(RetrainScheduleBase, Schedule):
    """Learning rate of a whole IMP run as a pure function of the optimizer's step (Keras 3).

    The kinds and the arguments are `imp_keras.tf_keras.RetrainSchedule`'s, with `base` a Keras 3
    `LearningRateSchedule`, a float or None. For `allr`, `IMPCallback` records each cycle's peak
    (`record_allr`) and makes the peaks optimizer variables while it trains (`attach`), so JAX's
    compiled step sees them and a resumed run keeps them.

    Example:
    ```python
    plan = imp_keras.Plan(goal_sparsity=0.9, cycles=3, pretrain_epochs=30, retrain_epochs=5)
    base = keras.optimizers.schedules.PiecewiseConstantDecay([15 * 469, 25 * 469], [0.1, 0.01, 0.001])
    lr = imp_keras.keras3.RetrainSchedule(base, plan, steps_per_epoch=469, kind="slr")
    model.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True), ...)
    ```
    """

    _schedules = keras.optimizers.schedules
    _ops = keras.ops
    _name_scope = keras.name_scope
    _learning_rates = learning_rates

    def _set_name(self, name: str) -> None:
        self.name = name

    def _check_base(self, base: Any) -> float | None:
        return _check_base(base)

    def _variable(self, values: np.ndarray, name: str) -> keras.Variable:
        return keras.Variable(values, trainable=False, name=name)

    def _allr_variables(self) -> tuple[keras.Variable, ...]:
        return (self.eta_star, self.allr_d) if self.kind == "allr" else ()

    def attach(self, optimizer: keras.optimizers.Optimizer) -> None:
        """Makes ALLR's peaks (`eta_star`, `allr_d`) variables of `optimizer`, so that `fit`'s
        compiled step reads their current values and `save_weights` and `BackupAndRestore` save them
        with the optimizer; idempotent, and nothing to do for the other kinds.

        The optimizer must be built (`fit` builds it before `on_train_begin` on JAX and PyTorch, not
        on TensorFlow): its variables are saved and restored by position, so the peaks must come
        after its own whenever they are attached.
        """
        # On JAX, `fit` jit-compiles its step with the model's and the optimizer's variables as
        # inputs; any other variable is read once, when the step is traced, and frozen into it. A
        # prototype measured it: a peak recorded between epochs was ignored (0.56 applied where 0.36
        # was set). tests/keras3 shows the stale value without `attach` and the new one with it.
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"`optimizer` must be a Keras 3 optimizer. Received: optimizer={optimizer!r}")
        variables = self._allr_variables()
        if variables and not optimizer.built:
            raise ValueError(
                "`optimizer` must be built before `attach`, so that ALLR's peaks come after its own "
                "variables (saved and restored by position). Call `optimizer.build(model.trainable_variables)` first."
            )
        attached = {id(v) for v in optimizer.variables}
        for variable in variables:
            if id(variable) not in attached:
                _place_on_distribution(variable)
                # The registration `add_variable` uses: `variables`, `save_own_variables` and the
                # state JAX's `fit` passes to its step all read the list it fills.
                optimizer._track_variable(variable)

    def detach(self, optimizer: keras.optimizers.Optimizer) -> None:
        """Undoes `attach`: `optimizer` has the variables of a freshly built one again (a `.keras`
        file saved after training loads into it; the peaks are in the schedule's config)."""
        attached = {id(v) for v in optimizer.variables}
        for variable in self._allr_variables():
            if id(variable) in attached:
                optimizer._untrack_variable(variable)
