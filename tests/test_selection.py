"""Tests for imp_keras.core.selection: exact masks on small hand-made arrays.

Every expected mask / count below is written out literally and was derived by hand; the derivation
is given in a comment where it is not obvious. Masks are compared as nested lists of 0/1.
"""

import doctest
import re

import numpy as np
import pytest

from imp_keras.core import selection
from imp_keras.core.selection import (
    CRITERIA,
    _allocate,
    _lamp_scores,
    erk,
    floors,
    get_criterion,
    global_magnitude,
    lamp,
    max_removable,
    select,
    select_blocks,
    uniform,
    uniform_plus,
)


def as_int(masks):
    """Masks as nested 0/1 lists, after checking that they are boolean arrays."""
    for m in masks:
        assert isinstance(m, np.ndarray) and m.dtype == bool
    return [m.astype(int).tolist() for m in masks]


def full(*arrays):
    return [np.ones(np.shape(a), dtype=bool) for a in arrays]


def alive(masks):
    return [int(np.count_nonzero(m)) for m in masks]


def assert_subset(new, old):
    for n, o in zip(new, old):
        assert n.shape == np.shape(o)
        assert not np.any(n & ~np.asarray(o, dtype=bool)), "a pruned weight came back"


# --------------------------------------------------------------------------------------------------
# A three-tensor model used by the multi-cycle tests: a first conv kernel, a dense kernel, a last
# (bias-like) vector. All 15 magnitudes are distinct; in ascending order they are
#   .02 (t1[2])  .03 (t2[1])  .05 (t0[3])  .1 (t0[1])  .15 (t2[2])  .2 (t1[4])  .25 (t2[3])
#   .3 (t1[0])   .35 (t2[4])  .4 (t0[2])   .5 (t2[0])  .6 (t1[3])   .7 (t1[1])  .8 (t1[5])  .9 (t0[0])
# (indices are flat C-order indices).
# --------------------------------------------------------------------------------------------------
def three_tensors():
    t0 = np.array([[[[0.9, -0.1], [0.4, 0.05]]]])  # shape (1, 1, 2, 2): the first conv kernel
    t1 = np.array([[0.3, -0.7, 0.02], [0.6, -0.2, 0.8]])  # shape (2, 3)
    t2 = np.array([0.5, -0.03, 0.15, 0.25, -0.35])  # shape (5,): the last tensor
    return [t0, t1, t2]


# Removal counts per cycle: 15 -> 11 -> 8 -> 6 alive.
CYCLE_COUNTS = (4, 3, 2)

# Expected masks (flattened per tensor) after each of the three cycles, per criterion.
MULTI_CYCLE_EXPECTED = {
    # Global: remove the 4, then 3, then 2 smallest alive magnitudes of the sorted list above:
    # {.02, .03, .05, .1}, then {.15, .2, .25}, then {.3, .35}.
    "global": [
        [[1, 0, 1, 0], [1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1]],
        [[1, 0, 1, 0], [1, 1, 0, 1, 0, 1], [1, 0, 0, 0, 1]],
        [[1, 0, 1, 0], [0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 0]],
    ],
    # Uniform, sizes (4, 6, 5), keep c * size capped at alive, largest remainders get the rest:
    #  c1: keep 11 -> c = 11/15 -> 2.93, 4.4, 3.67 -> floors 2,4,3 (+1 to t0, +1 to t2) = 3,4,4
    #  c2: keep 8  -> c = 8/15  -> 2.13, 3.2, 2.67 -> floors 2,3,2 (+1 to t2)             = 2,3,3
    #  c3: keep 6  -> c = 6/15  -> 1.6,  2.4, 2.0  -> 2,2,2
    # then each tensor drops its smallest alive magnitudes.
    "uniform": [
        [[1, 1, 1, 0], [1, 1, 0, 1, 0, 1], [1, 0, 1, 1, 1]],
        [[1, 0, 1, 0], [0, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1]],
        [[1, 0, 1, 0], [0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1]],
    ],
    # Uniform+: t0 (first ndim >= 3 tensor) keeps all 4; t2 keeps >= ceil(0.2 * 5) = 1.
    #  c1: keep 11 -> 4 + 7 over sizes (6, 5): 3.82, 3.18 -> 4, 3
    #  c2: keep 8  -> 4 + 4: 2.18, 1.82 -> 2, 2
    #  c3: keep 6  -> 4 + 2: 6c + max(1, 5c) = 2 -> c = 1/6 -> 1, 1
    "uniform_plus": [
        [[1, 1, 1, 1], [1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1]],
        [[1, 1, 1, 1], [0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1]],
        [[1, 1, 1, 1], [0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0]],
    ],
    # ERK, desire = sum of dims = (1+1+2+2, 2+3, 5) = (6, 5, 5), capped at alive:
    #  c1: keep 11 -> t0 capped at 4, 5c + 5c = 7 -> 3.5, 3.5 -> tie, earlier tensor: 4, 4, 3
    #  c2: keep 8  -> c = 0.5: 3, 2.5, 2.5 -> tie, earlier tensor: 3, 3, 2
    #  c3: keep 6  -> c = 6/16: 2.25, 1.875, 1.875 -> floors 2,1,1 (+1 t1, +1 t2) = 2, 2, 2
    "erk": [
        [[1, 1, 1, 1], [1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1]],
        [[1, 1, 1, 0], [0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 1]],
        [[1, 0, 1, 0], [0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1]],
    ],
    # LAMP (score = w^2 / sum of alive v^2 with |v| >= |w|, in its own tensor):
    #  c1 lowest: t1 .02 -> .0004/1.6204 = .00025, t2 .03 -> .0009/.4584 = .0020,
    #             t0 .05 -> .0025/.9825 = .0025, t0 .1 -> .01/.98 = .0102    (same as global)
    #  c2 (recomputed on alive): t1 .2 -> .04/1.62 = .0247, t2 .15 -> .0225/.4575 = .0492,
    #             t1 .3 -> .09/1.58 = .0570; next would be t2 .25 -> .0625/.435 = .144
    #             (global magnitude would take .25 instead of .3 here)
    #  c3: t2 .25 -> .0625/.4225 = .148, t0 .4 -> .16/.97 = .165; next t1 .6 -> .36/1.49 = .242
    "lamp": [
        [[1, 0, 1, 0], [1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1]],
        [[1, 0, 1, 0], [0, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1]],
        [[1, 0, 0, 0], [0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 1]],
    ],
}


