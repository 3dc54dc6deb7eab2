"""What every exporter checks: the arguments they share, a file's outputs against the Keras
model's, its pruned weights at zero, and its size. NumPy only."""

import gzip
import itertools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from imp_keras import files
from imp_keras.export.report import FileReport

__all__ = [
    "FLOAT_TOLERANCE",
    "GZIP_LEVEL",
    "as_arrays",
    "check_formats",
    "check_out_dir",
    "check_verbose",
    "compare",
    "failed_write",
    "file_report",
    "gzip_size",
    "in_batches",
    "match_kernels",
    "not_run",
    "not_written",
    "random_inputs",
    "sizes",
    "zero_counts",
]

FLOAT_TOLERANCE = 1e-5
"""A float file's outputs may differ from the Keras model's by FLOAT_TOLERANCE * (1 + |output|):
1e-5 for outputs up to magnitude 1, relative beyond, where another summation order (XNNPACK's)
moves float32 logits of magnitude 30 by a few units in the last place, about 1e-5."""

GZIP_LEVEL = 9
_MATCH_TOLERANCE = 0.02  # int8 rounding moves a weight by at most 1/254 of its channel's largest


# -- arguments ------------------------------------------------------------------------------------


def check_out_dir(out_dir: Any) -> str:
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise TypeError(f"`out_dir` must be a path. Received: out_dir={out_dir!r}")
    return os.fspath(out_dir)


def check_verbose(verbose: Any) -> None:
    if verbose not in (0, 1) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")


def check_formats(formats: Any, known: Sequence[str]) -> tuple[str, ...]:
    """`formats` without repeats, checked against the `known` names."""
    if isinstance(formats, str) or not isinstance(formats, Sequence) or not formats:
        raise ValueError(f"`formats` must be a non-empty tuple of format names from {tuple(known)}. Received: formats={formats!r}")
    unknown = [f for f in formats if f not in known]
    if unknown:
        raise ValueError(
            f"`formats` contains unknown format {unknown[0]!r}. Known: {', '.join(known)}. Received: formats={tuple(formats)!r}"
        )
    return tuple(dict.fromkeys(formats))


def as_arrays(data: Any, names: Sequence[str], shapes: Sequence[tuple[int | None, ...]], argument: str) -> list[np.ndarray]:
    """`data` (one array, or one per model input) as float32 arrays checked against the inputs'
    `names` and `shapes` (None for a free dimension)."""
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(names):
        raise ValueError(
            f"`{argument}` must hold one array per model input ({len(names)}: {list(names)}). Received: {len(arrays)} array(s)."
        )
    try:
        arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`{argument}` must hold arrays of numbers ({e}). Received: {argument} of type {type(data).__name__}"
        ) from None
    for name, array, expected in zip(names, arrays, shapes):
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


def random_inputs(
    inputs: Iterable[tuple[str, str, tuple[int | None, ...], bool]], count: int, advice: str
) -> list[np.ndarray]:
    """`count` seeded standard-normal samples per input, given as (name, dtype name, shape, floating).

    Raises:
      ValueError: an input is not float or has a free dimension besides the first; `advice` says
        what to pass instead.
    """
    rng = np.random.default_rng(0)
    arrays = []
    for name, dtype, shape, floating in inputs:
        if None in shape[1:] or not floating:
            raise ValueError(
                f"Model input {name!r} ({dtype}, shape {shape}) cannot be filled with random numbers; {advice}."
            )
        arrays.append(rng.standard_normal((count, *shape[1:])).astype(np.float32))
    return arrays


def in_batches(
    run: Callable[[list[np.ndarray]], Sequence[np.ndarray]], inputs: Sequence[np.ndarray], batch: int | None
) -> list[np.ndarray]:
    """The outputs of `run` on `inputs`, fed `batch` samples at a time (all at once for None): a
    file whose batch size is fixed takes exactly that many."""
    count = len(inputs[0])
    if batch is None or batch == count:
        return [np.asarray(o) for o in run(list(inputs))]
    parts = [run([a[i : i + batch] for a in inputs]) for i in range(0, count, batch)]
    return [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]


# -- verification ---------------------------------------------------------------------------------


