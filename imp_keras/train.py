"""Runs one experiment from a config file into a workdir.

    python -m imp_keras.train --config=configs/mnist_lenet.py --workdir=runs/mnist_lenet
    python -m imp_keras.train --config=configs/mnist_lenet.py --workdir=runs/m98 --config.goal_sparsity=0.98
    python -m imp_keras.train --config=configs/cifar10_resnet20.py:quick --workdir=/tmp/smoke
    python -m imp_keras.train --config=configs/mnist_lenet_gmp.py --workdir=runs/gmp98   # gradual magnitude pruning

Re-running the same command after a crash continues from the last finished epoch
(BackupAndRestore in `<workdir>/backup`; a damaged latest backup falls back to the one before, see
`imp_keras.backup`); re-running a finished run does nothing and says so. A NaN or Inf stops the run
before the faulty epoch is backed up (`imp_keras.NaNGuard`), and every cycle (GMP: the epoch that
reaches its goal, and the last) is verified (`imp_keras.verify`). From Python:
`imp_keras.train.run(config, workdir)`. The workdir's files are listed in `imp_keras.rundir`.

The config's `keras` field chooses the Keras: `tf_keras` (tfmot, on TensorFlow) or `keras3` on its
`backend` (tensorflow, jax or torch), set before Keras is first imported:

    python -m imp_keras.train --config=configs/mnist_lenet.py --config.keras=keras3 --config.backend=jax --workdir=runs/jax

What differs per Keras is in `imp_keras.train_tf_keras` and `imp_keras.train_keras3`; on JAX and
PyTorch no TensorFlow is imported from the config to the end of the run.
"""

import contextlib
import dataclasses
import errno
import importlib
import json
import math
import os
import re
import socket
import time
import types
from collections.abc import Iterator, Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from imp_keras import backup, distribution, experiment, files, models, plots, rundir
from imp_keras.core.faults import NonFiniteError
from imp_keras.core.pruning import rung_cycle
from imp_keras.core.rules import InvariantError

__all__ = ["run"]

_LOCK = ".lock"
# Files showing that a run has trained: a config differing from its config.json is refused.
_PROGRESS = (rundir.BACKUP, rundir.METRICS, rundir.LADDER, rundir.DENSE_MODEL, rundir.RESULTS)
# Fields a run reusing another run's dense model must share with it.
_DENSE_FIELDS = ("keras", "data", "model", "batch_size", "optimizer", "lr", "pretrain_epochs", "mixed_precision")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