def test_criteria_registry():
    assert sorted(CRITERIA) == ["erk", "global", "lamp", "uniform", "uniform_plus"]
    assert CRITERIA["global"] is global_magnitude
    assert CRITERIA["uniform"] is uniform
    assert CRITERIA["uniform_plus"] is uniform_plus
    assert CRITERIA["erk"] is erk
    assert CRITERIA["lamp"] is lamp
    assert get_criterion("lamp") is lamp

    def custom(weights, masks, count):
        return masks

    assert get_criterion(custom) is custom
    assert set(MULTI_CYCLE_EXPECTED) == set(CRITERIA)
    with pytest.raises(ValueError, match=re.escape("Received: selection=['global']")):
        get_criterion(["global"])


# --------------------------------------------------------------------------------------------------
# Docstring example
# --------------------------------------------------------------------------------------------------
def test_select_docstring_example_literal():
    w = [np.array([[0.1, -2.0], [0.3, 0.05]]), np.array([1.0, -0.2])]
    m = [np.ones((2, 2), bool), np.ones(2, bool)]
    # The three smallest magnitudes are 0.05, 0.1 and 0.2.
    assert as_int(select("global", w, m, count=3)) == [[[0, 1], [1, 0]], [1, 0]]


def test_select_docstring_example_runs_as_doctest():
    finder = doctest.DocTestFinder()
    tests = finder.find(selection.select, "select", globs={"np": np, "select": select})
    assert len(tests) == 1 and tests[0].examples
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(tests[0], out=lambda s: None)
    assert result.failed == 0 and result.attempted == 3


# --------------------------------------------------------------------------------------------------
# One criterion at a time, exact masks
# --------------------------------------------------------------------------------------------------
def test_global_one_threshold_over_all_tensors():
    a = np.array([0.04, -0.01, 0.03, 0.02])
    b = np.array([[0.8, 0.1, -0.5, 0.2], [0.05, 0.9, -0.3, 0.6]])
    # Keep 6 of 12: the six largest magnitudes overall are .9 .8 .6 .5 .3 .2, all in b.
    new = select("global", [a, b], full(a, b), 6)
    assert as_int(new) == [[0, 0, 0, 0], [[1, 0, 1, 1], [0, 1, 1, 1]]]


def test_uniform_same_density_in_every_tensor():
    # Same arrays as the global test: uniform keeps 6 = 2 (of 4) + 4 (of 8), density 1/2 each.
    a = np.array([0.04, -0.01, 0.03, 0.02])
    b = np.array([[0.8, 0.1, -0.5, 0.2], [0.05, 0.9, -0.3, 0.6]])
    new = select("uniform", [a, b], full(a, b), 6)
    # a keeps .04, .03; b keeps .9, .8, .6, .5.
    assert as_int(new) == [[1, 0, 1, 0], [[1, 0, 1, 0], [0, 1, 0, 1]]]


def test_uniform_caps_at_alive_and_is_relative_to_full_size():
    a = np.array([0.1, 0.2, 0.3, 0.4])
    b = np.array([0.5, 0.6, 0.7, 0.8])
    masks = [np.array([False, False, False, True]), np.ones(4, bool)]
    # 5 alive, keep 3: density c of the FULL size 4 each, capped at alive: min(4c, 1) + 4c = 3
    # -> c = 1/2 -> a keeps its 1, b keeps 2 (its largest: .7, .8). All removal falls on b.
    new = select("uniform", [a, b], masks, 2)
    assert as_int(new) == [[0, 0, 0, 1], [0, 0, 1, 1]]


def test_uniform_remainder_goes_to_earlier_tensor_on_tie():
    a = np.array([0.1, 0.2, 0.3])
    b = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    # Keep 4 of 8: 3c + 5c = 4 -> 1.5 and 2.5; equal remainders, the earlier tensor gets the unit.
    new = select("uniform", [a, b], full(a, b), 4)
    assert as_int(new) == [[0, 1, 1], [0, 0, 0, 1, 1]]