def compare(outputs: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> tuple[float, float, float | None]:
    """Largest absolute difference, largest difference over 1 + |expected|, and top-1 agreement over
    the outputs with two or more classes."""
    diff = max(float(np.max(np.abs(o - e))) if e.size else 0.0 for o, e in zip(outputs, expected))
    scaled = max(float(np.max(np.abs(o - e) / (1 + np.abs(e)))) if e.size else 0.0 for o, e in zip(outputs, expected))
    agreements = [
        np.argmax(o, axis=-1) == np.argmax(e, axis=-1) for o, e in zip(outputs, expected) if e.ndim > 1 and e.shape[-1] > 1
    ]
    top1 = float(np.mean(np.concatenate([a.reshape(-1) for a in agreements]))) if agreements else None
    return diff, scaled, top1


def zero_counts(found: Mapping[str, np.ndarray], pruned: Mapping[str, np.ndarray]) -> tuple[int, int, list[str]]:
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


def _pruned_count(pruned: Mapping[str, np.ndarray]) -> int:
    return int(sum(int(p.sum()) for p in pruned.values()))


def _report(
    format: str,
    path: str | None,
    sizes: tuple[int, int],
    pruned: Mapping[str, np.ndarray],
    zeros: tuple[int, int],
    problems: Sequence[str],
    diff: float | None = None,
    top1: float | None = None,
    **tflite: Any,
) -> FileReport:
    return FileReport(
        format=format,
        path=path,
        bytes=sizes[0],
        gzip_bytes=sizes[1],
        ratio=None,
        gzip_ratio=None,
        max_abs_diff=diff,
        top1_agreement=top1,
        pruned_weights=_pruned_count(pruned),
        pruned_zero=zeros[0],
        kernel_zeros=zeros[1],
        passed=diff is not None and not problems,
        problems=tuple(problems),
        **tflite,
    )


def file_report(
    format: str,
    path: str | None,
    sizes: tuple[int, int],
    outputs: Sequence[np.ndarray],
    expected: Sequence[np.ndarray],
    found: Mapping[str, np.ndarray],
    pruned: Mapping[str, np.ndarray],
    *,
    exact: bool,
    **tflite: Any,
) -> FileReport:
    """The report of a file that was written and run: `exact` files (float) must match `expected`
    within `FLOAT_TOLERANCE` * (1 + |output|); `found` holds the file's copies of the pruned
    kernels. Ratios are left None for the caller to set once the reference is known."""
    diff, scaled, top1 = compare(outputs, expected)
    pruned_zero, kernel_zeros, problems = zero_counts(found, pruned)
    if exact and not scaled <= FLOAT_TOLERANCE:
        problems.insert(0, f"outputs differ from the Keras model's by up to {diff:.3g}, over {FLOAT_TOLERANCE} * (1 + |output|)")
    return _report(format, path, sizes, pruned, (pruned_zero, kernel_zeros), problems, diff, top1, **tflite)


def not_written(format: str, path: str | None, pruned: Mapping[str, np.ndarray], problem: str) -> FileReport:
    """The report of a file that could not be written (`path` None) or not be run."""
    return _report(format, path, (0, 0) if path is None else sizes(path), pruned, (0, 0), [problem])


def failed_write(format: str, path: str, pruned: Mapping[str, np.ndarray], problem: str) -> FileReport:
    """The report of a file that could not be written to `path`. A file an earlier export left
    there is removed: the directory must not hold a model this export did not check."""
    if os.path.lexists(path):
        files.remove(path)
        problem = f"{problem} (the earlier export's {os.path.basename(path)} there was removed)"
    return not_written(format, None, pruned, problem)


def not_run(
    format: str, path: str, found: Mapping[str, np.ndarray], pruned: Mapping[str, np.ndarray], problem: str, **tflite: Any
) -> FileReport:
    """The report of a file that was written but could not be run here: its kernels (`found`)
    checked for the pruned zeros, its outputs not compared, so it does not pass."""
    pruned_zero, kernel_zeros, problems = zero_counts(found, pruned)
    return _report(format, path, sizes(path), pruned, (pruned_zero, kernel_zeros), [problem, *problems], **tflite)


def _channel_profile(kernel: np.ndarray) -> np.ndarray:
    """Magnitudes relative to each output channel's (last axis) largest: equal for a kernel, its
    per-channel quantized copy and its copy with a batch norm folded in."""
    magnitude = np.abs(kernel)
    peak = magnitude.reshape(-1, magnitude.shape[-1]).max(axis=0) if magnitude.size else 1.0
    return magnitude / np.where(peak > 0, peak, 1.0)


def _arrangements(candidate: np.ndarray, shape: tuple[int, ...], any_layout: bool) -> list[np.ndarray]:
    """The ways `candidate` can be the kernel of `shape`: reshaped, or with `any_layout` every
    transpose of it that has that shape (an ONNX Conv weight is [out, in, h, w])."""
    if any_layout:
        transposes = [
            np.transpose(candidate, axes)
            for axes in itertools.permutations(range(candidate.ndim))
            if tuple(candidate.shape[a] for a in axes) == shape
        ]
        if transposes:
            return transposes
    return [candidate.reshape(shape)]


def match_kernels(
    candidates: Sequence[np.ndarray], keras_kernels: Mapping[str, np.ndarray], any_layout: bool = False
) -> dict[str, np.ndarray]:
    """Each Keras kernel's copy in the file: the unused candidate of the same size that is closest
    in per-channel profile, if within int8 rounding; in the Keras layout, which the candidates
    have (TFLite's after `read_flatbuffer`) or, with `any_layout`, is found by transposing them."""
    found, used = {}, set()
    for name, kernel in keras_kernels.items():
        best, best_error = None, _MATCH_TOLERANCE
        profile = _channel_profile(kernel)
        for i, candidate in enumerate(candidates):
            if i in used or candidate.size != kernel.size:
                continue
            for arranged in _arrangements(candidate, kernel.shape, any_layout):
                error = float(np.max(np.abs(_channel_profile(arranged) - profile))) if kernel.size else 0.0
                if error <= best_error:
                    best, best_error, found[name] = i, error, arranged
        if best is not None:
            used.add(best)
    return found


# -- sizes ----------------------------------------------------------------------------------------


def gzip_size(content: bytes) -> int:
    return len(gzip.compress(content, compresslevel=GZIP_LEVEL, mtime=0))


def sizes(path: str) -> tuple[int, int]:
    """Bytes on disk and gzip bytes of a file, or summed over the files of a directory."""
    if os.path.isdir(path):
        paths = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    else:
        paths = [path]
    raw = zipped = 0
    for file in paths:
        with open(file, "rb") as f:
            content = f.read()
        raw += len(content)
        zipped += gzip_size(content)
    return raw, zipped
