"""What an export wrote and how each file checked out: `FileReport`, `ExportReport`, the printed
tables and `export_report.json`. Pure Python: imports neither Keras nor TensorFlow."""

import dataclasses
import inspect
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from imp_keras import files as files_lib
from imp_keras.core.report import SparsityReport

__all__ = ["REPORT_FILE", "ExportReport", "FileReport", "publish"]

REPORT_FILE = "export_report.json"


@dataclasses.dataclass(frozen=True)
class FileReport:
    """What one exported file holds and how it runs.

    Attributes:
      format: the format's name (see the exporter's `FORMATS`).
      path: the file (a directory for SavedModel); None when it was not written (see `problems`),
        and for the in-memory TFLite float reference when `tflite_float` was not asked for.
      bytes: size on disk (for a directory, the sum of its files).
      gzip_bytes: size gzipped at level 9 (for a directory, the sum over its files).
      ratio: `bytes` over the dense float TFLite file's (None without such a reference).
      gzip_ratio: `gzip_bytes` over the dense float TFLite file's (None without a reference).
      max_abs_diff: largest absolute difference between the file's outputs and the Keras model's
        (None when the file could not be run).
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
    ratio: float | None
    gzip_ratio: float | None
    max_abs_diff: float | None
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
    """The files an export wrote, their verification, sizes and TFLite latencies.

    `str(report)` is two tables (files; TFLite runtime), `report[format]` a `FileReport`, and
    `as_dict()` what `export_report.json` holds.

    Attributes:
      out_dir: where the files are.
      files: one `FileReport` per exported format, in the order asked.
      reference: the dense float TFLite file that ratios and speed-ups refer to (the `tflite_float`
        entry of `files` when it was exported, else converted in memory only); None for a Keras 3
        export, for an export without TFLite formats, and when the float model does not convert.
      samples: how many inputs each file was checked on.
      prunable_weights: kernel weights of the model that IMP could prune.
      pruned_weights: those pruned.
      latency_runs: timed invokes per file and runtime.
      tensorflow_version: the TensorFlow version that converted and measured (None when the export
        did not use TensorFlow).
      keras: the Keras that exported, e.g. `tf_keras 2.21.0` or `keras 3.15.1 (jax)`.
      kernel_weights: all trainable kernel weights of the model, masked or not (None when the
        exporter did not report them); its `sparsity_report`'s `kernel_total`.
      kernel_pruned: those pruned or exactly zero (`kernel_pruned` of the sparsity report).
      unmasked: the trainable kernels no mask held, which IMP did not prune.
    """

    out_dir: str
    files: tuple[FileReport, ...]
    reference: FileReport | None
    samples: int
    prunable_weights: int
    pruned_weights: int
    latency_runs: int
    tensorflow_version: str | None
    keras: str | None = None
    kernel_weights: int | None = None
    kernel_pruned: int | None = None
    unmasked: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files)

    def __getitem__(self, format: str) -> FileReport:
        for file in self.files:
            if file.format == format:
                return file
        raise KeyError(f"No {format!r} in this report; it has {[f.format for f in self.files]}.")

    @property
    def _sparsity(self) -> float:
        return self.pruned_weights / self.prunable_weights if self.prunable_weights else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "passed": self.passed,
            "samples": self.samples,
            "prunable_weights": self.prunable_weights,
            "pruned_weights": self.pruned_weights,
            "sparsity": self._sparsity,
            "latency_runs": self.latency_runs,
            "tensorflow_version": self.tensorflow_version,
            "keras": self.keras,
            "kernel_weights": self.kernel_weights,
            "kernel_pruned": self.kernel_pruned,
            "kernel_sparsity": None if not self.kernel_weights else self.kernel_pruned / self.kernel_weights,
            "unmasked": list(self.unmasked),
            "reference": None if self.reference is None else dataclasses.asdict(self.reference),
            "files": [dataclasses.asdict(f) for f in self.files],
        }

    def __str__(self) -> str:
        lines = [
            f"Exported to {self.out_dir}: {self.pruned_weights}/{self.prunable_weights} kernel weights pruned "
            f"({self._sparsity:.2%}), checked on {self.samples} inputs.",
        ]
        if self.kernel_weights:
            lines.append(
                f"All trainable kernels: {self.kernel_pruned}/{self.kernel_weights} zero "
                f"({self.kernel_pruned / self.kernel_weights:.2%}); not masked: {', '.join(self.unmasked) or 'none'}."
            )
        lines.append("")
        lines += _table(
            ("format", "bytes", "gzip", "ratio", "gzip ratio", "max |diff|", "top-1", "pruned = 0", "ok"),
            [
                (
                    f.format,
                    f"{f.bytes:,}",
                    f"{f.gzip_bytes:,}",
                    _number(f.ratio, ".3f"),
                    _number(f.gzip_ratio, ".3f"),
                    _number(f.max_abs_diff, ".2e"),
                    _number(f.top1_agreement, ".2%"),
                    f"{f.pruned_zero}/{f.pruned_weights}",
                    "yes" if f.passed else "NO",
                )
                for f in self.files
            ],
        )
        lines += self._runtime_lines()
        for f in self.files:
            lines += [f"{f.format}: {problem}" for problem in f.problems]
        return "\n".join(lines)

    def _runtime_lines(self) -> list[str]:
        tflite = [f for f in self.files if f.runtime is not None]
        if self.reference is not None and self.reference.path is None:
            tflite.insert(0, self.reference)
        if not tflite:
            return []
        timing = f"median of {self.latency_runs} invokes" if self.latency_runs else "latency not measured"
        return [
            "",
            f"TFLite, batch 1, 1 thread, {timing}:",
            *_table(
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
            ),
        ]


def _number(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> list[str]:
    """Rows under a header; the first `text_columns` columns left-aligned, numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:<{w}}" if i < text_columns else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), "-" * len(line(header)), *(line(r) for r in rows)]


