"""The tf_keras (Keras 2) flavour: masks held by tensorflow-model-optimization's pruning wrappers.

Importing it imports TensorFlow, tf_keras and tfmot, and sets TF_USE_LEGACY_KERAS=1 (as tfmot
does), so `tf.keras` is tf_keras in this process; `import keras` stays Keras 3.
"""

from typing import Any

from imp_keras.core.faults import NonFiniteError
from imp_keras.core.report import SparsityReport
from imp_keras.core.rules import InvariantError, VerifyReport
from imp_keras.core.schedule import KINDS
from imp_keras.export.report import ExportReport
from imp_keras.tf_keras._keras import keras
from imp_keras.tf_keras.callback import IMPCallback
from imp_keras.tf_keras.gradual import GMPCallback
from imp_keras.tf_keras.guard import NaNGuard
from imp_keras.tf_keras.masking import MaskHolder, apply_masks, coverage, masked_weights, prunable, strip
from imp_keras.tf_keras.report import sparsity_report
from imp_keras.tf_keras.schedules import RetrainSchedule
from imp_keras.tf_keras.verify import verify

FLAVOUR = "tf_keras"


__all__ = [
    "ExportReport",
    "FLAVOUR",
    "GMPCallback",
    "IMPCallback",
    "InvariantError",
    "KINDS",
    "MaskHolder",
    "NaNGuard",
    "NonFiniteError",
    "RetrainSchedule",
    "SparsityReport",
    "VerifyReport",
    "apply_masks",
    "coverage",
    "export",
    "keras",
    "masked_weights",
    "prunable",
    "sparsity_report",
    "strip",
    "verify",
]


def __getattr__(name: str) -> Any:
    # `imp_keras.export.tf_keras` imports this package's modules, so its `export` is bound here
    # when first asked for, not while either is half imported.
    if name == "export":
        from imp_keras.export.tf_keras import export

        return export
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
