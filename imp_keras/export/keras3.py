"""Deployable files from a plain Keras 3 model on the TensorFlow, JAX or PyTorch backend, each
reloaded, run and checked against the model.

`export` writes the native `.keras` and `.weights.h5` files and, through `model.export`, a
TensorFlow SavedModel, a LiteRT `.tflite` and an ONNX file: those the current backend can write
(`default_formats`). Every file is loaded again and run on the same inputs as the model (`.keras`
in safe mode, `.weights.h5` into a clone of the model, SavedModel with TensorFlow, `.tflite` with
LiteRT `ai_edge_litert`, `.onnx` with ONNX Runtime): its outputs must agree within
`checks.FLOAT_TOLERANCE` * (1 + |output|), and every pruned weight must be exactly 0 in it (`.tflite`
kernels decoded from the flatbuffer, ONNX initializers, SavedModel variables, the reloaded Keras
weights).

This module imports Keras, not TensorFlow: a format that needs TensorFlow imports it when written.
"""

import importlib.util
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from imp_keras import files
from imp_keras.core.coverage import kernel_role
from imp_keras.export import checks, onnx, saved_model
from imp_keras.export.report import ExportReport, FileReport, publish
from imp_keras.keras3 import masking
from imp_keras.keras3.report import sparsity_report

__all__ = [
    "FILE_NAMES",
    "FORMATS",
    "KERAS",
    "LITERT",
    "ONNX",
    "TF_SAVED_MODEL",
    "WEIGHTS_H5",
    "default_formats",
    "export",
    "refusal",
]

KERAS = "keras"
WEIGHTS_H5 = "weights_h5"
TF_SAVED_MODEL = "tf_saved_model"
LITERT = "litert"
ONNX = "onnx"

FORMATS = (KERAS, WEIGHTS_H5, TF_SAVED_MODEL, LITERT, ONNX)
FILE_NAMES = {
    KERAS: "model.keras",
    WEIGHTS_H5: "model.weights.h5",
    TF_SAVED_MODEL: "saved_model",
    LITERT: "model.tflite",
    ONNX: "model.onnx",
}

_BACKENDS = ("tensorflow", "jax", "torch")
_ONNX_RUNTIME = (("onnx", "onnx"), ("onnxruntime", "onnxruntime"))
_LITERT_RUNTIME = (("ai_edge_litert", "ai-edge-litert"),)
# The packages (module, pip name) that `model.export` needs to write a format on a backend and
# imp_keras to run it. Measured with Keras 3.15.1, TensorFlow 2.21, JAX 0.10.2 and torch 2.13:
# each format written from a Conv2D + Dense model in a fresh process per backend (the ONNX
# converters of TensorFlow and JAX, and litert-torch, were missing: Keras asks for them by name).
_NEEDS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("tensorflow", TF_SAVED_MODEL): (),
    ("tensorflow", LITERT): _LITERT_RUNTIME,
    ("tensorflow", ONNX): (("tf2onnx", "tf2onnx"), *_ONNX_RUNTIME),
    ("jax", TF_SAVED_MODEL): (("tensorflow", "tensorflow"),),
    ("jax", ONNX): (("jax2onnx", "jax2onnx"), *_ONNX_RUNTIME),
    ("torch", ONNX): _ONNX_RUNTIME,
    ("torch", LITERT): (("litert_torch", "litert-torch"), *_LITERT_RUNTIME),
}
# What Keras said, in the same measurement, for the formats it cannot write on a backend.
_CANNOT = {
    ("jax", LITERT): 'Keras refuses it: "LiteRT export requires TensorFlow or PyTorch backend"',
    ("torch", TF_SAVED_MODEL): (
        "torch.export fails under it, with a free or a fixed batch size "
        '("Detected mismatch between the structure of `inputs` and `dynamic_shapes`")'
    ),
}
_SAMPLES = 4


