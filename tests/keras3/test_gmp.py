"""GMPCallback in every flavour: tf_keras, and Keras 3 on TensorFlow, JAX and PyTorch
(tests/test_backends.py runs this file on the other backends).

Set-up: the 12-8-3 MLP (120 kernel weights), 64 examples in batches of 16 (4 steps an epoch),
4 epochs, a window from epoch 1 to epoch 3 with updates every 2 steps: positions 4, 6, 8, 10, 12,
t = 0, 1/4, 1/2, 3/4, 1, s(t) = 0.9 (1 - (1 - t)^3) = 0, 0.5203, 0.7875, 0.8859, 0.9, so
120 - round(s * 120) = 120, 58, 26, 14, 12 alive after them.
"""

import os
import re
import warnings

import numpy as np
import pytest

import imp_keras
from imp_keras._flavour import adapter, default_flavour

EPOCHS, STEPS = 4, 4
WINDOW = dict(begin=1, end=3, unit="epoch", frequency=2)
ALIVE_AFTER_STEP = [120] * 6 + [58, 58, 26, 26, 14, 14] + [12] * 4  # steps 1..16
ALIVE_AT_EPOCH_END = [120, 26, 12, 12]  # after the epoch-end update at positions 4, 8, 12


def sync(model) -> None:
    getattr(model, "jax_state_sync", lambda: None)()  # JAX holds the variables' values apart inside an epoch


