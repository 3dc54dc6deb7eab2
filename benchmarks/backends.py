"""What masks cost on each Keras: tf_keras (the tfmot path) and Keras 3 on TensorFlow, JAX and PyTorch.

Per flavour, in a fresh process of its own (a Keras 3 backend is fixed per process; the children get
KERAS_BACKEND and no TF_USE_LEGACY_KERAS), LeNet-300-100 (784-300-100-10) is built twice with the
same seed: plain, and through `imp_keras.prunable` with 90 % of its kernel weights masked (global
magnitude selection). Both train with SGD (lr 0.01, Nesterov momentum 0.9), batch 128, and the
compile defaults of their Keras: `jit_compile="auto"` on Keras 3, which is XLA on JAX, a tf.function
graph without XLA on TensorFlow without a GPU, and eager execution on PyTorch (`torch.compile` only
with `jit_compile=True`); tf_keras runs a tf.function graph. The resolved value is in the report.

Step time: `train_on_batch` (one step a call, the same public call on every flavour, NumPy batches)
on 4 fixed MNIST batches; blocks of `STEPS` steps alternate between plain and masked (ABBA order),
`REPEATS` blocks each, after 3 untimed steps each. Reported: median ms per step and the median of
the per-block ratios masked / plain.

Epoch time: `fit` over the 60,000 MNIST training images (469 steps of 128, shuffled), one untimed
warm-up epoch per model, then `TIMED_EPOCHS` timed one-epoch `fit` calls per model in ABBA order.

`--cpus=N` pins every child to the same N CPUs (the libraries then size their thread pools to them),
which keeps the four comparable on a machine shared with other work.

The images are read once by this (parent) process with `imp_keras.data.load_idx_dataset` from
`../shared/data/mnist` and handed to the children as a NumPy file, so the JAX and PyTorch children
never import TensorFlow (each child reports whether it did).

    python -m benchmarks.backends --cpus=1  # about 3 minutes on 2 cores
    python -m benchmarks.backends --smoke   # 1024 images, 2 blocks of 2 steps, 1 timed epoch

Writes `backends.json` and `backends.md` into `--out_dir`.
"""

from collections.abc import Sequence
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from absl import app, flags
import numpy as np

import imp_keras
from benchmarks import common
from imp_keras.core import selection

__all__ = ["FLAVOURS", "measure", "run", "summary", "table"]

# flavour -> Keras 3 backend (None: tf_keras)
FLAVOURS = {"tf_keras": None, "keras3_tensorflow": "tensorflow", "keras3_jax": "jax", "keras3_torch": "torch"}
BATCH_SIZE = 128
SPARSITY = 0.9
STEPS, REPEATS = 50, 20
WARMUP_EPOCHS, TIMED_EPOCHS = 1, 2
SMOKE_IMAGES = 1024
CHILD_TIMEOUT_S = 300

CPUS = flags.DEFINE_integer(
    "cpus", 0, "Pin each child process to this many CPUs (the first ones it may use); 0: no pinning. On a "
    "shared machine PyTorch's default threads (one per core) spin against the other work.", lower_bound=0,
)
_CHILD = flags.DEFINE_enum("child", None, list(FLAVOURS), "Internal: measure this flavour in this process.")
_DATA = flags.DEFINE_string("data", None, "Internal (with --child): the .npz of images and labels to train on.")
_RESULT = flags.DEFINE_string("result", None, "Internal (with --child): where to write the measurements (JSON).")


def _keras(flavour: str) -> Any:
    """The Keras module of `flavour`: tf_keras, or Keras 3 on the backend KERAS_BACKEND names."""
    return imp_keras.adapter("tf_keras" if FLAVOURS[flavour] is None else "keras3").keras


def _lenet(keras: Any) -> Any:
    """LeNet-300-100 as `imp_keras.models.lenet_300_100` builds it, in the given Keras, with seeded
    initializers: every call returns the same weights. (Not `keras.utils.set_random_seed`: Keras 3's
    imports TensorFlow whenever it is installed, also on JAX and PyTorch.)"""

    def dense(units: int, name: str, seed: int, **kwargs: Any) -> Any:
        return keras.layers.Dense(units, name=name, kernel_initializer=keras.initializers.GlorotUniform(seed), **kwargs)

    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            dense(300, "fc1", 1, activation="relu"),
            dense(100, "fc2", 2, activation="relu"),
            dense(10, "logits", 3),
        ],
        name="lenet_300_100",
    )


def _compiled(keras: Any, model: Any) -> Any:
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
    )
    return model


