"""IMPCallback inside model.fit: cycles, published logs, ALLR, ladder, resume, and refused set-ups.

Common set-up: an MLP 6-16-3 (96 + 48 = 144 prunable weights), 64 samples in batches of 16
(4 steps per epoch), plan 90 % in 2 cycles after 2 dense epochs, 2 epochs per cycle.
Per-cycle fraction p = 1 - sqrt(0.1) = 0.68377: cycle 1 removes round(0.68377 * 144) = 98
(46 alive), cycle 2 removes round(0.68377 * 46) = 31 (15 alive).
"""

import math
import os
import re
import warnings

import numpy as np
import pytest

import imp_keras
from imp_keras import IMPCallback, Plan, RetrainSchedule, keras
from imp_keras.tf_keras.masking import masked_weights, optimizer_slots

from conftest import PLAN, STEPS, build, dataset, fit, mlp

class Probe(keras.callbacks.Callback):
    """Records masks at every epoch end and weights/slots at every epoch start."""

    def __init__(self):
        super().__init__()
        self.masks, self.begin_weights, self.begin_trainable, self.begin_slots = [], {}, {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.begin_weights[epoch] = [e.weight.numpy() for e in masked_weights(self.model)]
        self.begin_trainable[epoch] = [v.numpy() for v in self.model.trainable_weights]
        self.begin_slots[epoch] = [
            s.numpy() for v in self.model.trainable_weights for s in optimizer_slots(self.model.optimizer, v)
        ]

    def on_epoch_end(self, epoch, logs=None):
        self.masks.append([e.mask.numpy() != 0 for e in masked_weights(self.model)])


def test_two_cycle_fit_end_to_end():
    model, schedule = build()
    probe = Probe()
    history = fit(model, [IMPCallback(PLAN, schedule, verbose=0), probe])
    h = history.history
    np.testing.assert_allclose(h["sparsity"], [0, 0, 98 / 144, 98 / 144, 129 / 144, 129 / 144])
    assert h["cycle"] == [0, 0, 1, 1, 2, 2]
    assert h["phase"] == [0, 0, 1, 1, 1, 1]
    last_steps = [4 * (e + 1) - 1 for e in range(6)]
    np.testing.assert_allclose(h["lr"], [float(schedule(s)) for s in last_steps])
    alive = [sum(int(m.sum()) for m in masks) for masks in probe.masks]
    assert alive == [144, 144, 46, 46, 15, 15]
    for earlier, later in zip(probe.masks, probe.masks[1:]):
        for a, b in zip(earlier, later):
            assert not np.any(b & ~a), "a pruned weight came back"
    for entry in masked_weights(model):
        assert np.count_nonzero(entry.weight.numpy()[entry.mask.numpy() == 0]) == 0
    report = imp_keras.sparsity_report(model)
    assert (report.total, report.pruned) == (144, 129)


def test_exact_goal_hits_goal_sparsity():
    plan = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=2, retrain_epochs=2, exact_goal=True)
    model, schedule = build(plan=plan)
    history = fit(model, [IMPCallback(plan, schedule, verbose=0)], plan=plan)
    assert history.history["sparsity"][-1] == pytest.approx(130 / 144)  # round(0.9 * 144) = 130


@pytest.mark.parametrize("selection", sorted(imp_keras.CRITERIA))
def test_every_selection_runs_every_cycle(selection):
    model, schedule = build()
    probe = Probe()
    fit(model, [IMPCallback(PLAN, schedule, selection=selection, verbose=0), probe])
    assert [sum(int(m.sum()) for m in masks) for masks in probe.masks] == [144, 144, 46, 46, 15, 15]


