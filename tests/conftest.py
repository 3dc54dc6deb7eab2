import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from imp_keras import keras  # noqa: E402

# The same examples on every run: CI stays reproducible while the property tests still cover
# hundreds of random configs.
settings.register_profile("imp_keras", derandomize=True)
settings.load_profile("imp_keras")

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Same layer names and random numbers in every test."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")
