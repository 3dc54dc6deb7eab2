import importlib

import pytest

import imp_keras

MODULES = ["imp_keras", "imp_keras.core.callback", "imp_keras.core.checks", "imp_keras.core.gradual", "imp_keras.core.faults", "imp_keras.core.pruning", "imp_keras.core.report",
           "imp_keras.core.rules", "imp_keras.core.schedule", "imp_keras.tf_keras", "imp_keras.backup", "imp_keras.tf_keras.callback", "imp_keras.data",
           "imp_keras.export", "imp_keras.export.checks", "imp_keras.export.keras3", "imp_keras.export.onnx", "imp_keras.export.report",
           "imp_keras.export.saved_model", "imp_keras.export.tf_keras", "imp_keras.export.tflite", "imp_keras.files",
           "imp_keras.tf_keras.gradual", "imp_keras.tf_keras.guard", "imp_keras.tf_keras.masking", "imp_keras.models", "imp_keras.core.plan", "imp_keras.tf_keras.report",
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
    # A Keras 3 user on JAX or PyTorch imports the export package without TensorFlow.
    light = ["export/__init__.py", "export/report.py", "export/checks.py", "files.py"]
    assert {f: files[f] & heavy for f in light if files[f] & heavy} == {}


def test_export_is_one_callable_package():
    # `imp_keras.export` is the package and is callable; importing its submodules never rebinds it.
    from imp_keras.export import tf_keras as exporter
    from imp_keras.export.tf_keras import FORMATS
    from imp_keras.export.report import ExportReport, FileReport

    package = importlib.import_module("imp_keras.export")
    importlib.import_module("imp_keras.export.tflite")
    assert imp_keras.export is package and callable(imp_keras.export)
    assert imp_keras.export.ExportReport is ExportReport and imp_keras.tf_keras.ExportReport is ExportReport
    assert imp_keras.tf_keras.export is exporter.export and callable(imp_keras.tf_keras.export)
    assert "tflite_float_sparse" in FORMATS and FileReport.__name__ == "FileReport"
    with pytest.raises(TypeError, match=r"`model` must be a Keras model .* Received: model=3"):
        imp_keras.export(3, "out")
