"""imp_keras.tf_keras.verify on deliberately broken models, IMPCallback failing loudly at the end of a cycle,
and a goal the selection cannot reach refused before training.

The model is test_callback's MLP (144 prunable weights, plan 90 % in 2 cycles: 46 alive after
cycle 1, 15 after cycle 2)."""

import os

import numpy as np
import pytest

import imp_keras
from imp_keras import IMPCallback, InvariantError, Plan, keras, verify
from imp_keras.tf_keras.masking import masked_weights, optimizer_slots

from conftest import PLAN, build, fit


@pytest.fixture(scope="module")
def pruned():
    """The MLP after the whole plan, with its state (weights, masks, optimizer slots) and its cycle-1 masks."""
    keras.backend.clear_session()
    model, schedule = build()
    rungs = []

    class Rungs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if PLAN.is_last_epoch_of_cycle(epoch):
                rungs.append([e.mask.numpy() != 0 for e in masked_weights(self.model)])

    fit(model, [IMPCallback(PLAN, schedule, verbose=0), Rungs()])
    variables = list(model.weights) + [s for v in model.trainable_weights for s in optimizer_slots(model.optimizer, v)]
    return model, variables, [v.numpy() for v in variables], rungs


@pytest.fixture
def model(pruned):
    """The pruned MLP, its state as the plan left it (each test breaks it its own way)."""
    model, variables, state, _ = pruned
    for variable, value in zip(variables, state):
        variable.assign(value)
    return model


@pytest.fixture
def cycle1(pruned):
    return pruned[3][0]


def entry(model, name="fc/kernel"):
    return next(e for e in masked_weights(model) if e.name == name)


def test_a_pruned_model_keeps_every_invariant(model, cycle1):
    report = verify(model, PLAN, cycle=2, previous_masks=cycle1)
    assert (report.alive, report.total, report.expected_alive) == (15, 144, 15)
    assert report.names == ("fc/kernel", "out/kernel") and report.slots == 2  # SGD momentum of each kernel
    assert report.sparsity == pytest.approx(1 - 15 / 144)
    assert verify(model).expected_alive is None


def first(mask, alive):
    return tuple(int(i) for i in np.argwhere(mask if alive else ~mask)[0])


def test_revived_weight_is_named(model):
    fc = entry(model)
    at = first(fc.mask.numpy() != 0, alive=False)
    weight = fc.weight.numpy()
    weight[at] = 0.5
    fc.weight.assign(weight)
    with pytest.raises(InvariantError, match=rf"fc/kernel: 1 pruned weights are not 0.0 \(first at \[{at[0]}, {at[1]}\]\)") as caught:
        verify(model, PLAN, cycle=2)
    assert len(caught.value.problems) == 1


def test_non_binary_mask_is_named(model):
    out = entry(model, "out/kernel")
    mask = out.mask.numpy()
    at = first(mask != 0, alive=True)
    mask[at] = 0.5
    out.mask.assign(mask)
    with pytest.raises(InvariantError, match=r"out/kernel: 1 mask entries are neither 0 nor 1 \(first at \[\d+, \d+\]: 0.5\)"):
        verify(model)


def test_wrong_alive_count_is_named(model):
    fc = entry(model)
    mask = fc.mask.numpy()
    mask[first(mask != 0, alive=True)] = 0
    imp_keras.apply_masks([fc], [mask], model.optimizer)
    with pytest.raises(InvariantError, match=r"14 of 144 prunable weights are alive, but after 2 cycle\(s\) the plan has 15"):
        verify(model, PLAN, cycle=2)
    verify(model, Plan(0.9, 2, 2, 2), cycle=2, block_size=(4, 1))  # within half a (4, 1) block


def test_mask_growing_back_is_named(model, cycle1):
    """Same count, but one weight pruned in cycle 1 alive again in place of another."""
    fc = entry(model)
    mask = fc.mask.numpy()
    mask[first(mask != 0, alive=True)] = 0
    mask[first(cycle1[0], alive=False)] = 1
    imp_keras.apply_masks([fc], [mask], model.optimizer)
    verify(model, PLAN, cycle=2)  # nothing to compare with: looks fine
    with pytest.raises(InvariantError, match=r"fc/kernel: 1 weights pruned earlier are alive again") as caught:
        verify(model, PLAN, cycle=2, previous_masks=cycle1)
    assert len(caught.value.problems) == 1


