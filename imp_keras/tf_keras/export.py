"""Deployable files from a pruned model, each verified against the Keras model, with a size and
latency report.

`export` applies the masks, strips the mask holders (tfmot's `strip_pruning`) and writes the plain
tf_keras model as SavedModel, `.keras` and H5 (none needs custom objects to load), and as TFLite:
float32 or int8 (dynamic-range, or full-integer calibrated on representative data), each with or
without `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`, which stores pruned kernels in TFLite's sparse
format. Every file is then loaded again and checked: it must compute what the Keras model computes
on the same inputs, and every pruned weight must still be exactly zero in it (TFLite kernels are
read from the flatbuffer, decoded from the sparse format where it is used). The report gives, per
file, its size raw and gzipped, and for TFLite the single-thread latency and what the runtime does
with the sparsity: run a sparse kernel on it, or densify it once at load (`DENSIFY` ops).

TFLite's sparse fully-connected kernel runs 1x4 blocks of its [out, in] weights: Keras (4, 1)
blocks of an [in, out] Dense kernel, which `IMPCallback(..., block_size=(4, 1))` prunes whole.
Unstructured sparsity is densified at load: smaller files, dense speed.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
import dataclasses
import gzip
import json
import math
import os
import shutil
import statistics
import time
from typing import Any
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras, require_tf_keras

__all__ = [
    "DEFAULT_FORMATS",
    "FLOAT_TOLERANCE",
    "FORMATS",
    "FileReport",
    "ExportReport",
    "H5",
    "KERAS",
    "REPORT_FILE",
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

FLOAT_TOLERANCE = 1e-5
"""A float file's outputs may differ from the Keras model's by FLOAT_TOLERANCE * (1 + |output|):
1e-5 for outputs up to magnitude 1, relative beyond, where another summation order (XNNPACK's)
moves float32 logits of magnitude 30 by a few units in the last place, about 1e-5."""

REPORT_FILE = "export_report.json"

_FILE_NAMES = {
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
_WARMUP_INVOKES = 10
_LATENCY_ROUNDS = 10
_GZIP_LEVEL = 9
_MATCH_TOLERANCE = 0.02  # int8 rounding moves a weight by at most 1/254 of its channel's largest

_AUTO = tf.lite.experimental.OpResolverType.AUTO
_BUILTIN = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES

_OPS = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
_NUMPY_TYPES = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT16: np.int16,
    schema.TensorType.INT32: np.int32,
}
# Ops whose input 1 is a kernel, and how to bring it from TFLite's layout to Keras' (then reshaped
# to the Keras kernel's shape: Conv1D kernels live in CONV_2D as [out, 1, w, in], depthwise ones as
# [1, h, w, in * multiplier]).
_KERNEL_LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "FULLY_CONNECTED": lambda w: w.T,  # [out, in] -> [in, out]
    "CONV_2D": lambda w: np.moveaxis(w, 0, -1),  # [out, h, w, in] -> [h, w, in, out]
    "DEPTHWISE_CONV_2D": lambda w: w,
    "TRANSPOSE_CONV": lambda w: np.transpose(w, (1, 2, 0, 3)),  # [out, h, w, in] -> [h, w, out, in]
    "CONV_3D": lambda w: w,
    "CONV_3D_TRANSPOSE": lambda w: w,
    "BATCH_MATMUL": lambda w: w,
}


@dataclasses.dataclass(frozen=True)
class FileReport:
    """What one exported file holds and how it runs.

    Attributes:
      format: one of `FORMATS`.
      path: the file (a directory for SavedModel); None for the in-memory TFLite float reference
        when `tflite_float` was not asked for.
      bytes: size on disk (for a directory, the sum of its files).
      gzip_bytes: size gzipped at level 9 (for a directory, the sum over its files).
      ratio: `bytes` over the dense float TFLite file's.
      gzip_ratio: `gzip_bytes` over the dense float TFLite file's.
      max_abs_diff: largest absolute difference between the file's outputs and the Keras model's.
      top1_agreement: fraction of samples whose arg-max output agrees with Keras (None when no
        output has two or more classes).
      pruned_weights: kernel weights the model has pruned.
      pruned_zero: how many of those are exactly zero in the file.
      kernel_zeros: all exact zeros in the file's kernels (pruned or quantized to zero).
      passed: outputs within `FLOAT_TOLERANCE` * (1 + |output|) (float formats) and every pruned
        weight zero.
      problems: why it did not pass, or what could not be checked.
      sparse_tensors: TFLite tensors stored in the sparse format.
      densify_ops: TFLite `DENSIFY` ops (a sparse tensor made dense once, at the first invoke).
      sparsity_at_runtime: `dense storage`, `sparse kernel`, `densified` or a mix of the last two.
      runtime: `xnnpack` (the default XNNPACK delegate runs all or part of the model; ops it
        leaves, such as sparse kernels, run on TFLite's own), `builtin` (XNNPACK took no op) or
        `builtin (XNNPACK failed)`: XNNPACK refused the model (e.g. sparse int8) and the file was
        run on the builtin kernels instead.
      xnnpack_error: XNNPACK's message when it failed.
      latency_us: median single-thread invoke time on `runtime`, in microseconds, on the first
        sample input (batch 1), since inputs can change the speed (an all-zero input is a
        shortcut for the hybrid int8 kernels).
      latency_builtin_us: the same on TFLite's builtin kernels, without XNNPACK.
      speedup: the dense float file's `latency_us` over this file's.
    """

    format: str
    path: str | None
    bytes: int
    gzip_bytes: int
    ratio: float
    gzip_ratio: float
    max_abs_diff: float
    top1_agreement: float | None
    pruned_weights: int
    pruned_zero: int
    kernel_zeros: int
    passed: bool
    problems: tuple[str, ...] = ()
    sparse_tensors: int | None = None
    densify_ops: int | None = None
    sparsity_at_runtime: str | None = None
    runtime: str | None = None
    xnnpack_error: str | None = None
    latency_us: float | None = None
    latency_builtin_us: float | None = None
    speedup: float | None = None


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """The files `export` wrote, their verification, sizes and TFLite latencies.

    `str(report)` is two tables (files; TFLite runtime), `report[format]` a `FileReport`, and
    `as_dict()` what `export_report.json` holds.

    Attributes:
      out_dir: where the files are.
      files: one `FileReport` per exported format, in the order asked.
      reference: the dense float TFLite file that ratios and speed-ups refer to (the `tflite_float`
        entry of `files` when it was exported, else converted in memory only).
      samples: how many inputs each file was checked on.
      prunable_weights: kernel weights of the model that IMP could prune.
      pruned_weights: those pruned.
      latency_runs: timed invokes per file and runtime.
      tensorflow_version: the TensorFlow (and TFLite runtime) version that measured.
    """

    out_dir: str
    files: tuple[FileReport, ...]
    reference: FileReport
    samples: int
    prunable_weights: int
    pruned_weights: int
    latency_runs: int
    tensorflow_version: str

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files)

    def __getitem__(self, format: str) -> FileReport:
        for file in self.files:
            if file.format == format:
                return file
        raise KeyError(f"No {format!r} in this report; it has {[f.format for f in self.files]}.")

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "passed": self.passed,
            "samples": self.samples,
            "prunable_weights": self.prunable_weights,
            "pruned_weights": self.pruned_weights,
            "sparsity": self.pruned_weights / self.prunable_weights if self.prunable_weights else 0.0,
            "latency_runs": self.latency_runs,
            "tensorflow_version": self.tensorflow_version,
            "reference": dataclasses.asdict(self.reference),
            "files": [dataclasses.asdict(f) for f in self.files],
        }

    def __str__(self) -> str:
        sparsity = self.pruned_weights / self.prunable_weights if self.prunable_weights else 0.0
        lines = [
            f"Exported to {self.out_dir}: {self.pruned_weights}/{self.prunable_weights} kernel weights pruned "
            f"({sparsity:.2%}), checked on {self.samples} inputs.",
            "",
        ]
        lines += _table(
            ("format", "bytes", "gzip", "ratio", "gzip ratio", "max |diff|", "top-1", "pruned = 0", "ok"),
            [
                (
                    f.format,
                    f"{f.bytes:,}",
                    f"{f.gzip_bytes:,}",
                    f"{f.ratio:.3f}",
                    f"{f.gzip_ratio:.3f}",
                    f"{f.max_abs_diff:.2e}",
                    "-" if f.top1_agreement is None else f"{f.top1_agreement:.2%}",
                    f"{f.pruned_zero}/{f.pruned_weights}",
                    "yes" if f.passed else "NO",
                )
                for f in self.files
            ],
        )
        tflite = [f for f in self.files if f.runtime is not None]
        if self.reference.path is None:
            tflite.insert(0, self.reference)
        if tflite:
            lines += ["", f"TFLite, batch 1, 1 thread, median of {self.latency_runs} invokes:"]
            lines += _table(
                ("format", "sparsity at run time", "runtime", "sparse", "DENSIFY", "latency us", "builtin us", "speed-up"),
                [
                    (
                        f.format if f.path is not None else f"{f.format} (reference, not written)",
                        f.sparsity_at_runtime,
                        f.runtime,
                        str(f.sparse_tensors),
                        str(f.densify_ops),
                        _number(f.latency_us, ".1f"),
                        _number(f.latency_builtin_us, ".1f"),
                        _number(f.speedup, ".2f", "x"),
                    )
                    for f in tflite
                ],
                text_columns=3,
            )
        for f in self.files:
            lines += [f"{f.format}: {problem}" for problem in f.problems]
        return "\n".join(lines)


def _number(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> list[str]:
    """Rows under a header; the first `text_columns` columns left-aligned, numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:<{w}}" if i < text_columns else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), "-" * len(line(header)), *(line(r) for r in rows)]


# -- arguments ------------------------------------------------------------------------------------


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    if isinstance(formats, str) or not isinstance(formats, Sequence) or not formats:
        raise ValueError(f"`formats` must be a non-empty tuple of format names from {FORMATS}. Received: formats={formats!r}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(
            f"`formats` contains unknown format {unknown[0]!r}. Known: {', '.join(FORMATS)}. Received: formats={tuple(formats)!r}"
        )
    return tuple(dict.fromkeys(formats))


def _as_arrays(data: Any, model: keras.Model, argument: str) -> list[np.ndarray]:
    """`data` (one array, or one per model input) as float32 arrays checked against the inputs."""
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    names = model.input_names
    if len(arrays) != len(names):
        raise ValueError(
            f"`{argument}` must hold one array per model input ({len(names)}: {names}). Received: {len(arrays)} array(s)."
        )
    try:
        arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`{argument}` must hold arrays of numbers ({e}). Received: {argument} of type {type(data).__name__}"
        ) from None
    for name, array, tensor in zip(names, arrays, model.inputs):
        expected = tuple(tensor.shape)
        if array.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected[1:], array.shape[1:])):
            raise ValueError(
                f"`{argument}` for input {name!r} has shape {array.shape}, but the model takes {expected} "
                "(the first axis counts the samples)."
            )
    if len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise ValueError(
            f"`{argument}` must hold the same number (at least 1) of samples for every input. "
            f"Received: {[len(a) for a in arrays]}"
        )
    return arrays


