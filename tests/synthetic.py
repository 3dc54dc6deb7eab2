"""The small trainer config of the trainer tests, importable without Keras or TensorFlow (the Keras 3
tests run it on JAX and PyTorch in processes that must not import TensorFlow)."""

from imp_keras import experiment


def synthetic_config(**fields):
    """LeNet-300-100 on 256 synthetic MNIST-shaped examples: 8 steps an epoch."""
    config = experiment.base_config()
    config.name = "synthetic"
    config.data.source = "synthetic"
    config.data.synthetic_examples = 256
    config.batch_size = 32
    config.pretrain_epochs = 2
    config.cycles = 2
    config.retrain_epochs = 2
    config.goal_sparsity = 0.75
    config.deterministic = True
    config.export_formats = ()
    for key, value in fields.items():
        setattr(config, key, value)
    return config


def gmp_config(**fields):
    """`synthetic_config` for GMP: 4 epochs of 8 steps, pruned to 75 % from step 8 to step 24 (a
    quarter to three quarters of the run), every 4 steps; the IMP fields back at their defaults."""
    defaults = experiment.base_config()
    gmp = dict(
        name="synthetic_gmp", method="gmp", cycles=defaults.cycles, retrain_epochs=defaults.retrain_epochs,
        pretrain_epochs=4, gmp_begin=0.25, gmp_end=0.75, gmp_frequency=4,
    )
    return synthetic_config(**{**gmp, **fields})
