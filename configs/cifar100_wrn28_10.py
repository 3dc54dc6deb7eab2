"""CIFAR-100, Wide ResNet-28-10 (Zagoruyko & Komodakis 2016), IMP to 95 % in 3 cycles with ALLR.

The paper's CIFAR setting: 200 dense epochs, SGD with Nesterov momentum 0.9, batch 128, LR 0.1
divided by 10 at 50 % and 75 %, weight decay 5e-4 (added to the gradient as in PyTorch, every variable), random crop 32
(pad 4) + flip + rotation up to 15 degrees, per-channel normalisation. Then 3 cycles of 10 epochs
with ALLR and one global magnitude threshold.

Expected: dense about 80 % test accuracy (Zagoruyko & Komodakis report 80.0 %); the paper finds
IMP with ALLR close to dense at high sparsity for this over-parameterised network. Not measured here
(36.5 M parameters: a GPU job). Data: tfds `cifar100` in ~/tensorflow_datasets, or the original
archive with --config.data.source=files --config.data.data_dir=DIR.

    python -m imp_keras.train --config=configs/cifar100_wrn28_10.py --workdir=runs/cifar100_wrn
    python -m imp_keras.train --config=configs/cifar100_wrn28_10.py:quick --workdir=/tmp/wrn_quick
"""

from imp_keras import experiment


def get_config(arg=None):
    config = experiment.cifar_config("cifar100", weight_decay=5e-4)
    config.name = "cifar100_wrn28_10"
    config.model.name = "wide_resnet"
    config.model.kwargs.depth = 28
    config.model.kwargs.width = 10
    config.goal_sparsity = 0.95
    config.retrain_kind = "allr"
    return experiment.variant(config, arg)