def test_uniform_plus_keeps_first_conv_and_floor_on_last():
    conv = np.array([[[[0.01, 0.02], [0.03, 0.04]], [[0.05, 0.06], [0.07, 0.08]]]])  # (1, 2, 2, 2), 8
    dense = np.array([[0.9, 0.1, 0.8, 0.2], [0.7, 0.3, 0.6, 0.4]])  # (2, 4), 8
    last = np.array([[0.15, 0.95], [0.55, 0.25], [0.35, 0.45]])  # (3, 2), 6 -> ceil(1.2) = 2 kept
    w = [conv, dense, last]
    # Keep 10 of 22: conv keeps its 8 (its tiny weights are not touched), last keeps at least 2,
    # so dense keeps 0 and last exactly 2 (its largest: .95, .55).
    new = select("uniform_plus", w, full(*w), 12)
    assert as_int(new) == [
        [[[[1, 1], [1, 1]], [[1, 1], [1, 1]]]],
        [[0, 0, 0, 0], [0, 0, 0, 0]],
        [[0, 1], [1, 0], [0, 0]],
    ]
    # Keep 15: conv 8, then 8c + 6c = 7 -> c = 1/2 -> dense 4 (.9 .8 .7 .6), last 3 (.95 .55 .45).
    new = select("uniform_plus", w, full(*w), 7)
    assert as_int(new) == [
        [[[[1, 1], [1, 1]], [[1, 1], [1, 1]]]],
        [[1, 0, 1, 0], [1, 0, 1, 0]],
        [[0, 1], [1, 0], [0, 1]],
    ]
    # For contrast, plain uniform prunes the conv kernel: keep 15 of 22 -> 15/22 * (8, 8, 6)
    # = 5.45, 5.45, 4.09 -> floors 5,5,4 + the one unit to the conv (earliest of the .45 ties).
    new = select("uniform", w, full(*w), 7)
    assert alive(new) == [6, 5, 4]


def test_uniform_plus_first_conv_is_first_ndim3_tensor_not_first_tensor():
    emb = np.array([0.1, 0.2, 0.3, 0.4])  # ndim 1: prunable like any other
    conv1 = np.array([[[[0.01, 0.02], [0.03, 0.04]]]])  # first ndim >= 3: kept as it is
    conv2 = np.array([[[[0.5, 0.6], [0.7, 0.8]]]])  # second conv: prunable
    last = np.array([0.9, 0.11, 0.12, 0.13, 0.14])  # size 5: keeps >= ceil(1.0) = 1
    w = [emb, conv1, conv2, last]
    # 17 alive, remove 9 -> keep 8 = 4 (conv1) + 4 over sizes (4, 4, 5), last >= 1:
    # 13c = 4 -> 1.23, 1.23, 1.54 -> floors 1,1,1 + 1 unit to last (largest remainder) -> 1, 1, 2.
    new = select("uniform_plus", w, full(*w), 9)
    assert as_int(new) == [
        [0, 0, 0, 1],
        [[[[1, 1], [1, 1]]]],
        [[[[0, 0], [0, 1]]]],
        [1, 0, 0, 0, 1],
    ]


def test_uniform_plus_last_floor_is_ceil_of_twenty_percent_and_capped_at_alive():
    first = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    last = np.arange(1, 12) / 100.0  # size 11: 20 % is 2.2 -> at least 3 must stay
    w = [first, last]
    # Remove everything that is allowed: 17 - 3 = 14 -> first empty, last keeps .09 .10 .11.
    new = select("uniform_plus", w, full(*w), 14)
    assert as_int(new) == [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]]
    # One more is infeasible for this criterion.
    with pytest.raises(ValueError, match="Cannot keep 2 weights"):
        select("uniform_plus", w, full(*w), 15)
    # If the last tensor is already below the floor (2 alive < 3), it just keeps what it has.
    masks = [np.ones(6, bool), np.array([1, 1] + [0] * 9, bool)]
    new = select("uniform_plus", w, masks, 6)
    assert as_int(new) == [[0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]]


def test_uniform_plus_cannot_prune_below_its_bounds():
    w = three_tensors()
    # Lower bounds: conv 4 + last 1 = 5, so at most 15 - 5 = 10 can go.
    assert alive(select("uniform_plus", w, full(*w), 10)) == [4, 0, 1]
    with pytest.raises(ValueError, match="Cannot keep 4 weights.*between 5 and 15"):
        select("uniform_plus", w, full(*w), 11)


def test_erk_proportional_to_sum_of_dims_capped_and_exact():
    a = np.arange(1, 10, dtype=float).reshape(3, 3) / 10  # sum of dims 6, size 9
    b = np.array([0.01, 0.02])  # sum of dims 2, size 2
    c = np.array([0.11, 0.12, 0.13, 0.14])  # sum of dims 4, size 4
    w = [a, b, c]
    # Keep 6 of 15: 6c + 2c + 4c = 6 -> c = 1/2 -> 3, 1, 2 (desire is NOT the size: uniform would
    # give 9/15*6, ... = 3.6, 0.8, 1.6).
    new = select("erk", w, full(*w), 9)
    assert as_int(new) == [[[0, 0, 0], [0, 0, 0], [1, 1, 1]], [0, 1], [0, 0, 1, 1]]
    # Keep 13: b and c are capped at their 2 and 4 alive, 6c + 2 + 4 = 13 -> c = 7/6 -> a keeps 7.
    new = select("erk", w, full(*w), 2)
    assert alive(new) == [7, 2, 4]
    assert as_int(new) == [[[0, 0, 1], [1, 1, 1], [1, 1, 1]], [1, 1], [1, 1, 1, 1]]


def test_erk_caps_at_alive_after_earlier_pruning():
    a = np.array([[0.1, 0.2], [0.3, 0.4]])  # sum of dims 4
    b = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])  # sum of dims 6
    masks = [np.array([[False, False], [False, True]]), np.ones(6, bool)]
    # 7 alive, keep 5: min(4c, 1) + 6c = 5 -> c = 2/3 -> a keeps its 1, b keeps 4.
    new = select("erk", [a, b], masks, 2)
    assert as_int(new) == [[[0, 0], [0, 1]], [0, 0, 1, 1, 1, 1]]


def test_lamp_scores_definition_and_shared_ties():
    w = np.array([3.0, -1.0, 1.0, 2.0])
    # Squares 9, 1, 1, 4. Score = w^2 / (sum of squares with magnitude >= |w|):
    #   3 -> 9/9, each 1 -> 1/(9+4+1+1) (the two equal magnitudes share one score), 2 -> 4/(9+4).
    scores = _lamp_scores(w, np.ones(4, bool))
    assert scores.tolist() == [1.0, 1 / 15, 1 / 15, 4 / 13]


