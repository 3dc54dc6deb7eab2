"""Test accuracy at one equal training budget: IMP's retraining schedules against pruning during training.

For each setup (LeNet-300-100 on MNIST, a narrow Conv-2 on Fashion-MNIST), seed and goal sparsity,
every method trains for the same total number of epochs B with the same data pipeline, batch,
optimizer and base learning rate, from the same seed:

  dense       no pruning, B epochs of the base step schedule (the upper reference);
  tfmot_gmp   tfmot's `prune_low_magnitude`, `PolynomialDecay` from 0 to S (layerwise), B epochs;
  global_gmp  the same cubic schedule and window with imp_keras' global masks, B epochs;
  gmp         global_gmp through the trainer (`method="gmp"`), on either Keras: the GPU setup's GMP;
  one_shot    T dense epochs, prune to S at once, retrain R epochs with ALLR (IMP with 1 cycle);
  imp_<kind>  T dense epochs, then J prune-retrain cycles over R epochs with FT, LRW, SLR, CLR, LLR
              or ALLR retraining;
  bimp        budgeted IMP: its own T0 = T dense epochs (linear schedule to 0), J ALLR cycles.

B = T + R. The T-epoch dense run is trained once per seed (`method="dense"` through
`imp_keras.train.run`) and reused by one-shot and every IMP variant (`dense_workdir`); its T epochs
count in each one's budget. The accuracy is measured at the end of the budget on the evaluation
split (the test set); there is no model selection.

    python -m benchmarks.accuracy --setups=mnist_lenet --threads=1     # 51 min, one thread, beside other work
    python -m benchmarks.accuracy --setups=fashion_conv2               # 55 min on 2 cores
    python -m benchmarks.accuracy --smoke                              # seconds; checks it runs

On one GPU with JAX (or PyTorch: --backend=torch) and no TensorFlow, the ResNet-20 setup:

    python -m benchmarks.accuracy --setups=fashion_resnet20 --methods=dense,imp_slr,imp_allr,bimp,gmp --out_dir=out

`python -m benchmarks.accuracy` runs the two main setups one after the other. The setups
`mnist_lenet_b30` and `mnist_lenet_j6` are single-seed checks run with a few `--methods` (the
commands are in BENCHMARKS.md).

Finished runs are kept under `--runs_dir` (`train.run`'s workdirs and the baselines' result.json)
and skipped when the command is run again, so an interrupted benchmark continues where it stopped.
Writes `accuracy_<setup>.json`, `.png` and `.md` into `--out_dir`.
"""

from collections.abc import Sequence
import dataclasses
import os
import time
from typing import Any

from absl import app, flags
import ml_collections
import numpy as np

from benchmarks import common
from imp_keras import experiment, rundir, train

IMP_KINDS = ("ft", "lrw", "slr", "clr", "llr", "allr")
METHODS = ("dense", "tfmot_gmp", "global_gmp", "gmp", "one_shot", *(f"imp_{kind}" for kind in IMP_KINDS), "bimp")
LABELS = {
    "dense": "dense",
    "tfmot_gmp": "GMP, tfmot (layerwise)",
    "global_gmp": "GMP, global masks",
    "gmp": "GMP, global masks (trainer)",
    "one_shot": "one-shot + ALLR",
    **{f"imp_{kind}": f"IMP {kind.upper()}" for kind in IMP_KINDS},
    "bimp": "BIMP",
}


