"""Exports Keras 3 models on the backend of KERAS_BACKEND and prints what happened as JSON (run by
tests/keras3/test_export_keras3.py in a fresh process per backend).

    KERAS_BACKEND=jax python tests/scripts/export_keras3.py OUT_DIR
"""

import json
import os
import sys

import imp_keras.export.keras3 as exporter  # before Keras is used: must not import TensorFlow

tensorflow_at_import = "tensorflow" in sys.modules

import keras  # noqa: E402
import numpy as np  # noqa: E402

import imp_keras  # noqa: E402


NATIVE = ("keras", "weights_h5")


def half_zero(model):
    """Sets a seeded half of every kernel's entries to exactly 0; returns path -> zeroed positions."""
    rng = np.random.default_rng(0)
    zeroed = {}
    for variable in model.weights:
        if variable.name == "kernel":
            value = keras.ops.convert_to_numpy(variable)
            mask = rng.permutation(value.size).reshape(value.shape) < value.size // 2
            variable.assign(np.where(mask, 0.0, value))
            zeroed[variable.path] = mask
    return zeroed


def conv_net():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))


def fixed_batch_mlp():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,), batch_size=2, name="features")
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(keras.layers.Dense(8, activation="relu", name="hidden")(inputs)))


def summary(report, out_dir):
    return {
        "passed": report.passed,
        "samples": report.samples,
        "prunable": report.prunable_weights,
        "pruned": report.pruned_weights,
        "kernels": [report.kernel_weights, report.kernel_pruned, list(report.unmasked)],
        "listing": sorted(os.listdir(out_dir)),
        "files": {
            f.format: {
                "path": f.path, "passed": f.passed, "problems": list(f.problems), "pruned_zero": f.pruned_zero,
                "pruned_weights": f.pruned_weights, "max_abs_diff": f.max_abs_diff, "bytes": f.bytes,
            }
            for f in report.files
        },
    }


def main(out_dir):
    results = {"backend": keras.backend.backend(), "tensorflow_at_import": tensorflow_at_import}
    results["default_formats"] = list(exporter.default_formats())
    conv = conv_net()
    results["zeroed"] = int(sum(m.sum() for m in half_zero(conv).values()))
    plain_dir = os.path.join(out_dir, "plain")
    results["plain"] = summary(imp_keras.export(conv, plain_dir, verbose=0), plain_dir)
    results["refused"] = {}
    for format in exporter.FORMATS:
        if format not in results["default_formats"]:
            try:
                exporter.export(conv, os.path.join(out_dir, "refused"), (format,), verbose=0)
            except ValueError as e:
                results["refused"][format] = str(e)
    results["refused_dir_created"] = os.path.exists(os.path.join(out_dir, "refused"))

    keras.utils.set_random_seed(2)
    sequential = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(3, name="out")])
    half_zero(sequential)
    sequential_dir = os.path.join(out_dir, "sequential")
    results["sequential"] = summary(exporter.export(sequential, sequential_dir, NATIVE, verbose=0), sequential_dir)

    mlp = fixed_batch_mlp()
    masks = half_zero(mlp)
    fixed_dir = os.path.join(out_dir, "fixed")
    results["fixed"] = summary(exporter.export(mlp, fixed_dir, pruned=masks, verbose=0), fixed_dir)

    failing = next(f for f in results["default_formats"] if f not in ("keras", "weights_h5"))
    original = keras.Model.export

    def broken_export(self, filepath, format="tf_saved_model", **kwargs):
        if format == failing:
            raise RuntimeError(f"converter exploded on {format}")
        return original(self, filepath, format=format, **kwargs)

    keras.Model.export = broken_export
    failed_dir = os.path.join(out_dir, "failed")
    results["failing"] = failing
    results["failed"] = summary(exporter.export(conv, failed_dir, ("keras", failing), verbose=0), failed_dir)
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
