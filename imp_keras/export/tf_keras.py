"""Deployable files from a pruned tf_keras model, each verified against the Keras model, with a size
and latency report.

`export` applies the masks, strips the mask holders (tfmot's `strip_pruning`) and writes the plain
tf_keras model as SavedModel, `.keras` and H5 (none needs custom objects to load), and as TFLite:
float32 or int8 (dynamic-range, or full-integer calibrated on representative data), each with or
without `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`, which stores pruned kernels in TFLite's sparse
format. Every file is then loaded again and checked: it must compute what the Keras model computes
on the same inputs, and every pruned weight must still be exactly zero in it (TFLite kernels are
read from the flatbuffer, decoded from the sparse format where it is used). The report gives, per
file, its size raw and gzipped, and for TFLite the single-thread latency on the LiteRT runtime and
what it does with the sparsity: run a sparse kernel on it, or densify it once at load (`DENSIFY` ops).

TFLite's sparse fully-connected kernel runs 1x4 blocks of its [out, in] weights: Keras (4, 1)
blocks of an [in, out] Dense kernel, which `IMPCallback(..., block_size=(4, 1))` prunes whole.
Unstructured sparsity is densified at load: smaller files, dense speed.

Each format is written on its own: a TFLite conversion that fails (ops TFLite lacks; see
`converter_options`) is reported for its format with the converter's message and what to try, while
the other files are written and checked, and the Keras files never need a TFLite conversion.

Formats (`FORMATS`; file names in `FILE_NAMES`):
  - `saved_model` (saved_model/), `keras` (model.keras), `h5` (model.h5): tf_keras.
  - `tflite_float` (model_float.tflite): float32, pruned weights stored as zeros.
  - `tflite_float_sparse`: float32 with `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`.
  - `tflite_int8_dynamic`, `tflite_int8_dynamic_sparse`: int8 weights, float activations (TFLite
    keeps kernels under 1024 weights in float).
  - `tflite_int8_full`, `tflite_int8_full_sparse`: int8 weights, activations, inputs and outputs,
    calibrated on `representative_data`; not in `DEFAULT_FORMATS`.
"""

import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from imp_keras import files
from imp_keras.export import checks, tflite
from imp_keras.export.report import ExportReport, FileReport, publish
from imp_keras.tf_keras import masking
from imp_keras.core.report import SparsityReport
from imp_keras.tf_keras._keras import keras, require_tf_keras
from imp_keras.tf_keras.report import sparsity_report

__all__ = [
    "DEFAULT_FORMATS",
    "FILE_NAMES",
    "FORMATS",
    "H5",
    "KERAS",
    "SAVED_MODEL",
    "TFLITE_FLOAT",
    "TFLITE_FLOAT_SPARSE",
    "TFLITE_INT8_DYNAMIC",
    "TFLITE_INT8_DYNAMIC_SPARSE",
    "TFLITE_INT8_FULL",
    "TFLITE_INT8_FULL_SPARSE",
    "export",
]

SAVED_MODEL = "saved_model"
KERAS = "keras"
H5 = "h5"
TFLITE_FLOAT = "tflite_float"
TFLITE_FLOAT_SPARSE = "tflite_float_sparse"
TFLITE_INT8_DYNAMIC = "tflite_int8_dynamic"
TFLITE_INT8_DYNAMIC_SPARSE = "tflite_int8_dynamic_sparse"
TFLITE_INT8_FULL = "tflite_int8_full"
TFLITE_INT8_FULL_SPARSE = "tflite_int8_full_sparse"

FORMATS = (
    SAVED_MODEL,
    KERAS,
    H5,
    TFLITE_FLOAT,
    TFLITE_FLOAT_SPARSE,
    TFLITE_INT8_DYNAMIC,
    TFLITE_INT8_DYNAMIC_SPARSE,
    TFLITE_INT8_FULL,
    TFLITE_INT8_FULL_SPARSE,
)
# The full-integer formats need representative data, so they are asked for explicitly.
DEFAULT_FORMATS = tuple(f for f in FORMATS if f not in (TFLITE_INT8_FULL, TFLITE_INT8_FULL_SPARSE))

FILE_NAMES = {
    SAVED_MODEL: "saved_model",
    KERAS: "model.keras",
    H5: "model.h5",
    TFLITE_FLOAT: "model_float.tflite",
    TFLITE_FLOAT_SPARSE: "model_float_sparse.tflite",
    TFLITE_INT8_DYNAMIC: "model_int8_dynamic.tflite",
    TFLITE_INT8_DYNAMIC_SPARSE: "model_int8_dynamic_sparse.tflite",
    TFLITE_INT8_FULL: "model_int8_full.tflite",
    TFLITE_INT8_FULL_SPARSE: "model_int8_full_sparse.tflite",
}