@pytest.mark.parametrize("reset", [True, False])
def test_optimizer_state_reset_at_first_pruning(reset):
    model, schedule = build()
    probe = Probe()
    fit(model, [IMPCallback(PLAN, schedule, reset_optimizer=reset, verbose=0), probe], epochs=3)
    slots_after_pruning = probe.begin_slots[2]
    assert len(slots_after_pruning) == 4  # momentum of 2 kernels and 2 biases
    nonzero = sum(np.count_nonzero(s) for s in slots_after_pruning)
    assert (nonzero == 0) == reset


def test_allr_measures_d_and_peak_at_each_pruning():
    model, schedule = build(kind="allr")
    weights_probe = Probe()  # listed first: sees the weights before IMPCallback prunes them
    mask_probe = Probe()
    history = fit(model, [weights_probe, IMPCallback(PLAN, schedule, verbose=0), mask_probe])
    h = history.history
    for cycle, epoch in ((1, 2), (2, 4)):
        before = weights_probe.begin_weights[epoch]
        old_masks, new_masks = mask_probe.masks[epoch - 1], mask_probe.masks[epoch]
        removed = sum(float(np.sum(w[o & ~n].astype(np.float64) ** 2)) for w, o, n in zip(before, old_masks, new_masks))
        # ||theta_before||^2 over every trainable weight: 2 kernels and 2 biases.
        trainable = weights_probe.begin_trainable[epoch]
        assert len(trainable) == 4
        norm = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in trainable)
        d = math.sqrt(removed / norm)
        assert h["allr_d"][epoch] == pytest.approx(d, rel=1e-6)
        # Bounds: eta_max = 0.1, lower 0.1 * min(E / T, 1) = 0.1 * min(2 / 2, 1) = 0.1.
        expected_peak = min(max(0.1 * d / math.sqrt(PLAN.fraction), 0.1), 0.1)
        assert h["eta_star"][epoch] == pytest.approx(expected_peak, rel=1e-6)
        assert float(schedule.eta_star[cycle - 1]) == pytest.approx(expected_peak, rel=1e-6)
    assert math.isnan(h["allr_d"][0]) and math.isnan(h["eta_star"][1])


