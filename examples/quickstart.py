"""Quickstart: LeNet-300-100 on MNIST pruned to 90 % sparsity with IMP, in about a minute on a CPU.

Dense training with SGD (Nesterov momentum 0.9) and a step-decay schedule, then three
prune-retrain cycles with a global magnitude threshold and SLR retraining. Prints the test
accuracy of the dense model and after every cycle, and the per-layer sparsity.

    python examples/quickstart.py                     # data from ../shared/data/mnist
    python examples/quickstart.py --data_dir=/path/to/mnist --kind=allr --goal_sparsity=0.95
    python examples/quickstart.py --block_size=4,1    # whole (4, 1) blocks of the Dense kernels
"""

import os
import time

from absl import app, flags

import imp_keras
from imp_keras import keras
from imp_keras.data import load_idx_dataset
from imp_keras.models import lenet_300_100

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", os.path.join(_REPO, "..", "shared", "data", "mnist"), "Folder with the four MNIST IDX files.")
flags.DEFINE_float("goal_sparsity", 0.9, "Final fraction of pruned weights.")
flags.DEFINE_integer("cycles", 3, "Prune-retrain cycles.")
flags.DEFINE_integer("pretrain_epochs", 10, "Dense training epochs.")
flags.DEFINE_integer("retrain_epochs", 3, "Retraining epochs per cycle.")
flags.DEFINE_enum("kind", "slr", list(imp_keras.KINDS[:6]), "Retraining schedule.")
flags.DEFINE_enum("selection", "global", sorted(imp_keras.CRITERIA), "Pruning criterion.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 0.1, "Initial learning rate of the dense training.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_list("block_size", [], "Prune Dense kernels in whole blocks of this shape, e.g. 4,1; empty: unstructured.")


def load_mnist():
    """MNIST from --data_dir, pixels scaled to [0, 1]: ((x_train, y_train), (x_test, y_test))."""
    data = load_idx_dataset(FLAGS.data_dir)
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    return (x_train.astype("float32") / 255.0, y_train), (x_test.astype("float32") / 255.0, y_test)


def train(x_train, y_train, x_test, y_test):
    """Runs the IMP plan of the flags; returns the pruned model, the plan, the History and seconds taken."""
    keras.utils.set_random_seed(FLAGS.seed)
    steps_per_epoch = -(-len(x_train) // FLAGS.batch_size)

    plan = imp_keras.Plan(
        goal_sparsity=FLAGS.goal_sparsity,
        cycles=FLAGS.cycles,
        pretrain_epochs=FLAGS.pretrain_epochs,
        retrain_epochs=FLAGS.retrain_epochs,
    )
    lr = FLAGS.learning_rate
    base = keras.optimizers.schedules.PiecewiseConstantDecay(
        [steps_per_epoch * plan.pretrain_epochs // 2, steps_per_epoch * plan.pretrain_epochs * 3 // 4],
        [lr, lr / 10, lr / 100],
    )
    schedule = imp_keras.RetrainSchedule(base, plan, steps_per_epoch, kind=FLAGS.kind)

    block_size = tuple(int(b) for b in FLAGS.block_size) or None
    model = imp_keras.prunable(lenet_300_100())
    model.compile(
        keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    history = model.fit(
        x_train,
        y_train,
        batch_size=FLAGS.batch_size,
        epochs=plan.total_epochs,
        validation_data=(x_test, y_test),
        callbacks=[imp_keras.IMPCallback(plan, schedule, selection=FLAGS.selection, block_size=block_size)],
        verbose=2,
    )
    return model, plan, history, time.time() - start


def print_results(model, plan, history, seconds):
    """The test accuracy of the dense model and after every cycle, and the per-layer sparsity."""
    accuracy = history.history["val_accuracy"]
    sparsity = history.history["sparsity"]
    rows = [("dense", 0, sparsity[plan.pretrain_epochs - 1], accuracy[plan.pretrain_epochs - 1])] if plan.pretrain_epochs else []
    for cycle, start_epoch in enumerate(plan.cycle_start_epochs, start=1):
        last = start_epoch + plan.retrain_epochs[cycle - 1] - 1
        rows.append((f"cycle {cycle}", cycle, sparsity[last], accuracy[last]))
    blocks = f" in {'x'.join(FLAGS.block_size)} blocks" if FLAGS.block_size else ""
    print(f"\nIMP on MNIST, LeNet-300-100, {FLAGS.kind.upper()} retraining, {FLAGS.selection} selection{blocks}, "
          f"{plan.total_epochs} epochs in {seconds:.0f} s")
    print(f"{'model':<10} {'sparsity':>9} {'test accuracy':>14}")
    for name, _, s, a in rows:
        print(f"{name:<10} {s:>9.2%} {a:>14.2%}")
    print("\nPer-layer sparsity of the final model:")
    print(imp_keras.sparsity_report(model))


def main(argv):
    del argv
    (x_train, y_train), (x_test, y_test) = load_mnist()
    print_results(*train(x_train, y_train, x_test, y_test))


if __name__ == "__main__":
    app.run(main)
