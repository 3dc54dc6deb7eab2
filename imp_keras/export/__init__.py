"""Deployable files from a model, each reloaded, run and checked against the Keras model.

    imp_keras.export(model, "deploy")      # tf_keras or Keras 3, chosen by the model

One module per part, as in `keras.src.export`: `tf_keras` and `keras3` (the exporters of each
flavour), `tflite`, `onnx` and `saved_model` (reading and running a file of that format), `checks`
(what every file is checked for) and `report` (`ExportReport`). Importing this package imports
neither Keras nor TensorFlow; an exporter is imported when first called.

The package is callable: `imp_keras.export(model, out_dir, ...)` is `export(model, out_dir, ...)`,
so the name stays one object however its submodules are imported (importing
`imp_keras.export.tflite` binds the package, never a function, to `imp_keras.export`).
"""

import importlib
import sys
import types
from typing import Any

from imp_keras._flavour import flavour_of
from imp_keras.export.report import ExportReport, FileReport

__all__ = ["ExportReport", "FileReport", "export"]


def export(model: Any, out_dir: Any, *args: Any, **kwargs: Any) -> ExportReport:
    """Writes the deployable files of `model` into `out_dir`, each reloaded and checked: the
    exporter of the model's flavour, `imp_keras.export.tf_keras.export` or
    `imp_keras.export.keras3.export` (see them for the formats and options)."""
    flavour = flavour_of(model)
    if flavour is None:
        raise TypeError(
            f"`model` must be a Keras model (Keras 3, or tf_keras for the tfmot path). Received: model={model!r}"
        )
    return importlib.import_module(f"imp_keras.export.{flavour}").export(model, out_dir, *args, **kwargs)


class _CallablePackage(types.ModuleType):
    def __call__(self, model: Any, out_dir: Any, *args: Any, **kwargs: Any) -> ExportReport:
        return export(model, out_dir, *args, **kwargs)

    __call__.__doc__ = export.__doc__


sys.modules[__name__].__class__ = _CallablePackage
