"""imp_keras: Iterative Magnitude Pruning for tf_keras, as in Zimmer, Spiegel & Pokutta (ICLR 2023).

    model = imp_keras.prunable(build_model())
    plan = imp_keras.Plan(goal_sparsity=0.9, cycles=3, pretrain_epochs=10, retrain_epochs=3)
    lr = imp_keras.RetrainSchedule(base, plan, steps_per_epoch=469, kind="slr")
    model.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True), ...)
    model.fit(..., epochs=plan.total_epochs, callbacks=[imp_keras.IMPCallback(plan, lr)])
    imp_keras.export(model, "deploy")   # SavedModel, .keras, H5 and TFLite files, verified

`imp_keras.verify(model, plan, cycle=...)` checks the invariants IMPCallback keeps (and checks at
the end of every cycle); `imp_keras.NaNGuard(plan)` stops fit at the first NaN or Inf.
"""

from imp_keras._keras import keras
from imp_keras.callback import IMPCallback
from imp_keras.export import ExportReport, export
from imp_keras.guard import NaNGuard, NonFiniteError
from imp_keras.masking import MaskHolder, apply_masks, masked_weights, prunable, strip
from imp_keras.plan import Plan
from imp_keras.report import SparsityReport, sparsity_report
from imp_keras.schedules import KINDS, RetrainSchedule, allr_peak
from imp_keras.selection import CRITERIA, select
from imp_keras.verify import InvariantError, VerifyReport, verify

__all__ = [
    "CRITERIA",
    "ExportReport",
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

__version__ = "0.1.0"
