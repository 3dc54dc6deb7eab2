"""ImageNet, ResNet-50 (tf_keras applications, weights=None), IMP to 90 % in 3 cycles with ALLR.

90 dense epochs, SGD with Nesterov momentum 0.9, batch 128 (global), LR 0.1 divided by 10 after
epochs 30, 60 and 80, weight decay 1e-4 (added to the gradient as in PyTorch, every variable); random-resized-crop 224 +
flip for training, resize 256 + center crop 224 for evaluation. Then 3 cycles of 5 epochs with
ALLR and one global magnitude threshold. Use several GPUs: --config.distribution=mirrored, and
--config.mixed_precision=True on GPUs with tensor cores.

Expected: dense about 76 % top-1 (the usual figure for this recipe); the paper finds IMP with
ALLR close to dense at 90 %. Not measured here (a multi-GPU job). Data: tfds `imagenet2012`
prepared in --config.data.data_dir (manual download; never downloaded by the trainer).

    python -m imp_keras.train --config=configs/imagenet_resnet50.py --workdir=runs/imagenet_r50
    python -m imp_keras.train --config=configs/imagenet_resnet50.py:quick --workdir=/tmp/r50_quick
"""

from imp_keras import experiment


def get_config(arg=None):
    config = experiment.base_config()
    config.name = "imagenet_resnet50"
    config.data.name = "imagenet2012"
    config.data.source = "tfds"
    config.model.name = "resnet50"
    config.optimizer.weight_decay = 1e-4
    config.lr.step_at = (30 / 90, 60 / 90, 80 / 90)
    config.pretrain_epochs = 90
    config.cycles = 3
    config.retrain_epochs = 5
    config.goal_sparsity = 0.9
    config.retrain_kind = "allr"
    return experiment.variant(config, arg)
