import importlib

import pytest

import imp_keras

MODULES = ["imp_keras", "imp_keras.core.checks", "imp_keras.core.faults", "imp_keras.core.pruning", "imp_keras.core.report",
           "imp_keras.core.rules", "imp_keras.core.schedule", "imp_keras.tf_keras", "imp_keras.backup", "imp_keras.tf_keras.callback", "imp_keras.data", "imp_keras.tf_keras.export",
           "imp_keras.tf_keras.guard", "imp_keras.tf_keras.masking", "imp_keras.models", "imp_keras.core.plan", "imp_keras.tf_keras.report",
           "imp_keras.tf_keras.schedules", "imp_keras.core.selection", "imp_keras.tf_keras.verify", "imp_keras.tf_keras._keras"]


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


def _imported_roots(path):
    import ast

    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_imports_no_keras_and_only_one_module_imports_tf_keras():
    import pathlib

    package = pathlib.Path(imp_keras.__file__).parent
    files = {str(p.relative_to(package)): _imported_roots(p) for p in package.rglob("*.py")}
    assert sorted(f for f, roots in files.items() if "tf_keras" in roots) == ["tf_keras/_keras.py"]
    heavy = {"keras", "tf_keras", "tensorflow", "tensorflow_model_optimization", "jax", "torch"}
    assert {f: roots & heavy for f, roots in files.items() if f.startswith("core/") and roots & heavy} == {}
    assert files["__init__.py"] & heavy == set() and files["_flavour.py"] & heavy == set()


def test_export_function_and_module_both_reachable():
    # `imp_keras.tf_keras.export` is the function; its module (format names, report classes) by import.
    from imp_keras.tf_keras.export import FORMATS, ExportReport, FileReport

    assert callable(imp_keras.tf_keras.export) and imp_keras.tf_keras.ExportReport is ExportReport
    assert importlib.import_module("imp_keras.tf_keras.export").export is imp_keras.tf_keras.export
    assert "tflite_float_sparse" in FORMATS and FileReport.__name__ == "FileReport"