@dataclasses.dataclass(frozen=True)
class Setup:
    """One model's benchmark.

    dense_epochs: T, IMP's shared dense training and BIMP's T0.
    retrain_epochs: R, split evenly over the `cycles` (J) of IMP; one-shot retrains R in one cycle.
    gmp_window: begin and end of GMP's pruning as fractions of the budget; gmp_frequency in steps.
    max_examples: > 0: only the first N training (and evaluation) examples.
    """

    name: str
    title: str
    dataset: str
    data_dir: str
    model: str
    model_kwargs: dict[str, Any]
    learning_rate: float
    weight_decay: float
    dense_epochs: int
    retrain_epochs: int
    cycles: int
    sparsities: tuple[float, ...]
    seeds: int
    gmp_frequency: int
    gmp_window: tuple[float, float] = (0.1, 0.5)
    max_examples: int = 0
    batch_size: int = 128
    source: str = "files"
    keras: str = "tf_keras"  # the trainer's `keras` and `backend` fields
    backend: str = "tensorflow"

    @property
    def budget(self) -> int:
        return self.dense_epochs + self.retrain_epochs


# For one GPU with JAX or PyTorch and no TensorFlow: ResNet-20 (the paper's claims are about ResNets)
# on Fashion-MNIST, whose files are at hand (CIFAR's are not here). Per seed and goal: 20 shared dense
# epochs, a budget of 30; with GPU_METHODS that is 100 epochs of 469 steps, sized for under 8 minutes on
# an H200-class GPU (an estimate: not run on one yet; GMP adds 30 epochs per goal).
GPU_SETUP = "fashion_resnet20"
GPU_METHODS = ("dense", "imp_slr", "imp_allr", "bimp", "gmp")
_TF_KERAS_METHODS = ("tfmot_gmp", "global_gmp")  # benchmarks.baselines: tf_keras and tfmot

SETUPS = {
    setup.name: setup
    for setup in (
        Setup(
            "mnist_lenet", "LeNet-300-100 on MNIST", "mnist", os.path.join(common.SHARED_DATA, "mnist"), "lenet_300_100", {},
            learning_rate=0.1, weight_decay=0.0, dense_epochs=9, retrain_epochs=6, cycles=3,
            sparsities=(0.9, 0.95, 0.98, 0.99), seeds=3, gmp_frequency=100,
        ),
        # Conv-2 with 16 and 16 filters on the first 10,240 training images (all 10,000 test images):
        # the paper-width Conv-4 takes minutes an epoch on 2 CPU cores.
        Setup(
            "fashion_conv2", "Conv-2 (16 filters) on Fashion-MNIST, 10,240 training images", "fashion_mnist",
            os.path.join(common.SHARED_DATA, "fashion-mnist"), "conv_net", {"depth": 2, "filters": 16},
            learning_rate=0.05, weight_decay=1e-4, dense_epochs=9, retrain_epochs=6, cycles=3,
            sparsities=(0.9, 0.95, 0.98), seeds=3, gmp_frequency=20, max_examples=10_240,
        ),
        # Two checks of why IMP trails global GMP on LeNet at 15 epochs (one seed, a few methods;
        # see BENCHMARKS.md). Twice the budget: does longer retraining close the gap?
        Setup(
            "mnist_lenet_b30", "LeNet-300-100 on MNIST, twice the budget", "mnist", os.path.join(common.SHARED_DATA, "mnist"),
            "lenet_300_100", {}, learning_rate=0.1, weight_decay=0.0, dense_epochs=18, retrain_epochs=12, cycles=3,
            sparsities=(0.98, 0.99), seeds=1, gmp_frequency=100,
        ),
        Setup(
            GPU_SETUP, "ResNet-20 on Fashion-MNIST (Keras 3, one GPU)", "fashion_mnist",
            os.path.join(common.SHARED_DATA, "fashion-mnist"), "resnet_cifar", {"depth": 20},
            learning_rate=0.1, weight_decay=1e-4, dense_epochs=20, retrain_epochs=10, cycles=2,
            sparsities=(0.9,), seeds=1, gmp_frequency=100, keras="keras3", backend="jax",
        ),
        # The LeNet setup with 6 one-epoch cycles instead of 3 of two: do smaller pruning steps help?
        Setup(
            "mnist_lenet_j6", "LeNet-300-100 on MNIST, 6 cycles", "mnist", os.path.join(common.SHARED_DATA, "mnist"),
            "lenet_300_100", {}, learning_rate=0.1, weight_decay=0.0, dense_epochs=9, retrain_epochs=6, cycles=6,
            sparsities=(0.98, 0.99), seeds=1, gmp_frequency=100,
        ),
    )
}
MAIN_SETUPS = ("mnist_lenet", "fashion_conv2")


