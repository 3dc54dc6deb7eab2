"""Pruning during training, the baselines IMP is measured against: tfmot's gradual magnitude pruning
(GMP, layerwise) and the same gradual schedule with imp_keras' global masks.

Both are built from the trainer's pieces, so they differ from the harness' runs only in how they
prune: `imp_keras.data.load` pipelines, the model of `imp_keras.models.build`, the optimizer of
`experiment.make_optimizer` with `experiment.base_schedule` over the whole budget (the config's
`pretrain_epochs` are the budget: a `method="dense"` config of that length, the one the dense
reference trains), the same seed, batch and epochs.

The sparsity rises from 0 to the goal S as s(t) = S (1 - (1 - t)^3), t the fraction of the pruning
window [begin_step, end_step] passed (Zhu & Gupta, 2017), with masks updated every `frequency` steps.
tfmot counts its pruning step from 1 at the first batch (`UpdatePruningStep`); the global variant is
the library's `GMPCallback` with its window shifted to that count, so both update their masks at the
same optimizer steps.
"""

import dataclasses
import time
from typing import Any

import ml_collections
import tensorflow_model_optimization as tfmot

from imp_keras import experiment, models
from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras
from imp_keras.tf_keras.gradual import GMPCallback
from imp_keras.tf_keras.report import sparsity_report

__all__ = ["GMP_KINDS", "Window", "cubic_sparsity", "global_gmp", "train_gmp", "window"]

GMP_KINDS = ("tfmot", "global")


@dataclasses.dataclass(frozen=True)
class Window:
    """Where GMP prunes, in tfmot's pruning steps (1 at the first batch): every `frequency` steps
    from `begin_step` to `end_step`, which is one of them."""

    begin_step: int
    end_step: int
    frequency: int

    def prunes_at(self, step: int) -> bool:
        return self.begin_step <= step <= self.end_step and (step - self.begin_step) % self.frequency == 0


def window(total_steps: int, begin: float, end: float, frequency: int) -> Window:
    """The pruning window from fraction `begin` to about fraction `end` of `total_steps`, its length
    rounded to whole `frequency`s so that the last mask update lands on `end_step` (tfmot updates
    only at begin_step + k * frequency and would otherwise never reach the goal)."""
    if not 0 <= begin < end <= 1:
        raise ValueError(f"The pruning window needs 0 <= begin < end <= 1. Received: begin={begin}, end={end}")
    begin_step = max(1, round(begin * total_steps))
    periods = max(1, round((end * total_steps - begin_step) / frequency))
    while begin_step + periods * frequency > total_steps and periods > 1:
        periods -= 1
    if begin_step + periods * frequency > total_steps:
        raise ValueError(f"A pruning frequency of {frequency} steps does not fit {total_steps} steps from step {begin_step}.")
    return Window(begin_step, begin_step + periods * frequency, frequency)


def cubic_sparsity(step: int, goal: float, pruning: Window) -> float:
    """s(t) = goal (1 - (1 - t)^3), t = (step - begin) / (end - begin) clipped to [0, 1]: tfmot's
    `PolynomialDecay` with initial_sparsity=0 and power=3."""
    t = min(max((step - pruning.begin_step) / (pruning.end_step - pruning.begin_step), 0.0), 1.0)
    return goal * (1.0 - (1.0 - t) ** 3)


def global_gmp(goal_sparsity: float, pruning: Window) -> GMPCallback:
    """imp_keras' `GMPCallback` updating its masks at the optimizer steps tfmot does for `pruning`.

    tfmot's pruning step k is the optimizer's position k - 1 (the update runs before the batch that
    makes step k), so the library's window in steps is `pruning`'s shifted by one; the cubic
    sparsity at each update, and so every count, is the same.
    """
    return GMPCallback(
        goal_sparsity, begin=pruning.begin_step - 1, end=pruning.end_step - 1, unit="step",
        frequency=pruning.frequency, verbose=0,
    )


def train_gmp(
    config: ml_collections.ConfigDict,
    kind: str,
    goal_sparsity: float,
    pruning_fractions: tuple[float, float],
    frequency: int,
    verbose: int = 0,
) -> dict[str, Any]:
    """Trains the model of `config` from scratch for `config.pretrain_epochs` epochs (the whole
    budget) while pruning it to `goal_sparsity` with GMP; returns what it reached.

    Args:
      config: a `method="dense"` experiment config; its data, model, batch, optimizer, seed and
        learning-rate schedule (stretched over its `pretrain_epochs`) are used as they are.
      kind: "tfmot" (`prune_low_magnitude` with `PolynomialDecay` and `UpdatePruningStep`, each layer
        pruned to the goal) or "global" (`imp_keras.GMPCallback`: one threshold over all kernels).
      goal_sparsity: S, the final fraction of pruned kernel weights.
      pruning_fractions: (begin, end) of the pruning window as fractions of the training steps.
      frequency: steps between mask updates.
      verbose: Keras' fit verbosity.

    Returns:
      accuracy (evaluation split, of the stripped model), measured sparsity (exact zeros over the
      kernels) and per layer, the window, epochs, steps and seconds.
    """
    if kind not in GMP_KINDS:
        raise ValueError(f"`kind` must be one of {GMP_KINDS}. Received: kind={kind!r}")
    experiment.validate(config)
    started = time.time()
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    data = experiment.load_data(config)
    steps_per_epoch = data.steps_per_epoch(config.batch_size)
    epochs = config.pretrain_epochs
    pruning = window(epochs * steps_per_epoch, *pruning_fractions, frequency)
    model = models.build(config.model.name, data.input_shape, data.classes, **config.model.kwargs.to_dict())
    if kind == "tfmot":
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=goal_sparsity, begin_step=pruning.begin_step,
            end_step=pruning.end_step, power=3, frequency=pruning.frequency,
        )
        model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
        callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    else:
        model = masking.prunable(model)
        callbacks = [global_gmp(goal_sparsity, pruning)]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    experiment.add_weight_decay(model, config)  # as the trainer does for the IMP runs
    model.compile(experiment.make_optimizer(config, experiment.base_schedule(config, steps_per_epoch)), loss=loss, metrics=["accuracy"])
    fit_started = time.time()
    model.fit(data.train(config.batch_size, 0, epochs), epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose)
    train_seconds = time.time() - fit_started
    # UpdatePruningStep re-masks tfmot's kernels at every epoch end, so stripping keeps them sparse.
    plain = tfmot.sparsity.keras.strip_pruning(model) if kind == "tfmot" else masking.strip(model)
    plain.compile(loss=loss, metrics=["accuracy"])
    _, accuracy = plain.evaluate(data.evaluation(config.batch_size), verbose=0)
    report = sparsity_report(plain)
    return {
        "accuracy": float(accuracy),
        "sparsity": report.sparsity,
        "pruned": report.pruned,
        "total": report.total,
        "layers": [{"name": layer.name, "sparsity": layer.sparsity} for layer in report.layers],
        "window": dataclasses.asdict(pruning),
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "train_seconds": train_seconds,
        "wall_seconds": time.time() - started,
    }
