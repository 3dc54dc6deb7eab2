"""imp_keras.export.tf_keras: every format round-trips, keeps its pruned weights at zero, and the report
matches the files on disk.

Models (kernels of 1024+ weights, so dynamic-range quantization really quantizes them):
  - MLP 32-64-48-10: kernels 2048 + 3072 + 480 = 5600 weights, 80 % pruned globally: 4480.
  - the same MLP pruned in whole (4, 1) blocks: 4480 pruned too (every kernel divides into blocks).
  - conv net 8x8x3 -> Conv2D 16 3x3 -> Conv2D 32 3x3 -> pool -> Dense 10: kernels 432 + 4608 + 320
    = 5360 weights, 75 % pruned globally: 4020.
Each is exported once per module in every format, with 64 representative samples.
"""

import gzip
import json
import os
import re

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import imp_keras
from imp_keras import keras
from imp_keras.tf_keras.masking import apply_masks, masked_weights
from imp_keras.core.selection import select, select_blocks
from imp_keras.export import checks, tflite
from imp_keras.export import tf_keras as tf_keras_export

FORMATS = tf_keras_export.FORMATS
TFLITE_FORMATS = [f for f in FORMATS if f.startswith("tflite")]
FLOAT_FORMATS = ["saved_model", "keras", "h5", "tflite_float", "tflite_float_sparse"]
SPARSE_FORMATS = ["tflite_float_sparse", "tflite_int8_dynamic_sparse", "tflite_int8_full_sparse"]


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((32,)),
            keras.layers.Dense(64, activation="relu", name="fc1"),
            keras.layers.Dense(48, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ]
    )


def conv_net():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv1"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, name="out"),
        ]
    )


def pruned(plain, sparsity, block_size=None):
    model = imp_keras.prunable(plain)
    entries = masked_weights(model)
    weights = [e.weight.numpy() for e in entries]
    masks = [np.ones(w.shape, bool) for w in weights]
    count = round(sparsity * sum(w.size for w in weights))
    if block_size:
        new = select_blocks(weights, masks, count, [block_size if w.ndim == 2 else None for w in weights])
    else:
        new = select("global", weights, masks, count)
    apply_masks(entries, new)
    return model


def inputs_for(model, n=64, seed=1):
    shape = tuple(model.inputs[0].shape)[1:]
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


class Exported:
    def __init__(self, model, out_dir):
        self.model = model
        self.out_dir = out_dir
        self.x = inputs_for(model)
        self.masks = {e.name: e.mask.numpy() == 0 for e in masked_weights(model)}
        self.report = imp_keras.tf_keras.export(model, out_dir, FORMATS, representative_data=self.x, latency_runs=5, verbose=0)
        self.plain = imp_keras.strip(model)
        self.expected = self.plain.predict(self.x, verbose=0)


@pytest.fixture(scope="module")
def mlp_export(tmp_path_factory):
    return Exported(pruned(mlp(), 0.8), tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="module")
def block_export(tmp_path_factory):
    return Exported(pruned(mlp(), 0.8, block_size=(4, 1)), tmp_path_factory.mktemp("block"))


@pytest.fixture(scope="module")
def conv_export(tmp_path_factory):
    return Exported(pruned(conv_net(), 0.75), tmp_path_factory.mktemp("conv"))


@pytest.fixture(params=["mlp_export", "block_export", "conv_export"])
def exported(request):
    return request.getfixturevalue(request.param)


def run_tflite(path, x):
    """Outputs of a TFLite file on float inputs, on LiteRT's builtin kernels, (de)quantizing for an
    integer-only file."""
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=path, experimental_op_resolver_type=builtin)
    runner = interpreter.get_signature_runner()
    (name, detail), = runner.get_input_details().items()
    scale, zero = detail["quantization"]
    if scale:
        x = np.clip(np.round(x / scale + zero), -128, 127)
    (out_name, out_detail), = runner.get_output_details().items()
    y = runner(**{name: x.astype(detail["dtype"])})[out_name].astype(np.float64)
    scale, zero = out_detail["quantization"]
    return (y - zero) * scale if scale else y


