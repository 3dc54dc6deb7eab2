"""How long choosing the weights to prune takes, at ResNet-50 size, against the memory pass it cannot beat.

The kernels of `imp_keras.models.resnet50()` as initialised (54 tensors, 25,502,912 weights) go
through `imp_keras.core.selection.select` (the function `IMPCallback` calls at every pruning) with every
criterion of `imp_keras.core.selection.CRITERIA`, in two situations:

  first: a first cycle, every weight alive, removing 50 % of them;
  later: a later cycle, 80 % already pruned (by global magnitude), removing half of the alive (to 90 %).

The reference is one `np.partition` of the same number of values (the magnitudes of all kernel
weights, precomputed as one float32 array) at the same rank: one pass over the memory that any
magnitude threshold needs. `select` also checks its inputs (shapes, NaN/Inf) and builds the masks.
Median and minimum of `--repeats` timings each.

    python -m benchmarks.selection          # about a minute
    python -m benchmarks.selection --smoke

Writes `selection.json`, `.png` and `.md` into `--out_dir`.
"""

from collections.abc import Callable, Sequence
import os
import time
from typing import Any

from absl import app, flags
import numpy as np

from benchmarks import common
from imp_keras import models
from imp_keras.tf_keras import masking
from imp_keras.core import selection as selection_lib

CASES = {"first": (0.0, 0.5), "later": (0.8, 0.9)}  # (sparsity before, sparsity after)


def _timings(function: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Median and minimum seconds of `repeats` calls, after one untimed call (first-touch page faults)."""
    function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return {"median": float(np.median(seconds)), "min": float(np.min(seconds)), "samples": seconds}


def kernels(smoke: bool) -> list[np.ndarray]:
    """The prunable kernels of ResNet-50 as initialised (of a CIFAR ResNet-8 for the smoke run)."""
    model = models.resnet_cifar(8) if smoke else models.resnet50()
    return [variable.numpy() for _, variable in masking.plain_kernels(model)]


def measure(weights: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """Every criterion and the np.partition reference, in both cases of `CASES`."""
    total = sum(w.size for w in weights)
    magnitudes = np.concatenate([np.abs(w).reshape(-1) for w in weights])
    everything = [np.ones(w.shape, bool) for w in weights]
    cases = {}
    for case, (before, after) in CASES.items():
        pruned = round(before * total)
        masks = selection_lib.select("global", weights, everything, pruned) if pruned else everything
        count = round(after * total) - pruned
        reference = _timings(lambda: np.partition(magnitudes, count - 1), repeats)
        criteria = {}
        for name in selection_lib.CRITERIA:
            criteria[name] = _timings(lambda name=name: selection_lib.select(name, weights, masks, count), repeats)
            criteria[name]["ratio_to_partition"] = criteria[name]["median"] / reference["median"]
            print(f"{case}: {name} {criteria[name]['median']:.3f} s ({criteria[name]['ratio_to_partition']:.1f}x np.partition "
                  f"{reference['median']:.3f} s)", flush=True)
        cases[case] = {
            "sparsity_before": before, "sparsity_after": after, "alive_before": total - pruned, "count": count,
            "partition": reference, "criteria": criteria,
        }
    return {"tensors": len(weights), "weights": int(total), "repeats": repeats, "cases": cases}


def table(report: dict[str, Any]) -> str:
    cases = report["cases"]
    header = ["criterion", *(f"{case}: {100 * c['sparsity_before']:g} → {100 * c['sparsity_after']:g} %, s (x partition)" for case, c in cases.items())]
    rows = [["np.partition (reference)", *(f"{c['partition']['median']:.3f}" for c in cases.values())]]
    for name in next(iter(cases.values()))["criteria"]:
        rows.append([name, *(f"{c['criteria'][name]['median']:.3f} ({c['criteria'][name]['ratio_to_partition']:.1f}x)" for c in cases.values())])
    return (
        f"Selection over {report['weights']:,} kernel weights in {report['tensors']} tensors, median of {report['repeats']}:\n\n"
        + common.markdown_table(header, rows)
    )


def plot(path: str, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = report["cases"]
    names = list(next(iter(cases.values()))["criteria"])
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    height = 0.8 / len(cases)
    for index, (case, entry) in enumerate(cases.items()):
        positions = np.arange(len(names)) + index * height
        color = f"C{index}"
        axes.barh(positions, [entry["criteria"][n]["median"] for n in names], height=height, color=color,
                  label=f"{case} ({100 * entry['sparsity_before']:g} → {100 * entry['sparsity_after']:g} %)")
        axes.axvline(entry["partition"]["median"], color=color, linestyle="--", linewidth=1,
                     label=f"np.partition, {case}")
    axes.set_yticks(np.arange(len(names)) + height * (len(cases) - 1) / 2, names)
    axes.set_xscale("log")
    axes.set_xlabel("seconds (median, log scale)")
    axes.set_title(f"One selection over {report['weights'] / 1e6:.1f} M kernel weights")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(smoke: bool = False, out_dir: str | None = None, repeats: int = 9) -> dict[str, Any]:
    """Measures every criterion; writes and returns the report."""
    directory = common.out_dir(smoke, out_dir)
    machine = common.machine()
    report = {"benchmark": "selection", "smoke": smoke, "command": common.command("selection"), "machine": machine,
              "model": "resnet_cifar(8)" if smoke else "resnet50", **measure(kernels(smoke), 1 if smoke else repeats)}
    report["machine_after"] = common.machine()["load_average"]
    text = table(report)
    common.write(directory, "selection", report, text)
    plot(os.path.join(directory, "selection.png"), report)
    print(f"\n{text}\n\nWritten: {os.path.join(directory, 'selection')}.json, .png, .md", flush=True)
    return report


_REPEATS = flags.DEFINE_integer("repeats", 9, "Timings of each criterion in each case.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    run(common.SMOKE.value, common.OUT_DIR.value, _REPEATS.value)


if __name__ == "__main__":
    app.run(main)
