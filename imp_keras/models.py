"""Reference architectures of the paper's experiments, as plain tf_keras models."""

from imp_keras._keras import keras

__all__ = ["lenet_300_100"]


def lenet_300_100(input_shape: tuple[int, ...] = (28, 28), classes: int = 10) -> keras.Model:
    """LeNet-300-100 (LeCun et al., 1998): two hidden Dense layers of 300 and 100 ReLU units.

    Returns logits; 266,200 kernel weights (235,200 + 30,000 + 1,000).
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(classes, name="logits"),
        ],
        name="lenet_300_100",
    )