@contextlib.contextmanager
def _locked(workdir: str) -> Iterator[None]:
    """Holds `<workdir>/.lock` for the run. A lock left by a dead process on this host is taken
    over; a live one (or one from another host) makes the second run refuse."""
    path = os.path.join(workdir, _LOCK)
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = rundir.read_json(path)
            except (ValueError, OSError):
                holder = {}
            if holder.get("host") == owner["host"] and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
                print(f"imp_keras: taking over the lock {path} left by process {holder['pid']}, which is gone.")
                os.remove(path)
                continue
            raise RuntimeError(
                f"The workdir {workdir} is in use by another run (lock file {path}: {holder or 'unreadable'}). "
                "Wait for it to finish, or remove the lock file if that run is certainly gone."
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(owner, f)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _as_written_now(recorded: dict[str, Any], config: ml_collections.ConfigDict) -> dict[str, Any]:
    """A config.json written before the `keras` and `backend` fields, the export presets, the GMP
    fields and `min_alive` existed, as this version writes the same experiment: tf_keras on
    TensorFlow, the GMP fields and `min_alive` at their defaults, and a list of formats that the
    config's preset resolves to as that preset."""
    if not isinstance(recorded, dict):
        return recorded
    defaults = experiment.base_config()
    recorded = {
        "keras": "tf_keras", "backend": "tensorflow", **{field: defaults[field] for field in (*experiment.GMP_FIELDS, "min_alive")},
        **recorded,
    }
    if recorded.get("export_formats") == list(experiment.export_formats(config)):
        recorded["export_formats"] = list(config.export_formats)
    return recorded


def _record_config(workdir: str, config: ml_collections.ConfigDict, chief: bool, verbose: int) -> None:
    path = os.path.join(workdir, rundir.CONFIG)
    resolved = rundir.config_dict(config)
    if os.path.exists(path):
        recorded = rundir.read_json(
            path,
            f"It records the config of the run in {workdir}, which a re-run must match: if this is "
            "certainly the same experiment, delete the file and re-run (it is written again from the config); "
            "otherwise start in a new workdir.",
        )
        recorded = _as_written_now(recorded, config)
        if recorded == resolved:
            return
        differences = ", ".join(_differences(recorded, resolved))
        if any(os.path.exists(os.path.join(workdir, name)) for name in _PROGRESS):
            raise ValueError(
                f"The workdir {workdir} holds a run with another config ({path}); differing fields: "
                f"{differences}. Use a new workdir for a new experiment."
            )
        if verbose:
            print(f"imp_keras: the workdir {workdir} holds no trained epoch yet; replacing its {rundir.CONFIG} ({differences}).")
    if chief:
        rundir.write_json(path, resolved)


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            found += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return found
    return [] if a == b else [f"{prefix[:-1]} ({a!r} there, {b!r} here)"]


def _dense_source(config: ml_collections.ConfigDict, mine: dict[str, Any]) -> tuple[str, float | None]:
    """The dense model file of `config.dense_workdir` and its accuracy, after checking the two runs agree."""
    source = os.path.abspath(config.dense_workdir)
    config_path = os.path.join(source, rundir.CONFIG)
    model_path = os.path.join(source, rundir.DENSE_MODEL)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"`dense_workdir` {source} holds no {rundir.CONFIG}: it is not an imp_keras workdir.")
    theirs = rundir.read_json(config_path)
    if theirs.get("method") == "gmp":
        raise ValueError(f"`dense_workdir` {source} is a GMP run: it pruned while it trained and has no dense model. Reuse a `dense` or `imp` run.")
    if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"`dense_workdir` {source} holds no {rundir.DENSE_MODEL}: its dense training has not finished."
        )
    if theirs.get("method") == "bimp":
        raise ValueError(
            f"`dense_workdir` {source} is a BIMP run: its dense epochs followed BIMP's linear schedule, not "
            "`lr`, so the retraining schedules of this run would not match them. Reuse a `dense` or `imp` run."
        )
    theirs.setdefault("keras", "tf_keras")  # written before the field: tf_keras was the only Keras
    fields = _DENSE_FIELDS + (("seed",) if config.data.validation_split else ())
    differences = [d for field in fields for d in _differences(theirs.get(field), mine.get(field), field + ".")]
    if differences:
        raise ValueError(
            f"`dense_workdir` {source} was trained with other settings than this run: {', '.join(differences)}. "
            "The dense model must come from the same Keras (its file is of that Keras), data, model, batch size, "
            "optimizer and learning-rate schedule."
        )
    rows = [row for row in rundir.read_metrics(os.path.join(source, rundir.METRICS)) if row["epoch"] == config.pretrain_epochs - 1]
    accuracy = rows[0].get("val_accuracy") if rows else None
    return model_path, accuracy


def _rung_epoch(name: str, method: experiment.Method) -> int | None:
    """The epoch at whose end the ladder file `name` of `method` is written; None for another name."""
    if method.gradual is not None:
        # `gmp_rung_name` of the sparsity reached: the goal's, or within half a block of it with `block_size`.
        return method.epochs - 1 if re.fullmatch(r"gmp_sparsity[\d.]+\.keras", name) else None
    cycle = rung_cycle(name) if method.plan is not None else None
    return method.plan.last_epoch_of_cycle(cycle) if cycle is not None and 1 <= cycle <= method.plan.cycles else None


def _last_finished_on_disk(workdir: str, method: experiment.Method) -> tuple[int, str]:
    """The last epoch that the workdir's files show finished (-1 for none), and the file showing it."""
    found = [(-1, "")]
    rows = rundir.read_metrics(os.path.join(workdir, rundir.METRICS))
    if rows:
        found.append((rows[-1]["epoch"], rundir.METRICS))
    if method.trains_dense and os.path.exists(os.path.join(workdir, rundir.DENSE_MODEL)):
        found.append((method.dense_epochs - 1, rundir.DENSE_MODEL))
    ladder = os.path.join(workdir, rundir.LADDER)
    if os.path.isdir(ladder):
        for name in os.listdir(ladder):
            epoch = _rung_epoch(name, method)
            if epoch is not None:
                found.append((epoch, f"{rundir.LADDER}/{name}"))
    return max(found)