def test_lamp_scores_use_only_alive_weights():
    w = np.array([3.0, -1.0, 10.0, 2.0, 0.5])
    mask = np.array([True, True, False, True, False])
    # The dead 10 and 0.5 do not enter any denominator and score 0: 3 -> 1, 1 -> 1/14, 2 -> 4/13.
    assert _lamp_scores(w, mask).tolist() == [1.0, 1 / 14, 0.0, 4 / 13, 0.0]
    assert _lamp_scores(w, np.zeros(5, bool)).tolist() == [0.0] * 5


def test_lamp_ranks_globally_and_differs_from_magnitude():
    a = np.array([1.0, 2.0, 10.0])  # the 10 is dead
    b = np.array([3.0, -3.0, 6.0])
    masks = [np.array([True, True, False]), np.ones(3, bool)]
    # Scores: a: 1 -> 1/5 = .2, 2 -> 1.  b: each 3 -> 9/54 = 1/6 (shared), 6 -> 1.
    # (With the dead 10 counted, a's 1 would score 1/105 and go first.)
    assert as_int(select("lamp", [a, b], masks, 1)) == [[1, 1, 0], [0, 1, 1]]  # tie: lower index
    assert as_int(select("lamp", [a, b], masks, 2)) == [[1, 1, 0], [0, 0, 1]]
    assert as_int(select("lamp", [a, b], masks, 3)) == [[0, 1, 0], [0, 0, 1]]
    # Then the three scores of 1: the earlier tensor goes first.
    assert as_int(select("lamp", [a, b], masks, 4)) == [[0, 0, 0], [0, 0, 1]]
    # Magnitude pruning would instead remove a's 1 first.
    assert as_int(select("global", [a, b], masks, 1)) == [[0, 1, 0], [1, 1, 1]]


# --------------------------------------------------------------------------------------------------
# Properties shared by all criteria, checked with literal expectations
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_never_revives_pruned_weights_even_when_large(name):
    a = np.array([100.0, 0.3, 0.1, 0.2])
    b = np.array([0.05, -50.0, 0.4, 0.25])
    masks = [np.array([False, True, True, True]), np.array([True, False, True, True])]
    # Every criterion removes .1 from a and .05 from b here:
    #  global: the two smallest alive magnitudes; uniform/uniform_plus/erk: 2 + 2 kept (equal sizes,
    #  equal dims); lamp: b .05 -> .0025/.225 = .011, a .1 -> .01/.14 = .071 are the lowest scores.
    new = select(name, [a, b], masks, 2)
    assert as_int(new) == [[0, 1, 0, 1], [0, 0, 1, 1]]
    assert_subset(new, masks)


@pytest.mark.parametrize(
    "name, expected",
    [
        # Only .3/.2 (a) and .5/.4 (b) are alive; the dead .0001 and .001 are never candidates.
        ("global", [[0, 1, 0], [1, 0, 1]]),  # smallest alive: .2
        # Keep 3 over equal sizes 3, 3: 1.5 + 1.5 -> the earlier tensor gets the unit: a 2, b 1.
        ("uniform", [[0, 1, 1], [1, 0, 0]]),
        ("uniform_plus", [[0, 1, 1], [1, 0, 0]]),  # no conv, last floor ceil(.6) = 1: as uniform
        ("erk", [[0, 1, 1], [1, 0, 0]]),  # equal dims: as uniform
        ("lamp", [[0, 1, 0], [1, 0, 1]]),  # a .2 -> .04/.13 = .31 < b .4 -> .16/.41 = .39
    ],
)
def test_dead_tiny_weights_are_not_ranked(name, expected):
    a = np.array([0.0001, 0.3, 0.2])
    b = np.array([0.5, 0.001, 0.4])
    masks = [np.array([False, True, True]), np.array([True, False, True])]
    new = select(name, [a, b], masks, 1)
    assert as_int(new) == expected
    assert sum(alive(new)) == 3


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_count_zero_and_count_all(name):
    w = [np.array([0.3, 0.1]), np.array([0.2, 0.4, 0.5])]
    masks = [np.array([True, False]), np.array([True, True, True])]
    assert as_int(select(name, w, masks, 0)) == [[1, 0], [1, 1, 1]]
    if name == "uniform_plus":
        # The last tensor must keep ceil(0.2 * 3) = 1 weight: 3 of 4 is the most it removes.
        assert as_int(select(name, w, masks, 3)) == [[0, 0], [0, 0, 1]]
        with pytest.raises(ValueError, match="Cannot keep 0 weights"):
            select(name, w, masks, 4)
    else:
        assert as_int(select(name, w, masks, 4)) == [[0, 0], [0, 0, 0]]


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_successive_cycles_exact(name):
    w = three_tensors()
    masks = full(*w)
    previous = masks
    expected_alive = [11, 8, 6]
    for cycle, count in enumerate(CYCLE_COUNTS):
        new = select(name, w, previous, count)
        assert_subset(new, previous)
        assert sum(alive(new)) == expected_alive[cycle]
        assert [m.reshape(-1).astype(int).tolist() for m in new] == MULTI_CYCLE_EXPECTED[name][cycle]
        assert [m.shape for m in new] == [(1, 1, 2, 2), (2, 3), (5,)]
        previous = new


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_select_does_not_modify_inputs(name):
    w = three_tensors()
    w_before = [x.copy() for x in w]
    masks = [np.array([[[[True, False], [True, True]]]]), np.ones((2, 3), bool), np.ones(5, bool)]
    masks_before = [m.copy() for m in masks]
    select(name, w, masks, 3)
    for x, y in zip(w, w_before):
        np.testing.assert_array_equal(x, y)
    for m, n in zip(masks, masks_before):
        np.testing.assert_array_equal(m, n)


