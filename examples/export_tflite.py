"""From the MNIST quickstart to verified deployable files: IMP on LeNet-300-100, then every export
format (SavedModel, .keras, H5 and six TFLite variants), each checked against the Keras model on
the 10,000 test images, with the size and latency report.

    python examples/export_tflite.py                        # unstructured, files in /tmp/imp_keras_export
    python examples/export_tflite.py --block_size=4,1       # whole (4, 1) blocks: TFLite's sparse kernel
    python examples/export_tflite.py --out_dir=deploy --latency_runs=1000

All flags of examples/quickstart.py apply (--goal_sparsity, --cycles, --data_dir, ...).
"""

import os
import tempfile

from absl import app, flags, logging

import imp_keras
from imp_keras.export.tf_keras import FORMATS

import quickstart  # defines the training flags; examples/ is on sys.path when run as a script

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", os.path.join(tempfile.gettempdir(), "imp_keras_export"), "Folder for the exported files and report.")
flags.DEFINE_integer("representative_samples", 500, "Training images that calibrate the full-integer int8 formats.")
flags.DEFINE_integer("latency_runs", 500, "Timed invokes per TFLite file and runtime.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # the TFLite converter logs every temporary SavedModel at INFO
    (x_train, y_train), (x_test, y_test) = quickstart.load_mnist()
    model, plan, history, seconds = quickstart.train(x_train, y_train, x_test, y_test)
    quickstart.print_results(model, plan, history, seconds)
    print()
    report = imp_keras.tf_keras.export(
        model,
        FLAGS.out_dir,
        FORMATS,
        representative_data=x_train[: FLAGS.representative_samples],
        sample_inputs=x_test,
        latency_runs=FLAGS.latency_runs,
    )
    print(f"\nReport: {os.path.join(FLAGS.out_dir, 'export_report.json')}; all files verified: {report.passed}")


if __name__ == "__main__":
    app.run(main)