def _random_inputs(model: keras.Model) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = []
    for name, tensor in zip(model.input_names, model.inputs):
        shape = tuple(tensor.shape)[1:]
        if None in shape or not tensor.dtype.is_floating:
            raise ValueError(
                f"Model input {name!r} ({tensor.dtype.name}, shape {tuple(tensor.shape)}) cannot be filled with random "
                "numbers; pass `sample_inputs` (or `representative_data`)."
            )
        arrays.append(rng.standard_normal((_RANDOM_SAMPLES, *shape)).astype(np.float32))
    return arrays


# -- the model to export ----------------------------------------------------------------------------


def _plain_and_pruned(model: keras.Model) -> tuple[keras.Model, dict[str, np.ndarray]]:
    """The plain model to save, and per kernel name the pruned positions (True = pruned): where the
    mask is 0 for a prunable model, exact zeros for a plain one."""
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
    entries = masking.masked_weights(model)
    if entries:
        pruned = {e.name: e.mask.numpy() == 0 for e in entries}
        return masking.strip(model), pruned
    return model, {name: variable.numpy() == 0 for name, variable in masking.plain_kernels(model)}


def _kernels(model: keras.Model, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named kernels (`"layer/attribute"`) of a plain model, as arrays."""
    layers = {l.name: l for l in masking.layers_of(model)}
    found = {}
    for name in names:
        layer_name, attribute = name.rsplit("/", 1)
        if layer_name in layers and hasattr(layers[layer_name], attribute):
            found[name] = np.asarray(getattr(layers[layer_name], attribute).numpy())
    return found


def _predict(model: keras.Model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


# -- files ----------------------------------------------------------------------------------------


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


@contextlib.contextmanager
def _atomically(path: str) -> Iterator[str]:
    """Yields a temporary name next to `path` (same extension, so Keras picks the same format);
    once written, it takes the place of `path` by renaming, so a crash never leaves a half-written
    file under the final name."""
    root, extension = os.path.splitext(path)
    temporary = f"{root}.partial{extension}"
    _remove(temporary)
    try:
        yield temporary
    except BaseException:
        _remove(temporary)
        raise
    if os.path.isdir(path):  # a SavedModel of an earlier export: a directory is not replaced by one rename
        stale = f"{root}.stale{extension}"
        _remove(stale)
        os.rename(path, stale)
        os.rename(temporary, path)
        _remove(stale)
    else:
        os.replace(temporary, path)


def _write_bytes(path: str, content: bytes) -> None:
    with _atomically(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(content)


def _sizes(path: str) -> tuple[int, int]:
    """Bytes on disk and gzip bytes of a file, or summed over the files of a directory."""
    if os.path.isdir(path):
        files = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    else:
        files = [path]
    raw = zipped = 0
    for file in files:
        with open(file, "rb") as f:
            content = f.read()
        raw += len(content)
        zipped += len(gzip.compress(content, compresslevel=_GZIP_LEVEL, mtime=0))
    return raw, zipped


def _save_keras(plain: keras.Model, format: str, path: str) -> None:
    with _atomically(path) as temporary, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file", category=UserWarning)
        plain.save(temporary, save_format={SAVED_MODEL: "tf", KERAS: "keras", H5: "h5"}[format])


def _convert(plain: keras.Model, format: str, representative: list[np.ndarray] | None) -> bytes:
    quantization, sparse = _TFLITE_RECIPES[format]
    names = plain.input_names
    converter = tf.lite.TFLiteConverter.from_keras_model(plain)
    converter.optimizations = ([tf.lite.Optimize.DEFAULT] if quantization != "float" else []) + (
        [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    )
    if quantization == "full":
        # Samples by input name: the converted model need not keep the Keras order of its inputs.
        converter.representative_dataset = lambda: (
            {name: a[i : i + 1] for name, a in zip(names, representative)} for i in range(len(representative[0]))
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


# -- TFLite flatbuffer ------------------------------------------------------------------------------


def _op_name(model: schema.ModelT, op: schema.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return _OPS.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def _densify(values: np.ndarray, shape: Sequence[int], sparsity: schema.SparsityParametersT) -> np.ndarray:
    """The dense array of a tensor in TFLite's sparse format: one level per entry of the traversal
    order, each DENSE (all its indices) or SPARSE_CSR (segments and indices under each parent);
    levels past the tensor's rank are blocks of the dimensions in `blockMap`."""
    order = list(sparsity.traversalOrder)
    block_map = [] if sparsity.blockMap is None else list(sparsity.blockMap)
    positions = np.zeros(1, dtype=np.int64)
    coordinates: dict[int, np.ndarray] = {}
    for dimension, level in zip(order, sparsity.dimMetadata):
        if level.format == schema.DimensionType.DENSE:
            size = level.denseSize
            coordinates = {d: c.repeat(size) for d, c in coordinates.items()}
            index = np.tile(np.arange(size), positions.size)
            positions = positions.repeat(size) * size + index
        else:
            segments = np.asarray(level.arraySegments.values, dtype=np.int64)
            indices = np.asarray(level.arrayIndices.values, dtype=np.int64)
            starts, counts = segments[positions], segments[positions + 1] - segments[positions]
            positions = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - starts, counts)
            coordinates = {d: c.repeat(counts) for d, c in coordinates.items()}
            index = indices[positions]
        coordinates[dimension] = index
    full_index = []
    for d in range(len(shape)):
        index = coordinates[d]
        if d in block_map:
            block_dimension = len(shape) + block_map.index(d)
            block = sparsity.dimMetadata[order.index(block_dimension)].denseSize
            index = index * block + coordinates[block_dimension]
        full_index.append(index)
    inside = np.all([i < n for i, n in zip(full_index, shape)], axis=0)  # edge blocks are padded
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(i[inside] for i in full_index)] = values[positions[inside]]
    return dense