class Probe:
    """Masks after every step and at every epoch end, for any flavour (a callback made by `probe`)."""

    def __init__(self, api, numpy):
        self.api, self.numpy = api, numpy
        self.alive, self.tensors, self.masks = [], [], []

    def read(self, model) -> list[np.ndarray]:
        sync(model)
        return [self.numpy(e.mask) != 0 for e in self.api.masked_weights(model)]

    def callback(self, every_step: bool = True):
        """With `every_step`, reads (and on JAX syncs) the masks after every step too: alive per tensor and in all."""
        probe = self

        class _Probe(self.api.keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if every_step:
                    probe.tensors.append([int(m.sum()) for m in probe.read(self.model)])
                    probe.alive.append(sum(probe.tensors[-1]))

            def on_epoch_end(self, epoch, logs=None):
                probe.masks.append(probe.read(self.model))

        return _Probe()


def compile_gmp(api, model, optimizer=None):
    optimizer = optimizer or api.keras.optimizers.SGD(0.05, momentum=0.9)
    model.compile(optimizer, loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def fit_gmp(api, model, data, callbacks=(), epochs=EPOCHS, gmp=None, **kwargs):
    gmp = gmp or api.GMPCallback(0.9, verbose=0, **WINDOW, **kwargs)
    history = model.fit(*data, batch_size=16, epochs=epochs, callbacks=[gmp, *callbacks], verbose=0, shuffle=False)
    return history, gmp


def assert_pruned_and_slots_zero(api, model, numpy):
    report = api.verify(model)
    assert report.alive == 12 and report.slots >= 2  # verify checks every pruned weight's slots are 0.0
    for entry in api.masked_weights(model):
        assert not numpy(entry.weight)[numpy(entry.mask) == 0].any(), entry.name


def test_gmp_updates_exact_counts_at_the_schedules_steps(api, make_mlp, train_data, numpy):
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    probe = Probe(api, numpy)
    history, _ = fit_gmp(api, model, train_data, [probe.callback()])
    # After step i the masks are those of the last update at a position <= i - 1.
    assert probe.alive == ALIVE_AFTER_STEP
    assert [sum(int(m.sum()) for m in masks) for masks in probe.masks] == ALIVE_AT_EPOCH_END
    for earlier, later in zip(probe.masks, probe.masks[1:]):
        for a, b in zip(earlier, later):
            assert not np.any(b & ~a), "a pruned weight came back"
    logs = history.history
    assert logs["sparsity"] == pytest.approx([1 - a / 120 for a in ALIVE_AT_EPOCH_END])
    rate_key = "lr" if api.FLAVOUR == "tf_keras" else "learning_rate"
    assert logs[rate_key] == pytest.approx([0.05] * 4)
    assert_pruned_and_slots_zero(api, model, numpy)


def test_gmp_updates_inside_an_epoch_reach_the_training_step(api, make_mlp, train_data, numpy):
    # Read before GMPCallback's epoch-end update, and never inside an epoch (on JAX a read syncs the
    # step's state into the variables): the masks of the updates at positions 6 and 10, made inside
    # epochs 1 and 2, are what the following steps trained with.
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    probe = Probe(api, numpy)
    gmp = api.GMPCallback(0.9, verbose=0, **WINDOW)
    model.fit(*train_data, batch_size=16, epochs=EPOCHS, callbacks=[probe.callback(every_step=False), gmp], verbose=0, shuffle=False)
    assert [sum(int(m.sum()) for m in masks) for masks in probe.masks] == [120, 58, 14, 12]
    assert_pruned_and_slots_zero(api, model, numpy)


@pytest.mark.parametrize("optimizer", ["adam", "sgd_ema"])
def test_gmp_keeps_pruned_weights_and_their_slots_zero(api, make_mlp, train_data, numpy, optimizer):
    k = api.keras
    model = api.prunable(make_mlp(api))
    options = {
        "adam": lambda: k.optimizers.Adam(0.01),
        "sgd_ema": lambda: k.optimizers.SGD(0.05, momentum=0.9, use_ema=True, ema_overwrite_frequency=2),
    }
    compile_gmp(api, model, options[optimizer]())
    fit_gmp(api, model, train_data)
    assert_pruned_and_slots_zero(api, model, numpy)


def test_gmp_window_ending_with_the_run_reaches_the_goal_at_its_last_step(api, make_mlp, train_data, numpy):
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    gmp = api.GMPCallback(0.9, begin=0.0, end=1.0, frequency=4, verbose=0)  # updates at 0, 4, ..., 16
    history, _ = fit_gmp(api, model, train_data, gmp=gmp)
    assert history.history["sparsity"][-1] == pytest.approx(108 / 120)
    assert_pruned_and_slots_zero(api, model, numpy)


def test_gmp_warns_when_steps_per_execution_moves_its_updates(api, make_mlp, train_data, numpy):
    """Updates every 2 steps from step 4 under steps_per_execution=4: the batch hooks come every 4
    steps, so the updates at 6 and 10 are made at 8 and 12; the goal is still reached exactly."""
    if api.FLAVOUR == "keras3" and api.keras.backend.backend() == "torch":
        pytest.skip("Keras 3 on PyTorch runs one step per call")
    model = api.prunable(make_mlp(api))
    model.compile(api.keras.optimizers.SGD(0.05), loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=4)
    with pytest.warns(UserWarning, match="steps_per_execution=4 steps per call"):
        history, _ = fit_gmp(api, model, train_data)
    assert history.history["sparsity"][-1] == pytest.approx(108 / 120)
    model = api.prunable(make_mlp(api))
    model.compile(api.keras.optimizers.SGD(0.05), loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*steps per call")
        fit_gmp(api, model, train_data)


def test_gmp_in_several_fit_calls_equals_one(api, make_mlp, train_data, numpy):
    whole = api.prunable(make_mlp(api))
    compile_gmp(api, whole)
    fit_gmp(api, whole, train_data)
    split = api.prunable(make_mlp(api))
    compile_gmp(api, split)
    gmp = api.GMPCallback(0.9, epochs=EPOCHS, verbose=0, **WINDOW)
    for epoch in range(EPOCHS):
        split.fit(*train_data, batch_size=16, initial_epoch=epoch, epochs=epoch + 1, callbacks=[gmp], verbose=0, shuffle=False)
    for a, b in zip(api.masked_weights(whole), api.masked_weights(split)):
        np.testing.assert_array_equal(numpy(a.mask), numpy(b.mask))
        np.testing.assert_allclose(numpy(a.weight), numpy(b.weight), atol=1e-6)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("backup_first", [False, True])
def test_gmp_backup_and_restore_resumes_to_the_same_masks(api, make_mlp, train_data, numpy, tmp_path, backup_first):
    """Interrupted after epoch 1, whose end updates the masks (position 8). With the backup listed
    first it holds the masks before that update, which the resumed run then makes."""

    def run(interrupt_after=None):
        directory = str(tmp_path / f"backup{interrupt_after}")

        def callbacks(extra=()):
            gmp = api.GMPCallback(0.9, verbose=0, **WINDOW)
            backup = api.keras.callbacks.BackupAndRestore(directory)
            return ([backup, gmp] if backup_first else [gmp, backup]) + list(extra)

        model = api.prunable(make_mlp(api))
        compile_gmp(api, model)
        stop = api.keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: (_ for _ in ()).throw(Interrupt()) if epoch == interrupt_after else None
        )
        try:
            model.fit(*train_data, batch_size=16, epochs=EPOCHS, callbacks=callbacks([stop]), verbose=0, shuffle=False)
        except Interrupt:
            model = api.prunable(make_mlp(api))
            compile_gmp(api, model)
            history = model.fit(*train_data, batch_size=16, epochs=EPOCHS, callbacks=callbacks(), verbose=0, shuffle=False)
            assert history.epoch == [2, 3]
        return model

    whole, resumed = run(), run(interrupt_after=1)
    for a, b in zip(api.masked_weights(whole), api.masked_weights(resumed)):
        np.testing.assert_array_equal(numpy(a.mask), numpy(b.mask))
        np.testing.assert_allclose(numpy(a.weight), numpy(b.weight), atol=1e-6)
    assert api.verify(resumed).alive == 12


def test_gmp_saves_the_final_model_to_its_ladder(api, make_mlp, train_data, tmp_path):
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    fit_gmp(api, model, train_data, ladder_dir=tmp_path)
    assert os.listdir(tmp_path) == ["gmp_sparsity90.00.keras"]
    loaded = api.keras.models.load_model(tmp_path / "gmp_sparsity90.00.keras")
    assert api.sparsity_report(loaded).pruned == 108


def test_gmp_exports_the_final_model(api, make_mlp, train_data, tmp_path):
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    _, gmp = fit_gmp(api, model, train_data, export_dir=tmp_path, export_options={"formats": ["keras"], "verbose": 0})
    report = gmp.export_report
    assert report.passed and report.pruned_weights == 108 and [f.format for f in report.files] == ["keras"]
    assert report.files[0].pruned_zero == 108
    assert api.sparsity_report(api.keras.models.load_model(tmp_path / "model.keras")).pruned == 108


def test_gmp_block_size_prunes_whole_blocks_close_to_every_count(api, make_mlp, train_data, numpy):
    # Both kernels are Dense, cut into (4, 1) blocks: every update lands within 4 // 2 = 2 of its count.
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    probe = Probe(api, numpy)
    fit_gmp(api, model, train_data, [probe.callback(every_step=False)], block_size=(4, 1))
    alive = [sum(int(m.sum()) for m in masks) for masks in probe.masks]
    assert all(abs(a - b) <= 2 for a, b in zip(alive, ALIVE_AT_EPOCH_END)), alive
    for masks in probe.masks:
        for mask in masks:
            blocks = mask.reshape(-1, 4, mask.shape[1])
            assert (blocks.all(axis=1) | ~blocks.any(axis=1)).all(), "a block is partly pruned"


def test_gmp_verifies_at_the_end_of_the_run(api, make_mlp, train_data, numpy):
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)

    def revive(epoch, logs):
        if epoch == EPOCHS - 1:  # after the window's last update (epoch 2's end)
            entry = api.masked_weights(model)[0]
            weight = numpy(entry.weight).copy()
            weight[numpy(entry.mask) == 0] = 1.0
            entry.weight.assign(weight)

    message = r"invariants broken at the end of epoch 3 \(step 16\), after GMP's last update:\n  - fc1/kernel: \d+ pruned weights are not 0.0"
    with pytest.raises(imp_keras.InvariantError, match=message):
        fit_gmp(api, model, train_data, [api.keras.callbacks.LambdaCallback(on_epoch_begin=revive)])


def test_gmp_refuses_masks_of_another_run(api, make_mlp, train_data):
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    entry = api.masked_weights(model)[0]
    entry.mask.assign(np.zeros(entry.mask.shape, np.float32))
    with pytest.raises(ValueError, match=r"At step 0, 24 of 120 prunable weights are alive, but GMP's schedule has 120"):
        fit_gmp(api, model, train_data)


@pytest.mark.parametrize(
    "kwargs, fit_epochs, message",
    [
        (dict(begin=1, end=5, unit="epoch"), 4, r"ends at step 20 \(end=5.0, unit='epoch'\), after the run's 16 steps"),
        (dict(begin=0.1, end=0.5, epochs=3), 4, r"`epochs`=4 passed to fit exceeds GMPCallback's epochs=3"),
        (dict(begin=0.1, end=0.5, steps_per_epoch=5), 4, r"fit runs 4 steps per epoch but GMPCallback was given steps_per_epoch=5"),
    ],
)
def test_gmp_refuses_a_run_that_misses_the_goal_before_training(api, make_mlp, train_data, numpy, kwargs, fit_epochs, message):
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    before = [numpy(w).copy() for w in model.weights]
    with pytest.raises(ValueError, match=message):
        fit_gmp(api, model, train_data, epochs=fit_epochs, gmp=api.GMPCallback(0.9, verbose=0, **kwargs))
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, numpy(b))  # refused before any step


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(begin=1, end=5, unit="epoch", epochs=4, steps_per_epoch=4), r"after the run's 16 steps"),
        (dict(block_size=(4, 1), selection="lamp"), r"needs selection='global'"),
        (dict(selection="random"), r"`selection` must be one of"),
        (dict(verbose=3), r"`verbose` must be 0, 1 or 2"),
        (dict(epochs=0), r"`epochs` must be an integer >= 1. Received: epochs=0"),
        (dict(export_options={"nope": 1}), r"`export_options` has unknown arguments \['nope'\]"),
    ],
)
def test_gmp_bad_arguments_are_refused_at_construction(api, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        api.GMPCallback(0.9, **kwargs)


def test_gmp_top_level_name_is_the_default_flavours():
    callback = imp_keras.GMPCallback(0.9)
    assert isinstance(callback, imp_keras.GMPCallback)
    assert isinstance(callback, adapter(default_flavour()).GMPCallback)


def test_gmp_leaves_a_layer_frozen_after_prunable_as_it_is(api, frozen_fc1, train_data, numpy):
    # The schedule over logits' 24 weights alone: s(t) over positions 4, 6, 8, 10, 12 leaves
    # 24 - round(s * 24) = 24, 12, 5, 3, 2 alive, so 24, 5, 2, 2 at the epoch ends.
    model, variables, frozen = frozen_fc1(api)
    compile_gmp(api, model)
    probe = Probe(api, numpy)
    with pytest.warns(UserWarning, match=r"^GMPCallback: 1 masked tensor\(s\) are frozen .*: fc1/kernel\. The counts are over the 24 weights"):
        history, _ = fit_gmp(api, model, train_data, [probe.callback(every_step=False)])
    assert [int(masks[1].sum()) for masks in probe.masks] == [24, 5, 2, 2]
    assert history.history["sparsity"] == pytest.approx([1 - a / 24 for a in (24, 5, 2, 2)])
    for before, after in zip(frozen, variables):
        np.testing.assert_array_equal(before, numpy(after))  # kernel, bias and mask (72 alive) bit-identical
    report = api.verify(model)
    assert (report.names, report.alive, report.total, report.frozen) == (("logits/kernel",), 2, 24, ("fc1/kernel",))


def test_gmp_min_alive_keeps_its_floor_at_every_update_and_the_exact_counts(api, make_mlp, train_data, numpy):
    # A floor of 6 in fc1 [12, 8] and logits [8, 3]: the goal's 12 alive is reachable only as 6 + 6.
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    probe = Probe(api, numpy)
    fit_gmp(api, model, train_data, [probe.callback()], min_alive=6)
    assert probe.alive == ALIVE_AFTER_STEP
    assert min(min(counts) for counts in probe.tensors) == 6
    assert probe.tensors[-1] == [6, 6]
    assert_pruned_and_slots_zero(api, model, numpy)


@pytest.mark.parametrize(
    "min_alive, removable",
    [(7, "106 (88.33% sparsity)"), (0.25, "90 (75.00% sparsity)")],  # 96 - 7 + 24 - 7; 96 - 24 + 24 - 6
)
def test_gmp_goal_the_floor_cannot_reach_is_refused_before_training(api, make_mlp, train_data, numpy, min_alive, removable):
    model = api.prunable(make_mlp(api))
    compile_gmp(api, model)
    before = [numpy(w).copy() for w in model.weights]
    message = (
        rf"goal_sparsity=0.9 needs 108 of the 120 prunable weights removed, but selection='global' can remove at most "
        rf"{re.escape(removable)}: min_alive={min_alive} keeps a floor in every tensor"
    )
    with pytest.raises(ValueError, match=message):
        fit_gmp(api, model, train_data, min_alive=min_alive)
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, numpy(b))  # refused before any step