# -- round trip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
def test_every_format_round_trips(exported, format):
    file = exported.report[format]
    assert file.path == os.path.join(exported.out_dir, tf_keras_export.FILE_NAMES[format])
    if format.startswith("tflite"):
        outputs = run_tflite(file.path, exported.x)
    else:
        outputs = keras.models.load_model(file.path).predict(exported.x, verbose=0)  # no custom_objects
    diff = float(np.max(np.abs(outputs - exported.expected)))
    agreement = float(np.mean(np.argmax(outputs, -1) == np.argmax(exported.expected, -1)))
    if format in FLOAT_FORMATS:
        assert diff <= 1e-5
        assert agreement == 1.0
    else:
        assert diff < 0.05  # int8 rounding on outputs of magnitude ~1
        assert agreement >= 0.9
    assert exported.report.samples == 64
    assert file.top1_agreement >= 0.9 and file.max_abs_diff <= (1e-5 if format in FLOAT_FORMATS else 0.05)
    assert file.passed and file.problems == ()


def test_keras_files_hold_the_stripped_model_bit_for_bit(mlp_export):
    for format in ("saved_model", "keras", "h5"):
        loaded = keras.models.load_model(mlp_export.report[format].path)
        assert [l.__class__.__name__ for l in loaded.layers] == ["Dense", "Dense", "Dense"]
        for a, b in zip(loaded.get_weights(), mlp_export.plain.get_weights()):
            np.testing.assert_array_equal(a, b)


# -- sparsity in the files ------------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
def test_pruned_weights_are_zero_in_every_file(exported, format):
    expected = {"mlp_export": 4480, "block_export": 4480, "conv_export": 4020}
    pruned_count = sum(int(m.sum()) for m in exported.masks.values())
    assert pruned_count in expected.values()
    file = exported.report[format]
    assert file.pruned_weights == pruned_count
    assert file.pruned_zero == pruned_count
    assert file.kernel_zeros >= pruned_count


def test_sparse_tensors_and_densify_ops_counted(mlp_export, block_export, conv_export):
    # Unstructured: every kernel is stored sparse and densified once at load.
    for format in SPARSE_FORMATS:
        assert (mlp_export.report[format].sparse_tensors, mlp_export.report[format].densify_ops) == (3, 3)
        assert mlp_export.report[format].sparsity_at_runtime == "densified"
        # Global pruning leaves the conv net's out/kernel 28 % sparse (conv1 50 %, conv2 81 %): the
        # converter stores so little sparsity dense.
        assert (conv_export.report[format].sparse_tensors, conv_export.report[format].densify_ops) == (2, 2)
    for format in ("tflite_float", "tflite_int8_dynamic", "tflite_int8_full"):
        for exported in (mlp_export, block_export, conv_export):
            assert (exported.report[format].sparse_tensors, exported.report[format].densify_ops) == (0, 0)
            assert exported.report[format].sparsity_at_runtime == "dense storage"
    # (4, 1) blocks of [in, out] kernels are TFLite's 1x4 blocks of [out, in]: the float sparse
    # fully-connected kernel runs them with no DENSIFY.
    float_sparse = block_export.report["tflite_float_sparse"]
    assert (float_sparse.sparse_tensors, float_sparse.densify_ops, float_sparse.sparsity_at_runtime) == (3, 0, "sparse kernel")
    # int8 kernels need 1x16 blocks: fc1 and fc2 are densified; out/kernel (480 weights) stays
    # float, so its 1x4 blocks run sparse.
    int8_sparse = block_export.report["tflite_int8_dynamic_sparse"]
    assert (int8_sparse.sparse_tensors, int8_sparse.densify_ops) == (3, 2)
    assert int8_sparse.sparsity_at_runtime == "1 sparse kernel, 2 densified"