def test_optimizer_state_of_a_pruned_weight_is_named(model):
    fc = entry(model)
    (momentum,) = optimizer_slots(model.optimizer, fc.weight)
    values = momentum.numpy()
    values[first(fc.mask.numpy() != 0, alive=False)] = 1e-3
    momentum.assign(values)
    with pytest.raises(InvariantError, match=r"fc/kernel: optimizer state \S+ is not 0.0 for 1 pruned weights"):
        verify(model)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(plan=PLAN), ValueError, r"`plan` and `cycle` go together"),
        (dict(cycle=1), ValueError, r"`plan` and `cycle` go together"),
        (dict(plan=PLAN, cycle=3), ValueError, r"`cycle` must be at most plan.cycles=2. Received: cycle=3"),
        (dict(plan=PLAN, cycle=-1), ValueError, r"`cycle` must be an integer >= 0. Received: cycle=-1"),
        (dict(plan={"cycles": 2}, cycle=1), TypeError, r"`plan` must be an imp_keras.Plan or None"),
        (dict(previous_masks=[np.ones((6, 16))]), ValueError, r"`previous_masks` must be a list of 2 masks"),
        (dict(previous_masks=[np.ones((16, 6)), np.ones((16, 3))]), ValueError, r"fc/kernel has shape \(6, 16\), its previous mask \(16, 6\)"),
        (dict(block_size=(4,)), ValueError, r"`block_size` must be a tuple of 2 positive integers"),
    ],
)
def test_verify_bad_arguments(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        verify(model, **kwargs)


def test_verify_refuses_a_model_without_masks():
    with pytest.raises(ValueError, match="has no imp_keras mask holders"):
        verify(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


class ReviveAtEpoch(keras.callbacks.Callback):
    """At `epoch`, gives a weight pruned in cycle 1 its mask back and prunes an alive one instead
    (so the alive count the callback checks at every epoch start stays right), as a buggy callback might."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.cycle1 = None

    def on_epoch_begin(self, epoch, logs=None):
        fc = entry(self.model)
        if epoch == PLAN.cycle_start_epochs[0]:
            self.cycle1 = fc.mask.numpy() != 0
        if epoch == self.epoch:
            mask = fc.mask.numpy()
            mask[first(mask != 0, alive=True)] = 0
            mask[first(self.cycle1, alive=False)] = 1
            imp_keras.apply_masks([fc], [mask], self.model.optimizer)


def test_callback_fails_loudly_at_the_end_of_a_broken_cycle(tmp_path):
    model, schedule = build()
    with pytest.raises(InvariantError, match=r"at the end of IMP cycle 2 of 2 \(epoch 5\):\n  - fc/kernel: 1 weights pruned earlier are alive again"):
        fit(model, [IMPCallback(PLAN, schedule, ladder_dir=tmp_path, verbose=0), ReviveAtEpoch(5)])
    assert os.listdir(tmp_path) == ["cycle01_sparsity68.06.keras"]  # no model of the broken cycle


def test_goal_the_selection_cannot_reach_is_refused_before_training():
    keras.utils.set_random_seed(0)
    convnet = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"), keras.layers.Flatten(),
        keras.layers.Dense(3, name="out"),
    ])
    model = imp_keras.prunable(convnet)  # conv 36 weights kept dense, out/kernel at least 87 of 432: 345 of 468 removable
    model.compile(keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.zeros((16, 8, 8, 1), np.float32), np.zeros((16,), np.int32)
    plan = Plan(goal_sparsity=0.8, cycles=2, pretrain_epochs=1, retrain_epochs=1)
    message = (
        r"goal_sparsity=0.8 needs 375 of the 468 prunable weights removed, but selection='uniform_plus' can remove "
        r"at most 345 \(73.72% sparsity\)"
    )
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[IMPCallback(plan, selection="uniform_plus", verbose=0)])
    assert int(model.optimizer.iterations.numpy()) == 0
    model.fit(x, y, epochs=3, verbose=0, callbacks=[IMPCallback(Plan(0.7, 2, 1, 1), selection="uniform_plus", verbose=0)])  # 328 removed
