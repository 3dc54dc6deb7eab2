"""GMP's decisions on NumPy arrays (imp_keras.core.gradual): the window in steps, the exact count
of every update, monotone masks, resume checks and refused set-ups. No Keras.

Common set-up: a window from epoch 1 to epoch 3 of a 4-epoch run of 4 steps, updates every 2 steps:
positions 4, 6, 8, 10 and 12; t = 0, 1/4, 1/2, 3/4, 1.
"""

import re

import numpy as np
import pytest

from imp_keras.core.gradual import CubicSchedule, GradualRun, Window, gmp_rung_name
from imp_keras.core.rules import InvariantError
from imp_keras.core.selection import CRITERIA

SCHEDULE = CubicSchedule(0.9, begin=1, end=3, unit="epoch", frequency=2)
WINDOW = Window(4, 12, 2)
SHAPES = [(12, 8), (8, 3)]  # 96 + 24 = 120 weights
N = 120


def cubic_alive(t: float) -> int:
    return N - round(0.9 * (1 - (1 - t) ** 3) * N)


def weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]


def full_masks() -> list[np.ndarray]:
    return [np.ones(shape, bool) for shape in SHAPES]


def run(selection="global", block_sizes=(None, None)) -> GradualRun:
    return GradualRun(SCHEDULE, WINDOW, selection, ["fc1/kernel", "logits/kernel"], SHAPES, list(block_sizes))


def test_window_in_steps_for_each_unit():
    assert SCHEDULE.window(epochs=4, steps_per_epoch=4) == WINDOW
    assert CubicSchedule(0.9, 0.25, 0.75, "fraction", 2).window(4, 4) == WINDOW
    assert CubicSchedule(0.9, 4, 12, "step", 2).window(None, None) == WINDOW
    assert CubicSchedule(0.9, 0.5, 1.5, "epoch", 3).window(None, 10) == Window(5, 15, 3)
    assert WINDOW.updates == 5 and Window(5, 15, 3).updates == 5  # 5, 8, 11, 14 and 15
    assert [WINDOW.last_update(p) for p in (0, 3, 4, 5, 6, 11, 12, 40)] == [None, None, 4, 4, 6, 10, 12, 12]
    assert [WINDOW.previous_update(u) for u in (4, 6, 12)] == [None, 4, 10]
    assert [Window(5, 15, 3).previous_update(15)] == [14]