def test_sixteen_row_blocks_run_the_sparse_int8_kernel(tmp_path):
    # Dynamic-range int8 kernels run sparse in TFLite's 1x16 blocks: Keras (16, 1) blocks. With
    # (4, 1) blocks the same file densifies them (see test_sparse_tensors_and_densify_ops_counted).
    # fc1 and fc2 end 79 % and 91 % sparse, out/kernel 17 %: stored dense.
    model = pruned(mlp(), 0.8, block_size=(16, 1))
    report = imp_keras.tf_keras.export(model, tmp_path, ("tflite_int8_dynamic_sparse",), latency_runs=0, verbose=0)
    file = report["tflite_int8_dynamic_sparse"]
    assert (file.sparse_tensors, file.densify_ops, file.sparsity_at_runtime) == (2, 0, "sparse kernel")
    assert file.pruned_zero == file.pruned_weights == 4480 and file.passed


@pytest.mark.parametrize("name", ["mlp_export", "block_export"])
def test_decoded_sparse_kernels_equal_the_keras_kernels(request, name):
    exported = request.getfixturevalue(name)
    with open(exported.report["tflite_float_sparse"].path, "rb") as f:
        facts = tflite.read_flatbuffer(f.read())
    kernels = [exported.plain.get_layer(n).kernel.numpy() for n in ("fc1", "fc2", "out")]
    assert sorted(k.shape for k in facts.kernels) == sorted(k.shape for k in kernels)
    for kernel in kernels:
        assert any(k.shape == kernel.shape and np.array_equal(k, kernel) for k in facts.kernels)


def test_densify_decodes_ragged_blocks():
    # A [3, 6] tensor in 1x4 blocks along dimension 1 (two blocks per row, the second padded):
    # row 0 keeps block 1, row 1 none, row 2 both.
    sparsity = tflite.schema.SparsityParametersT()
    sparsity.traversalOrder = [0, 1, 2]
    sparsity.blockMap = [1]
    dense_rows, csr, block = (tflite.schema.DimensionMetadataT() for _ in range(3))
    dense_rows.format, dense_rows.denseSize = tflite.schema.DimensionType.DENSE, 3
    csr.format = tflite.schema.DimensionType.SPARSE_CSR
    csr.arraySegments, csr.arrayIndices = tflite.schema.Int32VectorT(), tflite.schema.Int32VectorT()
    csr.arraySegments.values, csr.arrayIndices.values = [0, 1, 1, 3], [1, 0, 1]
    block.format, block.denseSize = tflite.schema.DimensionType.DENSE, 4
    sparsity.dimMetadata = [dense_rows, csr, block]
    values = np.array([5, 6, 0, 0, 1, 2, 3, 4, 7, 8, 0, 0], dtype=np.float32)
    dense = tflite.densify(values, [3, 6], sparsity)
    np.testing.assert_array_equal(dense, [[0, 0, 0, 0, 5, 6], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 7, 8]])


