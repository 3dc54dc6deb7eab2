import glob
import importlib.util
import os
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from imp_keras import Plan  # noqa: E402  (the core's: imports no Keras)

# Set by tests/test_backends.py when it runs tests/keras3 on the JAX or PyTorch backend: that
# process must never import TensorFlow, so the tf_keras session below is not touched.
KERAS3_ONLY = os.environ.get("IMP_KERAS_FLAVOURS") == "keras3"
if not KERAS3_ONLY:
    from imp_keras import keras  # noqa: E402

# The same examples on every run: CI stays reproducible while the property tests still cover
# hundreds of random configs.
settings.register_profile("imp_keras", derandomize=True)
settings.load_profile("imp_keras")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py")))


def load_config(path, arg=None):
    """The config of the file at `path` (its `arg` variant), loaded as `--config=path:arg` would."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def keras3_env(backend: str) -> dict[str, str]:
    """The environment of a Keras 3 process on `backend`, without TF_USE_LEGACY_KERAS (which tf_keras
    and tfmot set in this process)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(KERAS_BACKEND=backend, IMP_KERAS_FLAVOURS="keras3", TF_CPP_MIN_LOG_LEVEL="2")
    return env


# `python -m MODULE ARGS` with TensorFlow made unimportable (as on a machine without it), printing
# the TensorFlow modules loaded when the process ends.
WITHOUT_TENSORFLOW = """
import atexit, runpy, sys
BLOCKED = ("tensorflow", "tf_keras", "tensorflow_model_optimization")
for name in BLOCKED:  # importing fails, find_spec finds nothing
    sys.modules[name] = None
atexit.register(lambda: print("loaded:", sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in BLOCKED), flush=True))
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__")
"""


def without_tensorflow(module, *args):
    """`python -m module args` on JAX with TensorFlow unimportable; its last line lists what of it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, module, *args], capture_output=True, text=True,
        env=dict(keras3_env("jax"), PYTHONPATH=ROOT), cwd=ROOT, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "loaded: []"


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Same layer names and random numbers in every test."""
    if KERAS3_ONLY:
        yield
        return
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def op_determinism():
    """Deterministic TensorFlow kernels for one test, switched off again so no later test inherits them."""
    import tensorflow as tf
    from tensorflow.python.framework import config  # no public API switches it off again

    tf.config.experimental.enable_op_determinism()
    yield
    config.disable_op_determinism()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """A function giving a free localhost port, for the clusters of the distributed tests."""
    return _free_port


def _run_together(commands: list[list[str]], envs: list[dict], cwd: str | None = None, timeout: int = 300) -> list[tuple[int, str, str]]:
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        for command, env in zip(commands, envs)
    ]
    try:
        outputs = [process.communicate(timeout=timeout) for process in processes]
    finally:  # a process left waiting for its failed peer must not outlive the test
        for process in processes:
            if process.poll() is None:
                process.kill()
    return [(process.returncode, out, err) for process, (out, err) in zip(processes, outputs)]


@pytest.fixture
def run_together():
    """A function that starts the processes of one cluster at once and waits for all of them:
    `run_together(commands, envs, cwd=None, timeout=300)` -> [(return code, stdout, stderr)]."""
    return _run_together

# The tf_keras set-up of test_callback, test_verify and test_guard: an MLP 6-16-3 (96 + 48 = 144
# prunable weights), 64 samples in batches of 16 (4 steps per epoch), plan 90 % in 2 cycles after 2
# dense epochs, 2 epochs per cycle (main test process only: it uses tf_keras).
PLAN = Plan(goal_sparsity=0.9, cycles=2, pretrain_epochs=2, retrain_epochs=2)
STEPS = 4


def dataset():
    rng = np.random.default_rng(0)
    x = rng.random((64, 6), dtype=np.float32)
    y = np.argmax(x[:, :3] + x[:, 3:], axis=1).astype("int32")
    return x, y


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu", name="fc"), keras.layers.Dense(3, name="out")]
    )


def build(kind="slr", plan=PLAN, steps=STEPS):
    import imp_keras

    model = imp_keras.prunable(mlp())
    schedule = imp_keras.RetrainSchedule(
        keras.optimizers.schedules.PiecewiseConstantDecay([4], [0.1, 0.05]), plan, steps, kind
    )
    model.compile(
        keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model, schedule


def fit(model, callbacks, epochs=None, initial_epoch=0, plan=PLAN):
    x, y = dataset()
    return model.fit(
        x, y, batch_size=16, epochs=epochs or plan.total_epochs, initial_epoch=initial_epoch,
        callbacks=callbacks, shuffle=False, verbose=0,
    )
