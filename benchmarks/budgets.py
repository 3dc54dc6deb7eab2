"""Which method for which budget: IMP (SLR), BIMP and GMP, each tuned on validation, reported on test.

For each setup (accuracy.py's `mnist_lenet` and `fashion_conv2`, here on Keras 3), budget B (total
epochs) and goal sparsity S, three methods compete, each with a few settings of how it spends B:

  imp_slr  T = f·B shared dense epochs (f in 0.4, 0.6), then J in (2, 3) prune-retrain cycles with SLR
           over the remaining B − T epochs; one dense run per T and seed, shared by every J and S;
  bimp     budgeted IMP: its own T0 = f·B dense epochs (f in 0.4, 0.6, linear schedule to 0), 3 ALLR cycles;
  gmp      the trainer's `method="gmp"`: B epochs from scratch, the cubic schedule over the window
           (0.1, 0.5), (0.1, 0.75) or (0.25, 0.75) of the run.

Selection: every setting is trained with seed 0 on the training set less a held-out validation
split (`config.data.validation_split` = 1/6, a seed-0 permutation of the training images). The
trainer then evaluates on that split, not the test set: `data.load` returns it as the evaluation
set and the run's `eval_split` reads "validation", which every selection run is checked for. Each
method keeps the setting of the highest final validation accuracy (the first in the grid's order
on a tie); no test accuracy enters the choice. The split is taken before `max_examples`: for
fashion_conv2 (10,240 training images) it holds 10,000 of the 60,000 images, and selection trains
on the first 10,240 of the other 50,000, so on a different 10,240 from the reported runs (1,702 of
which are among the validation images); both phases run 80 steps an epoch.

Report: each method's chosen setting is trained again on the whole training set with seeds 0..2 and
its final accuracy on the test set reported (mean ± std), with the winner per sparsity, its margin
over the runner-up (difference of the means) and the spread of that margin (std over seeds of the
paired per-seed differences).

    python -m benchmarks.budgets                                      # both setups, budgets 15 and 30, JAX
    python -m benchmarks.budgets --setups=mnist_lenet --budgets=15
    python -m benchmarks.budgets --smoke                              # about 20 s; checks it runs

Wall time, measured on the 2 CPU cores here (Keras 3 on JAX): mnist_lenet 80 runs per budget, 13
to 16 min at B = 15 (beside a CI run) and 18 min at B = 30 (idle); fashion_conv2 (3 sparsities,
Conv-2 epochs of 80 steps, a median 4.6 s with evaluation) 62 runs and 61 min at B = 15, with tests
beside it. Per setup and budget B, selection trains per sparsity 4 IMP settings (retraining 0.5 B on
average), 2 BIMP and 3 GMP (B each), plus 2 dense runs (B in all); the report trains per sparsity 3
seeds of the 3 chosen settings plus up to 2 dense runs a seed. Work grows with B: fashion_conv2 at
B = 30 took about 2 h 15 min for its 62 runs, in two invocations.

`--setups`, `--seeds` (0: 3), `--runs_dir`, `--verbose` and `--backend` (default here: jax) are
benchmarks.accuracy's flags, read here too. Finished runs are kept under `--runs_dir`/budgets (the
trainer's workdirs) and reused when the command is run again; a report's `seconds` are those of its
last invocation. Writes `budgets_<setup>_b<B>.json` and `.md` into `--out_dir`.
"""

from collections.abc import Sequence
import dataclasses
import os
import time
from typing import Any

from absl import app, flags
import ml_collections

from benchmarks import accuracy, common
from imp_keras import train

__all__ = ["Candidate", "Grid", "GRID", "SMOKE_GRID", "SETUPS", "BUDGETS", "VALIDATION_SPLIT", "candidates", "select", "report", "table", "run"]

SETUPS = ("mnist_lenet", "fashion_conv2")
BUDGETS = (15, 30)
SEEDS = 3
VALIDATION_SPLIT = 1 / 6
METHODS = ("imp_slr", "bimp", "gmp")
LABELS = {"imp_slr": "IMP SLR", "bimp": "BIMP", "gmp": "GMP (global)"}