def test_block_masks_are_whole_blocks(block_export):
    for name, pruned_positions in block_export.masks.items():
        rows, cols = pruned_positions.shape
        blocks = pruned_positions.reshape(rows // 4, 4, cols)
        assert np.all(blocks.all(axis=1) | ~blocks.any(axis=1)), name


# -- report ---------------------------------------------------------------------------------------


def test_report_numbers_match_the_files_on_disk(exported):
    report = exported.report
    reference = report["tflite_float"]
    assert report.reference == reference
    for file in report.files:
        paths = [file.path] if os.path.isfile(file.path) else [
            os.path.join(root, name) for root, _, names in os.walk(file.path) for name in names
        ]
        contents = [open(p, "rb").read() for p in paths]
        assert file.bytes == sum(os.path.getsize(p) for p in paths) == sum(len(c) for c in contents)
        assert file.gzip_bytes == sum(len(gzip.compress(c, compresslevel=9, mtime=0)) for c in contents)
        assert file.ratio == pytest.approx(file.bytes / reference.bytes)
        assert file.gzip_ratio == pytest.approx(file.gzip_bytes / reference.gzip_bytes)
    with open(os.path.join(exported.out_dir, "export_report.json")) as f:
        assert json.load(f) == json.loads(json.dumps(report.as_dict()))
    assert report.passed
    assert (report.prunable_weights, report.samples, report.latency_runs) == (sum(m.size for m in exported.masks.values()), 64, 5)
    assert sorted(os.listdir(exported.out_dir)) == sorted([*tf_keras_export.FILE_NAMES.values(), "export_report.json"])


def test_report_latency_fields_and_table(mlp_export):
    report = mlp_export.report
    for format in TFLITE_FORMATS:
        file = report[format]
        assert file.latency_us > 0 and file.latency_builtin_us > 0
        assert file.speedup == pytest.approx(report["tflite_float"].latency_us / file.latency_us)
        assert file.runtime in ("xnnpack", "builtin", "builtin (XNNPACK failed)")
    for format in ("saved_model", "keras", "h5"):
        assert report[format].latency_us is None and report[format].runtime is None
    text = str(report)
    assert "4480/5600 kernel weights pruned (80.00%), checked on 64 inputs" in text
    for format in FORMATS:
        assert format in text
    assert "median of 5 invokes" in text
    with pytest.raises(KeyError, match="No 'onnx' in this report"):
        report["onnx"]


def test_xnnpack_refusing_sparse_int8_falls_back_to_builtin_kernels(mlp_export, conv_export):
    # TFLite 2.21's XNNPACK cannot prepare DENSIFY'd hybrid int8 kernels: the file runs on builtins.
    for exported in (mlp_export, conv_export):
        file = exported.report["tflite_int8_dynamic_sparse"]
        assert file.runtime == "builtin (XNNPACK failed)"
        assert "XNNPack" in file.xnnpack_error or "XNNPACK" in file.xnnpack_error
        assert file.passed
    assert mlp_export.report["tflite_float"].runtime == "xnnpack"


def test_forced_xnnpack_failure_is_reported_and_the_file_still_verified(tmp_path, monkeypatch):
    auto = OpResolverType.AUTO

    class XNNPACKFails(Interpreter):
        def __init__(self, *args, experimental_op_resolver_type=auto, **kwargs):
            self.default_delegates = experimental_op_resolver_type == auto
            super().__init__(*args, experimental_op_resolver_type=experimental_op_resolver_type, **kwargs)

        def allocate_tensors(self):
            if self.default_delegates:
                raise RuntimeError("TfLiteXNNPackDelegate failed to prepare (test)")
            return super().allocate_tensors()

    monkeypatch.setattr(tflite, "Interpreter", XNNPACKFails)
    model = pruned(mlp(), 0.8)
    report = imp_keras.tf_keras.export(model, tmp_path, ("tflite_float",), latency_runs=2, verbose=0)
    file = report["tflite_float"]
    assert file.runtime == "builtin (XNNPACK failed)"
    assert file.xnnpack_error == "TfLiteXNNPackDelegate failed to prepare (test)"
    assert file.passed and file.max_abs_diff <= 1e-5 and file.latency_us > 0


def test_reference_is_converted_in_memory_when_not_asked_for(tmp_path, capsys):
    model = pruned(mlp(), 0.8)
    report = imp_keras.tf_keras.export(model, tmp_path, ("tflite_float_sparse",), latency_runs=2)
    assert sorted(os.listdir(tmp_path)) == ["export_report.json", "model_float_sparse.tflite"]
    assert report.reference.format == "tflite_float" and report.reference.path is None
    assert report.reference.ratio == 1.0 and report.reference.pruned_zero == 4480
    assert report["tflite_float_sparse"].ratio == pytest.approx(report["tflite_float_sparse"].bytes / report.reference.bytes)
    assert report.samples == 32  # random inputs by default
    assert "tflite_float (reference, not written)" in capsys.readouterr().out


def test_two_inputs_and_two_outputs_are_matched_by_name(tmp_path):
    # The converted model orders its inputs b, a: calibration samples and checks go by name.
    a, b = keras.Input((32,), name="a"), keras.Input((16,), name="b")
    hidden = keras.layers.Dense(64, activation="relu", name="fc")(keras.layers.Concatenate()([a, b]))
    two = keras.Model([a, b], [keras.layers.Dense(10, name="cls")(hidden), keras.layers.Dense(1, name="reg")(hidden)])
    rng = np.random.default_rng(0)
    data = [rng.random((64, 32), dtype=np.float32), rng.random((64, 16), dtype=np.float32)]
    report = imp_keras.tf_keras.export(pruned(two, 0.6), tmp_path, ("keras", "tflite_float", "tflite_int8_full"),
                              representative_data=data, latency_runs=0, verbose=0)
    assert report.passed and report.pruned_weights == round(0.6 * (48 * 64 + 64 * 10 + 64))
    assert report["tflite_float"].max_abs_diff <= 1e-5 and report["tflite_float"].top1_agreement == 1.0
    assert report["tflite_int8_full"].top1_agreement >= 0.9  # over the 10-class output only


def test_plain_model_counts_exact_zeros_as_pruned(tmp_path):
    plain = mlp()
    kernel = plain.get_layer("fc1").kernel
    kernel.assign(np.where(np.arange(kernel.shape[1]) % 2 == 0, 0.0, kernel.numpy()))  # 32 * 32 zeros
    report = imp_keras.tf_keras.export(plain, tmp_path, ("keras", "tflite_float"), latency_runs=0, verbose=0)
    assert (report.prunable_weights, report.pruned_weights) == (5600, 1024)
    assert report["keras"].pruned_zero == report["tflite_float"].pruned_zero == 1024
    assert report["tflite_float"].latency_us is None and report.passed


def test_a_failed_check_is_reported_and_warned(tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "FLOAT_TOLERANCE", -1.0)
    with pytest.warns(UserWarning, match=r"failed their check: \['keras'\]"):
        report = imp_keras.tf_keras.export(pruned(mlp(), 0.8), tmp_path, ("keras",), latency_runs=0, verbose=0)
    assert not report.passed
    assert report["keras"].problems == ("outputs differ from the Keras model's by up to 0, over -1.0 * (1 + |output|)",)


def test_a_file_that_does_not_reload_fails_its_check_and_the_other_formats_go_on(tmp_path):
    """A Lambda layer: its `.keras` file is written but refused on loading (safe mode)."""
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Dense(3)(x)))
    with pytest.warns(UserWarning, match=r"failed their check: \['keras'\]"):
        report = imp_keras.tf_keras.export(model, tmp_path, ("keras", "h5"), latency_runs=0, verbose=0)
    assert report["keras"].path == os.path.join(tmp_path, "model.keras") and not report["keras"].passed
    assert report["keras"].problems[0].startswith("written, but not run: ValueError: Requested the deserialization of a Lambda layer")
    assert report["h5"].passed and os.path.exists(tmp_path / "export_report.json")


