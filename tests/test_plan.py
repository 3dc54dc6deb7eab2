"""Tests for imp_keras.core.plan.Plan: epochs, per-cycle counts, validation and config round-trip.

Expected numbers are literal and derived by hand (see the comments); p denotes `Plan.fraction`.
"""

import dataclasses
import doctest
import json
import re

import pytest

from imp_keras.core import plan as plan_module
from imp_keras.core.plan import Plan


def make(goal=0.5, cycles=3, pretrain=2, retrain=2, exact_goal=False):
    return Plan(goal_sparsity=goal, cycles=cycles, pretrain_epochs=pretrain, retrain_epochs=retrain, exact_goal=exact_goal)


# --------------------------------------------------------------------------------------------------
# Docstring examples
# --------------------------------------------------------------------------------------------------
def test_docstring_examples():
    tests = doctest.DocTestFinder().find(Plan, "Plan", module=plan_module, globs={"Plan": Plan})
    runner = doctest.DocTestRunner()
    for t in tests:
        runner.run(t, out=lambda s: None)
    failed, attempted = runner.summarize(verbose=False)
    # Plan: 3 examples (construction, epochs, sparsity_after); Plan.budgeted: 1 example.
    assert (failed, attempted) == (0, 4)


def test_docstring_examples_literal():
    plan = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=10, retrain_epochs=3)
    assert (plan.total_epochs, plan.cycle_start_epochs) == (16, (10, 13))
    assert round(plan.sparsity_after(1), 4) == 0.6838  # 1 - sqrt(0.1) = 0.68377...
    assert Plan.budgeted(0.9, total_epochs=20, pretrain_epochs=10, cycles=3).retrain_epochs == (3, 3, 4)


# --------------------------------------------------------------------------------------------------
# fraction / sparsity_after
# --------------------------------------------------------------------------------------------------
def test_fraction_and_sparsity_exact_case():
    plan = make(goal=0.75, cycles=2)
    # (1 - p)^2 = 0.25 -> p = 0.5; all of these are exact in binary floating point.
    assert plan.fraction == 0.5
    assert [plan.sparsity_after(j) for j in range(3)] == [0.0, 0.5, 0.75]


