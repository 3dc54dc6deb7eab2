"""TFLite files: conversion of a tf_keras model, the flatbuffer decoded (constant tensors, sparse
format, DENSIFY ops) and the file run on the LiteRT runtime (`ai_edge_litert`), the one users ship.

Only `convert` imports TensorFlow, so a Keras 3 exporter can read and run `.tflite` files without it.
"""

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from imp_keras.export import checks

__all__ = [
    "AUTO",
    "BUILTIN",
    "CONVERTER_OPTIONS",
    "FLEX_NOT_RUN",
    "FlatbufferFacts",
    "check",
    "check_converter_options",
    "convert",
    "converter_error",
    "default_interpreter",
    "densify",
    "median_latencies",
    "new_interpreter",
    "read_flatbuffer",
    "run",
]

AUTO = OpResolverType.AUTO
BUILTIN = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES

_WARMUP_INVOKES = 10
_LATENCY_ROUNDS = 10

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
    "GATHER": lambda w: w,  # an Embedding table
}
_KERNEL_INPUT = {"GATHER": 0}  # the input holding the kernel where it is not input 1


# -- conversion ---------------------------------------------------------------------------------------


CONVERTER_OPTIONS = ("select_tf_ops", "lower_tensor_list_ops")
"""`converter_options` keys: `select_tf_ops` (TensorFlow kernels for ops TFLite lacks, run by the
Flex delegate), `lower_tensor_list_ops` (False keeps an LSTM's TensorList ops for Select TF ops
instead of lowering them)."""

FLEX_NOT_RUN = (
    "written, not run: it has {count} Select TF (Flex) op(s), which need the Flex delegate, and neither the LiteRT "
    "runtime nor TensorFlow's Python interpreter links it; its kernels were checked in the flatbuffer. Run it where "
    "the Flex delegate is linked (on Android, org.tensorflow:tensorflow-lite-select-tf-ops), or convert without "
    "Select TF ops (an RNN with unroll=True converts to builtin ops)."
)
_CONVERT_ADVICE = (
    "To convert it, try converter_options={'select_tf_ops': True} (TensorFlow ops TFLite lacks, such as an "
    "LSTM's TensorList ops; the file then needs the Flex delegate at run time), an RNN with unroll=True "
    "(builtin ops only), or leave the format out of `formats`."
)


def check_converter_options(options: Any) -> dict[str, bool]:
    """`options` as a dict of `CONVERTER_OPTIONS` keys to bools; raises ValueError otherwise."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or any(k not in CONVERTER_OPTIONS or not isinstance(v, bool) for k, v in options.items()):
        raise ValueError(
            f"`converter_options` must map some of {list(CONVERTER_OPTIONS)} to bools. Received: converter_options={options!r}"
        )
    return dict(options)


def converter_error(error: Exception) -> str:
    """The converter's message without its MLIR source locations, and what to try."""
    lines: dict[str, None] = {}  # in order, once each
    for line in str(error).splitlines():
        if "error:" in line:
            line = line[line.rindex("error:") :]
        elif "loc(" in line or "note:" in line:
            continue
        if line.strip():
            lines[line.strip()] = None
    message = " ".join(lines)
    return f"not converted: {type(error).__name__}: {message[:1500]} {_CONVERT_ADVICE}"


