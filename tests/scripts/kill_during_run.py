"""Runs `imp_keras.train.run` on a small deterministic config into WORKDIR, and can die on the way.

Usage: kill_during_run.py WORKDIR [--kill EPOCH BATCH] [--hold FILE] [--backend jax|torch|tensorflow] [--gmp]

  --kill EPOCH BATCH  SIGKILL this process at the start of batch BATCH of epoch EPOCH, or with
                      BATCH "end" after the epoch's end-of-epoch callbacks (its backup included).
  --hold FILE         at the first batch, create FILE.started and wait until FILE exists (lock tests).
  --backend BACKEND   train with Keras 3 on BACKEND instead of tf_keras (TensorFlow is then never
                      imported on jax and torch: its import fails in this process).
  --gmp               GMP instead (synthetic.gmp_config: 4 epochs, pruned to 75 % from step 8 to 24
                      every 4 steps).

The config: test_train's synthetic_config with ALLR: LeNet-300-100 on 256 synthetic MNIST-shaped
examples in batches of 32 (8 steps an epoch), 2 dense epochs, then 2 ALLR cycles of 2 epochs to
75 % sparsity; op determinism on.
Without --kill the same command runs (or continues) the run to its end.
"""

import argparse
import os
import signal
import sys
import time

import imp_keras
from imp_keras import experiment, train

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from synthetic import gmp_config, synthetic_config  # noqa: E402

_NOT_HERE = ("tensorflow", "tf_keras", "tensorflow_model_optimization")


def config(backend=None, gmp=False):
    flavour = {} if backend is None else {"keras": "keras3", "backend": backend}
    if gmp:
        return gmp_config(name="kill_gmp", **flavour)
    return synthetic_config(name="kill", retrain_kind="allr", **flavour)


class Kill:
    def __init__(self, epoch: int, batch: str):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.current, str(batch)) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch, "end") == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)


class Hold:
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_train_batch_begin(self, batch, logs=None):
        if not os.path.exists(self.path + ".started"):
            open(self.path + ".started", "w").close()
            while not os.path.exists(self.path):
                time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--kill", nargs=2, metavar=("EPOCH", "BATCH"))
    parser.add_argument("--hold")
    parser.add_argument("--backend")
    parser.add_argument("--gmp", action="store_true")
    args = parser.parse_args()
    print(f"imp_keras from {os.path.dirname(imp_keras.__file__)}", flush=True)
    if args.backend in ("jax", "torch"):
        for name in _NOT_HERE:  # as on a machine without them: importing fails, find_spec finds nothing
            sys.modules[name] = None
    run_config = config(args.backend, args.gmp)
    keras = experiment.keras_of(run_config).keras
    # The callbacks of the run's Keras: the classes above on its Callback.
    kill = type("Kill", (Kill, keras.callbacks.Callback), {})
    hold = type("Hold", (Hold, keras.callbacks.Callback), {})
    callbacks = []
    if args.kill:
        callbacks.append(kill(int(args.kill[0]), args.kill[1]))
    if args.hold:
        callbacks.append(hold(args.hold))
    train.run(run_config, args.workdir, callbacks=callbacks, verbose=2)
    imported = sorted(m for m, module in sys.modules.items() if module is not None and m.split(".")[0] in _NOT_HERE)
    print(f"imported: {imported}", flush=True)


if __name__ == "__main__":
    main()