@dataclasses.dataclass(frozen=True)
class Grid:
    """The settings each method is chosen from: dense fractions T/B, numbers of cycles, GMP windows."""

    imp_dense_fractions: tuple[float, ...] = (0.4, 0.6)
    imp_cycles: tuple[int, ...] = (2, 3)
    bimp_dense_fractions: tuple[float, ...] = (0.4, 0.6)
    bimp_cycles: int = 3
    gmp_windows: tuple[tuple[float, float], ...] = ((0.1, 0.5), (0.1, 0.75), (0.25, 0.75))


GRID = Grid()
# Budget 4 of 8-step epochs: T = 2, R = 2.
SMOKE_GRID = Grid(imp_dense_fractions=(0.5,), imp_cycles=(1, 2), bimp_dense_fractions=(0.5,), bimp_cycles=2, gmp_windows=((0.1, 0.5), (0.25, 0.75)))
SMOKE_BUDGETS = (4,)
SMOKE_SEEDS = 2


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One setting of one method at one budget: `setup` carries its T, R, J and GMP window."""

    method: str
    setup: accuracy.Setup

    @property
    def name(self) -> str:
        s = self.setup
        if self.method == "gmp":
            return f"gmp_w{s.gmp_window[0]:g}-{s.gmp_window[1]:g}"
        return f"{self.method}_T{s.dense_epochs}_J{s.cycles}"

    def describe(self) -> str:
        s = self.setup
        if self.method == "gmp":
            return f"window {s.gmp_window[0]:g}–{s.gmp_window[1]:g}"
        return f"T={s.dense_epochs}, J={s.cycles}"


def candidates(setup: accuracy.Setup, budget: int, grid: Grid = GRID) -> dict[str, list[Candidate]]:
    """Every setting of every method at `budget`, in the grid's order, without duplicates (T is rounded)."""

    def split(fraction: float, cycles: int, window: tuple[float, float] = setup.gmp_window) -> accuracy.Setup:
        dense = min(max(round(fraction * budget), 1), budget - 1)
        return dataclasses.replace(setup, dense_epochs=dense, retrain_epochs=budget - dense, cycles=cycles, gmp_window=window)

    grids = {
        "imp_slr": [split(f, j) for f in grid.imp_dense_fractions for j in grid.imp_cycles],
        "bimp": [split(f, grid.bimp_cycles) for f in grid.bimp_dense_fractions],
        "gmp": [dataclasses.replace(setup, dense_epochs=0, retrain_epochs=budget, gmp_window=w) for w in grid.gmp_windows],
    }
    return {m: list({Candidate(m, s).name: Candidate(m, s) for s in setups}.values()) for m, setups in grids.items()}


def _configs(candidate: Candidate, seed: int, sparsity: float, seed_dir: str, validation: bool) -> list[tuple[ml_collections.ConfigDict, str]]:
    """The runs of `candidate` (its shared dense run first, for IMP) as (config, workdir) pairs."""
    setup = candidate.setup
    runs = []
    if candidate.method == "imp_slr":
        dense_dir = os.path.join(seed_dir, f"dense{setup.dense_epochs}")
        runs.append((accuracy.dense_config(setup, seed, setup.dense_epochs), dense_dir))
        runs.append((accuracy.imp_config(setup, seed, sparsity, "slr", setup.cycles, dense_dir), None))
    elif candidate.method == "bimp":
        runs.append((accuracy.bimp_config(setup, seed, sparsity), None))
    else:
        runs.append((accuracy.gmp_config(setup, seed, sparsity), None))
    named = []
    for config, directory in runs:
        config.data.validation_split = VALIDATION_SPLIT if validation else 0.0
        named.append((config, directory or os.path.join(seed_dir, f"{candidate.name}_{sparsity}")))
    return named


def _train(candidate: Candidate, seed: int, sparsity: float, seed_dir: str, validation: bool, verbose: int) -> dict[str, Any]:
    """Trains (or finds finished) the runs of `candidate`; the record of its pruned run."""
    started = time.time()
    for config, directory in _configs(candidate, seed, sparsity, seed_dir, validation):
        results = train.run(config, directory, verbose=verbose)
    expected = "validation" if validation else "test"
    if results["eval_split"] != expected:
        raise RuntimeError(f"{directory} was evaluated on {results['eval_split']!r}, not {expected!r}.")
    record = {"method": candidate.method, "setting": candidate.name, "seed": seed, "goal_sparsity": sparsity, **accuracy.imp_record(results)}
    print(
        f"{candidate.setup.name} B={candidate.setup.budget} {'validation' if validation else 'test'} seed {seed} "
        f"{candidate.name} S={sparsity:g}: accuracy {record['accuracy']:.2%} ({time.time() - started:.0f} s)",
        flush=True,
    )
    return record


