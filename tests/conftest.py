import os
import socket
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Set by tests/test_backends.py when it runs tests/keras3 on the JAX or PyTorch backend: that
# process must never import TensorFlow, so the tf_keras session below is not touched.
KERAS3_ONLY = os.environ.get("IMP_KERAS_FLAVOURS") == "keras3"
if not KERAS3_ONLY:
    from imp_keras import keras  # noqa: E402

# The same examples on every run: CI stays reproducible while the property tests still cover
# hundreds of random configs.
settings.register_profile("imp_keras", derandomize=True)
settings.load_profile("imp_keras")

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


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
