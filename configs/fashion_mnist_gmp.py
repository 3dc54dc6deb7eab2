"""Fashion-MNIST, Conv-2 (16 filters), gradual magnitude pruning (GMP) to 95 % sparsity in 15 epochs.

15 epochs from scratch (SGD, Nesterov momentum 0.9, batch 128, LR 0.05 divided by 10 at 50 % and
75 % of the 15 epochs, weight decay 1e-4), pruned while training by `imp_keras.GMPCallback`: the
sparsity rises as s(t) = 0.95 (1 - (1 - t)^3) from 10 % to 50 % of the run's steps, the masks
updated every 100 steps with one global magnitude threshold. The network and optimizer of
BENCHMARKS.md's Conv-2 setup (two 3x3 convolutions of 16 filters, max-pooling, Dense 3,136 -> 256
-> 256 -> 10; LR 0.05: no batch normalisation), here on all 60,000 training images. Data: the
original IDX files in ../shared/data/fashion-mnist; no augmentation. Keras 3 on JAX.

Expected (measured, the full run, on 2 CPU cores shared with another test job, Keras 3 on JAX, seed
0, without the export: 657 s of training, 30-60 s an epoch): test accuracy 92.32 % at 95.00 %
sparsity (fc1 97.61 %, fc2 67.23 %, the convolutions 22 % and 45 %), after 30 mask updates at steps
702, ..., 3502 and 3510 of the 7,020; 87.45 % after the first (dense) epoch.

    python -m imp_keras.train --config=configs/fashion_mnist_gmp.py --workdir=runs/fashion_gmp
    python -m imp_keras.train --config=configs/fashion_mnist_gmp.py:quick --workdir=/tmp/fashion_gmp_quick   # smoke test
"""

import os

from imp_keras import experiment

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "fashion-mnist")


def get_config(arg=None):
    config = experiment.base_config()
    config.name = "fashion_mnist_gmp"
    config.data.name = "fashion_mnist"
    config.data.data_dir = os.path.normpath(_DATA)
    config.model.name = "conv_net"
    config.model.kwargs.depth = 2
    config.model.kwargs.filters = 16
    config.keras = "keras3"  # the fastest path on a CPU (README, Set-up): Keras 3 on JAX
    config.backend = "jax"
    config.lr.initial = 0.05
    config.optimizer.weight_decay = 1e-4
    config.method = "gmp"
    config.pretrain_epochs = 15  # GMP's whole budget
    config.goal_sparsity = 0.95
    config.gmp_begin = 0.1
    config.gmp_end = 0.5
    config.gmp_unit = "fraction"
    config.gmp_frequency = 100
    return experiment.variant(config, arg)
