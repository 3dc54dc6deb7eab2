"""What every benchmark shares: its two common flags, the machine it ran on, and its result files.

Each benchmark writes `<out_dir>/<name>.json` (settings, machine, every measurement, summary),
`<name>.png` and `<name>.md` (the table BENCHMARKS.md shows). `--smoke` runs a few steps on tiny
data, only to keep the script working; its files go to a temporary folder unless `--out_dir` is given.
"""

import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from typing import Any

from collections.abc import Sequence

from absl import flags
import numpy as np

from imp_keras import rundir

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))

SMOKE = flags.DEFINE_bool("smoke", False, "A few steps on tiny data: checks that the benchmark runs, measures nothing.")
OUT_DIR = flags.DEFINE_string("out_dir", None, f"Where the JSON, PNG and table go (default {RESULTS_DIR}; with --smoke a temporary folder).")


def out_dir(smoke: bool, given: str | None) -> str:
    """The folder results go to, created: `given`, else the results folder (a temporary one for smoke runs)."""
    path = given or (tempfile.mkdtemp(prefix="imp_keras_bench_") if smoke else RESULTS_DIR)
    os.makedirs(path, exist_ok=True)
    return path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(distribution: str) -> str | None:
    """The installed version of a package, read without importing it (None when absent)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _accelerators() -> list[str]:
    """The GPUs of the Keras 3 backend in use (JAX or PyTorch), without importing TensorFlow."""
    if "jax" in sys.modules:
        return [str(d) for d in sys.modules["jax"].devices() if d.platform != "cpu"]
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        torch = sys.modules["torch"]
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def machine() -> dict[str, Any]:
    """The machine and software a measurement ran on, with the load average when it was taken
    (the benchmark machine may be shared). Imports nothing: a JAX or PyTorch run stays without TensorFlow."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "accelerators": _accelerators(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": _version("tensorflow"),
        "tf_keras": _version("tf_keras"),
        "tfmot": _version("tensorflow-model-optimization"),
        "keras": _version("keras"),
        "jax": _version("jax"),
        "torch": _version("torch"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def command(module: str) -> str:
    """The command line this process runs, as `python -m benchmarks.<module> <flags>`."""
    return " ".join(["python", "-m", f"benchmarks.{module}", *sys.argv[1:]])


def set_threads(threads: int) -> None:
    """Limits TensorFlow to `threads` threads per op and between ops (0 keeps TensorFlow's default)."""
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Median, 25th and 75th percentile of `values`."""
    values = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(values)), "p25": float(np.percentile(values, 25)), "p75": float(np.percentile(values, 75))}


def write(directory: str, name: str, report: dict[str, Any], table: str) -> None:
    """Writes `<name>.json` (the report) and `<name>.md` (the table) into `directory`."""
    rundir.write_json(os.path.join(directory, f"{name}.json"), report, allow_nan=False)
    with open(os.path.join(directory, f"{name}.md"), "w") as f:
        f.write(table + "\n")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
