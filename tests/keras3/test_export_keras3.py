"""imp_keras.export.keras3 on each Keras 3 backend, in a fresh process per backend
(tests/scripts/export_keras3.py): every default format is written, reloaded and run, its outputs
match the model, and the zeroed half of every kernel is zero in it; formats the backend cannot
write are refused by name; a fixed batch size and a failing converter are handled.

Models: Conv2D 4 3x3 on 8x8x3 + Dense 5 (kernels 108 + 720 = 828 weights, 414 zeroed); a fixed
batch-2 MLP 6-8-3 (kernels 48 + 24 = 72 weights, 36 zeroed, passed as `pruned`); a Sequential
MLP 6-8-3 (36 of 72 zeroed) in the native formats.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "export_keras3.py")
NATIVE = ["keras", "weights_h5"]
# What each backend writes at least (measured; ONNX on TensorFlow and JAX needs tf2onnx / jax2onnx).
WRITTEN = {
    "tensorflow": ["keras", "weights_h5", "tf_saved_model", "litert"],
    "jax": ["keras", "weights_h5", "tf_saved_model"],
    "torch": ["keras", "weights_h5", "onnx"],
}
FILE_NAMES = {
    "keras": "model.keras",
    "weights_h5": "model.weights.h5",
    "tf_saved_model": "saved_model",
    "litert": "model.tflite",
    "onnx": "model.onnx",
}


@pytest.fixture(scope="module", params=["tensorflow", "jax", "torch"])
def run(request, tmp_path_factory):
    if os.environ.get("IMP_KERAS_FLAVOURS") == "keras3":
        pytest.skip("starts its own process per backend: runs once, from the main test process")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(KERAS_BACKEND=request.param, PYTHONPATH=os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]))
    out_dir = tmp_path_factory.mktemp(request.param)
    result = subprocess.run(
        [sys.executable, SCRIPT, str(out_dir)], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULTS ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1][len("RESULTS "):])


def test_every_default_format_is_written_reloaded_and_keeps_its_zeros(run):
    backend = run["backend"]
    assert set(WRITTEN[backend]) <= set(run["default_formats"])
    plain = run["plain"]
    assert (plain["prunable"], plain["pruned"], plain["samples"], run["zeroed"]) == (828, 414, 4, 414)
    assert plain["kernels"] == [828, 414, []]  # all trainable kernels: the same two, nothing unmasked
    assert list(plain["files"]) == run["default_formats"] and plain["passed"]
    assert plain["listing"] == sorted([FILE_NAMES[f] for f in run["default_formats"]] + ["export_report.json"])
    for format, file in plain["files"].items():
        assert file["passed"] and file["problems"] == [], (format, file["problems"])
        assert file["pruned_zero"] == file["pruned_weights"] == 414, format
        assert file["max_abs_diff"] <= 1e-5 and file["bytes"] > 0, format
        assert file["path"].endswith(FILE_NAMES[format])


def test_reloaded_sequential_model_is_checked_weight_by_weight(run):
    # Its reloaded variables lose the `sequential/` prefix; every kernel must still be found.
    sequential = run["sequential"]
    assert sequential["passed"] and sequential["pruned"] == 36
    for format in NATIVE:
        assert sequential["files"][format]["pruned_zero"] == 36 and not sequential["files"][format]["problems"]


def test_formats_the_backend_cannot_write_are_refused_by_name(run):
    backend = run["backend"]
    refused = run["refused"]
    assert sorted(refused) == sorted(set(FILE_NAMES) - set(run["default_formats"]))
    for format, message in refused.items():
        assert message.startswith(f"`formats` contains {format!r}, which ") and message.endswith(f"Received: formats=({format!r},)")
        assert "pip install" in message or "KERAS_BACKEND=" in message, message
    if backend == "jax":
        assert "cannot write on the jax backend" in refused["litert"] and "KERAS_BACKEND=tensorflow or torch" in refused["litert"]
    if backend == "torch":
        assert "KERAS_BACKEND=tensorflow or jax" in refused["tf_saved_model"]
        assert "Detected mismatch between the structure of `inputs` and `dynamic_shapes`" in refused["tf_saved_model"]
    assert not run["refused_dir_created"]


def test_fixed_batch_model_is_run_in_whole_batches(run):
    fixed = run["fixed"]
    assert (fixed["prunable"], fixed["pruned"], fixed["samples"]) == (72, 36, 4)
    assert fixed["passed"] and list(fixed["files"]) == run["default_formats"]
    for format, file in fixed["files"].items():
        assert file["pruned_zero"] == 36 and file["max_abs_diff"] <= 1e-5, format


def test_a_failing_converter_is_reported_and_the_other_files_still_checked(run):
    failing, failed = run["failing"], run["failed"]
    assert failing in ("tf_saved_model", "onnx")  # the first non-native default format
    assert failed["files"]["keras"]["passed"] and failed["listing"] == ["export_report.json", "model.keras"]
    report = failed["files"][failing]
    assert not report["passed"] and report["path"] is None and report["bytes"] == 0
    assert report["problems"] == [f"not written: RuntimeError: converter exploded on {failing}"]


def test_importing_the_exporter_imports_no_tensorflow(run):
    assert run["tensorflow_at_import"] == (run["backend"] == "tensorflow")


# -- refused arguments (in this process, Keras 3 on its default backend; nothing is written) --------


def keras3_model(batch_size=None):
    import keras

    inputs = keras.Input((6,), batch_size=batch_size)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(inputs))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(formats=("keras", "x")), ValueError, r"`formats` contains unknown format 'x'. Known: keras, weights_h5, .* Received"),
        (dict(formats="keras"), ValueError, r"`formats` must be a non-empty tuple of format names .* Received: formats='keras'"),
        (dict(pruned={"nope": None}), ValueError, r"`pruned` must map weight paths of the model \(\['out/bias', 'out/kernel'\]\) .* key 'nope'"),
        (dict(pruned={"out/kernel": [1, 2]}), ValueError, r"`pruned\['out/kernel'\]` must be a boolean array of the weight's shape \(6, 3\)"),
        (dict(pruned={"out/kernel": np.ones((6, 3), bool)}), ValueError, r"marks 18 weights that are not 0 in the model"),
        (dict(pruned=[1]), TypeError, r"`pruned` must be a dict of weight path -> boolean mask, or None. Received: pruned=\[1\]"),
        (dict(sample_inputs=np.zeros((4, 5))), ValueError, r"`sample_inputs` for input .* has shape \(4, 5\), but the model takes \(None, 6\)"),
        (dict(verbose=2), ValueError, r"`verbose` must be 0 or 1. Received: verbose=2"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, error, message):
    from imp_keras.export import keras3 as exporter

    with pytest.raises(error, match=message):
        exporter.export(keras3_model(), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_fixed_batch_needs_whole_batches_and_models_must_be_keras3(tmp_path):
    from imp_keras import keras as tf_keras
    from imp_keras.export import keras3 as exporter

    with pytest.raises(ValueError, match=r"a multiple of the model's fixed batch size 2 of samples. Received: 3 samples"):
        exporter.export(keras3_model(batch_size=2), tmp_path, sample_inputs=np.zeros((3, 6)))
    with pytest.raises(TypeError, match=r"`model` must be a Keras 3 `keras.Model` \(a tf_keras model goes to"):
        exporter.export(tf_keras.Sequential([tf_keras.Input((6,)), tf_keras.layers.Dense(3)]), tmp_path)