# --------------------------------------------------------------------------------------------------
# Tie-breaking by position
# --------------------------------------------------------------------------------------------------
def test_global_ties_earlier_tensor_then_lower_index():
    a = np.array([0.3, 0.1, 0.2])
    b = np.array([-0.1, 0.1, 0.5])
    # Three weights of magnitude .1: a[1], b[0], b[1] (sign does not matter), removed in that order.
    assert as_int(select("global", [a, b], full(a, b), 1)) == [[1, 0, 1], [1, 1, 1]]
    assert as_int(select("global", [a, b], full(a, b), 2)) == [[1, 0, 1], [0, 1, 1]]
    assert as_int(select("global", [a, b], full(a, b), 3)) == [[1, 0, 1], [0, 0, 1]]


def test_global_ties_within_a_tensor_follow_c_order():
    a = np.full((2, 3), 0.5)
    # All equal: the lowest flat (C-order) indices go first: (0,0), (0,1), (0,2), (1,0).
    assert as_int(select("global", [a], full(a), 4)) == [[[0, 0, 0], [0, 1, 1]]]


def test_global_ties_skip_dead_positions():
    a = np.array([0.5, 0.5, 0.5, 0.5])
    masks = [np.array([False, True, False, True])]
    assert as_int(select("global", [a], masks, 1)) == [[0, 0, 0, 1]]


def test_uniform_ties_within_layer_lower_index_first():
    a = np.array([0.5, -0.5, 0.5, 0.5])
    b = np.array([0.2, 0.2, 0.1, 0.2])
    # Keep 2 + 2: in a all tie -> indices 0, 1 go; in b the .1 goes, then the first .2 (index 0).
    assert as_int(select("uniform", [a, b], full(a, b), 4)) == [[0, 0, 1, 1], [0, 1, 0, 1]]


def test_identical_inputs_give_identical_masks():
    w = [np.array([0.2, 0.2]), np.array([0.2, -0.2])]
    results = {tuple(map(tuple, as_int(select("lamp", w, full(*w), 3)))) for _ in range(3)}
    # All four LAMP scores tie at .04 / .08 = 1/2 (equal magnitudes share one score): position order.
    assert results == {((0, 0), (0, 1))}


# --------------------------------------------------------------------------------------------------
# _allocate
# --------------------------------------------------------------------------------------------------
def test_allocate_proportional_with_largest_remainders():
    # 10 * (1, 1, 2) / 4 = 2.5, 2.5, 5 -> floors 2, 2, 5; the unit goes to the earlier .5 remainder.
    counts = _allocate(10, np.array([1.0, 1.0, 2.0]), np.zeros(3, int), np.array([10, 10, 10]))
    assert counts.tolist() == [3, 2, 5]


def test_allocate_respects_lower_and_upper():
    # clip(c, 0, 5) + clip(c, 3, 5) = 4 -> c = 1 -> 1, 3.
    assert _allocate(4, np.array([1.0, 1.0]), np.array([0, 3]), np.array([5, 5])).tolist() == [1, 3]
    # clip(c, 0, 1) + clip(c, 0, 9) = 6 -> 1, 5.
    assert _allocate(6, np.array([1.0, 1.0]), np.array([0, 0]), np.array([1, 9])).tolist() == [1, 5]
    # Bounds equal: nothing to choose.
    assert _allocate(7, np.array([1.0, 1.0]), np.array([3, 4]), np.array([3, 4])).tolist() == [3, 4]


def test_allocate_zero_desire_falls_back_to_room():
    # No desire anywhere: split by room (upper - lower) = (2, 4) -> 3 * (1/3, 2/3) = 1, 2.
    assert _allocate(3, np.array([0.0, 0.0]), np.array([0, 0]), np.array([2, 4])).tolist() == [1, 2]


@pytest.mark.parametrize(
    "total, lower, upper, message",
    [
        (10, [0, 0], [4, 5], "Cannot keep 10 weights.*between 0 and 9"),
        (2, [1, 2], [4, 5], "Cannot keep 2 weights.*between 3 and 9"),
        (-1, [0, 0], [4, 5], "Cannot keep -1 weights"),
    ],
)
def test_allocate_infeasible_raises(total, lower, upper, message):
    with pytest.raises(ValueError, match=message):
        _allocate(total, np.array([1.0, 1.0]), np.array(lower), np.array(upper))


# --------------------------------------------------------------------------------------------------
# select(): input handling and errors
# --------------------------------------------------------------------------------------------------
def test_select_accepts_nonbool_masks_and_numpy_int_count():
    w = [np.array([0.3, 0.1, 0.2]), np.array([0.4, 0.05])]
    masks = [np.array([1, 0, 1]), np.array([1.0, 1.0])]
    new = select("global", w, masks, np.int64(2))
    # Alive: .3, .2, .4, .05 -> remove .05 and .2.
    assert as_int(new) == [[1, 0, 0], [1, 0]]


def test_select_unknown_criterion():
    w = [np.array([0.1, 0.2])]
    with pytest.raises(ValueError, match=r"`selection`.*selection='magnitude'"):
        select("magnitude", w, full(*w), 1)


@pytest.mark.parametrize("count", [-1, 4, 1.0, 2.5, True, False, "1", None])
def test_select_bad_count(count):
    w = [np.array([0.1, 0.2]), np.array([0.3, 0.4])]
    masks = [np.array([True, True]), np.array([True, False])]  # 3 alive
    with pytest.raises(ValueError, match=r"`count` must be an integer in \[0, 3\]"):
        select("global", w, masks, count)