@pytest.mark.parametrize(
    "args, message",
    [
        ((5, 5, 1), "A window needs begin_step < end_step. Received: begin_step=5, end_step=5"),
        ((0, 10, 0), "`frequency` must be an integer >= 1. Received: frequency=0"),
        ((-1, 10, 1), "`begin_step` must be an integer >= 0. Received: begin_step=-1"),
    ],
)
def test_bad_windows_are_refused(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Window(*args)


def test_half_step_window_edges_round_up_at_both_ends():
    # 2.5 and 3.5 steps: [3, 4), where Python's round (half to even) gave [2, 4).
    assert CubicSchedule(0.5, 0.25, 0.35, "fraction", 1).window(10, 1) == Window(3, 4, 1)
    assert CubicSchedule(0.5, 0.5, 1.5, "epoch", 1).window(None, 5) == Window(3, 8, 1)


def test_alive_after_every_update_is_the_cubic_count_and_exact_at_the_end():
    # s(t) = 0.9 (1 - (1 - t)^3): 0, 0.5203, 0.7875, 0.8859, 0.9 of 120 -> 0, 62, 94, 106, 108 pruned.
    alive = [SCHEDULE.alive_at(WINDOW, u, N) for u in (None, 4, 6, 8, 10, 12)]
    assert alive == [120, 120, 58, 26, 14, 12]
    assert alive[1:] == [cubic_alive(t) for t in (0, 0.25, 0.5, 0.75, 1)]
    # A goal whose cubic value at t = 1 is not exactly S * n in floating point still ends at round(S * n).
    assert CubicSchedule(0.7, 0, 10, "step", 1).alive_at(Window(0, 10, 1), 10, 1000) == 300


@pytest.mark.parametrize("selection", sorted(CRITERIA))
def test_updates_remove_exactly_the_schedules_count_and_never_revive(selection):
    gmp = run(selection)
    masks, w = full_masks(), weights()
    assert gmp.start(0, masks) is False and gmp.due(3) is None
    history = []
    for position in range(17):
        update = gmp.due(position)
        if update is not None:
            assert update == position
            new = gmp.update(update, w, masks)
            for old_mask, new_mask in zip(masks, new):
                assert not np.any(new_mask & ~old_mask)
            masks = new
            history.append((update, sum(int(m.sum()) for m in masks)))
        w = [x * 1.01 for x in w]  # training moves the weights between updates
    assert history == [(4, 120), (6, 58), (8, 26), (10, 14), (12, 12)]
    assert gmp.finished and gmp.sparsity == pytest.approx(0.9)


def test_block_sparsity_lands_within_half_a_block_and_keeps_blocks_whole():
    gmp = run(block_sizes=[(4, 1), None])
    masks = full_masks()
    gmp.start(4, masks)
    for update in (4, 6, 8, 10, 12):
        masks = gmp.update(update, weights(), masks)
        assert abs(gmp.alive - SCHEDULE.alive_at(WINDOW, update, N)) <= 2
        fc = masks[0]
        for row in range(0, 12, 4):
            block = fc[row : row + 4]
            assert (block.all(axis=0) | ~block.any(axis=0)).all()


def test_start_accepts_masks_done_or_one_update_behind_and_refuses_others():
    gmp, w = run(), weights()
    after_6 = gmp.update(6, w, full_masks())
    after_8 = run().update(8, w, full_masks())
    # A backup saved before the update at 8 (listed before GMPCallback): the update is still due.
    resumed = run()
    assert resumed.start(8, after_6) is True and resumed.due(8) == 8
    # A backup saved after it: nothing due until 10.
    resumed = run()
    assert resumed.start(8, after_8) is False and resumed.due(9) is None and resumed.due(10) == 10
    # One update behind is a backup only at the update's own position.
    with pytest.raises(ValueError, match=r"At step 9, 58 of 120 prunable weights are alive, but GMP's schedule has 26\. "
                                         r"These masks do not come from this run"):
        run().start(9, after_6)
    with pytest.raises(ValueError, match=r"At step 0, 58 of 120 .* schedule has 120"):
        run().start(0, after_6)


def test_check_alive_raises_an_invariant_error():
    gmp = run()
    gmp.start(12, gmp.update(12, weights(), full_masks()))
    gmp.check_alive(12, " at the end")
    with pytest.raises(InvariantError, match=r"invariants broken at the end:\n  - 13 of 120 .* schedule has 12"):
        gmp.check_alive(13, " at the end")


def test_nan_weights_are_refused_at_an_update():
    w = weights()
    w[1][0, 0] = np.nan
    with pytest.raises(FloatingPointError, match=r"Cannot prune at step 6 \(GMP, sparsity 52.03%\): logits/kernel hold NaN"):
        run().update(6, w, full_masks())


def test_goal_the_selection_cannot_reach_is_refused():
    shapes = [(3, 3, 1, 8), (72, 10)]  # uniform_plus keeps the first convolution (72) and 144 of the last
    schedule = CubicSchedule(0.9, 0, 10, "step", 1)
    with pytest.raises(ValueError, match=r"goal_sparsity=0.9 needs 713 of the 792 .* can remove at most 576"):
        GradualRun(schedule, schedule.window(None, None), "uniform_plus", ["conv", "fc"], shapes, [None, None])


@pytest.mark.parametrize(
    "arguments, window_args, message",
    [
        (dict(goal_sparsity=1.0), None, r"`goal_sparsity` must be in \[0, 1\). Received: goal_sparsity=1.0"),
        (dict(unit="batch"), None, r"`unit` must be one of \('fraction', 'epoch', 'step'\). Received: unit='batch'"),
        (dict(begin=0.5, end=0.5), None, r"needs 0 <= begin < end <= 1 \(unit='fraction'\). Received: begin=0.5, end=0.5"),
        (dict(end=1.5), None, r"needs 0 <= begin < end <= 1"),
        (dict(begin=-1, unit="epoch"), None, r"`begin` must be a finite number >= 0. Received: begin=-1"),
        (dict(begin=0, end=2.5, unit="step"), None, r"`end` must be an integer >= 0. Received: end=2.5"),
        (dict(frequency=0), None, r"`frequency` must be an integer >= 1. Received: frequency=0"),
        (dict(begin=1, end=5, unit="epoch"), (4, 4), r"ends at step 20 \(end=5.0, unit='epoch'\), after the run's 16 steps "
                                                     r"\(4 epochs of 4\): GMP would never reach goal_sparsity=0.9"),
        (dict(begin=0, end=0.1, unit="epoch"), (4, 4), r"is empty in optimizer steps: it begins and ends at step 0"),
        (dict(), (None, 4), r"unit='fraction' needs the run's `epochs` and `steps_per_epoch`"),
        (dict(unit="epoch", begin=0, end=1), (4, None), r"unit='epoch' needs the run's `steps_per_epoch`"),
    ],
)
def test_bad_schedules_are_refused(arguments, window_args, message):
    values = dict(goal_sparsity=0.9, begin=0.1, end=0.5, unit="fraction", frequency=2)
    values.update(arguments)
    with pytest.raises(ValueError, match=message):
        CubicSchedule(**values).window(*window_args)


def test_config_round_trip_and_rung_name():
    assert CubicSchedule.from_config(SCHEDULE.get_config()) == SCHEDULE
    assert gmp_rung_name(0.9) == "gmp_sparsity90.00.keras"