def _restore_point(workdir: str, backup_dir: str, method: experiment.Method, chief: bool, verbose: int) -> int:
    """The first epoch to train: after the latest good backup, never before epochs the files show
    finished (one epoch, which the backup may not have caught, is trained again)."""
    point = backup.restore_point(backup_dir, chief)
    if point.fell_back and verbose:
        print(
            f"imp_keras: the latest backup is damaged ({point.fell_back}); continuing from the previous one, "
            f"of epoch {point.epoch - 1}."
        )
    finished, evidence = _last_finished_on_disk(workdir, method)
    if finished > point.epoch:
        held = f"its backup ends at epoch {point.epoch - 1}" if point.epoch else f"it has no backup in {backup_dir}"
        raise backup.BackupError(
            f"The workdir {workdir} shows epoch {finished} finished ({evidence}), but {held}: continuing would "
            f"silently train epochs {point.epoch} to {finished} again over finished work. Put the backup back, or "
            "start afresh in a new workdir."
        )
    return point.epoch


def _stopped(workdir: str, backup_dir: str, error: Exception | str, advice: str | None) -> str:
    """`error`, and what the run it stopped keeps: the last good backup and the ladder models."""
    epoch = backup.saved_epoch(backup_dir)
    ladder = os.path.join(workdir, rundir.LADDER)
    rungs = sorted(os.listdir(ladder)) if os.path.isdir(ladder) else []
    kept = f"the backup of epoch {epoch} ({backup_dir})" if epoch is not None else "no backup (no epoch had finished)"
    return (
        f"{error}\nThe run in {workdir} stopped; it keeps {kept}"
        + (f" and the ladder models {', '.join(rungs)}" if rungs else "")
        + f", and no {rundir.RESULTS}. Re-running the same command continues from there"
        + (f" and will probably meet the same fault: {advice}" if advice else ".")
    )


def _flavour(config: ml_collections.ConfigDict) -> types.ModuleType:
    """`imp_keras.train_tf_keras` or `imp_keras.train_keras3`, once the config's Keras is this process's."""
    experiment.keras_of(config)
    return importlib.import_module(f"imp_keras.train_{config.keras}")


def _build_model(config: ml_collections.ConfigDict, data: Any, dense_model: str | None, keras: types.ModuleType) -> Any:
    """The config's model; with `dense_model`, carrying that file's weights. Rebuilt rather than
    loaded, so this run's settings (e.g. its mixed-precision policy) hold, not the file's."""
    model = models.build(config.model.name, data.input_shape, data.classes, keras=keras, **config.model.kwargs.to_dict())
    if dense_model:
        try:
            weights = keras.models.load_model(dense_model, safe_mode=True).get_weights()  # never runs code a file carries (Lambda)
        except Exception as e:  # a damaged or foreign file fails in Keras' loader in many ways
            raise ValueError(f"`dense_workdir`: {dense_model} cannot be loaded ({type(e).__name__}: {e})") from e
        try:
            model.set_weights(weights)
        except ValueError as e:
            raise ValueError(f"`dense_workdir`: the weights of {dense_model} do not fit model {config.model.name!r} ({e})") from e
    return model