@pytest.mark.parametrize(
    "goal, cycles, fraction, sparsities",
    [
        # p = 1 - 0.1^(1/2) = 1 - 0.316227766 = 0.683772234; after 1: p, after 2: 0.9.
        (0.9, 2, 0.6837722339831621, [0.0, 0.6837722339831621, 0.9]),
        # p = 1 - 0.1^(1/3) = 1 - 0.464158883 = 0.535841117; after 2: 1 - 0.464158883^2 = 0.784556531.
        (0.9, 3, 0.5358411166387221, [0.0, 0.5358411166387221, 0.7845565309968117, 0.9]),
        # p = 1 - 0.5^(1/3) = 1 - 0.793700526 = 0.206299474; after 2: 1 - 0.629960525 = 0.370039475.
        (0.5, 3, 0.2062994740159002, [0.0, 0.2062994740159002, 0.3700394750525634, 0.5]),
        # One-shot: p is the goal itself.
        (0.9, 1, 0.9, [0.0, 0.9]),
        # No pruning at all.
        (0.0, 4, 0.0, [0.0, 0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_fraction_and_sparsity_after(goal, cycles, fraction, sparsities):
    plan = make(goal=goal, cycles=cycles, retrain=1)
    assert plan.fraction == pytest.approx(fraction, rel=1e-12, abs=1e-15)
    assert [plan.sparsity_after(j) for j in range(cycles + 1)] == pytest.approx(sparsities, rel=1e-12, abs=1e-15)


def test_goal_sparsity_is_stored_as_float():
    plan = make(goal=0, cycles=1, retrain=1)
    assert plan.goal_sparsity == 0.0 and type(plan.goal_sparsity) is float


# --------------------------------------------------------------------------------------------------
# Epoch arithmetic
# --------------------------------------------------------------------------------------------------
def test_epochs_with_per_cycle_retrain():
    plan = make(goal=0.5, cycles=3, pretrain=2, retrain=(1, 4, 2))
    # Pretraining [0, 2); cycle 1 = [2, 3); cycle 2 = [3, 7); cycle 3 = [7, 9).
    assert plan.retrain_epochs == (1, 4, 2)
    assert plan.total_epochs == 9
    assert plan.cycle_start_epochs == (2, 3, 7)
    assert [plan.cycle_at(e) for e in range(10)] == [0, 0, 1, 2, 2, 2, 2, 3, 3, 3]
    assert [plan.is_last_epoch_of_cycle(e) for e in range(10)] == [
        False, False, True, False, False, False, True, False, True, False,
    ]  # fmt: skip


def test_epochs_with_scalar_retrain():
    plan = make(goal=0.9, cycles=2, pretrain=10, retrain=3)
    assert plan.retrain_epochs == (3, 3)
    assert plan.total_epochs == 16
    assert plan.cycle_start_epochs == (10, 13)
    assert [plan.cycle_at(e) for e in (0, 9, 10, 12, 13, 15)] == [0, 0, 1, 1, 2, 2]
    assert [e for e in range(20) if plan.is_last_epoch_of_cycle(e)] == [12, 15]


def test_epochs_without_pretraining():
    plan = make(goal=0.5, cycles=2, pretrain=0, retrain=1)
    assert plan.total_epochs == 2
    assert plan.cycle_start_epochs == (0, 1)
    assert [plan.cycle_at(e) for e in (0, 1)] == [1, 2]
    assert [plan.is_last_epoch_of_cycle(e) for e in (0, 1)] == [True, True]


def test_retrain_epochs_normalised_to_tuple():
    assert make(cycles=3, retrain=[1, 2, 3]).retrain_epochs == (1, 2, 3)
    assert make(cycles=2, retrain=5).retrain_epochs == (5, 5)
    assert make(cycles=2, retrain=5) == make(cycles=2, retrain=[5, 5]) == make(cycles=2, retrain=(5, 5))


# --------------------------------------------------------------------------------------------------
# alive_after / removal_count
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "goal, cycles, exact_goal, n, alive, removed",
    [
        # p = 0.20630: 1000 - round(206.30) = 794; 794 - round(163.80) = 630; 630 - round(129.97) = 500.
        (0.5, 3, False, 1000, [1000, 794, 630, 500], [206, 164, 130]),
        (0.5, 3, True, 1000, [1000, 794, 630, 500], [206, 164, 130]),
        # 7 - round(1.444) = 6; 6 - round(1.238) = 5; 5 - round(1.031) = 4 (sparsity 3/7, not 1/2).
        (0.5, 3, False, 7, [7, 6, 5, 4], [1, 1, 1]),
        # exact_goal: cycle j ends at 7 - round(7 * s_j): s_1 = 0.2063 -> round(1.444) = 1 -> 6;
        # s_2 = 1 - 0.5^(2/3) = 0.3700 -> round(2.590) = 3 -> 4; last 7 - round(3.5) = 7 - 4 = 3.
        (0.5, 3, True, 7, [7, 6, 4, 3], [1, 2, 1]),
        # p = 0.5: 10 - 5 = 5; 5 - round(2.5) = 5 - 2 = 3 (Python rounds half to even).
        (0.75, 2, False, 10, [10, 5, 3], [5, 2]),
        # exact_goal: 10 - round(7.5) = 10 - 8 = 2.
        (0.75, 2, True, 10, [10, 5, 2], [5, 3]),
        # p = 0.68377: 10 - round(6.838) = 3; 3 - round(2.051) = 1.
        (0.9, 2, False, 10, [10, 3, 1], [7, 2]),
        # One-shot: round(0.9 * 10) = 9 removed.
        (0.9, 1, False, 10, [10, 1], [9]),
        (0.0, 2, False, 10, [10, 10, 10], [0, 0]),
        (0.0, 2, True, 10, [10, 10, 10], [0, 0]),
        (0.5, 2, True, 0, [0, 0, 0], [0, 0]),
    ],
)
def test_alive_after_and_removal_count(goal, cycles, exact_goal, n, alive, removed):
    plan = make(goal=goal, cycles=cycles, retrain=1, exact_goal=exact_goal)
    assert [plan.alive_after(j, n) for j in range(cycles + 1)] == alive
    assert [plan.removal_count(j, n) for j in range(1, cycles + 1)] == removed
    assert all(type(plan.alive_after(j, n)) is int for j in range(cycles + 1))


def test_removal_count_names_the_cycle_received():
    with pytest.raises(ValueError, match=re.escape("`cycle` must be an integer >= 1. Received: cycle=0")):
        Plan(0.9, 3, 1, 1).removal_count(0, 100)


@pytest.mark.parametrize(
    "goal, cycles, n",
    [
        # p = 0.0853: 8 - round(0.682) = 7; 7 - round(0.597) = 6; 6 - round(0.512) = 5 alive after
        # cycle 3, already below the exact target 8 - round(2.4) = 6 of cycle 4.
        (0.3, 4, 8),
        # p = 0.1091: 9 -> 8 -> 7 -> 6 -> 5 -> 4 after five cycles; target 9 - round(4.5) = 5.
        (0.5, 6, 9),
    ],
)
def test_exact_goal_never_revives(goal, cycles, n):
    """Masks only shrink, so no cycle may have a negative removal count (select() rejects it)."""
    plan = make(goal=goal, cycles=cycles, retrain=1, exact_goal=True)
    alive = [plan.alive_after(j, n) for j in range(cycles + 1)]
    assert all(b <= a for a, b in zip(alive, alive[1:])), alive
    assert all(plan.removal_count(j, n) >= 0 for j in range(1, cycles + 1))


def test_alive_after_cycle_bounds():
    plan = make(goal=0.5, cycles=2, retrain=1)
    with pytest.raises(ValueError, match=re.escape("`cycle` must be at most cycles=2. Received: cycle=3")):
        plan.alive_after(3, 100)
    with pytest.raises(ValueError, match=re.escape("`cycle` must be an integer >= 0. Received: cycle=-1")):
        plan.alive_after(-1, 100)
    with pytest.raises(ValueError, match=re.escape("Received: cycle=1.0")):
        plan.alive_after(1.0, 100)
    with pytest.raises(ValueError, match="`cycle`"):
        plan.removal_count(0, 100)
    with pytest.raises(ValueError, match="`cycle`"):
        plan.removal_count(3, 100)


# --------------------------------------------------------------------------------------------------
# Plan.budgeted
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "total, pretrain, cycles, retrain, starts",
    [
        (20, 10, 3, (3, 3, 4), (10, 13, 16)),  # 10 = 3 + 3 + 4
        (10, 0, 4, (2, 2, 2, 4), (0, 2, 4, 6)),  # 10 = 2 * 4 + 2, remainder to the last cycle
        (12, 2, 5, (2, 2, 2, 2, 2), (2, 4, 6, 8, 10)),  # divides evenly
        (13, 10, 3, (1, 1, 1), (10, 11, 12)),  # exactly one epoch per cycle
        (7, 0, 1, (7,), (0,)),
    ],
)
def test_budgeted_split(total, pretrain, cycles, retrain, starts):
    plan = Plan.budgeted(0.9, total_epochs=total, pretrain_epochs=pretrain, cycles=cycles)
    assert plan.retrain_epochs == retrain
    assert plan.cycle_start_epochs == starts
    assert plan.total_epochs == total
    assert plan.pretrain_epochs == pretrain and plan.cycles == cycles
    assert plan.goal_sparsity == 0.9 and plan.exact_goal is False


def test_budgeted_passes_exact_goal_and_equals_explicit_plan():
    plan = Plan.budgeted(0.9, 20, 10, 3, exact_goal=True)
    assert plan == Plan(0.9, 3, 10, (3, 3, 4), True)


@pytest.mark.parametrize(
    "total, pretrain, cycles, message",
    [
        (12, 10, 3, "`total_epochs` - `pretrain_epochs` must leave at least one epoch per cycle (3). "
         "Received: total_epochs=12, pretrain_epochs=10"),
        (10, 10, 1, "Received: total_epochs=10, pretrain_epochs=10"),
        (5, 10, 1, "Received: total_epochs=5, pretrain_epochs=10"),
        (0, 0, 1, "`total_epochs` must be an integer >= 1. Received: total_epochs=0"),
        (10.0, 0, 1, "`total_epochs` must be an integer >= 1. Received: total_epochs=10.0"),
        (10, -1, 1, "`pretrain_epochs` must be an integer >= 0. Received: pretrain_epochs=-1"),
        (10, 0, 0, "`cycles` must be an integer >= 1. Received: cycles=0"),
    ],
)  # fmt: skip
def test_budgeted_errors(total, pretrain, cycles, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Plan.budgeted(0.9, total_epochs=total, pretrain_epochs=pretrain, cycles=cycles)


def test_budgeted_validates_goal():
    with pytest.raises(ValueError, match=re.escape("`goal_sparsity` must be in [0, 1). Received: goal_sparsity=1.0")):
        Plan.budgeted(1.0, total_epochs=20, pretrain_epochs=10, cycles=3)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, name, received",
    [
        ({"goal": 1.0}, "goal_sparsity", "goal_sparsity=1.0"),
        ({"goal": -0.1}, "goal_sparsity", "goal_sparsity=-0.1"),
        ({"goal": "0.5"}, "goal_sparsity", "goal_sparsity='0.5'"),
        ({"goal": True}, "goal_sparsity", "goal_sparsity=True"),
        ({"goal": None}, "goal_sparsity", "goal_sparsity=None"),
        ({"goal": float("nan")}, "goal_sparsity", "goal_sparsity=nan"),
        ({"cycles": 0}, "cycles", "cycles=0"),
        ({"cycles": 1.5}, "cycles", "cycles=1.5"),
        ({"cycles": True}, "cycles", "cycles=True"),
        ({"cycles": "3"}, "cycles", "cycles='3'"),
        ({"pretrain": -1}, "pretrain_epochs", "pretrain_epochs=-1"),
        ({"pretrain": 2.0}, "pretrain_epochs", "pretrain_epochs=2.0"),
        ({"retrain": 0}, "retrain_epochs", "retrain_epochs=0"),
        ({"retrain": 1.5}, "retrain_epochs", "retrain_epochs=1.5"),
        ({"retrain": True}, "retrain_epochs", "retrain_epochs=True"),
        ({"retrain": "3"}, "retrain_epochs", "retrain_epochs='3'"),
        ({"retrain": [3, 3]}, "retrain_epochs", "retrain_epochs=[3, 3]"),  # cycles=3: wrong length
        ({"retrain": (1, 2, 3, 4)}, "retrain_epochs", "retrain_epochs=(1, 2, 3, 4)"),
        ({"retrain": (1, 0, 2)}, "retrain_epochs", "retrain_epochs=0"),  # the bad element
        ({"exact_goal": "yes"}, "exact_goal", "exact_goal='yes'"),
        ({"exact_goal": 1}, "exact_goal", "exact_goal=1"),
        ({"exact_goal": None}, "exact_goal", "exact_goal=None"),
    ],
)
def test_validation_errors_name_argument_and_value(overrides, name, received):
    with pytest.raises(ValueError, match=re.escape(f"`{name}`") + ".*" + re.escape(received)):
        make(**overrides)


def test_valid_boundaries_accepted():
    plan = Plan(goal_sparsity=0.0, cycles=1, pretrain_epochs=0, retrain_epochs=1)
    assert (plan.total_epochs, plan.cycle_start_epochs, plan.fraction) == (1, (0,), 0.0)
    assert Plan(0.999, 1, 0, [1]).retrain_epochs == (1,)


def test_plan_is_frozen():
    plan = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.cycles = 5


# --------------------------------------------------------------------------------------------------
# Config round-trip
# --------------------------------------------------------------------------------------------------
def test_get_config_literal_and_round_trip():
    plan = Plan(goal_sparsity=0.9, cycles=3, pretrain_epochs=5, retrain_epochs=(1, 2, 3), exact_goal=True)
    config = plan.get_config()
    assert config == {
        "goal_sparsity": 0.9,
        "cycles": 3,
        "pretrain_epochs": 5,
        "retrain_epochs": [1, 2, 3],
        "exact_goal": True,
    }
    assert Plan.from_config(config) == plan
    assert Plan.from_config(json.loads(json.dumps(config))) == plan


def test_get_config_round_trip_scalar_retrain_and_budgeted():
    plan = make(goal=0.5, cycles=2, pretrain=0, retrain=4)
    assert plan.get_config() == {
        "goal_sparsity": 0.5,
        "cycles": 2,
        "pretrain_epochs": 0,
        "retrain_epochs": [4, 4],
        "exact_goal": False,
    }
    assert Plan.from_config(plan.get_config()) == plan
    budgeted = Plan.budgeted(0.8, 20, 10, 3)
    assert Plan.from_config(json.loads(json.dumps(budgeted.get_config()))) == budgeted