def test_allr_peak_below_eta_max_with_long_pretraining():
    # T = 20 epochs makes the lower bound 0.1 * 2 / 20 = 0.01, so the peak is 0.1 * d / sqrt(p) when below 0.1.
    plan = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=0, retrain_epochs=2)
    model = imp_keras.prunable(mlp())
    schedule = RetrainSchedule(0.1, plan, STEPS, "allr", base_epochs=20)
    model.compile(keras.optimizers.SGD(schedule), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = fit(model, [IMPCallback(plan, schedule, verbose=0)], plan=plan)
    d = history.history["allr_d"][0]
    assert history.history["eta_star"][0] == pytest.approx(max(0.1 * d / math.sqrt(plan.fraction), 0.01), rel=1e-6)
    assert history.history["eta_star"][0] < 0.1


def test_sparsity_ladder_saves_a_model_per_cycle(tmp_path):
    model, schedule = build()
    fit(model, [IMPCallback(PLAN, schedule, ladder_dir=tmp_path, verbose=0)])
    files = sorted(os.listdir(tmp_path))
    assert files == ["cycle01_sparsity68.06.keras", "cycle02_sparsity89.58.keras"]
    for name, pruned in zip(files, (98, 129)):
        rung = keras.models.load_model(os.fspath(tmp_path / name))
        assert imp_keras.sparsity_report(rung).pruned == pruned
    assert imp_keras.sparsity_report(rung) == imp_keras.sparsity_report(model)  # the last rung is the final model


def _collapsing_run(**callback_kwargs):
    """One-shot 90 % of fc [6, 16] and out [16, 3] = 144 weights (130 removed) with out's kernel
    all 1e-6: global magnitude takes all 48 of out first."""
    model, _ = build()
    out = model.get_layer("mask_holder_out").layer
    out.kernel.assign(np.full(out.kernel.shape, 1e-6, np.float32))
    plan = Plan(goal_sparsity=0.9, cycles=1, pretrain_epochs=0, retrain_epochs=1)
    schedule = RetrainSchedule(None, plan, STEPS, "constant", initial_learning_rate=1e-9)
    model.compile(keras.optimizers.SGD(schedule), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit(model, [IMPCallback(plan, schedule, verbose=0, **callback_kwargs)], plan=plan)
    return [int(np.count_nonzero(e.mask.numpy())) for e in masked_weights(model)]


def test_collapsing_layer_is_reported_with_what_avoids_it():
    message = (
        "IMP cycle 1: selection='global' left 1 tensor(s) under 1% of their weights alive, which can cut the signal "
        "through the layer (layer collapse): out/kernel 0/48 alive (0.00%) (none: no signal passes). Selections "
        "designed against it: 'erk', 'uniform_plus', 'lamp'; a floor that guarantees it, with any selection: "
        "IMPCallback(min_alive=...), e.g. min_alive=0.01."
    )
    with pytest.warns(UserWarning, match=re.escape(message)):
        assert _collapsing_run() == [14, 0]


def test_min_alive_keeps_a_floor_in_every_tensor_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert _collapsing_run(min_alive=2) == [12, 2]
        assert _collapsing_run(min_alive=0.05) == [11, 3]  # ceil(0.05 * 48) = 3 of out
    # ceil(0.1 * 96) + ceil(0.1 * 48) = 15 kept, but the plan leaves 14 alive.
    with pytest.raises(ValueError, match=re.escape(
        "goal_sparsity=0.9 needs 130 of the 144 prunable weights removed, but selection='global' can remove at most "
        "129 (89.58% sparsity): min_alive=0.1 keeps a floor in every tensor."
    )):
        _collapsing_run(min_alive=0.1)


def test_min_alive_refused_with_blocks_and_bad_values():
    with pytest.raises(ValueError, match="cannot be combined with `block_size`"):
        IMPCallback(PLAN, block_size=(4, 1), min_alive=2)
    with pytest.raises(ValueError, match=re.escape("`min_alive` must be None, a number of weights (an int >= 1)")):
        IMPCallback(PLAN, min_alive=1.5)


def test_block_size_prunes_whole_dense_blocks_close_to_the_plan():
    # fc [6, 16] in (4, 1) blocks: 16 blocks of 4 (rows 0-3) and 16 edge blocks of 2 (rows 4-5);
    # out [16, 3]: 12 blocks of 4. Whole blocks land within 4 // 2 = 2 of the plan's 46 and 15 alive.
    model, schedule = build()
    probe = Probe()
    history = fit(model, [IMPCallback(PLAN, schedule, block_size=(4, 1), verbose=0), probe])
    alive = [sum(int(m.sum()) for m in masks) for masks in probe.masks]
    assert alive[:2] == [144, 144] and alive[2] == alive[3] and alive[4] == alive[5]
    assert abs(alive[2] - 46) <= 2 and abs(alive[4] - 15) <= 2, alive
    np.testing.assert_allclose(history.history["sparsity"], [1 - a / 144 for a in alive])
    for earlier, later in zip(probe.masks, probe.masks[1:]):
        for a, b in zip(earlier, later):
            assert not np.any(b & ~a), "a pruned weight came back"
    for masks in probe.masks:
        for mask in masks:
            for r in range(0, mask.shape[0], 4):
                for c in range(mask.shape[1]):
                    block = mask[r : r + 4, c]
                    assert block.all() or not block.any(), "a block is partly pruned"
    for entry in masked_weights(model):
        assert np.count_nonzero(entry.weight.numpy()[entry.mask.numpy() == 0]) == 0


def test_block_size_check_still_detects_foreign_masks():
    model, schedule = build()
    entry = masked_weights(model)[0]
    entry.mask.assign(np.zeros(entry.mask.shape, np.float32))
    message = r"48 of 144 prunable weights are alive, but after 0 cycle\(s\) the plan has 144 \(within 2, half a block\)"
    with pytest.raises(ValueError, match=message):
        fit(model, [IMPCallback(PLAN, schedule, block_size=(4, 1), verbose=0)])


def test_block_size_leaves_convolutions_unstructured_and_exact():
    keras.utils.set_random_seed(0)
    conv = keras.Sequential([keras.Input((6, 1)), keras.layers.Conv1D(8, 3, name="conv"), keras.layers.GlobalAveragePooling1D()])
    model = imp_keras.prunable(conv)  # one Conv1D kernel [3, 1, 8]: 24 weights, nothing blocked
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    probe = Probe()
    x = np.random.default_rng(0).random((64, 6, 1), dtype=np.float32)
    model.fit(x, np.zeros((64, 8), np.float32), batch_size=16, epochs=PLAN.total_epochs, verbose=0,
              callbacks=[IMPCallback(PLAN, block_size=(4, 1), verbose=0), probe])
    # Exact plan counts: 24 -> 24 - round(0.68377 * 24) = 8 -> 8 - round(0.68377 * 8) = 3.
    assert [int(masks[0].sum()) for masks in probe.masks] == [24, 24, 8, 8, 3, 3]


def test_fit_in_two_calls_equals_one_call():
    model, schedule = build()
    callback = IMPCallback(PLAN, schedule, verbose=0)
    fit(model, [callback], epochs=3)
    fit(model, [callback], epochs=6, initial_epoch=3)
    reference, reference_schedule = build()
    fit(reference, [IMPCallback(PLAN, reference_schedule, verbose=0)])
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


class KillAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise RuntimeError("killed")


def _kill_and_resume(tmp_path, kill_epoch, kill_batch, backup_first, save_freq):
    """The reference run, and a run killed at (kill_epoch, kill_batch) then restarted as a new
    process would: everything rebuilt, BackupAndRestore on the same directory."""
    def callbacks(schedule, extra=()):
        imp = IMPCallback(PLAN, schedule, verbose=0)
        backup = keras.callbacks.BackupAndRestore(os.fspath(tmp_path / "backup"), save_freq=save_freq)
        return ([backup, imp] if backup_first else [imp, backup]) + list(extra)

    reference, reference_schedule = build(kind="allr")
    fit(reference, [IMPCallback(PLAN, reference_schedule, verbose=0)])
    model, schedule = build(kind="allr")
    with pytest.raises(RuntimeError, match="killed"):
        fit(model, callbacks(schedule, [KillAt(kill_epoch, kill_batch)]))
    resumed, resumed_schedule = build(kind="allr")
    history = fit(resumed, callbacks(resumed_schedule))
    assert int(resumed.optimizer.iterations.numpy()) == PLAN.total_epochs * STEPS
    return reference, reference_schedule, resumed, resumed_schedule, history


@pytest.mark.parametrize(
    "kill_epoch, kill_batch, backup_first",
    [
        (1, 1, True),   # mid-pretraining
        (2, 0, True),   # in the pruning epoch of cycle 1, just after its pruning
        (3, 2, False),  # mid-retraining, BackupAndRestore listed after IMPCallback
        (5, 3, True),   # last step of the last epoch
    ],
)
def test_kill_and_resume_ends_identical(op_determinism, tmp_path, kill_epoch, kill_batch, backup_first):
    reference, reference_schedule, resumed, resumed_schedule, history = _kill_and_resume(
        tmp_path, kill_epoch, kill_batch, backup_first, "epoch"
    )
    assert history.epoch[0] == kill_epoch
    for a, b in zip(resumed.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    np.testing.assert_array_equal(resumed_schedule.eta_star.numpy(), reference_schedule.eta_star.numpy())


@pytest.mark.parametrize(
    "kill_epoch, kill_batch, save_freq",
    [
        (2, 2, 2),  # restored at step 10: inside cycle 1's pruning epoch, after its pruning
        (4, 3, 3),  # restored at step 18: inside cycle 2's pruning epoch
    ],
)
def test_resume_from_mid_epoch_checkpoint_keeps_the_plan(op_determinism, tmp_path, kill_epoch, kill_batch, save_freq):
    # tf_keras restarts a mid-epoch restore from the epoch's first batch, so the data order and the
    # weights differ from an uninterrupted run; the plan must still hold exactly, with no re-pruning.
    reference, reference_schedule, resumed, resumed_schedule, history = _kill_and_resume(
        tmp_path, kill_epoch, kill_batch, True, save_freq
    )
    assert history.epoch[0] == kill_epoch
    assert history.history["sparsity"][-1] == pytest.approx(129 / 144)
    for entry in masked_weights(resumed):
        assert np.count_nonzero(entry.weight.numpy()[entry.mask.numpy() == 0]) == 0
    pruned_before_kill = PLAN.cycle_at(kill_epoch)
    np.testing.assert_array_equal(
        resumed_schedule.eta_star.numpy()[:pruned_before_kill], reference_schedule.eta_star.numpy()[:pruned_before_kill]
    )


def test_refuses_to_run_past_the_plan():
    model, schedule = build()
    with pytest.raises(ValueError, match="`epochs`=7 passed to fit exceeds plan.total_epochs=6"):
        fit(model, [IMPCallback(PLAN, schedule)], epochs=7)


def test_refuses_mismatched_steps_per_epoch():
    model, schedule = build(steps=5)
    with pytest.raises(ValueError, match="fit runs 4 steps per epoch but the schedule was built with steps_per_epoch=5"):
        fit(model, [IMPCallback(PLAN, schedule)])


def test_refuses_restart_without_initial_epoch():
    model, schedule = build()
    callback = IMPCallback(PLAN, schedule, verbose=0)
    fit(model, [callback], epochs=2)
    with pytest.raises(ValueError, match="At the start of epoch 0 the optimizer has taken 8 steps"):
        fit(model, [callback], epochs=2)


def test_refuses_optimizer_without_the_schedule():
    model, schedule = build()
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    with pytest.raises(ValueError, match="does not use `schedule`"):
        fit(model, [IMPCallback(PLAN, schedule)])


def test_refuses_schedule_of_another_plan():
    _, schedule = build()
    with pytest.raises(ValueError, match="built for another plan"):
        IMPCallback(Plan(0.8, 2, 2, 2), schedule)


def test_refuses_model_without_mask_holders():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    with pytest.raises(ValueError, match=r"wrap it with `imp_keras.prunable\(model\)`"):
        fit(model, [IMPCallback(PLAN)])


def test_refuses_unknown_selection():
    with pytest.raises(ValueError, match="`selection` must be one of"):
        IMPCallback(PLAN, selection="random")


def test_refuses_keras3_model():
    import keras as keras3

    callback = IMPCallback(PLAN)
    callback.set_model(keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)]))
    callback.set_params({"epochs": 6, "steps": 4})
    with pytest.raises(TypeError, match="`model` is a Keras 3 object"):
        callback.on_train_begin()


