"""ONNX files: run on ONNX Runtime and their weights read from the graph's initializers and
constants. `onnx` and `onnxruntime` are imported when a function is called, never at import."""

from collections.abc import Sequence

import numpy as np

from imp_keras.export import checks

__all__ = ["run", "weights"]


def run(path: str, inputs: Sequence[np.ndarray], batch: int | None) -> list[np.ndarray]:
    """The outputs of the ONNX file on `inputs` (one array per graph input, in order) on ONNX
    Runtime's CPU provider, `batch` samples at a time, or the file's own batch size where its
    first input fixes one (the torch exporter may fix it)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    first = session.get_inputs()[0].shape[0]
    fixed = first if isinstance(first, int) and first > 0 else None
    return checks.in_batches(lambda arrays: session.run(None, dict(zip(names, arrays))), inputs, fixed or batch)


def weights(path: str) -> list[np.ndarray]:
    """The graph's initializers and the tensors of its `Constant` nodes, as stored."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    arrays = [numpy_helper.to_array(t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant":
            arrays += [numpy_helper.to_array(a.t) for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    return arrays