def _summarize(
    config: ml_collections.ConfigDict,
    workdir: str,
    method: experiment.Method,
    data: Any,
    model: Any,
    dense_accuracy: float | None,
    wall_seconds: float,
    sparsity_report: Any,
) -> dict[str, Any]:
    rows = rundir.read_metrics(os.path.join(workdir, rundir.METRICS))
    by_epoch = {row["epoch"]: row for row in rows}
    if method.trains_dense and method.dense_epochs - 1 in by_epoch:
        dense_accuracy = by_epoch[method.dense_epochs - 1].get("val_accuracy")
    cycles = []
    if method.plan is not None:
        for cycle, start in enumerate(method.plan.cycle_start_epochs, start=1):
            last = by_epoch.get(start + method.plan.retrain_epochs[cycle - 1] - 1)
            if last is not None:
                cycles.append({
                    "cycle": cycle, "epoch": last["epoch"], "sparsity": last["sparsity"],
                    "accuracy": last.get("val_accuracy"), "loss": last.get("val_loss"), "lr": last.get("lr"),
                })
    final = rows[-1] if rows else {}
    report = sparsity_report(model) if method.prunes else None
    window = method.gradual.window(method.epochs, method.steps_per_epoch) if method.gradual is not None else None
    return {
        "name": config.name,
        "method": config.method,
        "retrain_kind": config.retrain_kind if config.method == "imp" else ("allr" if config.method == "bimp" else None),
        "selection": config.selection,
        "dataset": config.data.name,
        "model": config.model.name,
        "eval_split": data.eval_split,
        "goal_sparsity": config.goal_sparsity if method.prunes else 0.0,
        "dense_accuracy": dense_accuracy,
        "dense_epochs": method.dense_epochs,
        "dense_reused_from": os.path.abspath(config.dense_workdir) if config.dense_workdir else None,
        "cycles": cycles,
        "gmp_window": None if window is None else {**dataclasses.asdict(window), "updates": window.updates},
        "final_epoch": final.get("epoch"),
        "final_accuracy": final.get("val_accuracy"),
        "final_sparsity": report.sparsity if report else 0.0,
        "epochs": method.epochs,
        "budget_epochs": method.epochs + (method.dense_epochs if config.dense_workdir else 0),
        "steps_per_epoch": method.steps_per_epoch,
        "batch_size": config.batch_size,
        "train_seconds": float(sum(row.get("epoch_seconds", 0.0) for row in rows)),
        "wall_seconds": wall_seconds,
        "layers": report.as_dict()["layers"] if report else [],
    }


def _table(results: dict[str, Any]) -> str:
    metric = f"accuracy ({results['eval_split']})"
    lines = [
        f"{results['name']}: {results['method']}"
        + (f", {str(results['retrain_kind']).upper()} retraining, {results['selection']} selection" if results["cycles"] else "")
        + (f", {results['selection']} selection, {results['gmp_window']['updates']} mask updates" if results["gmp_window"] else "")
        + f"; {results['budget_epochs']} epochs in all, {results['train_seconds']:.0f} s of training",
        f"{'model':<10} {'epoch':>6} {'sparsity':>9} {metric:>20}",
    ]
    if results["dense_accuracy"] is not None:
        source = " (reused)" if results["dense_reused_from"] else ""
        lines.append(f"{'dense':<10} {results['dense_epochs'] - 1 if not source else '-':>6} {0.0:>9.2%} {results['dense_accuracy']:>20.2%}{source}")
    rows = [("cycle " + str(c["cycle"]), c["epoch"], c["sparsity"], c["accuracy"]) for c in results["cycles"]]
    if results["gmp_window"] is not None:
        rows.append(("gmp", results["final_epoch"], results["final_sparsity"], results["final_accuracy"]))
    for label, epoch, sparsity, accuracy in rows:
        shown = f"{accuracy:.2%}" if accuracy is not None and not math.isnan(accuracy) else "-"
        lines.append(f"{label:<10} {epoch:>6} {sparsity:>9.2%} {shown:>20}")
    for format, problems in results.get("export", {}).get("failed", {}).items():
        lines.append(f"export: {format} did not pass: {problems}")
    return "\n".join(lines)