def _constant(model: schema.ModelT, tensor: schema.TensorT) -> np.ndarray | None:
    """A constant tensor's values as float (dequantized, densified), or None if it is computed."""
    data = model.buffers[tensor.buffer].data
    if data is None or tensor.type not in _NUMPY_TYPES:
        return None
    values = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=_NUMPY_TYPES[tensor.type])
    shape = [int(s) for s in tensor.shape]
    array = _densify(values, shape, tensor.sparsity) if tensor.sparsity is not None else values.reshape(shape)
    array = array.astype(np.float64)
    quantization = tensor.quantization
    if quantization is not None and quantization.scale is not None and len(quantization.scale):
        broadcast = [1] * array.ndim
        if len(quantization.scale) > 1:
            broadcast[quantization.quantizedDimension] = -1
        scale = np.reshape(quantization.scale, broadcast)
        zero_point = np.reshape(quantization.zeroPoint, broadcast) if quantization.zeroPoint is not None else 0
        array = (array - zero_point) * scale
    return array


@dataclasses.dataclass(frozen=True)
class _FlatbufferFacts:
    sparse_tensors: int
    densify_ops: int
    sparsity_at_runtime: str
    kernels: list[np.ndarray]  # kernel inputs of compute ops, in Keras layout, as float


def _read_flatbuffer(content: bytes) -> _FlatbufferFacts:
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    sparse_tensors = densify_ops = densified = run_sparse = 0
    kernels = []
    for graph in model.subgraphs:
        producers = {output: op for op in graph.operators for output in op.outputs}
        sparse = {i for i, t in enumerate(graph.tensors) if t.sparsity is not None}
        sparse_tensors += len(sparse)
        for op in graph.operators:
            name = _op_name(model, op)
            densify_ops += name == "DENSIFY"
            for i in op.inputs:
                if i in sparse:
                    densified += name == "DENSIFY"
                    run_sparse += name != "DENSIFY"
            if name not in _KERNEL_LAYOUTS or len(op.inputs) < 2:
                continue
            index = op.inputs[1]
            while index in producers and _op_name(model, producers[index]) in ("DENSIFY", "DEQUANTIZE"):
                index = producers[index].inputs[0]
            values = _constant(model, graph.tensors[index])
            if values is not None:
                kernels.append(_KERNEL_LAYOUTS[name](values))
    if not sparse_tensors:
        at_runtime = "dense storage"
    elif not densified:
        at_runtime = "sparse kernel"
    elif not run_sparse:
        at_runtime = "densified"
    else:
        at_runtime = f"{run_sparse} sparse kernel, {densified} densified"
    return _FlatbufferFacts(sparse_tensors, densify_ops, at_runtime, kernels)