def test_select_count_error_message_shows_value():
    w = [np.array([0.1, 0.2])]
    with pytest.raises(ValueError, match=r"Received: count=True"):
        select("global", w, full(*w), True)
    with pytest.raises(ValueError, match=r"Received: count=3"):
        select("global", w, full(*w), 3)


def test_select_shape_mismatch():
    w = [np.array([0.1, 0.2]), np.zeros((2, 2))]
    masks = [np.ones(2, bool), np.ones(4, bool)]
    with pytest.raises(ValueError, match=r"Tensor 1: weight shape \(2, 2\) differs from mask shape \(4,\)"):
        select("global", w, masks, 1)


def test_select_length_mismatch_and_empty():
    w = [np.array([0.1, 0.2]), np.array([0.3])]
    with pytest.raises(ValueError, match="2 weights and 1 masks"):
        select("global", w, [np.ones(2, bool)], 1)
    with pytest.raises(ValueError, match="0 weights and 0 masks"):
        select("global", [], [], 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_select_refuses_non_finite_weights(bad):
    w = [np.array([0.1, 0.2]), np.array([0.3, bad])]
    masks = [np.ones(2, bool), np.array([True, False])]  # even when the bad weight is dead
    with pytest.raises(ValueError, match="Tensor 1 has NaN or Inf weights"):
        select("global", w, masks, 1)


def test_custom_criterion_wrong_count_raises():
    def keeps_everything(weights, masks, count):
        return [m.copy() for m in masks]

    def removes_one_too_many(weights, masks, count):
        return global_magnitude(weights, masks, count + 1)

    w = [np.array([0.1, 0.2, 0.3])]
    with pytest.raises(ValueError, match="removed 0 alive weights instead of count=1"):
        select(keeps_everything, w, full(*w), 1)
    with pytest.raises(ValueError, match="removed 2 alive weights instead of count=1"):
        select(removes_one_too_many, w, full(*w), 1)


def test_custom_criterion_cannot_revive():
    def revive_and_remove(weights, masks, count):
        # Revives index 1 (dead) and drops index 2: returned as ints to test the conversion too.
        return [np.array([1, 1, 0, 1])]

    w = [np.array([0.4, 9.0, 0.1, 0.3])]
    old = [np.array([True, False, True, True])]
    new = select(revive_and_remove, w, old, 1)
    # Clipped to the old mask: index 1 stays dead, exactly one (index 2) removed.
    assert as_int(new) == [[1, 0, 0, 1]]


def test_custom_criterion_revivals_do_not_offset_a_shortfall():
    def revive_only(weights, masks, count):
        # Always revives index 1 and removes index 3, whatever `count` is.
        return [np.array([True, True, True, False])]

    w = [np.array([0.4, 9.0, 0.1, 0.3])]
    old = [np.array([True, False, True, True])]
    # After clipping: [1, 0, 1, 0] -> one removed: valid for count=1 ...
    assert as_int(select(revive_only, w, old, 1)) == [[1, 0, 1, 0]]
    # ... but not for count=2: the revival does not make up for the missing removal.
    with pytest.raises(ValueError, match="removed 1 alive weights instead of count=2"):
        select(revive_only, w, old, 2)


def test_custom_criterion_returning_too_few_masks_raises():
    weights = [np.array([1.0, 2.0]), np.array([3.0])]
    masks = [np.ones(2, bool), np.ones(1, bool)]
    with pytest.raises(ValueError, match="returned 1 masks for 2 tensors"):
        select(lambda w, m, c: [np.array([False, True])], weights, masks, 1)


# --------------------------------------------------------------------------------------------------
# select_blocks: global magnitude over whole blocks of 2-D tensors
# --------------------------------------------------------------------------------------------------
def assert_whole_blocks(mask, block):
    rows, cols = mask.shape
    for r in range(0, rows, block[0]):
        for c in range(0, cols, block[1]):
            piece = mask[r : r + block[0], c : c + block[1]]
            assert piece.all() or not piece.any(), f"block at ({r}, {c}) is partly pruned: {piece.astype(int).tolist()}"


def test_select_blocks_docstring_example_runs_as_doctest():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(select_blocks, globs={"np": np, "select_blocks": select_blocks}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries == 3


def test_select_blocks_one_threshold_over_block_means_and_single_weights():
    # a (4, 2) in (2, 1) blocks, C-order over the 2 x 2 grid of blocks:
    #   (0,0) mean(.1, .2) = .15   (0,1) mean(.9, .8) = .85   (1,0) mean(.3, .5) = .4   (1,1) mean(.7, .6) = .65
    # b unstructured: .05, .38, .5. Ranked: .05 (1), .15 (2), .38 (1), .4 (2), .5 (1), .65 (2), .85 (2).
    a = np.array([[0.1, -0.9], [0.2, 0.8], [-0.3, 0.7], [0.5, 0.6]])
    b = np.array([0.05, -0.38, 0.5])
    blocks = [(2, 1), None]
    # count 4: prefix totals 0, 1, 3, 4 -> exactly 4: .05, block (0,0), .38.
    assert as_int(select_blocks([a, b], full(a, b), 4, blocks)) == [[[0, 1], [0, 1], [1, 1], [1, 1]], [0, 0, 1]]
    # count 5: totals 3, 4, 6 -> 4 and 6 are both 1 away: the smaller prefix (4) wins.
    assert as_int(select_blocks([a, b], full(a, b), 5, blocks)) == [[[0, 1], [0, 1], [1, 1], [1, 1]], [0, 0, 1]]
    # count 2: totals 1, 3 -> both 1 away: 1.
    assert as_int(select_blocks([a, b], full(a, b), 2, blocks)) == [[[1, 1], [1, 1], [1, 1], [1, 1]], [0, 1, 1]]
    # count 10 (all): every unit goes.
    assert alive(select_blocks([a, b], full(a, b), 11, blocks)) == [0, 0]


def test_select_blocks_ragged_edge_blocks_score_their_own_mean():
    # a (6, 2) in (4, 1) blocks: rows 0-3 and rows 4-5 (an edge block of 2) per column.
    #   (0,0) mean(.1, .1, .1, .1) = .1   (0,1) mean(.5, .5, .5, .5) = .5
    #   (1,0) mean(.2, .0) = .1 (a tie with (0,0): position order, (0,0) first)   (1,1) mean(.9, .9) = .9
    a = np.array([[0.1, 0.5]] * 4 + [[0.2, 0.9], [0.0, 0.9]])
    new = select_blocks([a], full(a), 4, [(4, 1)])
    assert as_int(new) == [[[0, 1]] * 4 + [[1, 1], [1, 1]]]
    # Totals 0, 4, 6: 5 is 1 away from both, so the 4-block goes alone; 6 takes the edge block too.
    assert alive(select_blocks([a], full(a), 5, [(4, 1)])) == [8]
    assert as_int(select_blocks([a], full(a), 6, [(4, 1)])) == [[[0, 1]] * 4 + [[0, 1], [0, 1]]]


def test_select_blocks_partly_pruned_block_counts_dead_as_zero_and_goes_whole():
    # Block (0,0) holds .9, .9, .9 alive and one dead entry: mean (.9 * 3 + 0) / 4 = .675 < .8 of
    # block (0,1); removing it removes its 3 alive weights.
    a = np.array([[0.9, 0.8], [0.9, 0.8], [0.9, 0.8], [5.0, 0.8]])
    masks = [np.array([[1, 1], [1, 1], [1, 1], [0, 1]], bool)]
    new = select_blocks([a], masks, 3, [(4, 1)])
    assert as_int(new) == [[[0, 1], [0, 1], [0, 1], [0, 1]]]
    assert_subset(new, masks)


def test_select_blocks_without_blocks_is_global_magnitude():
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = [rng.normal(size=(5, 4)), rng.normal(size=(3, 3, 2)), rng.normal(size=7).round(1)]  # rounding makes ties
        masks = [rng.random(np.shape(x)) < 0.8 for x in w]
        count = int(rng.integers(0, sum(alive(masks)) + 1))
        expected = select("global", w, masks, count)
        assert as_int(select_blocks(w, masks, count, [None, None, None])) == as_int(expected)


def test_select_blocks_cycles_keep_whole_blocks_monotone_and_within_half_a_block():
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(16, 12))  # a Dense kernel [in, out] in (4, 1) blocks
    conv = rng.normal(size=(3, 3, 2, 4))  # unstructured
    weights, masks = [dense, conv], full(dense, conv)
    n_alive = dense.size + conv.size
    for count in (100, 60, 30, 20):
        new = select_blocks(weights, masks, count, [(4, 1), None])
        assert_subset(new, masks)
        assert_whole_blocks(new[0], (4, 1))
        removed = n_alive - sum(alive(new))
        assert abs(removed - count) <= 2, (count, removed)
        masks, n_alive = new, n_alive - removed


def test_select_blocks_does_not_modify_inputs():
    a = np.arange(8.0).reshape(4, 2)
    masks = [np.ones((4, 2), bool)]
    select_blocks([a], masks, 4, [(2, 2)])
    np.testing.assert_array_equal(a, np.arange(8.0).reshape(4, 2))
    assert masks[0].all()


@pytest.mark.parametrize(
    "weights, block_sizes, message",
    [
        ([np.ones((4, 4))], [(4,)], r"`block_sizes\[0\]` must be a tuple of 2 positive integers.*Received: block_sizes\[0\]=\(4,\)"),
        ([np.ones((4, 4))], [(0, 1)], r"block_sizes\[0\]=\(0, 1\)"),
        ([np.ones((4, 4))], [(4.0, 1)], r"block_sizes\[0\]=\(4.0, 1\)"),
        ([np.ones((4, 4))], [(True, 1)], r"block_sizes\[0\]=\(True, 1\)"),
        ([np.ones((4, 4))], ["41"], r"block_sizes\[0\]='41'"),
        ([np.ones((2, 2, 2))], [(4, 1)], r"Tensor 0 has shape \(2, 2, 2\); only 2-D tensors"),
        ([np.ones((4, 4)), np.ones(3)], [(4, 1)], r"one entry per tensor \(2\). Received: 1 entries"),
    ],
)
def test_select_blocks_bad_block_sizes(weights, block_sizes, message):
    with pytest.raises(ValueError, match=message):
        select_blocks(weights, full(*weights), 1, block_sizes)


def test_select_blocks_checks_count_like_select():
    a = np.ones((4, 4))
    with pytest.raises(ValueError, match=r"`count` must be an integer in \[0, 16\]"):
        select_blocks([a], full(a), 17, [(4, 1)])


# -- per-tensor floor (min_alive) -------------------------------------------------------------------


def test_floors_of_a_count_and_of_a_fraction_capped_at_alive():
    assert floors(None, [1000, 50], [1000, 20]).tolist() == [0, 0]
    assert floors(0.01, [1000, 50], [1000, 20]).tolist() == [10, 1]
    assert floors(3, [1000, 50], [1000, 2]).tolist() == [3, 2]
    assert floors(100, [10, 50], [10, 50]).tolist() == [10, 50]


def test_a_fraction_floor_is_the_ceiling_of_the_decimal_written():
    # In binary floating point 0.07 * 100 = 7.000000000000001 and 0.28 * 100 = 28.000000000000004.
    assert floors(0.07, [100, 200, 101], [100, 200, 101]).tolist() == [7, 14, 8]
    assert floors(0.28, [100], [100]).tolist() == [28]
    assert floors(np.float32(0.07), [100], [100]).tolist() == [7]
    # Every weight of the first tensor is smaller than the second's: removing 95 of 110 would leave
    # it 5; its floor keeps 7 (not 8) and the second tensor gives up the other 2.
    w = [np.arange(1, 101, dtype=np.float32).reshape(10, 10) / 100, np.arange(10, 20, dtype=np.float32)]
    m = [np.ones((10, 10), bool), np.ones(10, bool)]
    kept = select("global", w, m, 95, min_alive=0.07)
    assert [int(x.sum()) for x in kept] == [7, 8]


def test_global_floor_keeps_each_tensors_best_weights():
    w = [np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]), np.array([0.01, -0.02, 0.03, -0.04])]
    m = [np.ones((2, 3), bool), np.ones(4, bool)]
    assert [x.astype(int).tolist() for x in select("global", w, m, 5)] == [[[0, 1, 1], [1, 1, 1]], [0, 0, 0, 0]]
    assert [x.astype(int).tolist() for x in select("global", w, m, 5, min_alive=2)] == [[[0, 0, 0], [1, 1, 1]], [0, 0, 1, 1]]
    assert [x.astype(int).tolist() for x in select("global", w, m, 5, min_alive=0.5)] == [[[0, 0, 0], [1, 1, 1]], [0, 0, 1, 1]]
    with pytest.raises(ValueError, match=re.escape("Cannot remove 6 weights: the per-tensor floor (`min_alive`) keeps 5 of them, so at most 5 can go.")):
        select("global", w, m, 6, min_alive=0.5)


