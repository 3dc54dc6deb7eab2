"""Closed-form learning rates of every schedule kind at chosen steps.

Common set-up: 10 steps per epoch, 10 dense epochs (L = 100 steps) with a step schedule
0.1 (step <= 50), 0.01 (<= 80), 0.001 after; two cycles of 2 epochs: cycle 1 is steps [100, 120),
cycle 2 is [120, 140); N = 20, W = floor(0.1 * 20) = 2, R = 18. eta_max = 0.1, eta_min = 0.001.
"""

import math

import numpy as np
import pytest

import imp_keras
import imp_keras.tf_keras
from imp_keras import Plan, RetrainSchedule, keras

PLAN = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=10, retrain_epochs=2)
P = 1 - math.sqrt(0.1)  # per-cycle fraction for 90 % in 2 cycles


def step_base():
    return keras.optimizers.schedules.PiecewiseConstantDecay([50, 80], [0.1, 0.01, 0.001])


def values(schedule, steps):
    return [float(schedule(s)) for s in steps]


def warmup(peak, k, w=2):
    return peak * (1 - math.cos(math.pi * k / w)) / 2


@pytest.mark.parametrize("kind", ["ft", "lrw", "slr", "clr", "llr", "allr"])
def test_pretraining_follows_base_unchanged(kind):
    schedule = RetrainSchedule(step_base(), PLAN, 10, kind)
    np.testing.assert_allclose(values(schedule, [0, 50, 51, 80, 81, 99]), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_derived_max_and_min():
    schedule = RetrainSchedule(step_base(), PLAN, 10, "clr")
    assert schedule.max_learning_rate == pytest.approx(0.1)
    assert schedule.min_learning_rate == pytest.approx(0.001)


def test_ft_is_constant_eta_min_without_warmup():
    schedule = RetrainSchedule(step_base(), PLAN, 10, "ft")
    np.testing.assert_allclose(values(schedule, [100, 101, 119, 120, 139]), [0.001] * 5, rtol=1e-6)


def test_lrw_rewinds_to_last_n_steps_of_base():
    schedule = RetrainSchedule(step_base(), PLAN, 10, "lrw")
    # eta(k) = eta_o(L - N + k) = eta_o(80 + k): 0.01 at k = 0, 0.001 from k = 1; again in cycle 2.
    np.testing.assert_allclose(values(schedule, [100, 101, 119, 120, 121]), [0.01, 0.001, 0.001, 0.01, 0.001], rtol=1e-6)


def test_slr_compresses_base_after_warmup():
    schedule = RetrainSchedule(step_base(), PLAN, 10, "slr")
    # eta(W + j) = eta_o(floor(j * 100 / 18)): j=9 -> 50 (0.1), j=10 -> 55 (0.01), j=15 -> 83 (0.001).
    expected = [0.0, warmup(0.1, 1), 0.1, 0.1, 0.01, 0.001, 0.001, 0.0, 0.1]
    np.testing.assert_allclose(values(schedule, [100, 101, 102, 111, 112, 117, 119, 120, 122]), expected, rtol=1e-6, atol=1e-9)


def test_slr_replaces_base_warmup_by_eta_max():
    # Cosine base with a 20-step linear warm-up from 0 to 0.1, then cosine decay over 80 steps.
    base = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=80, warmup_target=0.1, warmup_steps=20)
    schedule = RetrainSchedule(base, PLAN, 10, "slr")
    assert schedule.base_warmup_steps == 20
    assert schedule.max_learning_rate == pytest.approx(0.1)
    assert schedule.min_learning_rate == pytest.approx(0.1 * (1 + math.cos(math.pi * 79 / 80)) / 2, rel=1e-4)
    # tau = 0 maps to base step 0, inside the base warm-up, so eta_max instead of eta_o(0) = 0.
    assert float(schedule(102)) == pytest.approx(0.1)