def smoke_setup(setup: Setup) -> Setup:
    """`setup` on 256 synthetic examples of its shape, batch 32: a 4-epoch budget of 8-step epochs."""
    return dataclasses.replace(
        setup, source="synthetic", data_dir="", max_examples=0, batch_size=32, dense_epochs=2, retrain_epochs=2,
        cycles=2, sparsities=(0.9,), seeds=1, gmp_frequency=2,
    )


def _config(setup: Setup, seed: int, name: str) -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.name = f"{setup.name}_{name}"
    config.seed = seed
    config.data.name = setup.dataset
    config.data.source = setup.source
    config.data.data_dir = setup.data_dir
    config.data.max_examples = setup.max_examples
    config.model.name = setup.model
    config.model.kwargs = ml_collections.ConfigDict(setup.model_kwargs)
    config.batch_size = setup.batch_size
    config.optimizer.weight_decay = setup.weight_decay
    config.lr.initial = setup.learning_rate
    config.export_formats = ()
    config.keras = setup.keras
    config.backend = setup.backend
    return config


def dense_config(setup: Setup, seed: int, epochs: int) -> ml_collections.ConfigDict:
    config = _config(setup, seed, f"dense{epochs}")
    config.method = "dense"
    config.pretrain_epochs = epochs
    return config


def imp_config(setup: Setup, seed: int, sparsity: float, kind: str, cycles: int, dense_workdir: str) -> ml_collections.ConfigDict:
    config = _config(setup, seed, f"imp{cycles}_{kind}_{sparsity}")
    config.method = "imp"
    config.goal_sparsity = sparsity
    config.exact_goal = True
    config.cycles = cycles
    config.pretrain_epochs = setup.dense_epochs
    config.total_epochs = setup.budget
    config.retrain_kind = kind
    config.dense_workdir = dense_workdir
    return config


def bimp_config(setup: Setup, seed: int, sparsity: float) -> ml_collections.ConfigDict:
    config = _config(setup, seed, f"bimp_{sparsity}")
    config.method = "bimp"
    config.goal_sparsity = sparsity
    config.exact_goal = True
    config.cycles = setup.cycles
    config.pretrain_epochs = setup.dense_epochs
    config.total_epochs = setup.budget
    return config


def gmp_config(setup: Setup, seed: int, sparsity: float) -> ml_collections.ConfigDict:
    config = _config(setup, seed, f"gmp_{sparsity}")
    config.method = "gmp"
    config.goal_sparsity = sparsity
    config.pretrain_epochs = setup.budget  # GMP's budget: trained from scratch, pruned in its window
    config.gmp_begin, config.gmp_end = setup.gmp_window
    config.gmp_frequency = setup.gmp_frequency
    return config


def schedules(setup: Setup) -> dict[str, str]:
    """The learning rate each method gets, in words (lr0 = the setup's initial rate)."""
    T, R, B, J = setup.dense_epochs, setup.retrain_epochs, setup.budget, setup.cycles
    step = f"step schedule: lr0 = {setup.learning_rate}, x0.1 at 50 % and 75 % of"
    cycles = f"{J} cycles of {R // J} epochs" if R % J == 0 else f"{J} cycles over {R} epochs"
    described = {
        "dense": f"{step} the {B} epochs",
        "tfmot_gmp": f"{step} the {B} epochs (the dense reference's)",
        "global_gmp": f"{step} the {B} epochs (the dense reference's)",
        "gmp": f"{step} the {B} epochs (the dense reference's)",
        "one_shot": f"shared dense run ({step} its {T} epochs), then 1 cycle of {R} epochs with ALLR",
        "bimp": f"linear from lr0 to 0 over its own {T} dense epochs, then {cycles} with ALLR",
    }
    for kind in IMP_KINDS:
        described[f"imp_{kind}"] = f"shared dense run ({step} its {T} epochs), then {cycles} with {kind.upper()}"
    return described


