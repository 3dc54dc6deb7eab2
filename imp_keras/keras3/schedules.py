"""The learning rate of an IMP run on Keras 3: `imp_keras.core.schedule`'s closed form, evaluated
with `keras.ops` inside a Keras 3 `LearningRateSchedule`, on any backend (TensorFlow, JAX, PyTorch).
Importing it imports no TensorFlow unless Keras 3 runs on it."""

from typing import Any

import keras
import numpy as np

from imp_keras._flavour import flavour_of
from imp_keras.core.checks import check_int, check_learning_rate
from imp_keras.core.plan import Plan
from imp_keras.core.schedule import KINDS, RetrainShape, allr_peak, learning_rate, split_plan

__all__ = ["KINDS", "RetrainSchedule", "allr_peak", "learning_rates"]

Schedule = keras.optimizers.schedules.LearningRateSchedule
_UNMEASURED = -1.0  # ALLR's d of a cycle not pruned yet


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
class RetrainSchedule(Schedule):
    """Learning rate of a whole IMP run as a pure function of the optimizer's step (Keras 3).

    Steps of the dense pretraining follow `base` unchanged; each cycle restarts its own schedule:

      - `ft`: constant eta_min (fine-tuning).
      - `lrw`: learning-rate rewinding, eta(k) = eta_o(L - N + k) (Renda et al., 2020).
      - `slr`: scaled restarting: warm-up to eta_max, then the whole base schedule (its warm-up
        replaced by eta_max) compressed into R steps (Le & Hua, 2021).
      - `clr`: warm-up to eta_max, then cosine from eta_max to eta_min.
      - `llr`: warm-up to eta_max, then linear to 0.
      - `allr`: as `llr`, with a peak measured at each pruning (`allr_peak`); `IMPCallback` records
        it (`record_allr`) and makes the peaks optimizer variables while it trains (`attach`), so
        JAX's compiled step sees them and a resumed run keeps them.
      - `constant`, `linear`, `cosine`: tunable, peak `initial_learning_rate` after a warm-up of
        `warmup_fraction` of the cycle, then constant, linear to 0, or cosine to 0.

    Args:
      base: the dense schedule (a Keras 3 `LearningRateSchedule` or a float), spanning
        `base_epochs`. May be None for `constant`/`linear`/`cosine` (and for `ft`/`clr`/`llr`/`allr`
        given `max_learning_rate`/`min_learning_rate`) when there is no pretraining.
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
    lr = imp_keras.keras3.RetrainSchedule(base, plan, steps_per_epoch=469, kind="slr")
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
        self.name = name or "RetrainSchedule"
        if base_warmup_steps is None:
            base_warmup_steps = int(getattr(base, "warmup_steps", 0) or 0)
        self.shape = RetrainShape.create(
            kind, plan, steps_per_epoch,
            base=_check_base(base),
            base_values=(lambda steps: learning_rates(base, steps)) if isinstance(base, Schedule) else None,
            base_epochs=base_epochs, base_warmup_steps=base_warmup_steps,
            initial_learning_rate=initial_learning_rate, warmup_fraction=warmup_fraction,
            max_learning_rate=max_learning_rate, min_learning_rate=min_learning_rate,
        )
        self.base = base
        if self.kind == "allr":
            peaks = np.full(plan.cycles, self.max_learning_rate, np.float32)
            self.eta_star = keras.Variable(peaks, trainable=False, name="eta_star")
            # -1 until measured (d >= 0), not NaN: in a multi-process JAX run a variable laid out on
            # the devices is checked to hold the same value on every process, and NaN != NaN
            # ("passed to device_put is not the same on each process ... Expected: [nan nan nan nan]").
            self.allr_d = keras.Variable(np.full(plan.cycles, _UNMEASURED, np.float32), trainable=False, name="allr_d")

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
        """Sets ALLR's peak for `cycle` (1-based) from d measured at its pruning; returns the peak.

        On JAX, call it between epochs (`on_epoch_begin`): inside an epoch `fit` holds the values of
        attached variables in its own state.
        """
        if self.kind != "allr":
            raise ValueError(f"record_allr applies to kind='allr' only, not kind={self.kind!r}.")
        cycle = check_int("cycle", cycle, 1, self.plan.cycles)
        d = check_learning_rate("d", d)
        peak = self.shape.allr_peak(cycle, d)
        # Whole-vector assigns: a slice of a mirrored variable (created in a strategy scope) is a tensor.
        for variable, value in ((self.eta_star, peak), (self.allr_d, d)):
            values = variable.numpy().copy()
            values[cycle - 1] = value
            variable.assign(values)
        return peak

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

    def _base_at(self, step: Any) -> Any:
        if isinstance(self.base, Schedule):
            return keras.ops.cast(self.base(step), "float32")
        return keras.ops.convert_to_tensor(float(self.base), "float32")

    def __call__(self, step: Any) -> Any:
        with keras.name_scope(self.name):
            if self.kind == "allr":
                peaks = self.eta_star
            else:
                peaks = np.full(self.plan.cycles, self.shape.fixed_peak(), np.float32)
            return learning_rate(keras.ops, self.shape, step, self._base_at, peaks)

    def get_config(self) -> dict[str, Any]:
        base = self.base
        if isinstance(base, Schedule):
            base = keras.optimizers.schedules.serialize(base)
        config = {"base": base, **self.shape.config(), "name": self.name}
        if self.kind == "allr":
            config["eta_star"] = [float(v) for v in self.eta_star.numpy()]
            config["allr_d"] = [None if v == _UNMEASURED else float(v) for v in self.allr_d.numpy()]  # None: not measured yet
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
            schedule.eta_star.assign(np.array(eta_star, np.float32))
            schedule.allr_d.assign(np.array([_UNMEASURED if v is None else v for v in allr_d], np.float32))
        return schedule
