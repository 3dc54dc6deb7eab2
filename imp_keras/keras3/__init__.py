"""The Keras 3 flavour (TensorFlow, JAX or PyTorch backend): masks held by `MaskHolder` wrapper
layers as model weights. Importing it imports Keras 3 and the chosen backend, never tfmot, and
TensorFlow only when it is the backend."""

from imp_keras.core.faults import NonFiniteError
from imp_keras.core.report import SparsityReport
from imp_keras.core.rules import InvariantError, VerifyReport
from imp_keras.core.schedule import KINDS
from imp_keras.keras3.callback import IMPCallback
from imp_keras.keras3.gradual import GMPCallback
from imp_keras.keras3.guard import NaNGuard
from imp_keras.keras3.masking import MaskHolder, apply_masks, coverage, masked_weights, prunable, pruned_positions, strip
from imp_keras.keras3.report import sparsity_report
from imp_keras.keras3.schedules import RetrainSchedule
from imp_keras.keras3.verify import verify

import keras  # noqa: E402  (the Keras this flavour works with, as `imp_keras.keras3.keras`)

FLAVOUR = "keras3"


def export(model, out_dir, *args, **kwargs):
    """Writes a Keras 3 model's deployable files (masks applied), each reloaded and checked; see
    `imp_keras.export.keras3.export`."""
    from imp_keras.export.keras3 import export as export_keras3  # only when asked: formats may need TensorFlow

    return export_keras3(model, out_dir, *args, **kwargs)


__all__ = [
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
