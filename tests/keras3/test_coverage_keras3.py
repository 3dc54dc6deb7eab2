"""What `prunable` leaves unmasked, in every flavour: listed one line per layer type with the
reason, and refused when kernels left for a reason the user did not choose hold most of the
model's trainable kernel weights (the rule and wording of `imp_keras.core.coverage`).

Models: Embedding(1000, 16) -> LSTM(32) -> Dense(2): 16,000 + 2,048 + 4,096 + 64 = 22,208 kernel
weights; a custom layer keeping its [3, 40] kernel in a list (120 weights no mask can reach)
before Dense(units) ([40, units]).
"""

import re

import numpy as np
import pytest

from imp_keras.core.coverage import FROZEN

EMBEDDING_REFUSED = (
    "16,000 of its 22,208 trainable kernel weights (72.05%) would not be masked: Embedding: 1 tensor(s), 16,000 "
    "weights not masked (embedding table: pass embeddings=True to prune it). Prune them as said, or keep them dense "
    "explicitly with `exclude=[...]` (layer names or classes)."
)
NOT_AN_ATTRIBUTE = "not held as a layer attribute (in a list or dict?), so no mask can be handed to the layer"


def text_model(k):
    x = k.keras.Input((12,), dtype="int32")
    y = k.keras.layers.Embedding(1000, 16, name="emb")(x)
    y = k.keras.layers.LSTM(32, name="lstm")(y)
    return k.keras.Model(x, k.keras.layers.Dense(2, name="out")(y))


def list_kernel_model(k, units):
    class ListKernel(k.keras.layers.Layer):
        """Keeps its kernel in a list: no mask can be handed to it."""

        def build(self, input_shape):
            self.store = [self.add_weight(name="w", shape=(input_shape[-1], 40))]

        def call(self, x):
            return x @ self.store[0]

    return k.keras.Sequential([k.keras.Input((3,)), ListKernel(name="hidden"), k.keras.layers.Dense(units, name="out")])


def sizes(api, model):
    return [int(np.prod(e.weight.shape)) for e in api.masked_weights(model)]


def test_embedding_table_refused_unless_pruned_or_excluded(api, capsys):
    with pytest.raises(ValueError, match=r"^Model '\w+': " + re.escape(EMBEDDING_REFUSED) + "$"):
        api.prunable(text_model(api))
    model = api.prunable(text_model(api), exclude=["emb"])
    assert capsys.readouterr().out.splitlines() == ["imp_keras: Embedding: 1 tensor(s), 16,000 weights not masked (excluded by `exclude`)"]
    assert sizes(api, model) == [2048, 4096, 64]
    model = api.prunable(text_model(api), embeddings=True)
    assert capsys.readouterr().out == ""
    assert sizes(api, model) == [16000, 2048, 4096, 64]
    assert api.coverage(model, embeddings=True) == []


def test_kernel_no_mask_can_reach_is_listed_and_refused_when_it_holds_most_weights(api, capsys):
    model = api.prunable(list_kernel_model(api, 4))  # 120 unmasked against 160 masked
    assert sizes(api, model) == [160]
    assert capsys.readouterr().out.splitlines()[0].startswith(f"imp_keras: ListKernel: 1 tensor(s), 120 weights not masked ({NOT_AN_ATTRIBUTE}")
    assert [(s.layer_type, s.tensors, s.weights) for s in api.coverage(model)] == [("ListKernel", ("hidden/w",), 120)]
    with pytest.raises(ValueError, match=re.escape(f"120 of its 200 trainable kernel weights (60.00%) would not be masked: ListKernel: 1 tensor(s), 120 weights not masked ({NOT_AN_ATTRIBUTE}")):
        api.prunable(list_kernel_model(api, 2))
    model = api.prunable(list_kernel_model(api, 2), exclude=["hidden"])
    assert sizes(api, model) == [80]
    assert capsys.readouterr().out.splitlines() == ["imp_keras: ListKernel: 1 tensor(s), 120 weights not masked (excluded by `exclude`)"]


def test_frozen_kernels_never_count_against_coverage(api, capsys):
    base = text_model(api)
    base.get_layer("emb").trainable = False
    model = api.prunable(base)
    assert capsys.readouterr().out.splitlines() == ["imp_keras: Embedding: 1 tensor(s), 16,000 weights not masked (frozen: trainable=False, never pruned)"]
    assert sizes(api, model) == [2048, 4096, 64]