def test_clr_cosine_between_eta_max_and_eta_min():
    schedule = RetrainSchedule(step_base(), PLAN, 10, "clr")
    cos = lambda tau: 0.001 + 0.099 * (1 + math.cos(math.pi * tau / 18)) / 2
    np.testing.assert_allclose(values(schedule, [101, 102, 105, 111, 119]), [warmup(0.1, 1), 0.1, cos(3), 0.0505, cos(17)], rtol=1e-5)


def test_llr_linear_to_zero():
    schedule = RetrainSchedule(step_base(), PLAN, 10, "llr")
    np.testing.assert_allclose(values(schedule, [100, 102, 111, 119, 131]), [0.0, 0.1, 0.05, 0.1 / 18, 0.05], rtol=1e-5)


def test_allr_peak_recorded_per_cycle():
    schedule = RetrainSchedule(step_base(), PLAN, 10, "allr")
    # Cycle 1: d = 0.05 gives 0.1 * 0.05 / sqrt(p) = 0.00605, below the bound 0.1 * min(2/10, 1) = 0.02.
    assert schedule.record_allr(1, 0.05) == pytest.approx(0.02)
    # Cycle 2: d = 0.5 gives 0.1 * 0.5 / sqrt(p) = 0.06047, inside [0.02, 0.1].
    peak2 = 0.1 * 0.5 / math.sqrt(P)
    assert schedule.record_allr(2, 0.5) == pytest.approx(peak2, rel=1e-6)
    np.testing.assert_allclose(values(schedule, [101, 102, 111, 122, 131]), [warmup(0.02, 1), 0.02, 0.01, peak2, peak2 / 2], rtol=1e-5)


def test_allr_peak_clips_above_at_eta_max():
    assert imp_keras.allr_peak(d=0.9, max_learning_rate=0.1, fraction=0.5, retrain_epochs=2, base_epochs=10) == 0.1


def test_tunable_kinds():
    plan = Plan(goal_sparsity=0.5, cycles=1, pretrain_epochs=0, retrain_epochs=3)
    # N = 30, W = floor(0.2 * 30) = 6, R = 24.
    kw = dict(initial_learning_rate=0.05, warmup_fraction=0.2)
    constant = RetrainSchedule(None, plan, 10, "constant", **kw)
    linear = RetrainSchedule(None, plan, 10, "linear", **kw)
    cosine = RetrainSchedule(None, plan, 10, "cosine", **kw)
    assert float(constant(3)) == pytest.approx(0.025)
    np.testing.assert_allclose(values(constant, [6, 29]), [0.05, 0.05], rtol=1e-6)
    np.testing.assert_allclose(values(linear, [6, 18]), [0.05, 0.025], rtol=1e-6)
    np.testing.assert_allclose(values(cosine, [14, 18]), [0.0375, 0.025], rtol=1e-5)


def test_start_from_trained_model_uses_base_epochs():
    plan = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=0, retrain_epochs=2)
    schedule = RetrainSchedule(step_base(), plan, 10, "lrw", base_epochs=10)
    # Cycle 1 starts at step 0 and rewinds to eta_o(100 - 20 + k).
    np.testing.assert_allclose(values(schedule, [0, 1, 20]), [0.01, 0.001, 0.01], rtol=1e-6)


def test_after_the_last_cycle_the_last_value_holds():
    schedule = RetrainSchedule(step_base(), PLAN, 10, "llr")
    assert float(schedule(500)) == pytest.approx(float(schedule(139)))


def test_budgeted_bimp_schedule():
    plan = Plan.budgeted(0.9, total_epochs=20, pretrain_epochs=10, cycles=3)
    schedule = RetrainSchedule.budgeted(0.1, plan, steps_per_epoch=5)
    assert schedule.kind == "allr" and schedule.base_epochs == 10
    # Linear from 0.1 to 0 over 50 dense steps.
    np.testing.assert_allclose(values(schedule, [0, 25, 49]), [0.1, 0.05, 0.002], rtol=1e-5)
    # Cycle 1: 3 epochs = 15 steps, W = 1; bound 0.1 * 3/10 = 0.03.
    assert schedule.record_allr(1, 0.2) == pytest.approx(0.03)
    assert float(schedule(55)) == pytest.approx(0.03 * (1 - 4 / 14), rel=1e-5)


