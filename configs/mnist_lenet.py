"""MNIST, LeNet-300-100, IMP to 90 % sparsity in 3 cycles with SLR retraining: the main job.

10 dense epochs (SGD, Nesterov momentum 0.9, batch 128, LR 0.1 divided by 10 at 50 % and 75 %),
then 3 prune-retrain cycles of 3 epochs, one global magnitude threshold. Data: the original IDX
files in ../shared/data/mnist.

Runs on Keras 3 with the JAX backend, the fastest path on a CPU (README); the same experiment on
tf_keras, with TFLite and SavedModel files: --config.keras=tf_keras --config.backend=tensorflow.

Expected (measured on 2 CPU cores, Keras 3 on JAX: 11 s of training, 18 s with the export of .keras
and .weights.h5): test accuracy 98.38 % dense, then 98.42 %, 98.51 %, 98.33 % at 53.58 %, 78.46 %,
90.00 % sparsity after cycles 1-3 (tf_keras: 98.37, 98.49, 98.41, 98.36 %, 28 s of training).

    python -m imp_keras.train --config=configs/mnist_lenet.py --workdir=runs/mnist_lenet
    python -m imp_keras.train --config=configs/mnist_lenet.py:quick --workdir=/tmp/mnist_quick   # smoke test
"""

import os

from imp_keras import experiment

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist")


def get_config(arg=None):
    config = experiment.base_config()
    config.name = "mnist_lenet"
    config.data.name = "mnist"
    config.data.data_dir = os.path.normpath(_DATA)
    config.model.name = "lenet_300_100"
    config.keras = "keras3"  # the fastest path on a CPU (README, Set-up): Keras 3 on JAX
    config.backend = "jax"
    config.pretrain_epochs = 10
    config.cycles = 3
    config.retrain_epochs = 3
    config.goal_sparsity = 0.9
    config.retrain_kind = "slr"
    return experiment.variant(config, arg)