def _channel_profile(kernel: np.ndarray) -> np.ndarray:
    """Magnitudes relative to each output channel's (last axis) largest: equal for a kernel, its
    per-channel quantized copy and its copy with a batch norm folded in."""
    magnitude = np.abs(kernel)
    peak = magnitude.reshape(-1, magnitude.shape[-1]).max(axis=0) if magnitude.size else 1.0
    return magnitude / np.where(peak > 0, peak, 1.0)


def _match_kernels(candidates: list[np.ndarray], keras_kernels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each Keras kernel's copy in the file: the unused candidate of the same size that is closest
    in per-channel profile, if within int8 rounding."""
    found, used = {}, set()
    for name, kernel in keras_kernels.items():
        best, best_error = None, _MATCH_TOLERANCE
        profile = _channel_profile(kernel)
        for i, candidate in enumerate(candidates):
            if i in used or candidate.size != kernel.size:
                continue
            candidate = candidate.reshape(kernel.shape)
            error = float(np.max(np.abs(_channel_profile(candidate) - profile))) if kernel.size else 0.0
            if error <= best_error:
                best, best_error = i, error
        if best is not None:
            used.add(best)
            found[name] = candidates[best].reshape(kernel.shape)
    return found


# -- TFLite runtime -------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_interpreter_warning() -> Iterator[None]:
    # tf.lite.Interpreter warns that it moves to ai_edge_litert; it runs the same TFLite kernels.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*tf.lite.Interpreter is deprecated", category=UserWarning)
        yield


def _interpreter(content: bytes, resolver: tf.lite.experimental.OpResolverType) -> tf.lite.Interpreter:
    with _quiet_interpreter_warning():
        interpreter = tf.lite.Interpreter(model_content=content, num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def _default_interpreter(content: bytes) -> tuple[tf.lite.Interpreter, str, str | None]:
    """The interpreter a user gets by default (XNNPACK delegate), or TFLite's builtin kernels when
    XNNPACK refuses the model; with the runtime path and XNNPACK's error."""
    try:
        interpreter = _interpreter(content, _AUTO)
    except (RuntimeError, ValueError) as error:
        return _interpreter(content, _BUILTIN), "builtin (XNNPACK failed)", str(error).strip()
    # A delegated partition shows as one DELEGATE node in the node list (a private but stable API,
    # the one tf.lite's own analyzer reads).
    delegated = any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    return interpreter, "xnnpack" if delegated else "builtin", None


def _run(
    interpreter: tf.lite.Interpreter, inputs: Sequence[np.ndarray], input_names: Sequence[str], output_names: Sequence[str]
) -> list[np.ndarray]:
    """Runs the default signature on float `inputs`, quantizing them and dequantizing the outputs
    for an integer-only model."""
    runner = interpreter.get_signature_runner()
    input_details, output_details = runner.get_input_details(), runner.get_output_details()
    names = list(input_names) if set(input_names) == set(input_details) else list(input_details)
    feed = {}
    for name, array in zip(names, inputs):
        detail = input_details[name]
        scale, zero_point = detail["quantization"]
        if scale:
            info = np.iinfo(detail["dtype"])
            array = np.clip(np.round(array / scale + zero_point), info.min, info.max)
        feed[name] = array.astype(detail["dtype"])
    outputs = runner(**feed)
    names = list(output_names) if set(output_names) == set(outputs) else list(outputs)
    results = []
    for name in names:
        scale, zero_point = output_details[name]["quantization"]
        value = outputs[name].astype(np.float64)
        results.append((value - zero_point) * scale if scale else value)
    return results


def _median_latencies(interpreters: Sequence[tf.lite.Interpreter], runs: int) -> list[float | None]:
    """Median single-invoke time in microseconds of each interpreter (inputs already set). The
    interpreters take turns in rounds, so a slower spell of a shared machine hits them alike."""
    if runs == 0:
        return [None] * len(interpreters)
    for interpreter in interpreters:
        for _ in range(_WARMUP_INVOKES):
            interpreter.invoke()
    times: list[list[float]] = [[] for _ in interpreters]
    rounds = min(_LATENCY_ROUNDS, runs)
    for round_index in range(rounds):
        share = runs // rounds + (round_index < runs % rounds)
        for interpreter, measured in zip(interpreters, times):
            for _ in range(share):
                start = time.perf_counter()
                interpreter.invoke()
                measured.append(time.perf_counter() - start)
    return [statistics.median(t) * 1e6 for t in times]


# -- verification ---------------------------------------------------------------------------------


def _compare(outputs: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> tuple[float, float, float | None]:
    """Largest absolute difference, largest difference over 1 + |expected|, and top-1 agreement over
    the outputs with two or more classes."""
    diff = max(float(np.max(np.abs(o - e))) if e.size else 0.0 for o, e in zip(outputs, expected))
    scaled = max(float(np.max(np.abs(o - e) / (1 + np.abs(e)))) if e.size else 0.0 for o, e in zip(outputs, expected))
    agreements = [
        np.argmax(o, axis=-1) == np.argmax(e, axis=-1) for o, e in zip(outputs, expected) if e.ndim > 1 and e.shape[-1] > 1
    ]
    top1 = float(np.mean(np.concatenate([a.reshape(-1) for a in agreements]))) if agreements else None
    return diff, scaled, top1


def _zero_counts(found: Mapping[str, np.ndarray], pruned: Mapping[str, np.ndarray]) -> tuple[int, int, list[str]]:
    """Pruned weights that are zero in the file, all zeros of its kernels, and the problems."""
    pruned_zero = kernel_zeros = 0
    problems = []
    for name, positions in pruned.items():
        if name not in found:
            problems.append(f"kernel {name} not found in the file; its {int(positions.sum())} pruned weights are unchecked")
            continue
        values = found[name]
        zero = int(np.count_nonzero(values[positions] == 0))
        if zero < positions.sum():
            problems.append(f"{int(positions.sum()) - zero} pruned weights of {name} are not zero in the file")
        pruned_zero += zero
        kernel_zeros += int(np.count_nonzero(values == 0))
    return pruned_zero, kernel_zeros, problems


def _file_report(
    format: str,
    path: str | None,
    sizes: tuple[int, int],
    outputs: Sequence[np.ndarray],
    expected: Sequence[np.ndarray],
    found: Mapping[str, np.ndarray],
    pruned: Mapping[str, np.ndarray],
    **tflite: Any,
) -> FileReport:
    diff, scaled, top1 = _compare(outputs, expected)
    pruned_zero, kernel_zeros, problems = _zero_counts(found, pruned)
    if format in _FLOAT_FORMATS and not scaled <= FLOAT_TOLERANCE:
        problems.insert(0, f"outputs differ from the Keras model's by up to {diff:.3g}, over {FLOAT_TOLERANCE} * (1 + |output|)")
    return FileReport(
        format=format,
        path=path,
        bytes=sizes[0],
        gzip_bytes=sizes[1],
        ratio=math.nan,  # set once the reference is known
        gzip_ratio=math.nan,
        max_abs_diff=diff,
        top1_agreement=top1,
        pruned_weights=int(sum(int(p.sum()) for p in pruned.values())),
        pruned_zero=pruned_zero,
        kernel_zeros=kernel_zeros,
        passed=not problems,
        problems=tuple(problems),
        **tflite,
    )


def export(
    model: keras.Model,
    out_dir: str | os.PathLike,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    representative_data: np.ndarray | Sequence[np.ndarray] | None = None,
    sample_inputs: np.ndarray | Sequence[np.ndarray] | None = None,
    latency_runs: int = 100,
    verbose: int = 1,
) -> ExportReport:
    """Writes the pruned model in deployable formats, verifies every file and reports sizes and latency.

    The masks are applied and the mask holders stripped; the plain tf_keras model is saved (no
    optimizer) and converted. Every file is loaded back (Keras files with `keras.models.load_model`
    and no custom objects, `.keras` in safe mode; TFLite files with `tf.lite.Interpreter`, one
    thread) and run on the same inputs as the Keras model: float files must agree within
    `FLOAT_TOLERANCE` * (1 + |output|), int8 files report their top-1 agreement. Every pruned kernel weight must be
    exactly zero in every file. Where the XNNPACK delegate refuses a model (sparse int8 on current
    TFLite), the file is run on TFLite's builtin kernels and the report says so. Files are written
    under a temporary name and renamed, so an interrupted export never leaves a half file under a
    final name. A file that fails its check is reported (and warned about), not deleted.

    Formats (`FORMATS`; file names in parentheses):
      - `saved_model` (saved_model/), `keras` (model.keras), `h5` (model.h5): tf_keras.
      - `tflite_float` (model_float.tflite): float32, pruned weights stored as zeros.
      - `tflite_float_sparse`: float32 with `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`.
      - `tflite_int8_dynamic`, `tflite_int8_dynamic_sparse`: int8 weights, float activations
        (TFLite keeps kernels under 1024 weights in float).
      - `tflite_int8_full`, `tflite_int8_full_sparse`: int8 weights, activations, inputs and
        outputs, calibrated on `representative_data`; not in `DEFAULT_FORMATS`.

    Args:
      model: a model from `imp_keras.prunable` (after IMP) or a plain tf_keras model.
      out_dir: directory for the files and `export_report.json`; created if missing, and files of
        an earlier export there are replaced.
      formats: names from `FORMATS`.
      representative_data: inputs (an array, or one per model input, samples first) from the
        training distribution, a few hundred: calibrates the full-integer formats, and checks the
        files when `sample_inputs` is not given.
      sample_inputs: inputs to compare the files with the Keras model on; by default
        `representative_data`, else 32 standard-normal samples.
      latency_runs: timed invokes per TFLite file and runtime (0 skips latency).
      verbose: 1 prints the report, 0 is silent.

    Returns:
      The `ExportReport`, also written to `out_dir/export_report.json`.

    Raises:
      TypeError: `model` is not a tf_keras model (a Keras 3 model, for example).
      ValueError: unknown formats, a full-integer format without `representative_data`, inputs
        that do not fit the model, or a model still wrapped by tfmot's own pruning wrappers.

    Example:
    ```python
    report = imp_keras.tf_keras.export(model, "deploy", formats=("keras", "tflite_float_sparse", "tflite_int8_full"),
                              representative_data=x_train[:500], sample_inputs=x_test[:1000])
    assert report.passed
    report["tflite_float_sparse"].latency_us
    ```
    """
    require_tf_keras(model, "model", keras.Model)
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise TypeError(f"`out_dir` must be a path. Received: out_dir={out_dir!r}")
    formats = _check_formats(formats)
    if isinstance(latency_runs, bool) or not isinstance(latency_runs, int) or latency_runs < 0:
        raise ValueError(f"`latency_runs` must be an integer >= 0. Received: latency_runs={latency_runs!r}")
    if verbose not in (0, 1) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
    needs_data = [f for f in formats if f in _TFLITE_RECIPES and _TFLITE_RECIPES[f][0] == "full"]
    if needs_data and representative_data is None:
        raise ValueError(
            f"`formats` contains {needs_data[0]!r}, which needs `representative_data` (a few hundred training inputs) "
            f"to calibrate the int8 activations. Pass representative_data=..., or leave it out of `formats`. "
            f"Received: formats={formats!r}"
        )
    representative = None if representative_data is None else _as_arrays(representative_data, model, "representative_data")
    if sample_inputs is not None:
        samples = _as_arrays(sample_inputs, model, "sample_inputs")
    else:
        samples = representative if representative is not None else _random_inputs(model)

    plain, pruned = _plain_and_pruned(model)
    keras_kernels = _kernels(plain, list(pruned))
    expected = _predict(plain, samples)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)

    files: list[FileReport] = []
    runs: dict[str, tuple[tf.lite.Interpreter, tf.lite.Interpreter]] = {}
    batch_one = [a[:1] for a in samples]

    def tflite_file(format: str, path: str | None, content: bytes) -> FileReport:
        facts = _read_flatbuffer(content)
        interpreter, runtime, xnnpack_error = _default_interpreter(content)
        builtin = _interpreter(content, _BUILTIN)
        outputs = _run(interpreter, samples, plain.input_names, plain.output_names)
        for each in (interpreter, builtin):
            _run(each, batch_one, plain.input_names, plain.output_names)  # batch 1 for the latency
        runs[format] = (interpreter, builtin)
        sizes = _sizes(path) if path is not None else (len(content), len(gzip.compress(content, compresslevel=_GZIP_LEVEL, mtime=0)))
        return _file_report(
            format, path, sizes, outputs, expected, _match_kernels(facts.kernels, keras_kernels), pruned,
            sparse_tensors=facts.sparse_tensors, densify_ops=facts.densify_ops,
            sparsity_at_runtime=facts.sparsity_at_runtime, runtime=runtime, xnnpack_error=xnnpack_error,
        )

    for format in formats:
        path = os.path.join(out_dir, _FILE_NAMES[format])
        if format in _TFLITE_RECIPES:
            _write_bytes(path, _convert(plain, format, representative))
            with open(path, "rb") as f:
                files.append(tflite_file(format, path, f.read()))
        else:
            _save_keras(plain, format, path)
            loaded = keras.models.load_model(path, compile=False)  # no custom objects; .keras in safe mode
            outputs = _predict(loaded, samples)
            files.append(_file_report(format, path, _sizes(path), outputs, expected, _kernels(loaded, list(pruned)), pruned))
    reference = next((f for f in files if f.format == TFLITE_FLOAT), None)
    if reference is None:
        reference = tflite_file(TFLITE_FLOAT, None, _convert(plain, TFLITE_FLOAT, None))

    names = list(runs)
    latencies = _median_latencies([runs[n][i] for n in names for i in (0, 1)], latency_runs)
    latency = {n: (latencies[2 * k], latencies[2 * k + 1]) for k, n in enumerate(names)}

    def completed(f: FileReport) -> FileReport:
        timing = {}
        if f.format in latency:
            own, builtin = latency[f.format]
            base = latency[TFLITE_FLOAT][0]
            timing = dict(latency_us=own, latency_builtin_us=builtin, speedup=None if own is None else base / own)
        return dataclasses.replace(
            f, ratio=f.bytes / reference.bytes, gzip_ratio=f.gzip_bytes / reference.gzip_bytes, **timing
        )

    reference = completed(reference)
    report = ExportReport(
        out_dir=out_dir,
        files=tuple(reference if f.format == TFLITE_FLOAT else completed(f) for f in files),
        reference=reference,
        samples=len(samples[0]),
        prunable_weights=int(sum(p.size for p in pruned.values())),
        pruned_weights=int(sum(int(p.sum()) for p in pruned.values())),
        latency_runs=latency_runs,
        tensorflow_version=tf.__version__,
    )
    _write_bytes(os.path.join(out_dir, REPORT_FILE), json.dumps(report.as_dict(), indent=2).encode())
    if verbose:
        print(report)
    failed = [f.format for f in report.files if not f.passed]
    if failed:
        warnings.warn(f"Exported files that failed their check: {failed}. See {os.path.join(out_dir, REPORT_FILE)}.", stacklevel=2)
    return report
