"""Fashion-MNIST, Conv-4 (Frankle & Carbin's small CNN), IMP to 95 % sparsity in 3 cycles with ALLR.

20 dense epochs (SGD, Nesterov momentum 0.9, batch 128, LR 0.05 divided by 10 at 50 % and 75 %,
weight decay 1e-4), then 3 cycles of 4 epochs with ALLR, one global magnitude threshold. Data: the
original IDX files in ../shared/data/fashion-mnist; no augmentation.

LR 0.05, not the 0.1 of the other SGD configs: this network has no batch normalisation, and at 0.1
it collapsed to 10 % accuracy within 160 steps (4-epoch check on 10,240 images: 23.5 % after the
first epoch, then 10 %), while at 0.05 it reached 84.5 % in the same check and, on all 60,000
images, 87.7 % test accuracy after one epoch at 0.05 and 89.2 % after a second at 0.005.

Expected: dense test accuracy about 92-93 % (typical for Conv-4 on Fashion-MNIST); IMP at 95 %
within about one point of it. The full 32 epochs have not run here (about 4 minutes an epoch on
2 CPU cores).

    python -m imp_keras.train --config=configs/fashion_mnist_conv4.py --workdir=runs/fashion_conv4
    python -m imp_keras.train --config=configs/fashion_mnist_conv4.py:quick --workdir=/tmp/fashion_quick
"""

import os

from imp_keras import experiment

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "fashion-mnist")


def get_config(arg=None):
    config = experiment.base_config()
    config.name = "fashion_mnist_conv4"
    config.data.name = "fashion_mnist"
    config.data.data_dir = os.path.normpath(_DATA)
    config.model.name = "conv_net"
    config.model.kwargs.depth = 4
    config.lr.initial = 0.05
    config.optimizer.weight_decay = 1e-4
    config.pretrain_epochs = 20
    config.cycles = 3
    config.retrain_epochs = 4
    config.goal_sparsity = 0.95
    config.retrain_kind = "allr"
    return experiment.variant(config, arg)
