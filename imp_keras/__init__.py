"""imp_keras: Iterative Magnitude Pruning for Keras, as in Zimmer, Spiegel & Pokutta (ICLR 2023).

    import keras                       # Keras 3 on TensorFlow, JAX or PyTorch (or tf_keras, below)
    import imp_keras

    model = imp_keras.prunable(build_model())
    plan = imp_keras.Plan(goal_sparsity=0.9, cycles=3, pretrain_epochs=10, retrain_epochs=3)
    lr = imp_keras.RetrainSchedule(base, plan, steps_per_epoch=469, kind="slr")
    model.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True), ...)
    model.fit(..., epochs=plan.total_epochs, callbacks=[imp_keras.IMPCallback(plan, lr)])
    imp_keras.export(model, "deploy")   # verified deployable files

Gradual magnitude pruning (Zhu & Gupta's cubic schedule) with the same global, monotone masks, in
one run per sparsity: `model.fit(..., callbacks=[imp_keras.GMPCallback(0.9, begin=0.1, end=0.5)])`.

The flavour comes from the objects passed: a Keras 3 model gets the Keras 3 adapter
(`imp_keras.keras3`), a tf_keras model the tfmot one (`imp_keras.tf_keras`). Objects made from no
Keras object (a schedule of a float base, a callback without a schedule) take tf_keras when
TF_USE_LEGACY_KERAS is on (`from imp_keras import keras` and tfmot set it), else Keras 3; each
adapter's own names (`imp_keras.keras3.RetrainSchedule`) choose explicitly. Importing imp_keras
imports neither Keras nor TensorFlow; an adapter is imported when first used.
"""

from collections.abc import Sequence
from typing import Any

from imp_keras import export  # a callable package: `imp_keras.export(model, out_dir)` (see its docstring)
from imp_keras._flavour import adapter, default_flavour, flavour_of
from imp_keras.core.faults import NonFiniteError
from imp_keras.core.plan import Plan
from imp_keras.core.report import SparsityReport
from imp_keras.core.rules import InvariantError, VerifyReport
from imp_keras.core.schedule import KINDS, allr_peak
from imp_keras.core.selection import CRITERIA, select

__all__ = [
    "CRITERIA",
    "GMPCallback",
    "IMPCallback",
    "InvariantError",
    "KINDS",
    "MaskHolder",
    "NaNGuard",
    "NonFiniteError",
    "Plan",
    "RetrainSchedule",
    "SparsityReport",
    "VerifyReport",
    "allr_peak",
    "apply_masks",
    "export",
    "keras",
    "masked_weights",
    "prunable",
    "select",
    "sparsity_report",
    "strip",
    "verify",
]

__version__ = "0.2.0"


def _model_adapter(model: Any, argument: str = "model"):
    flavour = flavour_of(model)
    if flavour is None:
        raise TypeError(
            f"`{argument}` must be a Keras model (Keras 3, or tf_keras for the tfmot path). "
            f"Received: {argument}={model!r}"
        )
    return adapter(flavour)


def prunable(model: Any, **kwargs: Any) -> Any:
    """`model` with a mask on every prunable kernel (see the flavour's `prunable` for the options)."""
    return _model_adapter(model).prunable(model, **kwargs)


def strip(model: Any) -> Any:
    """The plain model, masks applied and mask holders removed."""
    return _model_adapter(model).strip(model)


def masked_weights(model: Any) -> list:
    """The prunable tensors of a model built by `prunable`, in model order."""
    return _model_adapter(model).masked_weights(model)


def apply_masks(entries: Sequence[Any], masks: Sequence[Any] | None = None, optimizer: Any = None) -> None:
    """Sets the masks (when given) and zeroes every masked weight and its optimizer state."""
    if not entries:
        return
    _model_adapter(entries[0].layer, "entries").apply_masks(entries, masks, optimizer)


def sparsity_report(model: Any, **kwargs: Any) -> SparsityReport:
    """Sparsity of the masked tensors of `model`, of its other trainable kernels and of both."""
    return _model_adapter(model).sparsity_report(model, **kwargs)


def verify(model: Any, plan: Plan | None = None, **kwargs: Any) -> VerifyReport:
    """Checks the invariants of IMP in `model` (see `imp_keras.core.rules`)."""
    return _model_adapter(model).verify(model, plan, **kwargs)


class _ByFlavour(type):
    """A class whose instances are the same-named class of a flavour, chosen by `_flavour_for`;
    `isinstance` holds for either flavour's instances."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls.__module__ != __name__:  # a user's subclass: its overrides would never run
            base = next(c.__name__ for c in cls.__mro__ if c.__module__ == __name__)
            raise TypeError(
                f"{cls.__name__} subclasses `imp_keras.{base}`, which only picks a flavour's class: subclass "
                f"`imp_keras.tf_keras.{base}` or `imp_keras.keras3.{base}` instead, the one of the Keras you use."
            )
        return getattr(adapter(cls._flavour_for(*args, **kwargs)), cls.__name__)(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        flavour = flavour_of(obj)
        return flavour is not None and isinstance(obj, getattr(adapter(flavour), cls.__name__))


class RetrainSchedule(metaclass=_ByFlavour):
    """The learning rate of a whole IMP run (see `imp_keras.core.schedule`); the flavour of `base`
    when it is a schedule, else the default flavour."""

    @staticmethod
    def _flavour_for(base: Any = None, *args: Any, **kwargs: Any) -> str:
        return flavour_of(base) or default_flavour()

    @classmethod
    def budgeted(cls, *args: Any, **kwargs: Any) -> Any:
        """BIMP's schedule in the default flavour (see the flavour's `RetrainSchedule.budgeted`)."""
        return adapter(default_flavour()).RetrainSchedule.budgeted(*args, **kwargs)


class IMPCallback(metaclass=_ByFlavour):
    """Runs an IMP plan inside `model.fit`; the flavour of `schedule` when given, else the default."""

    @staticmethod
    def _flavour_for(plan: Any = None, schedule: Any = None, *args: Any, **kwargs: Any) -> str:
        return flavour_of(schedule) or default_flavour()


class GMPCallback(metaclass=_ByFlavour):
    """Prunes gradually to a goal inside `model.fit` (see `imp_keras.core.gradual.GMPCallbackBase`);
    the default flavour (use `imp_keras.keras3.GMPCallback` or `imp_keras.tf_keras.GMPCallback` to choose)."""

    @staticmethod
    def _flavour_for(*args: Any, **kwargs: Any) -> str:
        return default_flavour()


class NaNGuard(metaclass=_ByFlavour):
    """Stops `fit` at the first NaN or Inf; the default flavour."""

    @staticmethod
    def _flavour_for(*args: Any, **kwargs: Any) -> str:
        return default_flavour()


class MaskHolder(metaclass=_ByFlavour):
    """Holds the masks of a layer's prunable weights; the flavour of the layer."""

    @staticmethod
    def _flavour_for(layer: Any = None, *args: Any, **kwargs: Any) -> str:
        return flavour_of(layer) or default_flavour()


def __getattr__(name: str) -> Any:
    if name == "keras":  # tf_keras, as before Keras 3 was supported: existing code keeps working
        return adapter("tf_keras").keras
    raise AttributeError(f"module 'imp_keras' has no attribute {name!r}")