def select(options: dict[str, list[Candidate]], sparsity: float, runs_dir: str, verbose: int = 0) -> dict[str, dict[str, Any]]:
    """Per method: the validation accuracy (seed 0) of every setting and the best one's name."""
    chosen = {}
    for method, settings in options.items():
        scores = {c.name: _train(c, 0, sparsity, os.path.join(runs_dir, "select"), True, verbose)["accuracy"] for c in settings}
        chosen[method] = {"validation_accuracy": scores, "chosen": max(scores, key=scores.get)}
    return chosen


def _winner(summary: dict[str, dict[str, Any]], records: Sequence[dict[str, Any]], sparsity: float) -> dict[str, Any]:
    """The method of the best mean test accuracy at `sparsity`, its margin over the runner-up and that margin's spread."""
    column = str(sparsity)
    ranked = sorted(summary, key=lambda m: summary[m][column]["accuracy"]["mean"], reverse=True)
    winner, runner_up = ranked[0], ranked[1]

    def by_seed(method: str) -> dict[int, float]:
        return {r["seed"]: r["accuracy"] for r in records if r["method"] == method and r["goal_sparsity"] == sparsity}

    first, second = by_seed(winner), by_seed(runner_up)
    differences = [first[seed] - second[seed] for seed in sorted(first)]
    return {
        "winner": winner, "runner_up": runner_up,
        "margin": summary[winner][column]["accuracy"]["mean"] - summary[runner_up][column]["accuracy"]["mean"],
        "margin_over_seeds": accuracy.stats(differences),
        "seeds_won": sum(d > 0 for d in differences),
    }


def report(setup: accuracy.Setup, budget: int, grid: Grid, seeds: int, runs_dir: str, verbose: int = 0) -> dict[str, Any]:
    """Selection on validation, then the chosen settings on test over `seeds` seeds, at one budget."""
    options = candidates(setup, budget, grid)
    budget_dir = os.path.join(runs_dir, "budgets", f"{setup.name}_b{budget}")  # apart from accuracy.py's setups
    selection, records = {}, []
    for sparsity in setup.sparsities:
        selection[str(sparsity)] = select(options, sparsity, budget_dir, verbose)
        for method, settings in options.items():
            candidate = next(c for c in settings if c.name == selection[str(sparsity)][method]["chosen"])
            for seed in range(seeds):
                records.append(_train(candidate, seed, sparsity, os.path.join(budget_dir, f"seed{seed}"), False, verbose))
    summary = accuracy.summarize(records)
    return {
        "benchmark": "budgets",
        "setup": dataclasses.asdict(setup),
        "budget_epochs": budget,
        "grid": dataclasses.asdict(grid),
        "candidates": {m: {c.name: c.describe() for c in settings} for m, settings in options.items()},
        "validation_split": VALIDATION_SPLIT,
        "selection_seed": 0,
        "seeds": seeds,
        "selection": selection,
        "runs": records,
        "summary": summary,
        "winners": {str(s): _winner(summary, records, s) for s in setup.sparsities},
        "runs_wall_seconds": sum(r["wall_seconds"] for r in records),
    }