def refusal(format: str, backend: str | None = None) -> str | None:
    """Why `format` cannot be written on `backend` (default: the current one) and what to do about
    it, or None when it can. The native formats can always be written."""
    backend = backend or keras.backend.backend()
    if format in (KERAS, WEIGHTS_H5):
        return None
    elsewhere = " or ".join(b for b in _BACKENDS if (b, format) in _NEEDS)
    if (backend, format) in _CANNOT:
        return (
            f"{format!r}, which Keras {keras.__version__} cannot write on the {backend} backend ({_CANNOT[backend, format]}). "
            f"Export it in a process with KERAS_BACKEND={elsewhere}, or leave it out of `formats`"
        )
    if (backend, format) not in _NEEDS:
        return f"{format!r}, which imp_keras writes on the {elsewhere} backend, not on {backend}"
    missing = [pip for module, pip in _NEEDS[backend, format] if importlib.util.find_spec(module) is None]
    if missing:
        return (
            f"{format!r}, which needs {', '.join(missing)} on the {backend} backend. Install it "
            f"(`pip install {' '.join(missing)}`), or leave {format!r} out of `formats`"
        )
    return None


def default_formats(backend: str | None = None) -> tuple[str, ...]:
    """The formats `backend` (default: the current one) can write with the packages installed."""
    return tuple(f for f in FORMATS if refusal(f, backend) is None)


# -- arguments ------------------------------------------------------------------------------------


def _check_model(model: Any) -> list[Any]:
    """The model's input tensors; raises unless `model` is a Keras 3 model that knows them."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a Keras 3 `keras.Model` (a tf_keras model goes to `imp_keras.export.tf_keras.export`, "
            f"or to `imp_keras.export`, which picks). Received: model={model!r}"
        )
    try:
        inputs = list(model.inputs)
    except (AttributeError, TypeError, ValueError):
        inputs = []
    if not inputs:
        raise ValueError(
            f"`model` must know its inputs: build it on `keras.Input(...)` (a Functional or Sequential model). "
            f"Received: model={model.name!r} without inputs"
        )
    return inputs


def _plain(model: Any, pruned: Mapping[str, Any] | None) -> tuple[Any, Mapping[str, Any] | None]:
    """`model` with its masks applied and its `MaskHolder`s stripped when it has them, and the
    positions every file must hold at 0: by default what its masks prune (every masked tensor)."""
    if not isinstance(model, keras.Model) or not masking.masked_weights(model):
        return model, pruned
    if pruned is None:
        pruned = masking.pruned_positions(model)
    return masking.strip(model), pruned


def _check_formats(formats: Sequence[str] | None) -> tuple[str, ...]:
    if formats is None:
        return default_formats()
    formats = checks.check_formats(formats, FORMATS)
    for format in formats:
        reason = refusal(format)
        if reason is not None:
            raise ValueError(f"`formats` contains {reason}. Received: formats={formats!r}")
    return formats


def _samples(inputs: list[Any], sample_inputs: Any, batch: int | None) -> list[np.ndarray]:
    """The checked `sample_inputs`, or seeded standard-normal ones: 4, or the fewest whole batches
    of the model's fixed batch size that make at least 4."""
    names = [t.name for t in inputs]
    if sample_inputs is None:
        count = _SAMPLES if batch is None else batch * math.ceil(_SAMPLES / batch)
        specs = [(t.name, t.dtype, tuple(t.shape), keras.backend.is_float_dtype(t.dtype)) for t in inputs]
        return checks.random_inputs(specs, count, "pass `sample_inputs`")
    samples = checks.as_arrays(sample_inputs, names, [tuple(t.shape) for t in inputs], "sample_inputs")
    if batch is not None and len(samples[0]) % batch:
        raise ValueError(
            f"`sample_inputs` must hold a multiple of the model's fixed batch size {batch} of samples. "
            f"Received: {len(samples[0])} samples"
        )
    return samples