def test_global_floor_ties_keep_the_later_positions():
    w = [np.ones(4), np.full(2, 5.0)]
    m = [np.ones(4, bool), np.ones(2, bool)]
    assert [x.astype(int).tolist() for x in select("global", w, m, 3, min_alive=1)] == [[0, 0, 0, 1], [1, 1]]


def _greedy_with_floor(weights, masks, count, floor):
    """Removes the lowest alive |w| `count` times over tensors above their floor; ties earlier tensor, lower index."""
    masks = [m.reshape(-1).copy() for m in masks]
    flat = [np.abs(w).reshape(-1) for w in weights]
    for _ in range(count):
        best = None
        for t, (w, m) in enumerate(zip(flat, masks)):
            if np.count_nonzero(m) <= floor[t]:
                continue
            i = np.flatnonzero(m)[np.argmin(w[m])]
            if best is None or w[i] < best[0]:
                best = (w[i], t, i)
        masks[best[1]][best[2]] = False
    return [m.reshape(np.shape(w)) for m, w in zip(masks, weights)]


@pytest.mark.parametrize("seed", range(6))
def test_global_floor_equals_greedy_removal_skipping_tensors_at_their_floor(seed):
    rng = np.random.default_rng(seed)
    weights = [rng.integers(-3, 4, shape).astype(float) for shape in [(4, 5), (7,), (3, 3)]]  # many ties
    masks = [rng.random(w.shape) < 0.8 for w in weights]
    alive = [int(np.count_nonzero(m)) for m in masks]
    floor = floors(3, [w.size for w in weights], alive)
    count = int(sum(alive) - floor.sum() - rng.integers(0, 4))
    expected = _greedy_with_floor(weights, masks, count, floor)
    assert [x.tolist() for x in select("global", weights, masks, count, min_alive=3)] == [x.tolist() for x in expected]