def table(setup: accuracy.Setup, result: dict[str, Any]) -> str:
    """Markdown: per method and sparsity the test accuracy (mean ± std, %) and the chosen setting, then the winners."""
    columns = [str(s) for s in setup.sparsities]
    rows = []
    for method in METHODS:
        cells = []
        for column in columns:
            accuracy_ = result["summary"][method][column]["accuracy"]
            text = f"{100 * accuracy_['mean']:.2f} ± {100 * accuracy_['std']:.2f}"
            bold = result["winners"][column]["winner"] == method
            setting = result["candidates"][method][result["selection"][column][method]["chosen"]]
            cells.append(f"{'**' + text + '**' if bold else text} ({setting})")
        rows.append([LABELS[method], *cells])
    header = ["method", *(f"{100 * s:g} %" for s in setup.sparsities)]
    winners = []
    for sparsity, column in zip(setup.sparsities, columns):
        w = result["winners"][column]
        spread = w["margin_over_seeds"]
        winners.append(
            f"- {100 * sparsity:g} %: {LABELS[w['winner']]} by {100 * w['margin']:.2f} points over {LABELS[w['runner_up']]} "
            f"(per-seed differences {100 * spread['mean']:.2f} ± {100 * spread['std']:.2f}, from {100 * spread['min']:.2f} "
            f"to {100 * spread['max']:.2f}; ahead in {w['seeds_won']} of {spread['n']} seeds)"
        )
    return (
        f"{setup.title}, budget {result['budget_epochs']} epochs: test accuracy (%), mean ± std over {result['seeds']} "
        f"seed(s), each method's setting (in brackets) chosen on a {result['validation_split']:.3g} validation split "
        "with seed 0\n\n" + common.markdown_table(header, rows) + "\n\nWinner per sparsity:\n\n" + "\n".join(winners)
    )


def run(
    setups: Sequence[str] = SETUPS,
    budgets: Sequence[int] = BUDGETS,
    seeds: int = 0,
    smoke: bool = False,
    out_dir: str | None = None,
    runs_dir: str | None = None,
    verbose: int = 0,
    backend: str = "jax",
) -> dict[str, dict[str, Any]]:
    """Runs and writes the report of every setup and budget; returns them keyed `<setup>_b<budget>`.

    Args:
      setups: names from `SETUPS`.
      budgets: total epochs per run (`SMOKE_BUDGETS` when `smoke` and none given).
      seeds: seeds 0..seeds-1 of the test runs; 0 for 3 (2 with `smoke`).
      smoke: accuracy.py's `smoke_setup` (synthetic data, 8-step epochs) and `SMOKE_GRID`.
      out_dir: folder of the JSON and table (`common.out_dir`).
      runs_dir: folder of the runs (default `<out_dir>/runs`).
      verbose: Keras' verbosity inside every run.
      backend: the Keras 3 backend (`tensorflow`, `jax` or `torch`).
    """
    unknown = sorted(set(setups) - set(SETUPS))
    if unknown:
        raise ValueError(f"`setups` must be among {list(SETUPS)}. Received: setups={list(setups)}")
    if not budgets or any(isinstance(b, bool) or not isinstance(b, int) or b < 2 for b in budgets):
        raise ValueError(f"`budgets` must be integers of at least 2 epochs. Received: budgets={list(budgets)}")
    directory = common.out_dir(smoke, out_dir)
    runs_dir = runs_dir or os.path.join(directory, "runs")
    grid = SMOKE_GRID if smoke else GRID
    seeds = seeds or (SMOKE_SEEDS if smoke else SEEDS)
    reports = {}
    for name in setups:
        setup = accuracy.smoke_setup(accuracy.SETUPS[name]) if smoke else accuracy.SETUPS[name]
        setup = dataclasses.replace(setup, keras="keras3", backend=backend)
        for budget in budgets:
            started, machine = time.time(), common.machine()
            result = report(setup, budget, grid, seeds, runs_dir, verbose)
            result.update(smoke=smoke, command=common.command("budgets"), machine=machine, seconds=time.time() - started)
            text = table(setup, result)
            path = f"budgets_{name}_b{budget}"
            common.write(directory, path, result, text)
            print(f"\n{text}\n\nWritten: {os.path.join(directory, path)}.json, .md", flush=True)
            reports[f"{name}_b{budget}"] = result
    return reports


_BUDGETS = flags.DEFINE_list("budgets", None, f"Budgets in epochs (default {list(BUDGETS)}; with --smoke {list(SMOKE_BUDGETS)}).")
# --setups, --seeds, --runs_dir, --verbose and --backend are benchmarks.accuracy's (defined when it is
# imported); --setups defaults to the same two setups, --backend here to jax.


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    given = flags.FLAGS
    budgets = [int(b) for b in _BUDGETS.value] if _BUDGETS.value else (SMOKE_BUDGETS if common.SMOKE.value else BUDGETS)
    run(given.setups, budgets, given.seeds, common.SMOKE.value, common.OUT_DIR.value, given.runs_dir, given.verbose, given.backend or "jax")


if __name__ == "__main__":
    app.run(main)