@pytest.mark.parametrize("kind", ["ft", "lrw", "slr", "clr", "llr", "allr"])
def test_serialization_round_trip(kind):
    schedule = RetrainSchedule(step_base(), PLAN, 10, kind)
    if kind == "allr":
        schedule.record_allr(1, 0.3)
    config = keras.optimizers.schedules.serialize(schedule)
    restored = keras.optimizers.schedules.deserialize(config)
    assert isinstance(restored, RetrainSchedule)
    assert restored.get_config() == schedule.get_config()
    steps = [0, 60, 100, 101, 105, 119, 125, 139]
    np.testing.assert_array_equal(values(restored, steps), values(schedule, steps))


def test_config_is_flat_apart_from_base():
    config = RetrainSchedule(step_base(), PLAN, 10, "slr").get_config()
    assert config["goal_sparsity"] == 0.9 and config["retrain_epochs"] == [2, 2] and config["kind"] == "slr"
    assert [k for k, v in config.items() if isinstance(v, dict)] == ["base"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="sgdr"), "`kind` must be one of"),
        (dict(steps_per_epoch=0), "`steps_per_epoch` must be an integer >= 1. Received: steps_per_epoch=0"),
        (dict(base=None), "`base` is required"),
        (dict(kind="slr", initial_learning_rate=0.1), "apply to kinds"),
        (dict(kind="slr", warmup_fraction=0.2), "Received: initial_learning_rate=None, warmup_fraction=0.2"),
        (
            dict(kind="cosine", initial_learning_rate=0.1, max_learning_rate=5.0, min_learning_rate=1.0),
            "which kind='cosine' does not use",
        ),
        (dict(kind="constant", initial_learning_rate=0.1, min_learning_rate=0.01), "Received: max_learning_rate=None, min_learning_rate=0.01"),
        (dict(kind="linear"), "needs a finite `initial_learning_rate` > 0"),
        (dict(kind="linear", initial_learning_rate=0.1, warmup_fraction=1.0), "`warmup_fraction` must be in"),
        (dict(plan=Plan(0.9, 2, 1, 2), kind="lrw"), "longer than the base schedule"),
        (dict(plan=Plan(0.9, 2, 0, 2), kind="slr"), "`base_epochs` is required"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(base=step_base(), plan=PLAN, steps_per_epoch=10, kind="slr")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RetrainSchedule(**args)


def test_plan_must_be_a_plan():
    with pytest.raises(TypeError, match="`plan` must be an imp_keras.Plan"):
        RetrainSchedule(step_base(), {"goal_sparsity": 0.9}, 10)


def test_keras3_base_schedule_refused_by_the_tf_keras_schedule():
    import keras as keras3

    base = keras3.optimizers.schedules.ExponentialDecay(0.1, 100, 0.9)
    with pytest.raises(TypeError, match="Keras 3 object.*import tf_keras as keras"):
        imp_keras.tf_keras.RetrainSchedule(base, PLAN, 10, "slr")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_learning_rate="x"), "`max_learning_rate` must be a finite number >= 0. Received: max_learning_rate='x'"),
        (dict(min_learning_rate=0.5, max_learning_rate=0.1), "`min_learning_rate` must not exceed `max_learning_rate`"),
        (dict(base_epochs=0), "`base_epochs` must be an integer >= 1. Received: base_epochs=0"),
        (dict(base_epochs=False), "`base_epochs` must be an integer >= 1. Received: base_epochs=False"),
        (dict(name="my schedule"), "`name` must be a Python identifier"),
        (dict(base_warmup_steps=-1), "`base_warmup_steps` must be an integer >= 0. Received: base_warmup_steps=-1"),
    ],
)
def test_more_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetrainSchedule(step_base(), PLAN, 10, "slr", **kwargs)


def test_budgeted_needs_positive_learning_rate():
    plan = Plan.budgeted(0.9, total_epochs=20, pretrain_epochs=10, cycles=3)
    with pytest.raises(ValueError, match="`initial_learning_rate` must be"):
        RetrainSchedule.budgeted(-1.0, plan, 5)
