"""The files of a run's workdir and the callbacks that write them.

    config.json          the resolved config, written before anything else
    metrics.csv          one row per epoch: phase, cycle, sparsity, lr, loss, accuracy, val_loss, ... (GMP: no phase
                         or cycle: it has neither)
    tensorboard/         Keras' scalars, plus per-layer sparsity under tensorboard/sparsity (tf_keras); Keras 3
                         writes the scalars on the TensorFlow backend only
    ladder/              the stripped model at the end of every cycle (cycleNN_sparsityXX.XX.keras); GMP: the
                         final one (gmp_sparsityXX.XX.keras)
    dense.keras          the stripped model at the end of the dense training (for `dense_workdir`); not for GMP
    backup/              while the run is unfinished: BackupAndRestore's checkpoint (chief/), the one of
                         the epoch before (previous/), a damaged one set aside (damaged/); see imp_keras.backup
    export/              the final model as SavedModel, .keras, H5 and TFLite, verified (export_report.json)
    results.json         the summary, written last: its presence means the run is finished
    accuracy_vs_sparsity.png, lr_schedule.png

Only the chief writes; every row of metrics.csv is keyed by its epoch, so a resumed run rewrites
the rows of the epochs it repeats instead of adding duplicates.

The callbacks that write them are written once, as mixins without a Keras: each trainer flavour
(`imp_keras.train_tf_keras`, `imp_keras.train_keras3`) puts them on its Keras' `Callback` and
names the adapter module they use as `masking`.
"""

import csv
import json
import os
import time
from typing import Any

import numpy as np

from imp_keras import distribution, files
from imp_keras.core.pruning import PHASE_PRETRAIN

__all__ = [
    "CONFIG",
    "DENSE_MODEL",
    "METRICS",
    "RESULTS",
    "DenseLogging",
    "DenseSnapshotting",
    "MetricsLogging",
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


def _strategy(model: Any) -> Any:
    """The model's tf.distribute strategy; None where there is none (Keras 3 on JAX or PyTorch)."""
    return getattr(model, "distribute_strategy", None)


class MetricsLogging:
    """Writes `logs` of every epoch into a CSV file keyed by epoch, with the epoch's wall time;
    `renames` maps log keys to columns (Keras 3's `learning_rate` to `lr`).

    Rows of epochs at or after the one being written are dropped first, so a run resumed from a
    backup older than the last row never duplicates an epoch. Only the chief writes.
    """

    def __init__(self, path: str, renames: dict[str, str] | None = None):
        super().__init__()
        self.path = path
        self.renames = dict(renames or {})
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if not distribution.is_chief(_strategy(self.model)):
            return
        values = {self.renames.get(key, key): float(value) for key, value in (logs or {}).items()}
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


class DenseLogging:
    """Publishes what IMPCallback does (`phase`, `cycle`, `sparsity`, `lr`), for a run without pruning."""

    masking: Any  # the flavour's masking module

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(phase=PHASE_PRETRAIN, cycle=0, sparsity=0.0, lr=self.masking.last_learning_rate(self.model.optimizer))


class DenseSnapshotting:
    """Saves the stripped model at the end of epoch `epoch` (the last dense one) to `path`."""

    masking: Any  # the flavour's masking module

    def __init__(self, path: str, epoch: int):
        super().__init__()
        self.path = path
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.epoch:
            return
        directory, name = os.path.split(self.path)
        with distribution.chief_directory(directory, _strategy(self.model)) as target:
            holders = self.masking.masked_weights(self.model)
            model = self.masking.strip(self.model) if holders else self.model
            distribution.save_model(model, os.path.join(target, name))