def _baseline(directory: str, config: ml_collections.ConfigDict, kind: str, sparsity: float, setup: Setup, verbose: int) -> dict[str, Any]:
    """The GMP run of `config` in `directory`: its stored result if it finished with these settings."""
    settings = {
        "config": rundir.config_dict(config), "kind": kind, "goal_sparsity": sparsity,
        "window": list(setup.gmp_window), "frequency": setup.gmp_frequency,
    }
    path = os.path.join(directory, rundir.RESULTS)
    if os.path.exists(path):
        stored = rundir.read_json(path)
        if stored["settings"] != settings:
            raise ValueError(f"{path} holds a run with other settings; remove {directory} to rerun it.")
        return stored
    from benchmarks import baselines  # tf_keras and tfmot: imported only by the runs that use them

    result = baselines.train_gmp(config, kind, sparsity, setup.gmp_window, setup.gmp_frequency, verbose=verbose)
    result["settings"] = settings
    os.makedirs(directory, exist_ok=True)
    rundir.write_json(path, result)
    return result


def imp_record(results: dict[str, Any]) -> dict[str, Any]:
    """The record of one `train.run` (dense, IMP, BIMP or GMP): accuracy on its evaluation split, counts, epochs, times."""
    pruned = sum(layer["pruned"] for layer in results["layers"])
    total = sum(layer["total"] for layer in results["layers"])
    return {
        "accuracy": results["final_accuracy"], "sparsity": results["final_sparsity"], "pruned": pruned, "total": total,
        "budget_epochs": results["budget_epochs"], "own_epochs": results["epochs"], "train_seconds": results["train_seconds"],
        "wall_seconds": results["wall_seconds"],
        "cycles": [{"sparsity": c["sparsity"], "accuracy": c["accuracy"]} for c in results["cycles"]],
    }


def _gmp_record(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "accuracy": result["accuracy"], "sparsity": result["sparsity"], "pruned": result["pruned"], "total": result["total"],
        "budget_epochs": result["epochs"], "own_epochs": result["epochs"], "train_seconds": result["train_seconds"],
        "wall_seconds": result["wall_seconds"], "window": result["window"], "layers": result["layers"],
    }


def run_setup(setup: Setup, methods: Sequence[str], seeds: int, runs_dir: str, verbose: int = 0) -> list[dict[str, Any]]:
    """Trains (or finds finished) every run of `setup`; returns one record per run."""
    records = []
    needs_pretraining = any(m == "one_shot" or m.startswith("imp_") for m in methods)

    def note(record: dict[str, Any], started: float) -> None:
        records.append(record)
        sparsity = f" S={record['goal_sparsity']:.2f}" if record["goal_sparsity"] else ""
        print(
            f"{setup.name} seed {record['seed']} {record['method']}{sparsity}: accuracy {record['accuracy']:.2%}, "
            f"sparsity {record['sparsity']:.4f}, {record['budget_epochs']} epochs ({time.time() - started:.0f} s)",
            flush=True,
        )

    for seed in range(seeds):
        seed_dir = os.path.join(runs_dir, setup.name, f"seed{seed}")
        pretrain_dir = os.path.join(seed_dir, f"dense{setup.dense_epochs}")
        for epochs, wanted, method in ((setup.dense_epochs, needs_pretraining, "dense_pretrain"), (setup.budget, "dense" in methods, "dense")):
            if wanted:
                started = time.time()
                results = train.run(dense_config(setup, seed, epochs), os.path.join(seed_dir, f"dense{epochs}"), verbose=verbose)
                note({"method": method, "seed": seed, "goal_sparsity": 0.0, **imp_record(results)}, started)
        for sparsity in setup.sparsities:
            for method in methods:
                if method == "dense":
                    continue
                started = time.time()
                directory = os.path.join(seed_dir, f"{method}_{sparsity}")
                if method.endswith("_gmp"):
                    config = dense_config(setup, seed, setup.budget)
                    record = _gmp_record(_baseline(directory, config, method[: -len("_gmp")], sparsity, setup, verbose))
                else:
                    if method == "gmp":
                        config = gmp_config(setup, seed, sparsity)
                    elif method == "bimp":
                        config = bimp_config(setup, seed, sparsity)
                    else:
                        kind, cycles = ("allr", 1) if method == "one_shot" else (method[len("imp_"):], setup.cycles)
                        config = imp_config(setup, seed, sparsity, kind, cycles, pretrain_dir)
                    record = imp_record(train.run(config, directory, verbose=verbose))
                note({"method": method, "seed": seed, "goal_sparsity": sparsity, **record}, started)
    return records


def stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for a single value), count, min and max."""
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0, "n": int(values.size),
        "min": float(values.min()), "max": float(values.max()),
    }


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method and goal sparsity ("0.0" for the dense runs): accuracy statistics over seeds, the
    budget, the mean training seconds, and the largest distance in weights from the exact goal."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method in dict.fromkeys(r["method"] for r in records):
        for sparsity in dict.fromkeys(r["goal_sparsity"] for r in records if r["method"] == method):
            group = [r for r in records if r["method"] == method and r["goal_sparsity"] == sparsity]
            summary.setdefault(method, {})[str(sparsity)] = {
                "accuracy": stats([r["accuracy"] for r in group]),
                "sparsity": stats([r["sparsity"] for r in group]),
                "weights_off_goal": max(abs(r["pruned"] - round(sparsity * r["total"])) for r in group),
                "budget_epochs": sorted({r["budget_epochs"] for r in group}),
                "own_epochs": sorted({r["own_epochs"] for r in group}),
                "train_seconds": float(np.mean([r["train_seconds"] for r in group])),
            }
    return summary


def table(setup: Setup, summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown: test accuracy (mean ± std over seeds, %) per method and goal sparsity, the best
    pruned method of each column in bold, with budgets and training seconds."""
    columns = [str(s) for s in setup.sparsities]
    best = {}
    for column in columns:
        means = {m: cells[column]["accuracy"]["mean"] for m, cells in summary.items() if column in cells}
        best[column] = max(means, key=means.get) if means else None

    def cell(method: str, column: str) -> str:
        entry = summary.get(method, {}).get(column)
        if entry is None:
            return "—"
        text = f"{100 * entry['accuracy']['mean']:.2f} ± {100 * entry['accuracy']['std']:.2f}"
        return f"**{text}**" if best.get(column) == method else text

    rows = []
    for method, label in (("dense", f"dense, {setup.budget} epochs"), ("dense_pretrain", f"dense, {setup.dense_epochs} epochs (IMP's start)")):
        if method in summary:
            entry = summary[method]["0.0"]
            dense = f"{100 * entry['accuracy']['mean']:.2f} ± {100 * entry['accuracy']['std']:.2f}"
            rows.append([label, str(entry["budget_epochs"][0]), dense, *["—"] * len(columns), f"{entry['train_seconds']:.0f}"])
    for method in METHODS[1:]:
        if method not in summary:
            continue
        entries = summary[method].values()
        budgets = sorted({b for e in entries for b in e["budget_epochs"]})
        own = sorted({o for e in entries for o in e["own_epochs"]})
        budget = "/".join(map(str, budgets))
        if own != budgets:
            budget += f" ({setup.dense_epochs} shared + {'/'.join(map(str, own))})"
        seconds = np.mean([e["train_seconds"] for e in entries])
        rows.append([LABELS[method], budget, "—", *(cell(method, c) for c in columns), f"{seconds:.0f}"])
    seeds = max(e["accuracy"]["n"] for cells in summary.values() for e in cells.values())
    off = max((e["weights_off_goal"] for m, cells in summary.items() if not m.startswith("dense") for e in cells.values()), default=0)
    header = ["method", "epochs", "0 %", *(f"{100 * s:g} %" for s in setup.sparsities), "training s / run"]
    return (
        f"{setup.title}: test accuracy (%), mean ± std over {seeds} seed(s), at a budget of {setup.budget} epochs\n\n"
        + common.markdown_table(header, rows)
        + f"\n\nMeasured sparsity: every pruned model within {off} weights of round(S · n) zeros over its kernels."
    )


