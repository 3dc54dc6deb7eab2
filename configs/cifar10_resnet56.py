"""CIFAR-10, ResNet-56 (He et al. 2016, option-A shortcuts, no conv bias), IMP to 90 % in 3 cycles.

The paper's CIFAR setting: 200 dense epochs, SGD with Nesterov momentum 0.9, batch 128, LR 0.1
divided by 10 at 50 % and 75 % of training, weight decay 1e-4 (added to the gradient as in
PyTorch, every variable), random crop 32 (pad 4) + flip, per-channel normalisation. Then 3 cycles of 10
epochs with SLR retraining and one global magnitude threshold.

Expected: dense about 93-94 % test accuracy (He et al. report 93.03 %); the paper finds IMP with
SLR/ALLR within about a point of dense at 90 %. Not measured here (no GPU; ~130 ms a step on CPU).
Data: tfds `cifar10` prepared in ~/tensorflow_datasets (never downloaded), or the original archive
with --config.data.source=files --config.data.data_dir=DIR.

    python -m imp_keras.train --config=configs/cifar10_resnet56.py --workdir=runs/cifar10_resnet56
    python -m imp_keras.train --config=configs/cifar10_resnet56.py:quick --workdir=/tmp/r56_quick
"""

from imp_keras import experiment


def get_config(arg=None):
    config = experiment.cifar_config("cifar10", weight_decay=1e-4)
    config.name = "cifar10_resnet56"
    config.model.name = "resnet_cifar"
    config.model.kwargs.depth = 56
    config.goal_sparsity = 0.9
    config.retrain_kind = "slr"
    return experiment.variant(config, arg)