# -- files are written atomically -----------------------------------------------------------------


def test_crash_while_saving_leaves_no_file_under_a_final_name(tmp_path, monkeypatch):
    model = pruned(mlp(), 0.8)
    imp_keras.tf_keras.export(model, tmp_path, ("keras",), latency_runs=0, verbose=0)
    before = open(tmp_path / "model.keras", "rb").read()

    def crash(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        imp_keras.tf_keras.export(model, tmp_path, ("keras", "h5"), latency_runs=0, verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["export_report.json", "model.keras"]
    assert open(tmp_path / "model.keras", "rb").read() == before


def test_export_again_replaces_the_saved_model_directory(tmp_path):
    model = pruned(mlp(), 0.8)
    imp_keras.tf_keras.export(model, tmp_path, ("saved_model",), latency_runs=0, verbose=0)
    (tmp_path / "saved_model" / "left_over").write_text("from an earlier export")
    report = imp_keras.tf_keras.export(model, tmp_path, ("saved_model",), latency_runs=0, verbose=0)
    assert "left_over" not in os.listdir(tmp_path / "saved_model")
    assert sorted(os.listdir(tmp_path)) == ["export_report.json", "saved_model"]
    assert report.passed


# -- the callback exports at the end of the plan ----------------------------------------------------


def test_callback_exports_when_the_plan_ends(tmp_path):
    plan = imp_keras.Plan(goal_sparsity=0.8, cycles=2, pretrain_epochs=1, retrain_epochs=1)
    model = imp_keras.prunable(mlp())
    model.compile(keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = inputs_for(model)
    y = np.argmax(x[:, :10], axis=1)
    callback = imp_keras.IMPCallback(
        plan, block_size=(4, 1), export_dir=tmp_path / "deploy",
        export_options=dict(formats=("keras", "tflite_float_sparse"), representative_data=x, latency_runs=0), verbose=0,
    )
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[callback], verbose=0)
    assert callback.export_report is None and not (tmp_path / "deploy").exists()  # the plan is not over
    model.fit(x, y, batch_size=16, epochs=3, initial_epoch=2, callbacks=[callback], verbose=0)
    report = callback.export_report
    assert sorted(os.listdir(tmp_path / "deploy")) == ["export_report.json", "model.keras", "model_float_sparse.tflite"]
    alive = 5600 - report.pruned_weights
    assert abs(alive - plan.alive_after(2, 5600)) <= 2  # whole blocks: within half a block of the plan
    assert report.passed and report["tflite_float_sparse"].sparsity_at_runtime == "sparse kernel"


def test_callback_refuses_unknown_export_options():
    plan = imp_keras.Plan(goal_sparsity=0.8, cycles=1, pretrain_epochs=1, retrain_epochs=1)
    with pytest.raises(ValueError, match=r"`export_options` has unknown arguments \['format'\]"):
        imp_keras.IMPCallback(plan, export_dir="x", export_options={"format": "keras"})
    with pytest.raises(ValueError, match=r"`export_options` must be a dict"):
        imp_keras.IMPCallback(plan, export_dir="x", export_options=["keras"])


# -- refused arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(formats=("keras", "x")),
            r"`formats` contains unknown format 'x'. Known: saved_model, keras, h5, .*tflite_int8_full_sparse. "
            r"Received: formats=\('keras', 'x'\)",
        ),
        (dict(formats="keras"), r"`formats` must be a non-empty tuple of format names .* Received: formats='keras'"),
        (dict(formats=()), r"Received: formats=\(\)"),
        (dict(formats=("tflite_int8_full",)), r"'tflite_int8_full', which needs `representative_data`"),
        (dict(latency_runs=-1), r"`latency_runs` must be an integer >= 0. Received: latency_runs=-1"),
        (dict(latency_runs=2.5), r"Received: latency_runs=2.5"),
        (dict(verbose=2), r"`verbose` must be 0 or 1. Received: verbose=2"),
        (
            dict(sample_inputs=np.zeros((4, 31))),
            r"`sample_inputs` for input 'input_1' has shape \(4, 31\), but the model takes \(None, 32\)",
        ),
        (dict(sample_inputs=[np.zeros((4, 32))] * 2), r"one array per model input \(1: \['input_1'\]\). Received: 2 array\(s\)"),
        (dict(representative_data=np.zeros((0, 32))), r"at least 1\) of samples"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        imp_keras.tf_keras.export(pruned(mlp(), 0.5), tmp_path, **{"latency_runs": 0, "verbose": 0, **kwargs})
    assert os.listdir(tmp_path) == []


def test_refuses_keras3_and_tfmot_wrapped_models(tmp_path):
    import keras as keras3
    import tensorflow_model_optimization as tfmot

    with pytest.raises(TypeError, match="`model` is a Keras 3 object"):
        imp_keras.tf_keras.export(keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)]), tmp_path)
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(mlp())
    with pytest.raises(ValueError, match=r"wrapped by tfmot's prune_low_magnitude; strip them first"):
        imp_keras.tf_keras.export(wrapped, tmp_path)


