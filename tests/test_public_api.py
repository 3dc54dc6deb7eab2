import importlib

import pytest

import imp_keras

MODULES = ["imp_keras", "imp_keras.backup", "imp_keras.callback", "imp_keras.data", "imp_keras.export",
           "imp_keras.guard", "imp_keras.masking", "imp_keras.models", "imp_keras.plan", "imp_keras.report",
           "imp_keras.schedules", "imp_keras.selection", "imp_keras.verify", "imp_keras._keras"]


@pytest.mark.parametrize("module_name", MODULES)
def test_public_names_import(module_name):
    module = importlib.import_module(module_name)
    assert module.__all__, module_name
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{module_name}.{name}"


def test_keras_is_tf_keras_everywhere():
    import tf_keras
    from tensorflow_model_optimization.python.core.keras.compat import keras as tfmot_keras

    assert imp_keras.keras is tf_keras
    # tfmot reaches tf_keras through tf.keras (tf_keras.api._v2.keras): the same classes.
    for name in ("Model", "Sequential"):
        assert getattr(tfmot_keras, name) is getattr(tf_keras, name)
    assert tfmot_keras.layers.Dense is tf_keras.layers.Dense


def test_only_one_module_imports_keras_directly():
    import pathlib
    import re

    package = pathlib.Path(imp_keras.__file__).parent
    importers = sorted(
        p.name for p in package.glob("*.py") if re.search(r"^\s*(import|from)\s+(tf_keras|keras)\b", p.read_text(), re.M)
    )
    assert importers == ["_keras.py"]


def test_export_function_and_module_both_reachable():
    # `imp_keras.export` is the function; its module (format names, report classes) by import.
    from imp_keras.export import FORMATS, ExportReport, FileReport

    assert callable(imp_keras.export) and imp_keras.ExportReport is ExportReport
    assert importlib.import_module("imp_keras.export").export is imp_keras.export
    assert "tflite_float_sparse" in FORMATS and FileReport.__name__ == "FileReport"
