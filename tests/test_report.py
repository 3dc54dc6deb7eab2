import numpy as np

import imp_keras
from imp_keras import keras
from imp_keras.tf_keras.masking import apply_masks, masked_weights


def test_report_counts_masks_per_tensor_and_globally():
    model = imp_keras.prunable(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="fc"), keras.layers.Dense(2, name="out")])
    )
    fc_mask = np.ones((4, 5), bool)
    fc_mask[0] = False  # 5 of 20 pruned
    out_mask = np.zeros((5, 2), bool)
    out_mask[0, 0] = True  # 9 of 10 pruned
    apply_masks(masked_weights(model), [fc_mask, out_mask])
    report = imp_keras.sparsity_report(model)
    assert [(l.name, l.shape, l.total, l.pruned) for l in report.layers] == [("fc/kernel", (4, 5), 20, 5), ("out/kernel", (5, 2), 10, 9)]
    assert (report.total, report.pruned, report.sparsity) == (30, 14, 14 / 30)
    as_dict = report.as_dict()
    assert as_dict["layers"][1]["sparsity"] == 0.9 and as_dict["pruned"] == 14
    lines = str(report).splitlines()
    assert lines[0].split() == ["tensor", "shape", "weights", "alive", "sparsity"]
    assert lines[2].split() == ["fc/kernel", "4x5", "20", "15", "25.00%"]
    assert lines[3].split() == ["out/kernel", "5x2", "10", "1", "90.00%"]
    assert lines[-1].split() == ["global", "30", "16", "46.67%"]


def test_report_on_plain_model_counts_exact_zeros():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc", kernel_initializer="zeros"), keras.layers.BatchNormalization()])
    report = imp_keras.sparsity_report(model)
    assert [(l.name, l.total, l.pruned) for l in report.layers] == [("fc/kernel", 6, 6)]