def _outside_stacklevel() -> int:
    """The `stacklevel` of the innermost caller outside imp_keras, so a warning points at the line
    that called `imp_keras.export` (or the exporter of a flavour) however it was reached."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = inspect.currentframe(), 0
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def publish(
    out_dir: str,
    files: Sequence[FileReport],
    pruned: Mapping[str, Any],
    samples: int,
    verbose: int,
    *,
    reference: FileReport | None = None,
    latency_runs: int = 0,
    tensorflow_version: str | None,
    keras: str,
    sparsity: SparsityReport | None = None,
) -> ExportReport:
    """The `ExportReport` of `files` (`pruned`: weight name -> boolean array of its pruned
    positions), written to `out_dir/export_report.json`, printed if `verbose`; warns (at the
    exporter's caller) about files that failed their check. `sparsity`, the model's
    `sparsity_report`, adds the numbers of all its trainable kernels."""
    report = ExportReport(
        out_dir=out_dir,
        files=tuple(files),
        reference=reference,
        samples=samples,
        prunable_weights=int(sum(p.size for p in pruned.values())),
        pruned_weights=int(sum(int(p.sum()) for p in pruned.values())),
        latency_runs=latency_runs,
        tensorflow_version=tensorflow_version,
        keras=keras,
        kernel_weights=None if sparsity is None else sparsity.kernel_total,
        kernel_pruned=None if sparsity is None else sparsity.kernel_pruned,
        unmasked=() if sparsity is None else tuple(layer.name for layer in sparsity.unmasked),
    )
    path = os.path.join(out_dir, REPORT_FILE)
    files_lib.write_bytes(path, json.dumps(report.as_dict(), indent=2).encode())
    if verbose:
        print(report)
    failed = [f.format for f in report.files if not f.passed]
    if failed:
        warnings.warn(f"Exported files that failed their check: {failed}. See {path}.", stacklevel=_outside_stacklevel())
    return report
