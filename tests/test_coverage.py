"""Real architectures through `prunable`: every trainable kernel masked or listed with its reason,
reports equal before and after `strip` and in a saved file, frozen backbones never pruned, and layer
collapse reported.

Models (tiny inputs, weights=None, built once per test, one pruning each):
  - MobileNetV2 (alpha 0.35, 32x32, 10 classes): 53 kernels (35 Conv2D, 17 DepthwiseConv2D, the
    Dense head), 394,848 of its 408,938 trainable weights; the rest are biases and BatchNorm.
  - the same base, frozen, under a Dense head [1280, 10]: 12,800 prunable weights.
  - a text model Embedding(1000, 16) -> LSTM(32) -> Dense(2): 16,000 + 2,048 + 4,096 + 64 weights.
  - a Transformer block: MultiHeadAttention(2 heads, key_dim 8) on [8, 16], LayerNorm, FFN 16-32-16,
    Dense(3): 4 x 256 + 512 + 512 + 48 = 2,096 kernel weights.
"""

import re
import warnings

import numpy as np
import pytest

import imp_keras
from imp_keras import IMPCallback, Plan, keras
from imp_keras.core.pruning import PruningRun
from imp_keras.core.selection import select
from imp_keras.tf_keras.masking import apply_masks, coverage, masked_weights, strip


def mobilenet(**kwargs):
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, **kwargs)


def text_model():
    x = keras.Input((12,), dtype="int32")
    y = keras.layers.Embedding(1000, 16, name="emb")(x)
    y = keras.layers.LSTM(32, name="lstm")(y)
    return keras.Model(x, keras.layers.Dense(2, name="out")(y))


def transformer_block():
    x = keras.Input((8, 16))
    y = keras.layers.MultiHeadAttention(2, 8, name="mha")(x, x)
    y = keras.layers.LayerNormalization(name="ln1")(x + y)
    z = keras.layers.Dense(32, activation="relu", name="ffn1")(y)
    z = keras.layers.Dense(16, name="ffn2")(z)
    y = keras.layers.LayerNormalization(name="ln2")(y + z)
    y = keras.layers.GlobalAveragePooling1D()(y)
    return keras.Model(x, keras.layers.Dense(3, name="out")(y))


def prune_globally(model, sparsity):
    entries = masked_weights(model)
    total = sum(e.mask.shape.num_elements() for e in entries)
    masks = select("global", [e.weight.numpy() for e in entries], [np.ones(e.mask.shape, bool) for e in entries], round(sparsity * total))
    apply_masks(entries, masks)


def names(model):
    return [e.name for e in masked_weights(model)]


def assert_same_report_after_strip_and_save(model, tmp_path, **masked):
    report = imp_keras.sparsity_report(model)
    plain = strip(model)
    assert imp_keras.sparsity_report(plain) == report
    plain.save(tmp_path / "plain.keras")
    loaded = keras.models.load_model(tmp_path / "plain.keras")
    assert imp_keras.sparsity_report(loaded, **masked) == report
    return report


def test_mobilenet_v2_every_kernel_masked_and_report_equal_after_strip(tmp_path, capsys):
    model = imp_keras.prunable(mobilenet(classes=10))
    assert capsys.readouterr().out == ""  # nothing left unmasked
    assert coverage(model) == []
    entries = masked_weights(model)
    kinds = [type(e.layer).__name__ for e in entries]
    assert (len(entries), kinds.count("Conv2D"), kinds.count("DepthwiseConv2D"), kinds.count("Dense")) == (53, 35, 17, 1)
    trainable = sum(v.shape.num_elements() for v in model.trainable_weights)
    prune_globally(model, 0.8)
    report = assert_same_report_after_strip_and_save(model, tmp_path)
    assert (report.total, report.pruned, report.kernel_total, report.kernel_pruned, report.unmasked) == (
        394848, round(0.8 * 394848), 394848, round(0.8 * 394848), ()
    )
    assert trainable - report.total == 14090  # biases and BatchNorm scales and offsets
    assert "all trainable kernels" not in str(report)