def convert(
    model: Any,
    quantization: str,
    sparse: bool,
    representative: Sequence[np.ndarray] | None,
    options: Mapping[str, bool] | None = None,
) -> bytes:
    """The TFLite flatbuffer of a tf_keras `model`.

    Args:
      model: a plain tf_keras model.
      quantization: `float`, `dynamic` (int8 weights) or `full` (int8 weights, activations, inputs
        and outputs, calibrated on `representative`, one array per model input).
      sparse: also `tf.lite.Optimize.EXPERIMENTAL_SPARSITY` (pruned kernels in the sparse format).
      representative: calibration inputs for `full`, else None.
      options: `CONVERTER_OPTIONS` to set.
    """
    import tensorflow as tf  # only here: reading and running a .tflite needs no TensorFlow

    options = options or {}
    names = model.input_names
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = ([tf.lite.Optimize.DEFAULT] if quantization != "float" else []) + (
        [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    )
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if quantization == "full":
        # Samples by input name: the converted model need not keep the Keras order of its inputs.
        converter.representative_dataset = lambda: (
            {name: a[i : i + 1] for name, a in zip(names, representative)} for i in range(len(representative[0]))
        )
        builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    converter.target_spec.supported_ops = [builtins] + ([tf.lite.OpsSet.SELECT_TF_OPS] if options.get("select_tf_ops") else [])
    if "lower_tensor_list_ops" in options:
        converter._experimental_lower_tensor_list_ops = options["lower_tensor_list_ops"]
    return converter.convert()


# -- flatbuffer ----------------------------------------------------------------------------------------


def _op_name(model: schema.ModelT, op: schema.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return _OPS.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def densify(values: np.ndarray, shape: Sequence[int], sparsity: schema.SparsityParametersT) -> np.ndarray:
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
    array = densify(values, shape, tensor.sparsity) if tensor.sparsity is not None else values.reshape(shape)
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
class FlatbufferFacts:
    """What a TFLite flatbuffer holds: tensors in the sparse format, DENSIFY ops, what the runtime
    does with the sparsity (see `FileReport.sparsity_at_runtime`), the compute ops' kernels and
    its Select TF (Flex) ops."""

    sparse_tensors: int
    densify_ops: int
    sparsity_at_runtime: str
    kernels: list[np.ndarray]  # kernel inputs of compute ops, in Keras layout, as float
    flex_ops: int = 0  # Select TF ops, which need the Flex delegate


def read_flatbuffer(content: bytes) -> FlatbufferFacts:
    """Decodes a TFLite flatbuffer: the constant kernel of every compute op (dequantized,
    densified, in Keras layout) and how its sparse tensors are used."""
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    sparse_tensors = densify_ops = densified = run_sparse = flex_ops = 0
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
            flex_ops += name == "CUSTOM" and (model.operatorCodes[op.opcodeIndex].customCode or b"").startswith(b"Flex")
            if name not in _KERNEL_LAYOUTS or len(op.inputs) < 2:
                continue
            index = op.inputs[_KERNEL_INPUT.get(name, 1)]
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
    return FlatbufferFacts(sparse_tensors, densify_ops, at_runtime, kernels, flex_ops)


# -- LiteRT runtime ------------------------------------------------------------------------------------


def new_interpreter(content: bytes, resolver: OpResolverType) -> Interpreter:
    """A LiteRT interpreter of the flatbuffer `content` on one thread, tensors allocated."""
    interpreter = Interpreter(model_content=content, num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def default_interpreter(content: bytes) -> tuple[Interpreter, str, str | None]:
    """The interpreter a user gets by default (XNNPACK delegate), or TFLite's builtin kernels when
    XNNPACK refuses the model; with the runtime path and XNNPACK's error."""
    try:
        interpreter = new_interpreter(content, AUTO)
    except (RuntimeError, ValueError) as error:
        return new_interpreter(content, BUILTIN), "builtin (XNNPACK failed)", str(error).strip()
    # A delegated partition shows as one DELEGATE node in the node list (a private but stable API,
    # the one the TFLite analyzer reads).
    delegated = any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    return interpreter, "xnnpack" if delegated else "builtin", None


def run(
    interpreter: Interpreter, inputs: Sequence[np.ndarray], input_names: Sequence[str], output_names: Sequence[str]
) -> list[np.ndarray]:
    """Runs the default signature on float `inputs`, quantizing them and dequantizing the outputs
    for an integer-only model; in batches of the file's batch size where it is fixed."""
    runner = interpreter.get_signature_runner()
    input_details, output_details = runner.get_input_details(), runner.get_output_details()
    names = list(input_names) if set(input_names) == set(input_details) else list(input_details)
    out_names = list(output_names) if set(output_names) == set(output_details) else list(output_details)

    def run_batch(arrays: list[np.ndarray]) -> list[np.ndarray]:
        feed = {}
        for name, array in zip(names, arrays):
            detail = input_details[name]
            scale, zero_point = detail["quantization"]
            if scale:
                info = np.iinfo(detail["dtype"])
                array = np.clip(np.round(array / scale + zero_point), info.min, info.max)
            feed[name] = array.astype(detail["dtype"])
        outputs = runner(**feed)
        results = []
        for name in out_names:
            scale, zero_point = output_details[name]["quantization"]
            value = outputs[name].astype(np.float64)
            results.append((value - zero_point) * scale if scale else value)
        return results

    fixed = int(input_details[names[0]]["shape_signature"][0])
    return checks.in_batches(run_batch, inputs, fixed if fixed > 0 else None)


def median_latencies(interpreters: Sequence[Interpreter], runs: int) -> list[float | None]:
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




def check(
    content: bytes,
    inputs: Sequence[np.ndarray],
    input_names: Sequence[str],
    output_names: Sequence[str],
    keras_kernels: Mapping[str, np.ndarray],
) -> tuple[Interpreter, list[np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Runs a TFLite file as a user would and reads its kernels.

    Returns:
      The default interpreter, its outputs on `inputs`, the file's copy of each of `keras_kernels`
      (Keras layout) and the `FileReport` fields of a TFLite file: sparse tensors, DENSIFY ops,
      sparsity at run time, runtime path and XNNPACK's error.
    """
    facts = read_flatbuffer(content)
    interpreter, runtime, xnnpack_error = default_interpreter(content)
    outputs = run(interpreter, inputs, input_names, output_names)
    fields = dict(
        sparse_tensors=facts.sparse_tensors,
        densify_ops=facts.densify_ops,
        sparsity_at_runtime=facts.sparsity_at_runtime,
        runtime=runtime,
        xnnpack_error=xnnpack_error,
    )
    return interpreter, outputs, checks.match_kernels(facts.kernels, keras_kernels), fields