def _models(keras: Any) -> tuple[Any, Any, int]:
    """The plain model and its masked twin (same initial weights, 90 % masked), and the kernel count."""
    plain = _compiled(keras, _lenet(keras))
    masked = _compiled(keras, imp_keras.prunable(_lenet(keras)))
    entries = imp_keras.masked_weights(masked)
    weights = [np.asarray(e.weight) for e in entries]
    total = sum(w.size for w in weights)
    masks = selection.select("global", weights, [np.ones(w.shape, bool) for w in weights], round(SPARSITY * total))
    imp_keras.apply_masks(entries, masks)
    return plain, masked, total


def _step_times(
    models: dict[str, Any], x: np.ndarray, y: np.ndarray, steps: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds per `train_on_batch` step, one value per block, blocks of both models in ABBA order."""
    batches = [(x[i : i + BATCH_SIZE], y[i : i + BATCH_SIZE]) for i in range(0, 4 * BATCH_SIZE, BATCH_SIZE)]

    def block(model: Any, count: int) -> float:
        started = time.perf_counter()
        for step in range(count):
            model.train_on_batch(*batches[step % len(batches)])  # returns NumPy: the step has finished
        return (time.perf_counter() - started) / count

    for model in models.values():
        block(model, 3)
    times = {name: [] for name in models}
    for repeat in range(repeats):
        for name in ("plain", "masked") if repeat % 2 == 0 else ("masked", "plain"):
            times[name].append(block(models[name], steps))
    return times


def _epoch_times(models: dict[str, Any], x: np.ndarray, y: np.ndarray, timed: int) -> dict[str, list[float]]:
    """Seconds per one-epoch `fit` call after `WARMUP_EPOCHS` untimed ones, models in ABBA order."""
    for model in models.values():
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=WARMUP_EPOCHS, shuffle=True, verbose=0)
    times = {name: [] for name in models}
    for repeat in range(timed):
        for name in ("plain", "masked") if repeat % 2 == 0 else ("masked", "plain"):
            started = time.perf_counter()
            models[name].fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=True, verbose=0)
            times[name].append(time.perf_counter() - started)
    return times


def _versions(flavour: str, keras: Any) -> dict[str, Any]:
    backend = FLAVOURS[flavour] or "tensorflow"
    return {"keras": keras.__version__, "backend": backend, backend: sys.modules[backend].__version__}


def measure(flavour: str, data_path: str, smoke: bool) -> dict[str, Any]:
    """Step and epoch times of plain and masked LeNet-300-100 in this process's Keras `flavour`."""
    with np.load(data_path) as data:
        x, y = data["images"].astype(np.float32) / 255.0, data["labels"].astype(np.int32)
    keras = _keras(flavour)
    plain, masked, kernels = _models(keras)
    models = {"plain": plain, "masked": masked}
    steps, repeats = (2, 2) if smoke else (STEPS, REPEATS)
    alive = sum(float(np.asarray(e.mask).sum()) for e in imp_keras.masked_weights(masked))
    step_seconds = _step_times(models, x, y, steps, repeats)
    epoch_seconds = _epoch_times(models, x, y, 1 if smoke else TIMED_EPOCHS)
    return {
        "flavour": flavour,
        **_versions(flavour, keras),
        "jit_compile": bool(plain.jit_compile),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "cpus": sorted(os.sched_getaffinity(0)),
        "kernel_weights": int(kernels),
        "masked_fraction": 1.0 - alive / kernels,
        "images": int(len(x)),
        "steps_per_epoch": -(-len(x) // BATCH_SIZE),
        "steps_per_block": steps,
        "repeats": repeats,
        "step_seconds": step_seconds,
        "epoch_seconds": epoch_seconds,
    }


def _write_data(directory: str, smoke: bool) -> str:
    """The MNIST training images and labels (the first `SMOKE_IMAGES` when smoke) as an .npz in `directory`."""
    # Imported here: imp_keras.data imports TensorFlow, which the JAX and PyTorch children must not.
    from imp_keras import data as data_lib

    images, labels = data_lib.load_idx_dataset(os.path.join(common.SHARED_DATA, "mnist"))["train"]
    if smoke:
        images, labels = images[:SMOKE_IMAGES], labels[:SMOKE_IMAGES]
    path = os.path.join(directory, "mnist_train.npz")
    np.savez(path, images=images, labels=labels)
    return path


def _run_child(flavour: str, data_path: str, directory: str, smoke: bool, cpus: int) -> dict[str, Any]:
    """`measure(flavour, ...)` in a fresh Python process (on the first `cpus` CPUs when nonzero),
    with its load average and wall time."""
    env = {key: value for key, value in os.environ.items() if key not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if FLAVOURS[flavour] is not None:
        env["KERAS_BACKEND"] = FLAVOURS[flavour]
    result_path = os.path.join(directory, f"{flavour}.json")
    command = [
        sys.executable, "-m", "benchmarks.backends", f"--child={flavour}", f"--data={data_path}", f"--result={result_path}",
    ]
    pinned = set(sorted(os.sched_getaffinity(0))[:cpus]) if cpus else None
    load_before, started = os.getloadavg(), time.perf_counter()
    done = subprocess.run(
        command + (["--smoke"] if smoke else []), env=env, cwd=common.REPO, capture_output=True, text=True,
        timeout=CHILD_TIMEOUT_S, preexec_fn=(lambda: os.sched_setaffinity(0, pinned)) if pinned else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{flavour}: the child process failed ({done.returncode}):\n{done.stderr[-4000:]}")
    with open(result_path) as f:
        result = json.load(f)
    result["process_seconds"] = time.perf_counter() - started
    result["load_average_before"] = [round(v, 2) for v in load_before]
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Median (and quartiles) of a child's step times and ratios; its epoch seconds and ms per step."""
    steps, epochs = result["step_seconds"], result["epoch_seconds"]
    ratios = [m / p for m, p in zip(steps["masked"], steps["plain"])]
    epoch_median = {name: float(np.median(values)) for name, values in epochs.items()}
    return {
        "plain_ms": common.percentiles([1e3 * t for t in steps["plain"]]),
        "masked_ms": common.percentiles([1e3 * t for t in steps["masked"]]),
        "ratio": common.percentiles(ratios),
        "epoch_seconds": epoch_median,
        "epoch_ms_per_step": {name: 1e3 * s / result["steps_per_epoch"] for name, s in epoch_median.items()},
        "epoch_ratio": epoch_median["masked"] / epoch_median["plain"],
    }


def table(report: dict[str, Any]) -> str:
    rows = []
    for flavour, entry in report["flavours"].items():
        s = entry["summary"]
        rows.append([
            f"{flavour} ({entry['backend']}, jit_compile={entry['jit_compile']})",
            f"{s['plain_ms']['median']:.2f}", f"{s['masked_ms']['median']:.2f}",
            f"{s['ratio']['median']:.3f} ({s['ratio']['p25']:.3f}–{s['ratio']['p75']:.3f})",
            f"{s['epoch_seconds']['plain']:.2f} / {s['epoch_seconds']['masked']:.2f}",
            f"{s['epoch_ms_per_step']['plain']:.2f} / {s['epoch_ms_per_step']['masked']:.2f}",
            f"{s['epoch_ratio']:.3f}",
        ])
    return common.markdown_table(
        ["flavour (backend, jit_compile)", "plain ms/step", "masked ms/step", "ratio masked/plain, median (IQR)",
         "epoch s plain / masked", "epoch ms/step plain / masked", "epoch ratio"],
        rows,
    )


def run(smoke: bool = False, out_dir: str | None = None, cpus: int = 0) -> dict[str, Any]:
    """Measures every flavour, one child process at a time; writes and returns the report."""
    directory = common.out_dir(smoke, out_dir)
    started, machine = time.time(), common.machine()
    report = {
        "benchmark": "backends", "smoke": smoke, "command": common.command("backends"), "machine": machine,
        "model": "lenet_300_100", "batch_size": BATCH_SIZE, "sparsity": SPARSITY,
        "warmup_epochs": WARMUP_EPOCHS, "cpus_per_child": cpus or None, "flavours": {},
    }
    with tempfile.TemporaryDirectory(prefix="imp_keras_backends_") as scratch:
        data_path = _write_data(scratch, smoke)
        for flavour in FLAVOURS:
            entry = _run_child(flavour, data_path, scratch, smoke, cpus)
            entry["summary"] = s = summary(entry)
            report["flavours"][flavour] = entry
            print(f"{flavour}: step {s['plain_ms']['median']:.2f} / {s['masked_ms']['median']:.2f} ms "
                  f"(ratio {s['ratio']['median']:.3f}), epoch {s['epoch_seconds']['plain']:.2f} / "
                  f"{s['epoch_seconds']['masked']:.2f} s, {entry['process_seconds']:.0f} s in all", flush=True)
    report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    report["seconds"] = time.time() - started
    text = table(report)
    common.write(directory, "backends", report, text)
    print(f"\n{text}\n\nWritten: {os.path.join(directory, 'backends')}.json, .md", flush=True)
    return report


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if _CHILD.value is None:
        run(common.SMOKE.value, common.OUT_DIR.value, CPUS.value)
        return
    if not (_DATA.value and _RESULT.value):
        raise app.UsageError("--child needs --data and --result.")
    result = measure(_CHILD.value, _DATA.value, common.SMOKE.value)
    with open(_RESULT.value, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    app.run(main)