def plot(path: str, setup: Setup, summary: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Accuracy against sparsity, one line per method with ± std bars, dense as a band: every
    method on the left, the top 3 points below dense enlarged on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(13, 5.2), sharex=True)
    position = {s: -np.log10(1 - s) for s in setup.sparsities}  # 90 %, 99 % one decade apart
    styles = {"tfmot_gmp": "--", "global_gmp": "--", "gmp": "--", "one_shot": ":", "bimp": "-."}
    colors = matplotlib.colormaps["tab10"].colors
    markers = "os^vDP*Xdph"
    reference = summary.get("dense", summary.get("dense_pretrain", {})).get("0.0")
    for axes in panels:
        if "dense" in summary:
            dense = summary["dense"]["0.0"]["accuracy"]
            low, high = 100 * (dense["mean"] - dense["std"]), 100 * (dense["mean"] + dense["std"])
            axes.axhspan(low, high, color="gray", alpha=0.3, label=f"dense, {setup.budget} epochs (mean ± std)")
            axes.axhline(100 * dense["mean"], color="gray", linewidth=1)
        if "dense_pretrain" in summary:
            start = summary["dense_pretrain"]["0.0"]["accuracy"]["mean"]
            axes.axhline(100 * start, color="black", linestyle=":", linewidth=1, label=f"dense, {setup.dense_epochs} epochs (IMP's start)")
        for index, method in enumerate(METHODS[1:]):
            if method not in summary:
                continue
            cells = summary[method]
            sparsities = [s for s in setup.sparsities if str(s) in cells]
            axes.errorbar(
                [position[s] for s in sparsities], [100 * cells[str(s)]["accuracy"]["mean"] for s in sparsities],
                yerr=[100 * cells[str(s)]["accuracy"]["std"] for s in sparsities], label=LABELS[method],
                color=colors[index % len(colors)], linestyle=styles.get(method, "-"), marker=markers[index % len(markers)],
                markersize=5, capsize=3, linewidth=1.3,
            )
        axes.set_xticks([position[s] for s in setup.sparsities], [f"{100 * s:g} %" for s in setup.sparsities])
        axes.set_xlabel("sparsity (fraction of kernel weights pruned)")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("test accuracy (%)")
    panels[0].set_title("all methods")
    if reference is not None:
        top = 100 * (reference["accuracy"]["mean"] + reference["accuracy"]["std"]) + 0.2
        panels[1].set_ylim(top - 3.2, top)
    panels[1].set_title("enlarged: within 3 points of dense")
    panels[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.suptitle(f"{setup.title}: equal budget of {setup.budget} epochs")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(
    setups: Sequence[str] = MAIN_SETUPS,
    methods: Sequence[str] = METHODS,
    seeds: int = 0,
    smoke: bool = False,
    out_dir: str | None = None,
    runs_dir: str | None = None,
    verbose: int = 0,
    backend: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Runs the benchmark of every setup in `setups`; returns and writes one report per setup.

    Args:
      setups: names from `SETUPS`.
      methods: names from `METHODS`.
      seeds: seeds 0..seeds-1; 0 for each setup's own number.
      smoke: tiny synthetic data and budget (`smoke_setup`).
      out_dir: folder of the JSON, PNG and table (`common.out_dir`).
      runs_dir: folder of the runs (default `<out_dir>/runs`).
      verbose: Keras' verbosity inside every run.
      backend: run every setup on Keras 3 with this backend (`tensorflow`, `jax`, `torch`) instead
        of its own Keras; None keeps each setup's.
    """
    unknown = sorted(set(setups) - set(SETUPS)) + sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown setups or methods {unknown}; setups are {list(SETUPS)}, methods {list(METHODS)}.")
    directory = common.out_dir(smoke, out_dir)
    runs_dir = runs_dir or os.path.join(directory, "runs")
    reports = {}
    for name in setups:
        setup = smoke_setup(SETUPS[name]) if smoke else SETUPS[name]
        if backend is not None:
            setup = dataclasses.replace(setup, keras="keras3", backend=backend)
        tf_keras_only = [m for m in methods if m in _TF_KERAS_METHODS]
        if setup.keras != "tf_keras" and tf_keras_only:
            raise ValueError(
                f"{tf_keras_only} run on tf_keras and tfmot (benchmarks.baselines), but setup {name!r} runs on "
                f"keras={setup.keras!r}: leave them out of `methods`, e.g. methods={list(GPU_METHODS)}."
            )
        started, machine = time.time(), common.machine()
        records = run_setup(setup, methods, seeds or setup.seeds, runs_dir, verbose)
        summary = summarize(records)
        data = experiment.load_data(_config(setup, 0, "data"))
        report = {
            "benchmark": "accuracy",
            "setup": dataclasses.asdict(setup),
            "smoke": smoke,
            "command": common.command("accuracy"),
            "machine": machine,
            "data": {
                "train_examples": data.train_examples, "eval_examples": data.eval_examples, "eval_split": data.eval_split,
                "steps_per_epoch": data.steps_per_epoch(setup.batch_size),
            },
            "budget_epochs": setup.budget,
            "schedules": {m: s for m, s in schedules(setup).items() if m in methods},
            "runs": records,
            "summary": summary,
            "runs_wall_seconds": sum(r["wall_seconds"] for r in records),  # the compute of every run, when it ran
            "seconds": time.time() - started,  # this invocation's (finished runs are skipped)
        }
        text = table(setup, summary)
        common.write(directory, f"accuracy_{name}", report, text)
        plot(os.path.join(directory, f"accuracy_{name}.png"), setup, summary)
        print(f"\n{text}\n\nWritten: {os.path.join(directory, f'accuracy_{name}')}.json, .png, .md", flush=True)
        reports[name] = report
    return reports


_SETUPS = flags.DEFINE_list("setups", list(MAIN_SETUPS), f"Setups to run, of {list(SETUPS)}.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), f"Methods to run, of {list(METHODS)}.")
_SEEDS = flags.DEFINE_integer("seeds", 0, "Seeds per setup (0: the setup's own number).")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None, "Where the runs are kept (default <out_dir>/runs).")
_THREADS = flags.DEFINE_integer("threads", 0, "TensorFlow threads (0: its default); 1 when two benchmarks share 2 cores.")
_VERBOSE = flags.DEFINE_integer("verbose", 0, "Keras' verbosity in every run.")
_BACKEND = flags.DEFINE_enum("backend", None, ["tensorflow", "jax", "torch"], "Run on Keras 3 with this backend (default: each setup's Keras).")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    common.set_threads(_THREADS.value)
    run(_SETUPS.value, _METHODS.value, _SEEDS.value, common.SMOKE.value, common.OUT_DIR.value, _RUNS_DIR.value, _VERBOSE.value, _BACKEND.value)


if __name__ == "__main__":
    app.run(main)