def test_frozen_backbone_is_never_pruned_and_the_plan_counts_only_the_head(capsys):
    base = mobilenet(include_top=False)
    base.trainable = False
    x = keras.Input((32, 32, 3))
    y = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    model = imp_keras.prunable(keras.Model(x, keras.layers.Dense(10, name="head")(y)))
    assert capsys.readouterr().out.splitlines() == [
        "imp_keras: Conv2D: 35 tensor(s), 358,576 weights not masked (frozen: trainable=False, never pruned)",
        "imp_keras: DepthwiseConv2D: 17 tensor(s), 23,472 weights not masked (frozen: trainable=False, never pruned)",
    ]
    assert names(model) == ["head/kernel"]
    frozen = [v.numpy().copy() for v in base.weights]
    plan = Plan(goal_sparsity=0.5, cycles=1, pretrain_epochs=0, retrain_epochs=1)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(
        np.random.rand(8, 32, 32, 3), np.arange(8) % 10, batch_size=4, epochs=1, verbose=0,
        callbacks=[IMPCallback(plan, verbose=0)],
    )
    assert history.history["sparsity"] == [0.5]
    report = imp_keras.sparsity_report(model)
    assert (report.total, report.pruned, report.kernel_total, report.unmasked) == (12800, 6400, 12800, ())
    assert all(np.array_equal(before, v.numpy()) for before, v in zip(frozen, base.weights))
    checked = imp_keras.verify(model, plan, cycle=1)  # raises if an invariant is broken
    assert (checked.names, checked.alive, checked.total, checked.expected_alive) == (("head/kernel",), 6400, 12800, 6400)


def test_text_model_lstm_cells_masked_embedding_on_request_or_refused(tmp_path, capsys):
    message = (
        "16,000 of its 22,208 trainable kernel weights (72.05%) would not be masked: Embedding: 1 tensor(s), 16,000 "
        "weights not masked (embedding table: pass embeddings=True to prune it)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        imp_keras.prunable(text_model())
    model = imp_keras.prunable(text_model(), exclude=["emb"])
    assert capsys.readouterr().out.splitlines() == ["imp_keras: Embedding: 1 tensor(s), 16,000 weights not masked (excluded by `exclude`)"]
    assert names(model) == ["lstm/cell/kernel", "lstm/cell/recurrent_kernel", "out/kernel"]
    prune_globally(model, 0.8)
    report = assert_same_report_after_strip_and_save(model, tmp_path)
    # 2,048 + 4,096 + 64 = 6,208 masked, 4,966 of them pruned; the 16,000 of the table have no zeros.
    assert (report.total, report.pruned, report.kernel_total, report.kernel_pruned) == (6208, 4966, 22208, 4966)
    assert [(l.name, l.total, l.pruned) for l in report.unmasked] == [("emb/embeddings", 16000, 0)]
    assert str(report).splitlines()[-1].split() == ["all", "trainable", "kernels", "22208", "17242", "22.36%"]

    model = imp_keras.prunable(text_model(), embeddings=True)
    assert names(model) == ["emb/embeddings", "lstm/cell/kernel", "lstm/cell/recurrent_kernel", "out/kernel"]
    prune_globally(model, 0.8)
    report = imp_keras.sparsity_report(model)
    # A file does not say what was masked: name the tensors (here the report's) to get the same numbers.
    assert assert_same_report_after_strip_and_save(model, tmp_path, masked=[l.name for l in report.layers]) == report
    assert (report.total, report.pruned, report.kernel_total, report.unmasked) == (22208, 17766, 22208, ())


def test_masked_lstm_trains_with_its_pruned_weights_at_zero():
    model = imp_keras.prunable(text_model(), exclude=["emb"])
    prune_globally(model, 0.8)
    entries = masked_weights(model)
    pruned = [e.mask.numpy() == 0 for e in entries]
    model.compile(keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.random.randint(0, 1000, (16, 12)), np.arange(16) % 2, batch_size=8, epochs=2, verbose=0)
    assert [int(np.count_nonzero(e.weight.numpy()[p])) for e, p in zip(entries, pruned)] == [0, 0, 0]
    assert all(np.count_nonzero(e.weight.numpy()[~p]) == (~p).sum() for e, p in zip(entries, pruned))


def test_transformer_block_attention_projections_masked(tmp_path, capsys):
    model = imp_keras.prunable(transformer_block())
    assert capsys.readouterr().out == ""
    assert names(model) == [
        "mha/query_dense/kernel", "mha/key_dense/kernel", "mha/value_dense/kernel", "mha/output_dense/kernel",
        "ffn1/kernel", "ffn2/kernel", "out/kernel",
    ]
    assert [tuple(e.weight.shape) for e in masked_weights(model)][:4] == [(16, 2, 8)] * 3 + [(2, 8, 16)]
    prune_globally(model, 0.75)
    x = np.random.rand(4, 8, 16).astype(np.float32)
    plain_outputs = strip(model).predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), plain_outputs, rtol=1e-6, atol=1e-6)
    report = assert_same_report_after_strip_and_save(model, tmp_path)
    assert (report.total, report.pruned, report.kernel_total) == (2096, 1572, 2096)
    model.save(tmp_path / "masked.keras")
    assert names(keras.models.load_model(tmp_path / "masked.keras")) == names(model)