def test_keras3_include_is_a_choice_the_user_made(capsys):
    from imp_keras import keras3 as api

    model = api.prunable(text_model(api), include=["out"])
    assert capsys.readouterr().out.splitlines() == [
        "imp_keras: Embedding: 1 tensor(s), 16,000 weights not masked (not matched by `include`)",
        "imp_keras: LSTMCell: 2 tensor(s), 6,144 weights not masked (not matched by `include`)",
    ]
    assert sizes(api, model) == [64]
    with pytest.raises(ValueError, match=r"`verbose` must be 0 or 1. Received: verbose=2"):
        api.prunable(text_model(api), verbose=2)


def test_keras3_kernel_trainable_again_after_wrapping_is_listed():
    from imp_keras import keras3 as api

    x = api.keras.Input((4, 8))
    attention = api.keras.layers.MultiHeadAttention(2, 4, name="mha")
    plain = api.keras.Model(x, attention(x, x))
    attention._query_dense.trainable = False
    model = api.prunable(plain, verbose=0)
    assert [(s.layer_type, s.reason, s.tensors) for s in api.coverage(model)] == [("EinsumDense", FROZEN, ("mha/query/kernel",))]
    attention._query_dense.trainable = True  # its holder was built without a mask for it
    again = "trainable again since its MaskHolder was built: wrap the layer again"
    assert [(s.layer_type, s.reason, s.tensors, s.weights) for s in api.coverage(model)] == [("EinsumDense", again, ("mha/query/kernel",), 64)]


def test_exclude_name_matching_no_layer_is_refused_and_a_class_is_not(api):
    with pytest.raises(ValueError, match=r"^`exclude` names layers that are not in the model: \['ebm', 'lstn'\]$"):
        api.prunable(text_model(api), exclude=["lstn", "emb", "ebm"])
    # A class is a rule reusable across models: one matching no layer here keeps nothing dense.
    model = api.prunable(text_model(api), exclude=["emb", api.keras.layers.Conv2D])
    assert sizes(api, model) == [2048, 4096, 64]


def test_keras3_include_and_patterns_matching_no_layer_are_refused():
    import imp_keras.keras3 as k

    with pytest.raises(ValueError, match=r"^`include` names layers that are not in the model: \['ot'\]$"):
        k.prunable(text_model(k), include=["lstm", "ot"])
    with pytest.raises(ValueError, match=r"^`exclude` names layers that are not in the model: \['emb_\*'\]$"):
        k.prunable(text_model(k), exclude=["emb_*"], embeddings=True)
    model = k.prunable(text_model(k), exclude=["e?b"], include=["*", k.keras.layers.Conv2D])
    assert sizes(k, model) == [2048, 4096, 64]


def depthwise_model(k):
    """DepthwiseConv2D(3) and SeparableConv2D(4, 3) on 8x8x3: depthwise kernels of 27 weights
    each, a pointwise kernel of 12, then Dense(2) on 4 * 4 * 4 = 64 features (128)."""
    layers = k.keras.layers
    return k.keras.Sequential(
        [k.keras.Input((8, 8, 3)), layers.DepthwiseConv2D(3, name="dw"), layers.SeparableConv2D(4, 3, name="sep"),
         layers.Flatten(), layers.Dense(2, name="out")]
    )


def test_depthwise_false_keeps_depthwise_kernels_dense_and_lists_them(api, capsys):
    assert sizes(api, api.prunable(depthwise_model(api))) == [27, 27, 12, 128]
    assert capsys.readouterr().out == ""
    model = api.prunable(depthwise_model(api), depthwise=False)
    assert sizes(api, model) == [12, 128]
    lines = [
        "DepthwiseConv2D: 1 tensor(s), 27 weights not masked (depthwise kernel: depthwise=False was passed)",
        "SeparableConv2D: 1 tensor(s), 27 weights not masked (depthwise kernel: depthwise=False was passed)",
    ]
    assert capsys.readouterr().out.splitlines() == [f"imp_keras: {line}" for line in lines]
    assert [str(s) for s in api.coverage(model, depthwise=False)] == lines
    with pytest.raises(ValueError, match=r"^`depthwise` must be a bool. Received: depthwise=0$"):
        api.prunable(depthwise_model(api), depthwise=0)


def test_keras3_mask_holder_config_keeps_depthwise():
    import imp_keras.keras3 as k

    holder = k.prunable(depthwise_model(k), depthwise=False).get_layer("sep_masked")
    restored = k.MaskHolder.from_config(holder.get_config())
    restored.build((None, 6, 6, 3))
    assert restored.get_config()["depthwise"] is False
    assert [tuple(m.shape) for m in restored.masks] == [(1, 1, 3, 4)]