def _weights(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


def _check_pruned(model: keras.Model, pruned: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Per weight path, the positions that must be 0 in every file: `pruned`, checked against the
    model, or the exact zeros of its kernels."""
    weights = _weights(model)
    if pruned is None:
        return {v.path: weights[v.path] == 0 for v in model.weights if kernel_role(v.name, len(v.shape)) != "other"}
    if not isinstance(pruned, Mapping):
        raise TypeError(f"`pruned` must be a dict of weight path -> boolean mask, or None. Received: pruned={pruned!r}")
    masks = {}
    for name, mask in pruned.items():
        if name not in weights:
            raise ValueError(
                f"`pruned` must map weight paths of the model ({sorted(weights)}) to masks. Received: pruned with key {name!r}"
            )
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != weights[name].shape:
            raise ValueError(
                f"`pruned[{name!r}]` must be a boolean array of the weight's shape {weights[name].shape}. "
                f"Received: a {mask.dtype} array of shape {mask.shape}"
            )
        alive = int(np.count_nonzero(weights[name][mask]))
        if alive:
            raise ValueError(
                f"`pruned[{name!r}]` marks {alive} weights that are not 0 in the model: apply the masks "
                "(and strip the pruning wrappers) before exporting."
            )
        masks[name] = mask
    return masks


# -- writing and checking -------------------------------------------------------------------------


def _predict(model: keras.Model, inputs: list[np.ndarray], batch: int | None) -> list[np.ndarray]:
    x = inputs if len(inputs) > 1 else inputs[0]
    outputs = model.predict(x, batch_size=batch or len(inputs[0]), verbose=0)
    return [np.asarray(o) for o in keras.tree.flatten(outputs)]


def _write(model: keras.Model, format: str, path: str) -> None:
    with files.replacing(path) as temporary:
        if format == KERAS:
            model.save(temporary)
        elif format == WEIGHTS_H5:
            model.save_weights(temporary)
        else:
            model.export(temporary, format=format, verbose=False)


class _Checker:
    """Writes the files of one export and checks each against the model's outputs on `samples`
    (fed `batch` at a time for a fixed batch size) and the `pruned` positions of its weights."""

    def __init__(self, model: keras.Model, samples: list[np.ndarray], batch: int | None, pruned: dict[str, np.ndarray]):
        self.model, self.samples, self.batch, self.pruned = model, samples, batch, pruned
        self.kernels = {name: value for name, value in _weights(model).items() if name in pruned}
        self.expected = _predict(model, samples, batch)

    def file(self, format: str, path: str) -> FileReport:
        """Writes one file and checks it; a failure is this format's, reported with its message."""
        try:
            _write(self.model, format, path)
        except Exception as error:  # noqa: BLE001 - converters fail in their own ways; the other formats go on
            return checks.failed_write(format, path, self.pruned, f"not written: {type(error).__name__}: {str(error).strip()}")
        try:
            outputs, found, fields = self._load_and_run(format, path)
        except Exception as error:  # noqa: BLE001 - a file that does not load or run fails its check
            problem = f"written, but not run: {type(error).__name__}: {str(error).strip()}"
            return checks.not_written(format, path, self.pruned, problem)
        return checks.file_report(
            format, path, checks.sizes(path), outputs, self.expected, found, self.pruned, exact=True, **fields
        )

    def _same_weights(self, loaded: keras.Model) -> dict[str, np.ndarray]:
        """The reloaded copies of the pruned kernels, matched by position: a reloaded Sequential
        model builds its layers outside the model's name scope, so `sequential/fc/kernel` comes
        back as `fc/kernel`."""
        pairs = list(zip(self.model.weights, loaded.weights))
        if len(self.model.weights) != len(loaded.weights) or any(a.shape != b.shape for a, b in pairs):
            return {}  # zero_counts then names every kernel as not found
        return {a.path: keras.ops.convert_to_numpy(b) for a, b in pairs if a.path in self.kernels}

    def _load_and_run(self, format: str, path: str) -> tuple[list[np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
        """The file's outputs on the samples, its copies of the pruned kernels (Keras layout) and
        the `FileReport` fields of its format."""
        if format in (KERAS, WEIGHTS_H5):
            if format == KERAS:
                loaded = keras.saving.load_model(path, compile=False)  # safe mode: no code runs from the file
            else:
                loaded = keras.models.clone_model(self.model)
                loaded.load_weights(path)
            return _predict(loaded, self.samples, self.batch), self._same_weights(loaded), {}
        if format == TF_SAVED_MODEL:
            found = checks.match_kernels(saved_model.variables(path), self.kernels, any_layout=True)
            return saved_model.run(path, self.samples, self.batch), found, {}
        if format == ONNX:
            found = checks.match_kernels(onnx.weights(path), self.kernels, any_layout=True)
            return onnx.run(path, self.samples, self.batch), found, {}
        from imp_keras.export import tflite  # ai_edge_litert, which only this format needs

        with open(path, "rb") as f:
            content = f.read()
        names = [t.name for t in self.model.inputs]
        _, outputs, found, fields = tflite.check(content, self.samples, names, (), self.kernels)
        return outputs, found, fields


def export(
    model: keras.Model,
    out_dir: str | os.PathLike,
    formats: Sequence[str] | None = None,
    *,
    pruned: Mapping[str, np.ndarray] | None = None,
    sample_inputs: np.ndarray | Sequence[np.ndarray] | None = None,
    verbose: int = 1,
) -> ExportReport:
    """Writes a plain Keras 3 model in deployable formats and checks every file.

    Formats (`FORMATS`; file names in parentheses): `keras` (model.keras), `weights_h5`
    (model.weights.h5), `tf_saved_model` (saved_model/), `litert` (model.tflite) and `onnx`
    (model.onnx), the last three through `model.export`. Files are written under a temporary name
    and renamed. A format that fails to write or to run is reported (and warned about) with the
    converter's message; the others are still written and checked.

    Args:
      model: a Functional or Sequential Keras 3 model; one with `MaskHolder`s (from `prunable`)
        is exported as `strip` gives it, its masks applied.
      out_dir: directory for the files and `export_report.json`; created if missing, and files of
        an earlier export there are replaced.
      formats: names from `FORMATS`; None for `default_formats()`, those the current backend can
        write with the packages installed.
      pruned: weight path (`"dense/kernel"`) -> boolean mask of the weights that must be 0 in
        every file; None for what the masks prune (a model with `MaskHolder`s), else the exact
        zeros of the model's kernels.
      sample_inputs: inputs to compare the files with the model on (an array, or one per model
        input, samples first); by default 4 seeded standard-normal samples (whole batches of a
        fixed batch size).
      verbose: 1 prints the report, 0 is silent.

    Returns:
      The `ExportReport` (no TFLite reference, no latency), also in `out_dir/export_report.json`.

    Raises:
      TypeError: `model` is not a Keras 3 model.
      ValueError: unknown formats, a format the backend cannot write (the message says what to
        do), inputs that do not fit the model, or `pruned` marking weights that are not 0.
    """
    model, pruned = _plain(model, pruned)
    inputs = _check_model(model)
    out_dir = checks.check_out_dir(out_dir)
    formats = _check_formats(formats)
    checks.check_verbose(verbose)
    batch = tuple(inputs[0].shape)[0]
    samples = _samples(inputs, sample_inputs, batch)
    masks = _check_pruned(model, pruned)
    checker = _Checker(model, samples, batch, masks)
    os.makedirs(out_dir, exist_ok=True)
    written = [checker.file(f, os.path.join(out_dir, FILE_NAMES[f])) for f in formats]
    tensorflow = sys.modules.get("tensorflow")  # imported by the formats that needed it
    return publish(
        out_dir, written, masks, len(samples[0]), verbose,
        tensorflow_version=None if tensorflow is None else tensorflow.__version__,
        keras=f"keras {keras.__version__} ({keras.backend.backend()})", sparsity=sparsity_report(model),
    )
