"""CIFAR-10, VGG-16 with BatchNorm, IMP to 95 % in 3 cycles with SLR.

The paper's CIFAR setting: 200 dense epochs, SGD with Nesterov momentum 0.9, batch 128, LR 0.1
divided by 10 at 50 % and 75 %, weight decay 5e-4 (added to the gradient as in PyTorch, every variable), random crop 32
(pad 4) + flip, per-channel normalisation. Then 3 cycles of 10 epochs with SLR and one global
magnitude threshold.

Expected: dense about 93-94 % test accuracy (typical for VGG-16-BN on CIFAR-10); IMP at 95 % close
to dense. Not measured here (no GPU). Data: tfds `cifar10` in ~/tensorflow_datasets, or the original
archive with --config.data.source=files --config.data.data_dir=DIR.

    python -m imp_keras.train --config=configs/cifar10_vgg16.py --workdir=runs/cifar10_vgg16
    python -m imp_keras.train --config=configs/cifar10_vgg16.py:quick --workdir=/tmp/vgg_quick
"""

from imp_keras import experiment


def get_config(arg=None):
    config = experiment.cifar_config("cifar10", weight_decay=5e-4)
    config.name = "cifar10_vgg16"
    config.model.name = "vgg16_bn"
    config.goal_sparsity = 0.95
    config.retrain_kind = "slr"
    return experiment.variant(config, arg)