def test_collapse_warning_names_exactly_the_tensors_left_under_one_percent():
    model = imp_keras.prunable(mobilenet(classes=10))
    entries = masked_weights(model)
    shapes = [tuple(e.mask.shape) for e in entries]
    plan = Plan(goal_sparsity=0.98, cycles=1, pretrain_epochs=0, retrain_epochs=1)
    run = PruningRun(plan, "global", [e.name for e in entries], shapes, [None] * len(entries), None)
    masks = [np.ones(s, bool) for s in shapes]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new = run.prune(0, 1, [e.weight.numpy() for e in entries], masks).masks
    collapsed = [(e.name, int(m.sum()), m.size) for e, m in zip(entries, new) if m.sum() < 0.01 * m.size]
    assert len(collapsed) >= 1
    (warning,) = [w for w in caught if "layer collapse" in str(w.message)]
    listed = re.findall(r"(\S+/\S+) (\d+)/(\d+) alive", str(warning.message))
    assert [(n, int(a), int(s)) for n, a, s in listed] == collapsed
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        run = PruningRun(plan, "global", [e.name for e in entries], shapes, [None] * len(entries), None, min_alive=0.01)
        floored = run.prune(0, 1, [e.weight.numpy() for e in entries], masks).masks
    assert all(m.sum() >= np.ceil(0.01 * m.size) for m in floored)


def test_recurrent_wrappers_and_stacked_cells_are_masked_through_their_attributes(tmp_path):
    x = keras.Input((6, 4))
    y = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), name="bi")(x)
    y = keras.layers.GRU(3, return_sequences=True, name="gru")(y)
    y = keras.layers.RNN([keras.layers.SimpleRNNCell(3), keras.layers.SimpleRNNCell(2)], name="stack")(y)
    plain = keras.Model(x, keras.layers.Dense(2, name="out")(y))
    model = imp_keras.prunable(plain)
    assert names(model) == [
        "bi/forward_layer/cell/kernel", "bi/forward_layer/cell/recurrent_kernel",
        "bi/backward_layer/cell/kernel", "bi/backward_layer/cell/recurrent_kernel",
        "gru/cell/kernel", "gru/cell/recurrent_kernel",
        "stack/cell/cells/0/kernel", "stack/cell/cells/0/recurrent_kernel",
        "stack/cell/cells/1/kernel", "stack/cell/cells/1/recurrent_kernel", "out/kernel",
    ]
    assert imp_keras.tf_keras.coverage(model) == []
    entries = masked_weights(model)
    pruned = [np.arange(e.mask.shape.num_elements()).reshape(e.mask.shape) % 3 == 0 for e in entries]
    apply_masks(entries, [~p for p in pruned])
    x = np.random.rand(4, 6, 4).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), strip(model).predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit(x, np.zeros((4, 2)), epochs=2, verbose=0)
    assert all(np.count_nonzero(e.weight.numpy()[p]) == 0 for e, p in zip(entries, pruned))
    model.save(tmp_path / "masked.keras")
    loaded = keras.models.load_model(tmp_path / "masked.keras")
    assert names(loaded) == names(model)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
