import re

import numpy as np
import pytest

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


def test_report_lists_unmasked_kernels_and_adds_up_over_all_trainable_kernels():
    model = imp_keras.prunable(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="fc"), keras.layers.Dense(2, name="out")]),
        exclude=["fc"], verbose=0,
    )
    fc = model.get_layer("fc")
    fc.kernel.assign(np.where(np.arange(20).reshape(4, 5) < 4, 0.0, 1.0))  # 4 exact zeros in the unmasked kernel
    out_mask = np.ones((5, 2), bool)
    out_mask[:3] = False  # 6 of 10 masked out
    apply_masks(masked_weights(model), [out_mask])
    report = imp_keras.sparsity_report(model)
    assert [(l.name, l.total, l.pruned) for l in report.layers] == [("out/kernel", 10, 6)]
    assert [(l.name, l.total, l.pruned) for l in report.unmasked] == [("fc/kernel", 20, 4)]
    assert (report.sparsity, report.kernel_total, report.kernel_pruned, report.kernel_sparsity) == (0.6, 30, 10, 10 / 30)
    as_dict = report.as_dict()
    assert (as_dict["unmasked"][0]["name"], as_dict["kernel_total"], as_dict["kernel_pruned"]) == ("fc/kernel", 20 + 10, 10)
    lines = str(report).splitlines()
    assert [line.split() for line in lines[-5:]] == [
        ["global", "10", "4", "60.00%"],
        [],
        ["fc/kernel", "(unmasked)", "4x5", "20", "16", "20.00%"],
        ["-" * len(lines[0])],
        ["all", "trainable", "kernels", "30", "20", "33.33%"],
    ]
    plain = imp_keras.strip(model)
    assert imp_keras.sparsity_report(plain) == report
    # A plain model names its masked tensors; by default those prunable masks by default.
    assert imp_keras.sparsity_report(plain, masked=["fc/kernel"]).as_dict()["pruned"] == 4
    assert [l.name for l in imp_keras.sparsity_report(keras.models.clone_model(plain)).layers] == ["fc/kernel", "out/kernel"]
    with pytest.raises(ValueError, match=re.escape("`masked` names tensors that are not trainable kernels of the model: ['fc/bias']")):
        imp_keras.sparsity_report(plain, masked=["fc/bias"])
    with pytest.raises(ValueError, match="`masked` is for plain models"):
        imp_keras.sparsity_report(model, masked=["out/kernel"])
    with pytest.raises(TypeError, match=re.escape("`masked` must be a list of tensor names, e.g. ['dense/kernel']. Received: masked='fc/kernel'")):
        imp_keras.sparsity_report(plain, masked="fc/kernel")