def test_refuses_random_inputs_for_integer_inputs(tmp_path):
    inputs = keras.Input((4,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Embedding(10, 3)(inputs)))
    with pytest.raises(ValueError, match=r"cannot be filled with random numbers; pass `sample_inputs`"):
        imp_keras.tf_keras.export(model, tmp_path, ("keras",))


# -- models TFLite needs help with, fixed batch sizes, and what was asked ---------------------------


def text_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((12,), dtype="int32")
    y = keras.layers.Embedding(1000, 16, name="emb")(x)
    y = keras.layers.LSTM(32, name="lstm")(y)
    return keras.Model(x, keras.layers.Dense(2, name="out")(y))


def pruned_globally(model, sparsity):
    entries = masked_weights(model)
    weights = [e.weight.numpy() for e in entries]
    apply_masks(entries, select("global", weights, [np.ones(w.shape, bool) for w in weights], round(sparsity * sum(w.size for w in weights))))
    return model


def test_lstm_needs_select_tf_ops_and_the_other_files_never_wait_for_it(tmp_path):
    # Embedding 16,000 + LSTM 2,048 + 4,096 + Dense 64 = 22,208 weights, 80 % pruned: 17,766.
    model = pruned_globally(imp_keras.prunable(text_model(), embeddings=True), 0.8)
    tokens = np.random.default_rng(0).integers(0, 1000, (16, 12))
    asked = ("saved_model", "keras", "h5", "tflite_float")
    with pytest.warns(UserWarning, match=r"failed their check: \['tflite_float'\]"):
        report = tf_keras_export.export(model, tmp_path / "plain", asked, sample_inputs=tokens, latency_runs=0, verbose=0)
    for format in ("saved_model", "keras", "h5"):
        assert report[format].passed and report[format].pruned_zero == report[format].pruned_weights == 17766
    failed = report["tflite_float"]
    assert (failed.path, failed.passed, report.reference) == (None, False, None)
    assert failed.problems[0].startswith("not converted: ConverterError: ")
    assert "TensorListReserve" in failed.problems[0] and "converter_options={'select_tf_ops': True}" in failed.problems[0]
    assert "loc(" not in failed.problems[0]
    assert sorted(os.listdir(tmp_path / "plain")) == ["export_report.json", "model.h5", "model.keras", "saved_model"]

    with pytest.warns(UserWarning, match=r"failed their check: \['tflite_float'\]"):
        report = tf_keras_export.export(
            model, tmp_path / "flex", ("tflite_float",), sample_inputs=tokens, converter_options={"select_tf_ops": True},
            latency_runs=2, verbose=0,
        )
    file = report["tflite_float"]
    # Written, and every pruned weight found at zero in it (the table in GATHER, the cell kernels in
    # the loop body), but no runtime here has the Flex delegate, so it is not claimed to pass.
    assert (file.path is not None, file.passed, file.max_abs_diff) == (True, False, None)
    assert file.problems == (tflite.FLEX_NOT_RUN.format(count=3),)
    assert file.pruned_zero == file.pruned_weights == 17766

    # The advice's other route: an unrolled LSTM converts to builtin ops and runs on LiteRT.
    unrolled = text_model()
    unrolled.get_layer("lstm").unroll = True
    model = pruned_globally(imp_keras.prunable(keras.models.clone_model(unrolled), embeddings=True), 0.8)
    report = tf_keras_export.export(model, tmp_path / "unrolled", ("tflite_float",), sample_inputs=tokens, latency_runs=2, verbose=0)
    assert report.passed and report["tflite_float"].pruned_zero == 17766 and report.reference is report["tflite_float"]