def _plot(workdir: str, results: dict[str, Any], method: experiment.Method, learning_rates: Any) -> None:
    title = f"{results['name']} ({results['dataset']}, {results['model']})"
    points, legend = [(c["sparsity"], c["accuracy"], f"cycle {c['cycle']}") for c in results["cycles"]], "after each cycle"
    if method.gradual is not None:  # GMP: its path, the last epoch at each sparsity it reached
        rows = [r for r in rundir.read_metrics(os.path.join(workdir, rundir.METRICS)) if r.get("sparsity", 0.0) > 0 and "val_accuracy" in r]
        last = [r for r, after in zip(rows, rows[1:] + [None]) if after is None or after["sparsity"] != r["sparsity"]]
        points = [(r["sparsity"], r["val_accuracy"], f"epoch {r['epoch']}") for r in last]
        legend = "last epoch at each sparsity (GMP)"
    if points:
        plots.plot_accuracy_vs_sparsity(
            os.path.join(workdir, "accuracy_vs_sparsity.png"), title, results["dense_accuracy"], points,
            f"{results['eval_split']} accuracy", legend,
        )
    total_steps = method.epochs * method.steps_per_epoch
    steps = np.unique(np.linspace(0, total_steps - 1, min(total_steps, 2000)).round().astype(np.int64))
    starts = list(method.plan.cycle_start_epochs) if method.plan is not None else []
    window = results["gmp_window"]
    plots.plot_lr_schedule(
        os.path.join(workdir, "lr_schedule.png"), title, steps / method.steps_per_epoch,
        learning_rates(method.schedule, steps), starts, method.dense_epochs if method.trains_dense else 0,
        None if window is None else (window["begin_step"] / method.steps_per_epoch, window["end_step"] / method.steps_per_epoch),
    )


def run(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
) -> dict[str, Any] | None:
    """Trains the experiment `config` into `workdir` (created if needed) and returns its results.

    A workdir holds one experiment: a config differing from its `config.json` is refused. An
    unfinished run there continues from its last backup; a finished one (`results.json`) is
    returned as it is without training.

    Args:
      config: an experiment config (see `imp_keras.experiment.base_config`).
      workdir: the run's folder.
      callbacks: more callbacks for `fit`, of the config's Keras (e.g. in tests and notebooks).
      verbose: 1 for Keras progress bars and the summary, 2 for one line per epoch, 0 silent.

    Returns:
      The contents of `results.json` (None on workers other than the chief, which writes no files).

    Raises:
      ValueError: a config field is invalid (named in the message), the workdir holds another
        experiment, or Keras 3 already runs on another backend than the config's in this process.
      RuntimeError: the workdir is in use by another run (its lock file is named); or, on a worker of
        a multi-worker cluster, another worker stopped (refusing the workdir, for one).
      imp_keras.backup.BackupError: the backups are damaged beyond the previous one, or missing
        while files show finished epochs.
      imp_keras.NonFiniteError, imp_keras.InvariantError: training produced a NaN or Inf, or broke
        an invariant of IMP; the message names the epoch and cycle and what the workdir keeps.
      RuntimeError: also when a callback stopped `fit` before the run's last epoch (EarlyStopping):
        the run is not finished, and the same command continues it.
    """
    experiment.validate(config)
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0, 1 or 2. Received: verbose={verbose!r}")
    if not isinstance(workdir, (str, os.PathLike)) or not os.fspath(workdir):
        raise TypeError(f"`workdir` must be a path. Received: workdir={workdir!r}")
    if not isinstance(callbacks, Sequence) or isinstance(callbacks, str):
        raise TypeError(f"`callbacks` must be a list of Keras callbacks. Received: callbacks={callbacks!r}")
    flavour = _flavour(config)
    for callback in callbacks:
        flavour.check_callback(callback)
    workdir = os.path.abspath(os.fspath(workdir))
    resolved = rundir.config_dict(config)
    os.makedirs(workdir, exist_ok=True)
    try:
        # Every worker of a cluster waits here until all have arrived, with no time limit. Only after
        # that does a chief refuse the workdir: TensorFlow's health checks then stop the others
        # instead of leaving them waiting for a chief that has gone.
        strategy = flavour.make_strategy(config)
        chief = distribution.is_chief(strategy)
        with _locked(workdir) if chief else contextlib.nullcontext():
            _record_config(workdir, config, chief, verbose)
            results_path = os.path.join(workdir, rundir.RESULTS)
            if os.path.exists(results_path):
                results = rundir.read_json(
                    results_path,
                    f"The run had finished and its backup is gone, so the summary cannot be made again; its models are "
                    f"in {rundir.LADDER}/ and its metrics in {rundir.METRICS}. Start afresh in a new workdir for a new one.",
                )
                if not chief:
                    return None
                files.remove(os.path.join(workdir, rundir.BACKUP))  # left by a crash after results.json
                if verbose:
                    print(f"imp_keras: the run in {workdir} has finished ({results_path}); nothing to do.")
                return results
            with flavour.session(config, strategy):
                return _train(flavour, config, workdir, resolved, strategy, chief, list(callbacks), verbose)
    except flavour.UNAVAILABLE as e:
        if config.distribution != "multi_worker":
            raise
        raise RuntimeError(
            f"This worker lost contact with another worker of the cluster, which has stopped (its output says why; "
            f"often the chief refused the workdir {workdir}). Restart every worker once that is fixed. "
            f"TensorFlow reported: {e.message.splitlines()[0]}"
        ) from e


