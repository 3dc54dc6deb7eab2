"""What IMP costs in training time: a masked model's step against the plain tf_keras model's, and a
whole IMP run against dense training of the same number of epochs.

Step time: the plain model and its `imp_keras.prunable` twin (same architecture and seed, masks of
90 % global sparsity applied) train on the same 4 cached batches with the same optimizer (SGD,
Nesterov momentum 0.9) and loss, in one process, one step per call of the train function `fit`
runs. Blocks of `steps` steps alternate between the two (ABBA order, so drift over time hits both
alike), `repeats` blocks each; reported are the median step times and the median of the per-repeat
ratios masked / plain, for LeNet-300-100 (MNIST-shaped, batch 128) and ResNet-20 (32x32x3, batch
128), on synthetic data.

Whole run: `imp_keras.train.run` of LeNet-300-100 on MNIST, 10 dense epochs then 3 cycles of 3
(SLR, global selection, the config of configs/mnist_lenet.py without export), against a dense run
of the same 19 epochs through the same trainer; alternated, twice each, in fresh workdirs. Wall
time is the whole `train.run` call (data loading, model building, pruning, ladder files, plots);
training time the sum of the epochs' seconds.

    python -m benchmarks.overhead           # a few minutes
    python -m benchmarks.overhead --smoke

Writes `overhead.json`, `.png` and `.md` into `--out_dir`.
"""

from collections.abc import Iterator, Sequence
import dataclasses
import os
import tempfile
import time
from typing import Any

from absl import app
import numpy as np

from benchmarks import common
from imp_keras import data as data_lib
from imp_keras import experiment, models, train
from imp_keras.core import selection
from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras


@dataclasses.dataclass(frozen=True)
class StepSetup:
    """A model whose training step is timed: `steps` steps a block, `repeats` blocks per model."""

    name: str
    dataset: str
    model: str
    model_kwargs: dict[str, Any]
    batch_size: int
    steps: int
    repeats: int


STEP_SETUPS = (
    StepSetup("lenet_300_100", "mnist", "lenet_300_100", {}, 128, steps=50, repeats=30),
    StepSetup("resnet20", "cifar10", "resnet_cifar", {"depth": 20}, 128, steps=5, repeats=20),
)
SPARSITY = 0.9
WHOLE_RUN_REPEATS = 2


def _compiled(model: keras.Model) -> keras.Model:
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
    )
    return model


def step_times(setup: StepSetup, batches: int = 4) -> dict[str, Any]:
    """Interleaved A/B step times of the plain and the masked model of `setup`."""
    keras.backend.clear_session()
    data = data_lib.load(setup.dataset, "synthetic", synthetic_examples=setup.batch_size * batches, augment=False)
    batches_of = data.train(setup.batch_size).take(batches).cache().repeat()
    keras.utils.set_random_seed(0)
    plain = _compiled(models.build(setup.model, data.input_shape, data.classes, **setup.model_kwargs))
    keras.utils.set_random_seed(0)
    masked = models.build(setup.model, data.input_shape, data.classes, **setup.model_kwargs)
    masked = _compiled(masking.prunable(masked))
    entries = masking.masked_weights(masked)
    weights = [e.weight.numpy() for e in entries]
    total = sum(w.size for w in weights)
    masks = selection.select("global", weights, [np.ones(w.shape, bool) for w in weights], round(SPARSITY * total))
    masking.apply_masks(entries, masks)

    def block(model: keras.Model, iterator: Iterator, steps: int) -> float:
        step = model.make_train_function()  # what fit runs, one step a call
        started = time.perf_counter()
        for _ in range(steps):
            logs = step(iterator)
        float(logs["loss"])  # the last step has finished
        return (time.perf_counter() - started) / steps

    # Both see the same batches in the same order; tracing and first calls are not timed.
    runs = {"plain": (plain, iter(batches_of)), "masked": (masked, iter(batches_of))}
    for model, iterator in runs.values():
        block(model, iterator, 3)
    times = {"plain": [], "masked": []}
    for repeat in range(setup.repeats):
        for name in ("plain", "masked") if repeat % 2 == 0 else ("masked", "plain"):
            times[name].append(block(*runs[name], setup.steps))
    ratios = [m / p for m, p in zip(times["masked"], times["plain"])]
    return {
        "batch_size": setup.batch_size, "steps_per_block": setup.steps, "repeats": setup.repeats,
        "kernel_weights": int(total), "sparsity": SPARSITY,
        "plain_ms": common.percentiles([1e3 * t for t in times["plain"]]),
        "masked_ms": common.percentiles([1e3 * t for t in times["masked"]]),
        "ratio": common.percentiles(ratios),
        "samples_ms": {name: [1e3 * t for t in values] for name, values in times.items()},
    }


def whole_run_configs(smoke: bool) -> dict[str, Any]:
    """The IMP run (10 dense epochs, 3 SLR cycles of 3, 90 %) and the dense run of as many epochs."""
    imp = experiment.base_config()
    imp.name = "overhead_imp"
    imp.data.data_dir = os.path.join(common.SHARED_DATA, "mnist")
    imp.export_formats = ()
    if smoke:
        imp.data.source, imp.data.data_dir, imp.batch_size = "synthetic", "", 32
        imp.pretrain_epochs, imp.cycles, imp.retrain_epochs = 1, 1, 1
    dense = imp.copy_and_resolve_references()
    dense.name, dense.method = "overhead_dense", "dense"
    dense.pretrain_epochs = experiment.method(imp, 1).epochs
    return {"imp": imp, "dense": dense}