@pytest.mark.parametrize("name", sorted(CRITERIA))
@pytest.mark.parametrize("min_alive", [3, 0.02])
def test_every_criterion_keeps_the_floor_and_removes_exactly_count(name, min_alive):
    rng = np.random.default_rng(1)
    shapes = [(3, 3, 1, 4), (36, 10), (10, 5)]  # 36 + 360 + 50 = 446
    weights = [rng.standard_normal(s) for s in shapes]
    masks = [np.ones(s, bool) for s in shapes]
    new = select(name, weights, masks, 386, min_alive=min_alive)
    alive = [int(np.count_nonzero(m)) for m in new]
    assert sum(alive) == 60
    assert all(a >= f for a, f in zip(alive, floors(min_alive, [36, 360, 50], [36, 360, 50])))


def test_max_removable_with_a_floor():
    assert max_removable("global", [(10,), (100,)], 0.05) == 110 - (1 + 5)
    assert max_removable("lamp", [(10,), (100,)], 20) == 110 - (10 + 20)
    assert max_removable("uniform_plus", [(3, 3, 1, 8), (72, 10)], 3) == 576
    assert max_removable("uniform_plus", [(3, 3, 1, 8), (72, 10)], 200) == 792 - (72 + 200)


@pytest.mark.parametrize("bad", [0, -1, 1.0, 0.0, True, "1%", 1.5])
def test_min_alive_bad_values(bad):
    w, m = [np.ones(4)], [np.ones(4, bool)]
    with pytest.raises(ValueError, match=re.escape(f"Received: min_alive={bad!r}")):
        select("global", w, m, 1, min_alive=bad)


def test_min_alive_refused_for_a_custom_criterion():
    with pytest.raises(ValueError, match="`min_alive` applies to the built-in criteria"):
        select(lambda w, m, c: [x.copy() for x in m], [np.ones(4)], [np.ones(4, bool)], 0, min_alive=1)