def test_embedding_table_is_checked_in_the_gather_op(tmp_path):
    keras.utils.set_random_seed(0)
    plain = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(50, 8, name="emb"), keras.layers.Flatten(), keras.layers.Dense(3, name="out")])
    model = pruned_globally(imp_keras.prunable(plain, embeddings=True), 0.5)  # (400 + 96) / 2 = 248 pruned
    tokens = np.random.default_rng(0).integers(0, 50, (8, 4))
    report = tf_keras_export.export(model, tmp_path, ("keras", "tflite_float"), sample_inputs=tokens, latency_runs=0, verbose=0)
    assert [(f.format, f.passed, f.pruned_zero, f.pruned_weights) for f in report.files] == [("keras", True, 248, 248), ("tflite_float", True, 248, 248)]


@pytest.mark.parametrize("batch", [1, 4])
def test_fixed_batch_size_is_checked_in_whole_batches(tmp_path, batch):
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), batch_size=batch)
    plain = keras.Model(x, keras.layers.Dense(3, name="out")(keras.layers.Dense(5, name="fc")(x)))
    model = pruned_globally(imp_keras.prunable(plain), 0.5)  # (30 + 15) / 2 rounds to 22
    report = tf_keras_export.export(model, tmp_path, ("saved_model", "keras", "tflite_float"), latency_runs=2, verbose=0)
    assert report.passed and report.samples == 32
    assert [f.pruned_zero for f in report.files] == [22, 22, 22]