def whole_runs(smoke: bool, repeats: int) -> dict[str, Any]:
    """`train.run` of the IMP config and the dense one, alternated, each in a fresh workdir."""
    configs = whole_run_configs(smoke)
    seconds = {name: {"wall": [], "train": []} for name in configs}
    with tempfile.TemporaryDirectory(prefix="imp_keras_overhead_") as directory:
        for repeat in range(repeats):
            for name in ("dense", "imp") if repeat % 2 == 0 else ("imp", "dense"):
                results = train.run(configs[name], os.path.join(directory, f"{name}{repeat}"), verbose=0)
                seconds[name]["wall"].append(results["wall_seconds"])
                seconds[name]["train"].append(results["train_seconds"])
                print(f"whole run {name} #{repeat}: {results['wall_seconds']:.1f} s wall, {results['train_seconds']:.1f} s training", flush=True)
    epochs = configs["dense"].pretrain_epochs
    return {
        "epochs": epochs,
        "imp_plan": f"{configs['imp'].pretrain_epochs} dense + {configs['imp'].cycles} x {configs['imp'].retrain_epochs} SLR, global, 90 %",
        "repeats": repeats,
        "seconds": seconds,
        "wall_ratio": float(np.median(seconds["imp"]["wall"]) / np.median(seconds["dense"]["wall"])),
        "train_ratio": float(np.median(seconds["imp"]["train"]) / np.median(seconds["dense"]["train"])),
    }


def table(report: dict[str, Any]) -> str:
    rows = []
    for name, entry in report["step_time"].items():
        plain, masked, ratio = entry["plain_ms"], entry["masked_ms"], entry["ratio"]
        rows.append([
            name, str(entry["batch_size"]), f"{plain['median']:.2f}", f"{masked['median']:.2f}",
            f"{ratio['median']:.3f} ({ratio['p25']:.3f}–{ratio['p75']:.3f})", f"{entry['repeats']} x {entry['steps_per_block']}",
        ])
    steps = common.markdown_table(
        ["model", "batch", "plain ms/step", "masked ms/step", "ratio masked/plain, median (IQR)", "blocks x steps"], rows
    )
    whole = report["whole_run"]
    seconds = whole["seconds"]
    runs = common.markdown_table(
        ["run", "epochs", "wall s (median)", "training s (median)"],
        [
            ["dense", str(whole["epochs"]), f"{np.median(seconds['dense']['wall']):.1f}", f"{np.median(seconds['dense']['train']):.1f}"],
            [f"IMP ({whole['imp_plan']})", str(whole["epochs"]), f"{np.median(seconds['imp']['wall']):.1f}", f"{np.median(seconds['imp']['train']):.1f}"],
            ["ratio IMP / dense", "", f"{whole['wall_ratio']:.3f}", f"{whole['train_ratio']:.3f}"],
        ],
    )
    return f"Training step, masked against plain (90 % sparse, same batches and optimizer):\n\n{steps}\n\nWhole run through imp_keras.train, {whole['repeats']} of each:\n\n{runs}"


def plot(path: str, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    names = list(report["step_time"])
    ratios = [[m / p for m, p in zip(e["samples_ms"]["masked"], e["samples_ms"]["plain"])] for e in report["step_time"].values()]
    left.boxplot(ratios, tick_labels=names)
    left.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    left.set_ylabel("step time masked / plain (per repeat)")
    left.set_title("Training step: prunable() with masks vs plain")
    whole = report["whole_run"]
    for index, name in enumerate(("dense", "imp")):
        for offset, kind, color in ((-0.2, "wall", "tab:blue"), (0.2, "train", "tab:orange")):
            values = whole["seconds"][name][kind]
            right.bar(index + offset, np.median(values), width=0.38, color=color, label=f"{kind} seconds" if index == 0 else None)
            right.plot([index + offset] * len(values), values, "k.", markersize=4)
    right.set_xticks([0, 1], [f"dense, {whole['epochs']} epochs", f"IMP, {whole['epochs']} epochs"])
    right.set_ylabel("seconds")
    right.set_title("Whole run, LeNet-300-100 on MNIST")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(smoke: bool = False, out_dir: str | None = None) -> dict[str, Any]:
    """Measures both overheads; writes and returns the report."""
    directory = common.out_dir(smoke, out_dir)
    started, machine = time.time(), common.machine()
    setups = STEP_SETUPS
    if smoke:
        setups = (
            dataclasses.replace(STEP_SETUPS[0], batch_size=16, steps=2, repeats=2),
            dataclasses.replace(STEP_SETUPS[1], name="resnet8", model_kwargs={"depth": 8}, batch_size=4, steps=1, repeats=2),
        )
    report = {"benchmark": "overhead", "smoke": smoke, "command": common.command("overhead"), "machine": machine, "step_time": {}}
    for setup in setups:
        report["step_time"][setup.name] = entry = step_times(setup)
        print(f"{setup.name}: plain {entry['plain_ms']['median']:.2f} ms, masked {entry['masked_ms']['median']:.2f} ms, "
              f"ratio {entry['ratio']['median']:.3f}", flush=True)
    report["whole_run"] = whole_runs(smoke, 1 if smoke else WHOLE_RUN_REPEATS)
    report["machine_after"] = common.machine()["load_average"]
    report["seconds"] = time.time() - started
    text = table(report)
    common.write(directory, "overhead", report, text)
    plot(os.path.join(directory, "overhead.png"), report)
    print(f"\n{text}\n\nWritten: {os.path.join(directory, 'overhead')}.json, .png, .md", flush=True)
    return report


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    run(common.SMOKE.value, common.OUT_DIR.value)


if __name__ == "__main__":
    app.run(main)
