"""The files of a run's workdir and the callbacks that write them.

    config.json          the resolved config, written before anything else
    metrics.csv          one row per epoch: phase, cycle, sparsity, lr, loss, accuracy, val_loss, ...
    tensorboard/         Keras' scalars, plus per-layer sparsity under tensorboard/sparsity
    ladder/              the stripped model at the end of every cycle (cycleNN_sparsityXX.XX.keras)
    dense.keras          the stripped model at the end of the dense training (for `dense_workdir`)
    backup/              while the run is unfinished: BackupAndRestore's checkpoint (chief/), the one of
                         the epoch before (previous/), a damaged one set aside (damaged/); see imp_keras.backup
    export/              the final model as SavedModel, .keras, H5 and TFLite, verified (export_report.json)
    results.json         the summary, written last: its presence means the run is finished
    accuracy_vs_sparsity.png, lr_schedule.png

Only the chief writes; every row of metrics.csv is keyed by its epoch, so a resumed run rewrites
the rows of the epochs it repeats instead of adding duplicates.
"""

import csv
import json
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf

from imp_keras import distribution, files
from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras
from imp_keras.tf_keras.report import sparsity_report

__all__ = [
    "CONFIG",
    "DENSE_MODEL",
    "METRICS",
    "RESULTS",
    "DenseSnapshot",
    "LayerSparsityLogger",
    "MetricsLogger",
    "read_json",
    "read_metrics",
    "write_json",
]

CONFIG = "config.json"
METRICS = "metrics.csv"
RESULTS = "results.json"
DENSE_MODEL = "dense.keras"
LADDER = "ladder"
BACKUP = "backup"
TENSORBOARD = "tensorboard"
EXPORT = "export"

_FIRST_COLUMNS = ("epoch", "phase", "cycle", "sparsity", "lr", "loss", "accuracy", "val_loss", "val_accuracy")
_INT_COLUMNS = ("epoch", "cycle", "phase")


def config_dict(config: Any) -> dict[str, Any]:
    """`config` (a ConfigDict) as `config.json` holds it: plain JSON values, tuples as lists."""
    return json.loads(json.dumps(config.to_dict()))


def write_json(path: str, value: Any, allow_nan: bool = True) -> None:
    files.write_bytes(path, (json.dumps(value, indent=2, sort_keys=True, allow_nan=allow_nan) + "\n").encode())


def read_json(path: str, advice: str = "") -> Any:
    """The JSON in `path`; a damaged file is a `ValueError` naming it, followed by `advice`."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is damaged: not valid JSON ({e}).{' ' + advice if advice else ''}") from None


def _typed(row: dict[str, float]) -> dict[str, float]:
    """`row` with its count columns (`epoch`, `cycle`, `phase`) as ints."""
    for key in _INT_COLUMNS:
        if key in row and not np.isnan(row[key]):
            row[key] = int(row[key])
    return row


def read_metrics(path: str) -> list[dict[str, float]]:
    """The rows of a metrics.csv, numbers as floats (`epoch`, `cycle`, `phase` as ints), by epoch.

    Raises:
      ValueError: the file is damaged (not one row of numbers per epoch under its header).
    """
    if not os.path.exists(path):
        return []
    rows = []
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is not None and "epoch" not in reader.fieldnames:
                raise ValueError(f"its header {reader.fieldnames} has no `epoch` column")
            for row in reader:
                if None in row or None in row.values():
                    raise ValueError(f"line {reader.line_num} has {'more' if None in row else 'fewer'} fields than the header")
                try:
                    parsed = _typed({key: float(value) if value != "" else float("nan") for key, value in row.items()})
                except (ValueError, OverflowError) as e:
                    raise ValueError(f"line {reader.line_num}: {e}") from None
                if not isinstance(parsed["epoch"], int) or parsed["epoch"] < 0:
                    raise ValueError(f"line {reader.line_num} has no epoch")
                rows.append(parsed)
    except (ValueError, csv.Error, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is damaged: {e}. Repair it (a header, then one row of numbers per epoch), or move it away "
            "(a re-run then lacks the metrics of the epochs before its backup)."
        ) from None
    return sorted(rows, key=lambda row: row["epoch"])


class MetricsLogger(keras.callbacks.Callback):
    """Writes `logs` of every epoch into a CSV file keyed by epoch, with the epoch's wall time.

    Rows of epochs at or after the one being written are dropped first, so a run resumed from a
    backup older than the last row never duplicates an epoch. Only the chief writes.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if not distribution.is_chief(self.model.distribute_strategy):
            return
        values = {key: float(value) for key, value in (logs or {}).items()}
        row = _typed({"epoch": epoch, **values, "epoch_seconds": time.time() - self._started})
        rows = [r for r in read_metrics(self.path) if r["epoch"] < epoch] + [row]
        keys = set().union(*rows)
        columns = [c for c in _FIRST_COLUMNS if c in keys] + sorted(keys - set(_FIRST_COLUMNS))
        with files.replacing(self.path) as partial, open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, restval="")
            writer.writeheader()
            for r in rows:
                writer.writerow({key: _csv_value(value) for key, value in r.items()})


def _csv_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "" if np.isnan(value) else repr(float(value))


class LayerSparsityLogger(keras.callbacks.Callback):
    """Per-layer sparsity as TensorBoard scalars `sparsity/<tensor>`, every epoch."""

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writer = None

    def on_train_begin(self, logs=None):
        if distribution.is_chief(self.model.distribute_strategy):
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            return
        report = sparsity_report(self.model)
        with self._writer.as_default(step=epoch):
            for layer in report.layers:
                tf.summary.scalar(f"sparsity/{layer.name}", layer.sparsity)
            tf.summary.scalar("sparsity/global", report.sparsity)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class DenseSnapshot(keras.callbacks.Callback):
    """Saves the stripped model at the end of epoch `epoch` (the last dense one) to `path`."""

    def __init__(self, path: str, epoch: int):
        super().__init__()
        self.path = path
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.epoch:
            return
        strategy = self.model.distribute_strategy
        directory, name = os.path.split(self.path)
        with distribution.chief_directory(directory, strategy) as target:
            holders = masking.masked_weights(self.model)
            model = masking.strip(self.model) if holders else self.model
            distribution.save_model(model, os.path.join(target, name))