def test_masks_from_another_run_are_detected():
    model, schedule = build()
    entry = masked_weights(model)[0]
    entry.mask.assign(np.zeros(entry.mask.shape, np.float32))
    with pytest.raises(ValueError, match="At the start of epoch 0, 48 of 144 prunable weights are alive, but after 0 cycle"):
        fit(model, [IMPCallback(PLAN, schedule, verbose=0)])


def test_start_from_trained_dense_model():
    x, y = dataset()
    dense = mlp()
    base = keras.optimizers.schedules.PiecewiseConstantDecay([4], [0.1, 0.05])
    dense.compile(keras.optimizers.SGD(base, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dense.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    trained_kernel = dense.get_layer("fc").kernel.numpy()

    plan = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=0, retrain_epochs=2)
    model = imp_keras.prunable(dense)
    lr = RetrainSchedule(base, plan, STEPS, "lrw", base_epochs=2)
    model.compile(keras.optimizers.SGD(lr, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probe = Probe()
    history = fit(model, [IMPCallback(plan, lr, verbose=0), probe], plan=plan)
    # The first pruning ranks the trained weights: the kept fc weights are the largest trained ones.
    fc_mask = probe.masks[0][0]
    assert np.abs(trained_kernel[fc_mask]).min() >= np.abs(trained_kernel[~fc_mask]).max() or fc_mask.all()
    np.testing.assert_allclose(history.history["sparsity"], [98 / 144, 98 / 144, 129 / 144, 129 / 144])
    # LRW: N = L = 8 steps, so each cycle replays the base: epoch-end steps k = 3 and 7 give
    # eta_o(3) = 0.1 (steps <= 4) and eta_o(7) = 0.05.
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.05, 0.1, 0.05])


def test_bimp_end_to_end():
    plan = Plan.budgeted(0.9, total_epochs=7, pretrain_epochs=3, cycles=2)
    assert plan.retrain_epochs == (2, 2)
    model = imp_keras.prunable(mlp())
    lr = RetrainSchedule.budgeted(0.1, plan, STEPS)
    model.compile(keras.optimizers.SGD(lr, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = fit(model, [IMPCallback(plan, lr, verbose=0)], plan=plan)
    h = history.history
    assert h["cycle"] == [0, 0, 0, 1, 1, 2, 2]
    # Dense phase: linear from 0.1 to 0 over 12 steps; last steps 3, 7, 11.
    np.testing.assert_allclose(h["lr"][:3], [0.1 * (1 - 3 / 12), 0.1 * (1 - 7 / 12), 0.1 * (1 - 11 / 12)], rtol=1e-5)
    for epoch, cycle in ((3, 1), (5, 2)):
        peak = imp_keras.allr_peak(h["allr_d"][epoch], 0.1, plan.fraction, 2, 3)
        assert h["eta_star"][epoch] == pytest.approx(peak, rel=1e-6)


def test_adopts_the_optimizers_retrain_schedule():
    model, schedule = build(kind="allr")
    history = fit(model, [IMPCallback(PLAN, verbose=0)])  # no schedule given: ALLR must still record
    assert not math.isnan(history.history["allr_d"][2])
    assert float(schedule.allr_d[0]) == pytest.approx(history.history["allr_d"][2])


def test_lr_logged_for_any_optimizer_schedule():
    model = imp_keras.prunable(mlp())
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    model.compile(keras.optimizers.legacy.SGD(decay), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = fit(model, [IMPCallback(PLAN, verbose=0)])
    # Epoch-end steps 3, 7, 11, ...: 0.1 * 0.5 ** (step / 4).
    np.testing.assert_allclose(history.history["lr"], [0.1 * 0.5 ** ((4 * e + 3) / 4) for e in range(6)], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(reset_optimizer="no"), r"`reset_optimizer` must be a bool. Received: reset_optimizer='no'"),
        (dict(verbose=3), r"`verbose` must be 0, 1 or 2. Received: verbose=3"),
        (dict(plan={"goal_sparsity": 0.9}), r"`plan` must be an imp_keras.Plan"),
        (dict(block_size=(4,)), r"`block_size` must be a tuple of 2 positive integers, e.g. \(4, 1\). Received: block_size=\(4,\)"),
        (dict(block_size=(4, 0)), r"Received: block_size=\(4, 0\)"),
        (dict(block_size=4), r"Received: block_size=4"),
        (dict(block_size=(4, 1), selection="lamp"), r"needs selection='global'. Received: selection='lamp', block_size=\(4, 1\)"),
    ],
)
def test_callback_bad_arguments(kwargs, message):
    args = dict(plan=PLAN)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        IMPCallback(**args)