# TFLite formats: (quantization, sparsity flag).
_TFLITE_RECIPES = {
    TFLITE_FLOAT: ("float", False),
    TFLITE_FLOAT_SPARSE: ("float", True),
    TFLITE_INT8_DYNAMIC: ("dynamic", False),
    TFLITE_INT8_DYNAMIC_SPARSE: ("dynamic", True),
    TFLITE_INT8_FULL: ("full", False),
    TFLITE_INT8_FULL_SPARSE: ("full", True),
}
_FLOAT_FORMATS = (SAVED_MODEL, KERAS, H5, TFLITE_FLOAT, TFLITE_FLOAT_SPARSE)

_RANDOM_SAMPLES = 32


def _fixed_batch(model: keras.Model) -> int | None:
    """The model's batch size where its first input fixes it, else None."""
    return model.inputs[0].shape[0]


def _random_inputs(model: keras.Model) -> list[np.ndarray]:
    specs = [
        (name, t.dtype.name, tuple(t.shape), t.dtype.is_floating) for name, t in zip(model.input_names, model.inputs)
    ]
    batch = _fixed_batch(model) or 1
    count = -(-_RANDOM_SAMPLES // batch) * batch  # whole batches of a fixed batch size
    return checks.random_inputs(specs, count, "pass `sample_inputs` (or `representative_data`)")


def _checked_inputs(
    model: keras.Model, formats: tuple[str, ...], representative_data: Any, sample_inputs: Any
) -> tuple[list[np.ndarray] | None, list[np.ndarray]]:
    """The calibration data (None if not given) and the inputs to check the files on."""
    needs_data = [f for f in formats if f in _TFLITE_RECIPES and _TFLITE_RECIPES[f][0] == "full"]
    if needs_data and representative_data is None:
        raise ValueError(
            f"`formats` contains {needs_data[0]!r}, which needs `representative_data` (a few hundred training inputs) "
            f"to calibrate the int8 activations. Pass representative_data=..., or leave it out of `formats`. "
            f"Received: formats={formats!r}"
        )
    names, shapes = model.input_names, [tuple(t.shape) for t in model.inputs]
    representative = None
    if representative_data is not None:
        representative = checks.as_arrays(representative_data, names, shapes, "representative_data")
    if sample_inputs is not None:
        samples = checks.as_arrays(sample_inputs, names, shapes, "sample_inputs")
    else:
        samples = representative if representative is not None else _random_inputs(model)
    batch = _fixed_batch(model)
    if batch and len(samples[0]) % batch:
        raise ValueError(
            f"The model's batch size is fixed at {batch}, so the check inputs must come in whole batches. "
            f"Received: {len(samples[0])} samples; pass `sample_inputs` with a multiple of {batch}."
        )
    return representative, samples


# -- the model to export ----------------------------------------------------------------------------


def _plain_and_pruned(model: keras.Model) -> tuple[keras.Model, dict[str, np.ndarray], SparsityReport]:
    """The plain model to save, per masked kernel name the pruned positions (True = pruned): where
    the mask is 0 for a prunable model, exact zeros for a plain one; and the model's sparsity report."""
    foreign = [
        l.name
        for l in masking.layers_of(model)
        if isinstance(l, pruning_wrapper.PruneLowMagnitude) and not isinstance(l, masking.MaskHolder)
    ]
    if foreign:
        raise ValueError(
            f"Layers {foreign} are wrapped by tfmot's prune_low_magnitude; strip them first "
            "(`tfmot.sparsity.keras.strip_pruning(model)`), then export the plain model."
        )
    report = sparsity_report(model)
    entries = masking.masked_weights(model)
    if entries:
        return masking.strip(model), {e.name: e.mask.numpy() == 0 for e in entries}, report
    names = {layer.name for layer in report.layers}
    return model, {name: value == 0 for name, value in _kernels(model, names).items()}, report


def _kernels(model: keras.Model, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named trainable kernels of a plain model, as arrays."""
    names = set(names)
    return {name: np.asarray(v.numpy()) for name, v in masking.trainable_kernels(model) if name in names}


def _predict(model: keras.Model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=_fixed_batch(model), verbose=0)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def _save_keras(plain: keras.Model, format: str, path: str) -> None:
    with files.replacing(path) as temporary, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file", category=UserWarning)
        plain.save(temporary, save_format={SAVED_MODEL: "tf", KERAS: "keras", H5: "h5"}[format])


# -- writing and checking -------------------------------------------------------------------------


class _Checker:
    """Writes the files of one export and checks each against the Keras model; keeps the TFLite
    interpreters (default and builtin, inputs of one batch set) for timing."""

    def __init__(self, plain: keras.Model, pruned: dict[str, np.ndarray], samples: list[np.ndarray], options: dict[str, bool]):
        self.plain, self.pruned, self.samples, self.options = plain, pruned, samples, options
        self.keras_kernels = _kernels(plain, pruned)
        self.expected = _predict(plain, samples)
        self.interpreters: dict[str, tuple[tflite.Interpreter, tflite.Interpreter]] = {}

    def file(self, format: str, path: str, representative: list[np.ndarray] | None) -> FileReport:
        """Writes the file of `format` to `path` and checks it; a file that cannot be written or
        run is reported as this format's failure, with the message, and the export goes on."""
        if format not in _TFLITE_RECIPES:
            return self.keras_file(format, path)
        content = self.converted(format, representative)
        if isinstance(content, str):
            return checks.failed_write(format, path, self.pruned, content)
        files.write_bytes(path, content)
        facts = tflite.read_flatbuffer(content)
        if facts.flex_ops:
            found = checks.match_kernels(facts.kernels, self.keras_kernels)
            problem = tflite.FLEX_NOT_RUN.format(count=facts.flex_ops)
            return checks.not_run(
                format, path, found, self.pruned, problem, sparse_tensors=facts.sparse_tensors,
                densify_ops=facts.densify_ops, sparsity_at_runtime=facts.sparsity_at_runtime,
            )
        try:
            return self.tflite_file(format, path, content)
        except (RuntimeError, ValueError) as error:
            return checks.not_written(format, path, self.pruned, f"written, but not run: {type(error).__name__}: {error}")

    def converted(self, format: str, representative: list[np.ndarray] | None) -> bytes | str:
        """The flatbuffer of a TFLite format, or why the converter refused it."""
        try:
            return tflite.convert(self.plain, *_TFLITE_RECIPES[format], representative, self.options)
        except Exception as error:  # noqa: BLE001 - the converter fails in many ways; other formats go on
            return tflite.converter_error(error)

    def tflite_file(self, format: str, path: str | None, content: bytes) -> FileReport:
        """Checks a TFLite file (None: the in-memory reference) and keeps its interpreters for timing."""
        names = (self.plain.input_names, self.plain.output_names)
        interpreter, outputs, found, fields = tflite.check(content, self.samples, *names, self.keras_kernels)
        builtin = tflite.new_interpreter(content, tflite.BUILTIN)
        batch = _fixed_batch(self.plain) or 1
        for each in (interpreter, builtin):
            tflite.run(each, [a[:batch] for a in self.samples], *names)  # one batch for the latency
        self.interpreters[format] = (interpreter, builtin)
        sizes = checks.sizes(path) if path is not None else (len(content), checks.gzip_size(content))
        exact = format in _FLOAT_FORMATS
        return checks.file_report(format, path, sizes, outputs, self.expected, found, self.pruned, exact=exact, **fields)

    def keras_file(self, format: str, path: str) -> FileReport:
        """Saves a SavedModel, `.keras` or H5 file, loads it back and checks it."""
        try:
            _save_keras(self.plain, format, path)
        except OSError:
            raise  # the disk, not the format: nothing else would be written either
        except Exception as error:  # noqa: BLE001 - a format the model cannot be saved in; other formats go on
            return checks.failed_write(format, path, self.pruned, f"not written: {type(error).__name__}: {error}")
        try:
            loaded = keras.models.load_model(path, compile=False)  # no custom objects; .keras in safe mode
            outputs = _predict(loaded, self.samples)
            found = _kernels(loaded, self.pruned)
        except Exception as error:  # noqa: BLE001 - a file that does not load or run fails its check; others go on
            return checks.not_written(format, path, self.pruned, f"written, but not run: {type(error).__name__}: {error}")
        return checks.file_report(format, path, checks.sizes(path), outputs, self.expected, found, self.pruned, exact=True)

    def reference(self, written: list[FileReport]) -> FileReport | None:
        """The dense float TFLite file that ratios refer to: the exported one, else converted in
        memory; None when no TFLite format was asked for or the float model does not convert or run."""
        if not any(f.format in _TFLITE_RECIPES for f in written):
            return None
        exported = next((f for f in written if f.format == TFLITE_FLOAT), None)
        if exported is not None:
            return exported if exported.max_abs_diff is not None else None
        content = self.converted(TFLITE_FLOAT, None)
        if isinstance(content, str):
            return None
        try:
            return self.tflite_file(TFLITE_FLOAT, None, content)
        except (RuntimeError, ValueError):
            return None

    def timed(self, reports: list[FileReport], reference: FileReport | None, runs: int) -> tuple[list[FileReport], FileReport | None]:
        """`reports` and `reference` with their ratios to the reference and TFLite latencies."""
        names = list(self.interpreters)
        latencies = tflite.median_latencies([self.interpreters[n][i] for n in names for i in (0, 1)], runs)
        latency = {n: (latencies[2 * k], latencies[2 * k + 1]) for k, n in enumerate(names)}
        base = latency[TFLITE_FLOAT][0] if reference is not None else None

        def completed(f: FileReport) -> FileReport:
            timing = {}
            if f.format in latency:
                own, builtin = latency[f.format]
                timing = dict(latency_us=own, latency_builtin_us=builtin, speedup=None if own is None or base is None else base / own)
            if reference is None or f.max_abs_diff is None:
                return dataclasses.replace(f, **timing)
            return dataclasses.replace(
                f, ratio=f.bytes / reference.bytes, gzip_ratio=f.gzip_bytes / reference.gzip_bytes, **timing
            )

        reference = None if reference is None else completed(reference)
        return [reference if reference is not None and f.format == TFLITE_FLOAT else completed(f) for f in reports], reference


def export(
    model: keras.Model,
    out_dir: str | os.PathLike,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    representative_data: np.ndarray | Sequence[np.ndarray] | None = None,
    sample_inputs: np.ndarray | Sequence[np.ndarray] | None = None,
    converter_options: Mapping[str, bool] | None = None,
    latency_runs: int = 100,
    verbose: int = 1,
) -> ExportReport:
    """Writes the pruned model in deployable formats, verifies every file and reports sizes and latency.

    The masks are applied and the mask holders stripped; the plain tf_keras model is saved (no
    optimizer) and converted. Every file is loaded back (Keras files with `keras.models.load_model`
    and no custom objects, `.keras` in safe mode; TFLite files with the LiteRT interpreter
    `ai_edge_litert`, one thread) and run on the same inputs as the Keras model: float files must
    agree within `FLOAT_TOLERANCE` * (1 + |output|), int8 files report their top-1 agreement. Every
    pruned kernel weight must be exactly zero in every file. Where the XNNPACK delegate refuses a
    model (sparse int8 on current TFLite), the file is run on TFLite's builtin kernels and the
    report says so. Files are written under a temporary name and renamed, so an interrupted export
    never leaves a half file under a final name. A file that fails its check is reported (and
    warned about), not deleted.

    Args:
      model: a model from `imp_keras.prunable` (after IMP) or a plain tf_keras model.
      out_dir: directory for the files and `export_report.json`; created if missing, and files of
        an earlier export there are replaced.
      formats: names from `FORMATS` (see the module docstring).
      representative_data: inputs (an array, or one per model input, samples first) from the
        training distribution, a few hundred: calibrates the full-integer formats, and checks the
        files when `sample_inputs` is not given.
      sample_inputs: inputs to compare the files with the Keras model on; by default
        `representative_data`, else 32 standard-normal samples.
      converter_options: TFLite converter settings, `select_tf_ops` and `lower_tensor_list_ops`
        (see `imp_keras.export.tflite.CONVERTER_OPTIONS`), for models with ops TFLite lacks (an
        LSTM's TensorList ops). A file with Select TF ops needs the Flex delegate, which neither
        LiteRT nor TensorFlow's Python interpreter links: its kernels are checked for the pruned
        zeros, but it cannot be run here, so it is reported as not passed, with why.
      latency_runs: timed invokes per TFLite file and runtime (0 skips latency).
      verbose: 1 prints the report, 0 is silent.

    Returns:
      The `ExportReport`, also written to `out_dir/export_report.json`.

    Raises:
      TypeError: `model` is not a tf_keras model (a Keras 3 model, for example).
      ValueError: unknown formats, a full-integer format without `representative_data`, inputs
        that do not fit the model, or a model still wrapped by tfmot's own pruning wrappers.
    """
    require_tf_keras(model, "model", keras.Model)
    out_dir = checks.check_out_dir(out_dir)
    formats = checks.check_formats(formats, FORMATS)
    if isinstance(latency_runs, bool) or not isinstance(latency_runs, int) or latency_runs < 0:
        raise ValueError(f"`latency_runs` must be an integer >= 0. Received: latency_runs={latency_runs!r}")
    checks.check_verbose(verbose)
    options = tflite.check_converter_options(converter_options)
    representative, samples = _checked_inputs(model, formats, representative_data, sample_inputs)

    plain, pruned, report = _plain_and_pruned(model)
    checker = _Checker(plain, pruned, samples, options)
    os.makedirs(out_dir, exist_ok=True)
    written = [checker.file(format, os.path.join(out_dir, FILE_NAMES[format]), representative) for format in formats]
    written, reference = checker.timed(written, checker.reference(written), latency_runs)
    return publish(
        out_dir, written, pruned, len(samples[0]), verbose, reference=reference, latency_runs=latency_runs,
        tensorflow_version=tf.__version__, keras=f"tf_keras {keras.__version__}", sparsity=report,
    )