def _compiled_model(flavour, config, data, method, dense_model, strategy):
    """The config's model, prunable when it prunes, with weight decay, compiled for `method`."""
    keras = flavour.keras
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = _build_model(config, data, dense_model, keras)
        if method.prunes:
            model = flavour.prunable(model)
        experiment.add_weight_decay(model, config)
        model.compile(
            experiment.make_optimizer(config, method.schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            **flavour.compile_options(config),
        )
    return model


def _callbacks(flavour, config, workdir, method, backup_dir, verbose) -> list[Any]:
    # Before the backup: a NaN, a broken invariant or a kill while the ladder is written leaves the
    # backup of the epoch before, so a re-run repeats the epoch (and rewrites the same ladder file).
    adapter = flavour.adapter
    callbacks = [adapter.NaNGuard(method.plan)]
    outputs = {"block_size": tuple(config.block_size) or None, "ladder_dir": os.path.join(workdir, rundir.LADDER), "verbose": min(verbose, 1)}
    if method.plan is not None:
        callbacks.append(adapter.IMPCallback(
            method.plan, method.schedule if isinstance(method.schedule, adapter.RetrainSchedule) else None, config.selection,
            reset_optimizer=config.reset_optimizer, min_alive=experiment.min_alive(config), **outputs,
        ))
    elif method.gradual is not None:
        # The run's length always given: a resumed run's fit starts later but GMP's window is the run's.
        gradual = method.gradual
        callbacks.append(adapter.GMPCallback(
            gradual.goal_sparsity, begin=gradual.begin, end=gradual.end, unit=gradual.unit, frequency=gradual.frequency,
            selection=config.selection, epochs=method.epochs, steps_per_epoch=method.steps_per_epoch,
            min_alive=experiment.min_alive(config), **outputs,
        ))
    else:
        callbacks.append(flavour.DenseLogs())
    # Every file of an epoch is written before its backup: a kill in between repeats the epoch,
    # which rewrites them, instead of skipping them.
    if method.trains_dense:
        callbacks.append(flavour.DenseSnapshot(os.path.join(workdir, rundir.DENSE_MODEL), method.dense_epochs - 1))
    callbacks += flavour.logging_callbacks(workdir, method.prunes)
    return callbacks + flavour.backup_callbacks(backup_dir)


def _train(flavour, config, workdir, resolved, strategy, chief, extra_callbacks, verbose):
    started = time.time()
    data = experiment.load_data(config)
    steps_per_epoch = data.steps_per_epoch(config.batch_size)
    flavour.check_inputs(data, config.batch_size, strategy)
    dense_model, dense_accuracy = _dense_source(config, resolved) if config.dense_workdir else (None, None)
    method = experiment.method(config, steps_per_epoch)
    model = _compiled_model(flavour, config, data, method, dense_model, strategy)

    backup_dir = os.path.join(workdir, rundir.BACKUP)
    first_epoch = _restore_point(workdir, backup_dir, method, chief, verbose)
    callbacks = _callbacks(flavour, config, workdir, method, backup_dir, verbose) + extra_callbacks

    if first_epoch < method.epochs:
        if verbose and first_epoch:
            print(f"imp_keras: resuming the run in {workdir} at epoch {first_epoch} of {method.epochs}.")
        train = flavour.train_inputs(data, config.batch_size, first_epoch, method.epochs - first_epoch)
        evaluation = flavour.evaluation_inputs(data, config.batch_size)
        try:
            # The data orders every epoch itself; `shuffle` would make Keras 3 permute a PyDataset's
            # batches across the epochs it spans, so a resumed run would not see what an uninterrupted one saw.
            history = model.fit(
                train, epochs=method.epochs, steps_per_epoch=steps_per_epoch, validation_data=evaluation,
                callbacks=callbacks, verbose=verbose, shuffle=False,
            )
        except NonFiniteError as e:
            advice = "fix its cause (e.g. a lower `lr.initial`) and start in a new workdir."
            raise NonFiniteError(_stopped(workdir, backup_dir, e, advice)) from e
        except InvariantError as e:
            pruner = "GMPCallback" if method.gradual is not None else "IMPCallback"
            advice = f"masks or pruned weights were changed behind {pruner}'s back (a callback?), or this is a bug to report."
            raise InvariantError(_stopped(workdir, backup_dir, e, advice), e.problems) from e
        done = history.epoch[-1] + 1 if history.epoch else first_epoch
        if done < method.epochs:
            # EarlyStopping, TerminateOnNaN or any callback setting `model.stop_training`: the plan's
            # later cycles were not run, so the run is not finished and its backup stays.
            raise RuntimeError(_stopped(
                workdir, backup_dir,
                f"A callback stopped `fit` after {done} of the run's {method.epochs} epochs (`model.stop_training`, e.g. EarlyStopping).",
                None,
            ))
    else:  # the last epoch was backed up, but the run stopped before writing its results
        flavour.restore_last(model, backup_dir)

    results = _summarize(config, workdir, method, data, model, dense_accuracy, time.time() - started, flavour.sparsity_report)
    results["replicas"] = flavour.replicas(strategy)
    if config.export_formats:
        results["export"] = _export(flavour, config, workdir, model, data, strategy, verbose)
    results = json.loads(json.dumps(results))  # as results.json will give it back
    if not chief:
        return None
    _plot(workdir, results, method, flavour.learning_rates)
    # results.json marks the run finished; the backup goes only after it, so a crash in between
    # leaves a finished run with a stale backup (removed by the next call), never a lost one.
    rundir.write_json(os.path.join(workdir, rundir.RESULTS), results)
    files.remove(backup_dir)
    if verbose:
        print("\n" + _table(results))
        if method.prunes:
            print("\nPer-layer sparsity of the final model:\n" + str(flavour.sparsity_report(model)))
        print(f"\nRun directory: {workdir}")
    return results


def _evaluation_samples(data: Any, batch_size: int, count: int) -> np.ndarray:
    """The first `count` evaluation inputs, from tf.data batches or a PyDataset."""
    batches = data.evaluation(batch_size)
    iterator = batches.as_numpy_iterator() if hasattr(batches, "as_numpy_iterator") else (batches[i] for i in range(len(batches)))
    samples, seen = [], 0
    for images, _ in iterator:
        samples.append(images)
        seen += len(images)
        if seen >= count:
            break
    return np.concatenate(samples)[:count]


def _export(flavour, config, workdir, model, data, strategy, verbose) -> dict[str, Any]:
    """Writes the deployable files into `<workdir>/export`; returns where, whether all verified, the
    formats written, and (when some did not pass) each failed format's problems."""
    samples = _evaluation_samples(data, config.batch_size, config.export_samples)
    chief = distribution.is_chief(strategy)
    directory = os.path.join(workdir, rundir.EXPORT)
    with distribution.chief_directory(directory, strategy) as target:
        report = flavour.export(config, model, target, samples, chief, verbose)
    failed = {f.format: "; ".join(f.problems) for f in report.files if not f.passed}
    return {
        "dir": directory, "passed": report.passed, "formats": [f.format for f in report.files if f.path is not None],
        **({"failed": failed} if failed else {}),
    }


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    # Defined here, not at import: a program importing imp_keras.train keeps its own --config.
    config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:quick]).", lock_config=True)
    flags.DEFINE_string("workdir", None, "Folder of the run: config, metrics, models, plots.")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
