"""The benchmarks' smoke modes: each runs in seconds on synthetic data and writes a complete report.

The measurements themselves are in BENCHMARKS.md; these only keep the scripts working.
"""

import json
import math

import pytest

from benchmarks import accuracy, baselines, overhead, selection


def finite(value) -> bool:
    """True when every number inside `value` (nested dicts and lists) is finite."""
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def read(directory, name):
    for suffix in (".png", ".md"):
        assert (directory / f"{name}{suffix}").stat().st_size > 0
    assert (directory / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((directory / f"{name}.json").read_text())
    assert finite(report) and report["smoke"] is True
    assert {"cpu", "cores", "tensorflow", "tfmot"} <= set(report["machine"])
    return report


def test_gmp_window_ends_on_a_pruning_step_within_the_budget():
    window = baselines.window(7020, 0.1, 0.5, 100)
    assert (window.begin_step, window.end_step) == (702, 3502)
    assert window.prunes_at(3502) and not window.prunes_at(3503) and not window.prunes_at(701)
    assert baselines.cubic_sparsity(702, 0.9, window) == 0.0 and baselines.cubic_sparsity(3502, 0.9, window) == 0.9
    assert baselines.cubic_sparsity(2102, 0.9, window) == pytest.approx(0.9 * (1 - 0.5**3))
    with pytest.raises(ValueError, match="does not fit"):
        baselines.window(10, 0.5, 1.0, 20)


def test_accuracy_smoke(tmp_path):
    methods = ("dense", "tfmot_gmp", "global_gmp", "one_shot", "imp_lrw", "bimp")
    accuracy.run(["mnist_lenet"], methods, smoke=True, out_dir=str(tmp_path))
    report = read(tmp_path, "accuracy_mnist_lenet")
    assert set(report["summary"]) == {*methods, "dense_pretrain"}
    for method in methods[1:]:
        (entry,) = report["summary"][method].values()
        assert entry["budget_epochs"] == [report["budget_epochs"]] == [4]
        assert entry["weights_off_goal"] == 0 and entry["sparsity"]["mean"] == pytest.approx(0.9, abs=1e-5)
        assert 0 <= entry["accuracy"]["mean"] <= 1
    assert [r["own_epochs"] for r in report["runs"] if r["method"] in ("imp_lrw", "one_shot")] == [2, 2]
    assert set(report["schedules"]) == set(methods)
    # A second run finds every run finished and reports the same numbers.
    again = accuracy.run(["mnist_lenet"], methods, smoke=True, out_dir=str(tmp_path))["mnist_lenet"]
    assert [r["accuracy"] for r in again["runs"]] == [r["accuracy"] for r in report["runs"]]


def test_overhead_smoke(tmp_path):
    overhead.run(smoke=True, out_dir=str(tmp_path))
    report = read(tmp_path, "overhead")
    assert len(report["step_time"]) == 2
    for entry in report["step_time"].values():
        assert entry["plain_ms"]["median"] > 0 and entry["masked_ms"]["median"] > 0 and entry["ratio"]["median"] > 0
    whole = report["whole_run"]
    assert whole["epochs"] == 2 and whole["wall_ratio"] > 0 and whole["train_ratio"] > 0


def test_selection_smoke(tmp_path):
    selection.run(smoke=True, out_dir=str(tmp_path))
    report = read(tmp_path, "selection")
    assert set(report["cases"]) == {"first", "later"}
    for case in report["cases"].values():
        assert set(case["criteria"]) == {"global", "uniform", "uniform_plus", "erk", "lamp"}
        assert case["count"] > 0 and case["partition"]["median"] > 0