def test_fixed_batch_size_refuses_a_partial_batch_of_check_inputs(tmp_path):
    x = keras.Input((6,), batch_size=4)
    model = imp_keras.prunable(keras.Model(x, keras.layers.Dense(3, name="out")(x)))
    with pytest.raises(ValueError, match=re.escape("The model's batch size is fixed at 4, so the check inputs must come in whole batches. Received: 6 samples")):
        tf_keras_export.export(model, tmp_path, ("keras",), sample_inputs=np.zeros((6, 6)), verbose=0)


def test_keras_formats_never_convert_to_tflite(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("converted to TFLite although no TFLite format was asked for")

    monkeypatch.setattr(tflite, "convert", refuse)
    report = tf_keras_export.export(pruned(mlp(), 0.8), tmp_path, ("saved_model", "keras", "h5"), latency_runs=0, verbose=0)
    assert report.passed and report.reference is None


def test_export_report_counts_all_trainable_kernels_as_the_sparsity_report(tmp_path):
    model = pruned_globally(imp_keras.prunable(mlp(), exclude=["fc1"], verbose=0), 0.8)  # 3072 + 480 masked
    sparsity = imp_keras.sparsity_report(model)
    report = tf_keras_export.export(model, tmp_path, ("keras",), latency_runs=0, verbose=0)
    assert (report.prunable_weights, report.pruned_weights) == (sparsity.total, sparsity.pruned) == (3552, 2842)
    assert (report.kernel_weights, report.kernel_pruned, report.unmasked) == (5600, 2842, ("fc1/kernel",))
    assert (sparsity.kernel_total, sparsity.kernel_pruned) == (5600, 2842)
    assert str(report).splitlines()[1] == "All trainable kernels: 2842/5600 zero (50.75%); not masked: fc1/kernel."
    saved = json.load(open(tmp_path / "export_report.json"))
    assert (saved["kernel_weights"], saved["kernel_pruned"], saved["unmasked"]) == (5600, 2842, ["fc1/kernel"])


def test_converter_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match=re.escape("`converter_options` must map some of ['select_tf_ops', 'lower_tensor_list_ops'] to bools")):
        tf_keras_export.export(pruned(mlp(), 0.5), tmp_path, converter_options={"select_ops": True})
