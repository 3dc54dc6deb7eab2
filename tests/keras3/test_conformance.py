"""What every flavour promises, tested the same way: tf_keras, and Keras 3 on TensorFlow, JAX and
PyTorch (tests/test_backends.py runs this file on the other backends)."""

import os
import warnings
import zipfile

import numpy as np
import pytest

import imp_keras
from imp_keras import Plan

# Plan(0.9, cycles=3) over 120 weights: p = 1 - 0.1^(1/3) = 0.5358 removes round(64.30) = 64,
# round(30.01) = 30, round(13.93) = 14.
PLAN = Plan(goal_sparsity=0.9, cycles=3, pretrain_epochs=1, retrain_epochs=1)
ALIVE = [120, 56, 26, 12]
STEPS = 4  # 64 examples, batch 16


def compile_imp(api, model, optimizer=None, kind="slr"):
    schedule = api.RetrainSchedule(0.1, PLAN, steps_per_epoch=STEPS, kind=kind)
    optimizer = optimizer or api.keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    model.compile(optimizer, loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return schedule


def fit_imp(api, model, data, schedule=None, epochs=PLAN.total_epochs, callbacks=(), **kwargs):
    callback = api.IMPCallback(PLAN, schedule, verbose=0, **kwargs)
    history = model.fit(*data, batch_size=16, epochs=epochs, callbacks=[callback, *callbacks], verbose=0, shuffle=False)
    return history, callback


def assert_pruned_stay_zero(api, model, numpy):
    for entry in api.masked_weights(model):
        mask = numpy(entry.mask)
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert not numpy(entry.weight)[mask == 0].any(), entry.name


def test_run_follows_the_plan_and_publishes_its_logs(api, make_mlp, train_data, numpy):
    model = api.prunable(make_mlp(api))
    schedule = compile_imp(api, model, kind="allr")
    history, _ = fit_imp(api, model, train_data, schedule)
    logs = history.history
    assert logs["sparsity"] == pytest.approx([1 - a / 120 for a in ALIVE])
    assert logs["cycle"] == [0, 1, 2, 3] and logs["phase"] == [0, 1, 1, 1]
    rate_key = "lr" if api.FLAVOUR == "tf_keras" else "learning_rate"
    assert len(logs[rate_key]) == 4 and np.isnan(logs["allr_d"][0]) and all(0 < d < 1 for d in logs["allr_d"][1:])
    assert logs["eta_star"][1:] == pytest.approx([schedule.shape.allr_peak(c, d) for c, d in zip((1, 2, 3), logs["allr_d"][1:])], rel=1e-5)
    report = api.verify(model, PLAN, cycle=3)
    assert (report.alive, report.total, report.slots) == (12, 120, 2)
    assert_pruned_stay_zero(api, model, numpy)


@pytest.mark.parametrize("optimizer", ["sgd_l2", "adam", "adamw", "sgd_ema", "clipnorm"])
def test_pruned_weights_and_their_slots_stay_zero(api, make_mlp, train_data, numpy, optimizer):
    k = api.keras
    base = make_mlp(api)
    if optimizer == "sgd_l2":
        for layer in base.layers:
            layer.kernel_regularizer = k.regularizers.L2(1e-3)
    model = api.prunable(base)
    options = {
        "sgd_l2": lambda: k.optimizers.SGD(0.05, momentum=0.9),
        "adam": lambda: k.optimizers.Adam(0.01),
        "adamw": lambda: k.optimizers.AdamW(0.01, weight_decay=0.1),
        "sgd_ema": lambda: k.optimizers.SGD(0.05, momentum=0.9, use_ema=True, ema_overwrite_frequency=2),
        "clipnorm": lambda: k.optimizers.SGD(0.05, momentum=0.9, clipnorm=0.01),
    }
    compile_imp(api, model, options[optimizer]())
    fit_imp(api, model, train_data)
    assert_pruned_stay_zero(api, model, numpy)
    assert api.verify(model, PLAN, cycle=3).alive == 12


def test_reset_restarts_adagrad_accumulators_at_their_initial_value(api, make_mlp, train_data, numpy):
    """At the first pruning the alive weights' accumulators restart where Adagrad built them (0.25),
    not at 0, which would make the next steps about lr in size whatever the gradient."""
    model = api.prunable(make_mlp(api))
    compile_imp(api, model, api.keras.optimizers.Adagrad(0.05, initial_accumulator_value=0.25))
    seen = []

    class AfterPruning(api.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                for entry in api.masked_weights(self.model):
                    (slot,) = api.masking.optimizer_slots(self.model.optimizer, entry.weight)
                    seen.append((numpy(entry.mask), numpy(slot)))

    fit_imp(api, model, train_data, epochs=2, callbacks=[AfterPruning()])
    assert sum(int(mask.sum()) for mask, _ in seen) == ALIVE[1]
    for mask, slot in seen:
        np.testing.assert_array_equal(slot, np.where(mask == 1, np.float32(0.25), 0.0))
    assert api.verify(model, PLAN, cycle=1).alive == ALIVE[1]


def test_bfloat16_weights_are_ranked_and_pruned_to_the_plan(api, train_data, numpy):
    """NumPy does not count bfloat16 (ml_dtypes, TensorFlow's own type) as numbers; selection ranks
    it as float32, which holds it exactly."""
    k = api.keras
    model = api.prunable(k.Sequential([
        k.Input((12,)),
        k.layers.Dense(8, activation="relu", name="fc1", dtype="bfloat16"),
        k.layers.Dense(3, name="logits", dtype="bfloat16"),
    ]))
    history, _ = fit_imp(api, model, train_data, compile_imp(api, model))
    assert [round(120 * (1 - s)) for s in history.history["sparsity"]] == ALIVE
    assert api.verify(model, PLAN, cycle=3).alive == 12
    assert_pruned_stay_zero(api, model, numpy)


def test_a_numpy_scalar_base_gives_the_schedule_of_the_number(api, numpy):
    for kind in ("lrw", "slr"):
        expected = api.RetrainSchedule(0.05, PLAN, steps_per_epoch=STEPS, kind=kind)
        given = api.RetrainSchedule(np.float32(0.05), PLAN, steps_per_epoch=STEPS, kind=kind)
        steps = range(PLAN.total_epochs * STEPS)
        assert [float(numpy(given(t))) for t in steps] == [float(numpy(expected(t))) for t in steps]


def test_strip_and_save_load_keep_masks_reports_and_outputs(api, make_mlp, train_data, numpy, tmp_path):
    model = api.prunable(make_mlp(api))
    fit_imp(api, model, train_data, compile_imp(api, model))
    x = train_data[0][:8]
    before = api.sparsity_report(model)
    stripped = api.strip(model)
    assert [type(l).__name__ for l in stripped.layers if type(l).__name__ == "MaskHolder"] == []
    assert api.sparsity_report(stripped) == before and before.pruned == 108
    np.testing.assert_allclose(numpy(stripped(x)), numpy(model(x)), atol=1e-6)

    model.save(tmp_path / "pruned.keras")
    loaded = api.keras.models.load_model(tmp_path / "pruned.keras")
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(model(x)))
    assert api.sparsity_report(loaded) == before
    # A new optimizer on a model loaded without compiling: the masks alone keep pruned weights at 0.
    fresh = api.keras.models.load_model(tmp_path / "pruned.keras", compile=False)
    fresh.compile(api.keras.optimizers.Adam(0.01), loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fresh.fit(*train_data, batch_size=16, epochs=2, verbose=0)
    assert_pruned_stay_zero(api, fresh, numpy)
    assert api.sparsity_report(fresh) == before


def test_export_of_a_masked_model_writes_the_stripped_model_without_imp_keras(api, make_mlp, train_data, tmp_path):
    """`imp_keras.export` takes the model as trained: its masks are applied and its MaskHolders
    stripped; the `.keras` file names no imp_keras class (the layers, or the schedule of an
    optimizer), so plain Keras loads it."""
    model = api.prunable(make_mlp(api))
    fit_imp(api, model, train_data, compile_imp(api, model))
    report = imp_keras.export(model, tmp_path, formats=("keras",), verbose=0)
    assert report.passed and (report.prunable_weights, report.pruned_weights) == (120, 108)
    assert model.optimizer is not None and getattr(api.strip(model), "optimizer", None) is None
    with zipfile.ZipFile(report["keras"].path) as archive:
        config = archive.read("config.json").decode()
    assert "imp_keras" not in config and "MaskHolder" not in config and "Dense" in config


def test_the_two_directions_of_a_bidirectional_rnn_have_their_own_names(api):
    k = api.keras
    model = api.prunable(k.Sequential([k.Input((5, 3)), k.layers.Bidirectional(k.layers.LSTM(4)), k.layers.Dense(2, name="out")]))
    names = [e.name for e in api.masked_weights(model)]
    forward, backward = ("forward_lstm/lstm_cell", "backward_lstm/lstm_cell") if api.FLAVOUR == "keras3" else ("forward_layer/cell", "backward_layer/cell")
    assert names == [
        f"bidirectional/{forward}/kernel", f"bidirectional/{forward}/recurrent_kernel",
        f"bidirectional/{backward}/kernel", f"bidirectional/{backward}/recurrent_kernel", "out/kernel",
    ]
    assert [layer.name for layer in api.sparsity_report(api.strip(model)).layers] == names


def test_a_schedule_of_the_other_keras_is_refused_naming_the_right_class(api):
    import imp_keras.keras3
    import imp_keras.tf_keras

    mine, other = (imp_keras.keras3, imp_keras.tf_keras) if api.FLAVOUR == "keras3" else (imp_keras.tf_keras, imp_keras.keras3)
    schedule = other.RetrainSchedule(0.1, PLAN, steps_per_epoch=STEPS)
    with pytest.raises(TypeError, match=rf"`schedule` must be an {mine.__name__}\.RetrainSchedule \(a schedule of this callback's Keras\)"):
        api.IMPCallback(PLAN, schedule)


def test_a_second_fit_without_initial_epoch_is_told_to_set_it(api, make_mlp, train_data):
    model = api.prunable(make_mlp(api))
    callback = api.IMPCallback(PLAN, verbose=0)
    model.compile(api.keras.optimizers.SGD(0.05), loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*train_data, batch_size=16, epochs=2, callbacks=[callback], verbose=0)
    with pytest.raises(ValueError, match=r"56 of 120 .* continue it with `fit\(\.\.\., initial_epoch=N\)`"):
        model.fit(*train_data, batch_size=16, epochs=3, callbacks=[callback], verbose=0)
    model.fit(*train_data, batch_size=16, epochs=3, initial_epoch=2, callbacks=[callback], verbose=0)
    assert api.verify(model, PLAN, cycle=2).alive == ALIVE[2]


def test_apply_masks_refuses_masks_that_are_not_binary(api, make_mlp, numpy):
    model = api.prunable(make_mlp(api))
    entries = api.masked_weights(model)
    before = numpy(entries[0].weight).copy()
    with pytest.raises(ValueError, match=r"The mask of fc1/kernel must hold only 0 and 1 \(or booleans\). Received: 96 other value\(s\), e.g. 0.5"):
        api.apply_masks(entries, [np.full((12, 8), 0.5), np.ones((8, 3))])
    np.testing.assert_array_equal(numpy(entries[0].weight), before)
    api.apply_masks(entries, [np.arange(96).reshape(12, 8) % 2, np.ones((8, 3), bool)])
    assert int(numpy(entries[0].mask).sum()) == 48 and not numpy(entries[0].weight)[numpy(entries[0].mask) == 0].any()


def test_mask_holder_refuses_what_is_not_a_layer(api):
    with pytest.raises(TypeError, match=r"`layer` must be a .*[Ll]ayer.*Received: layer='dense'"):
        api.MaskHolder("dense")


def test_save_weights_load_weights_restores_the_masks(api, make_mlp, train_data, numpy, tmp_path):
    model = api.prunable(make_mlp(api))
    fit_imp(api, model, train_data, compile_imp(api, model))
    path = str(tmp_path / ("pruned.weights.h5" if api.FLAVOUR == "keras3" else "pruned.h5"))
    model.save_weights(path)
    other = api.prunable(make_mlp(api, seed=1))
    other.load_weights(path)
    for a, b in zip(api.masked_weights(model), api.masked_weights(other)):
        np.testing.assert_array_equal(numpy(a.mask), numpy(b.mask))
        np.testing.assert_array_equal(numpy(a.weight), numpy(b.weight))


def test_several_fit_calls_continue_the_plan(api, make_mlp, train_data, numpy):
    model = api.prunable(make_mlp(api))
    schedule = compile_imp(api, model)
    callback = api.IMPCallback(PLAN, schedule, verbose=0)
    for epoch in range(PLAN.total_epochs):
        model.fit(*train_data, batch_size=16, initial_epoch=epoch, epochs=epoch + 1, callbacks=[callback], verbose=0, shuffle=False)
        assert api.verify(model, PLAN, cycle=PLAN.cycle_at(epoch)).alive == ALIVE[epoch]
    assert_pruned_stay_zero(api, model, numpy)


class Interrupt(Exception):
    pass


def test_backup_and_restore_resumes_to_the_same_masks(api, make_mlp, train_data, numpy, tmp_path):
    def run(interrupt_after=None):
        model = api.prunable(make_mlp(api))
        schedule = compile_imp(api, model)
        stop = api.keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: (_ for _ in ()).throw(Interrupt()) if epoch == interrupt_after else None
        )
        backup = api.keras.callbacks.BackupAndRestore(str(tmp_path / f"backup{interrupt_after}"))
        try:
            fit_imp(api, model, train_data, schedule, callbacks=[backup, stop])
        except Interrupt:
            model = api.prunable(make_mlp(api))
            schedule = compile_imp(api, model)
            fit_imp(api, model, train_data, schedule, callbacks=[api.keras.callbacks.BackupAndRestore(str(tmp_path / f"backup{interrupt_after}"))])
        return model

    whole, resumed = run(), run(interrupt_after=2)
    for a, b in zip(api.masked_weights(whole), api.masked_weights(resumed)):
        np.testing.assert_array_equal(numpy(a.mask), numpy(b.mask))
        np.testing.assert_allclose(numpy(a.weight), numpy(b.weight), atol=1e-6)


def test_mixed_precision(api, make_mlp, train_data, numpy, mixed_policy):
    policy = "mixed_float16" if api.FLAVOUR == "tf_keras" else mixed_policy
    if api.FLAVOUR == "tf_keras":
        api.keras.mixed_precision.set_global_policy(policy)
    else:
        api.keras.config.set_dtype_policy(policy)
    model = api.prunable(make_mlp(api))
    fit_imp(api, model, train_data, compile_imp(api, model))
    assert_pruned_stay_zero(api, model, numpy)
    assert api.verify(model, PLAN, cycle=3).alive == 12


def test_top_level_names_dispatch_by_the_model(api, make_mlp):
    model = imp_keras.prunable(make_mlp(api))
    assert type(model).__module__.startswith("tf_keras" if api.FLAVOUR == "tf_keras" else "keras")
    assert isinstance(imp_keras.masked_weights(model)[0].layer, api.keras.layers.Dense)
    schedule = imp_keras.RetrainSchedule(api.keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5), PLAN, STEPS)
    assert isinstance(schedule, api.RetrainSchedule) and isinstance(schedule, imp_keras.RetrainSchedule)
    assert isinstance(imp_keras.IMPCallback(PLAN, schedule), api.IMPCallback)


def test_min_alive_keeps_a_floor_in_every_tensor(api, make_mlp, train_data, numpy):
    # 90 % of 120 leaves 12 alive; a floor of 5 in fc1 [12, 8] and logits [8, 3] fits (10 <= 12).
    model = api.prunable(make_mlp(api))
    compile_imp(api, model)
    fit_imp(api, model, train_data, min_alive=5)
    alive = [int(np.count_nonzero(numpy(e.mask))) for e in api.masked_weights(model)]
    assert sum(alive) == 12 and min(alive) >= 5
    with pytest.raises(ValueError, match="Received: min_alive=0"):
        api.IMPCallback(PLAN, min_alive=0)


def logits_sum(labels, logits):
    """A loss whose gradient on the logits' bias is exactly 1 at every step."""
    return logits[:, 0] + logits[:, 1] + logits[:, 2]


@pytest.mark.parametrize("jit_compile", [True, False], ids=["compiled", "not_compiled"])
def test_compiled_steps_keep_masks_and_read_live_allr_peaks(api, make_mlp, train_data, numpy, jit_compile):
    """jit_compile=True: XLA on TensorFlow (and tf_keras), jax.jit, torch.compile; False: tf.function,
    JAX op by op, torch eager. After every step each pruned weight and its momentum are exactly 0,
    and the step applied the learning rate of the ALLR peaks the callback recorded between epochs:
    with gradient 1, the logits bias' momentum is m = 0.9 m_before - learning_rate."""
    model = api.prunable(make_mlp(api))
    # base_epochs=10: the peaks' lower bound, 0.1 * 1 / 10, leaves them room below the initial 0.1.
    schedule = api.RetrainSchedule(0.1, PLAN, steps_per_epoch=STEPS, kind="allr", base_epochs=10)
    model.compile(api.keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True), loss=logits_sum, jit_compile=jit_compile)
    assert model.jit_compile is jit_compile  # Keras did not fall back to another mode
    entries = api.masked_weights(model)
    bias = entries[-1].layer.bias

    def momentum():
        (slot,) = api.masking.optimizer_slots(model.optimizer, bias)
        return float(numpy(slot)[0])

    applied, leaks = [], []

    class AfterEveryStep(api.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.before = momentum()

        def on_train_batch_end(self, batch, logs=None):
            sync = getattr(self.model, "jax_state_sync", None)
            if sync is not None:  # JAX keeps the step's results outside the variables until synced
                sync()
            applied.append(0.9 * self.before - momentum())
            for entry in entries:
                pruned = numpy(entry.mask) == 0
                for variable in [entry.weight, *api.masking.optimizer_slots(model.optimizer, entry.weight)]:
                    leaks.extend([entry.name] * int(np.count_nonzero(numpy(variable)[pruned])))

    history, _ = fit_imp(api, model, train_data, schedule, callbacks=[AfterEveryStep()])
    assert leaks == []
    assert [round(120 * (1 - s)) for s in history.history["sparsity"]] == ALIVE
    assert api.verify(model, PLAN, cycle=3).alive == 12
    peaks = numpy(schedule.eta_star)
    assert np.all(np.abs(peaks - 0.1) > 0.01), peaks  # a stale peak (the initial 0.1) would show
    expected = [float(numpy(schedule(step))) for step in range(PLAN.total_epochs * STEPS)]
    np.testing.assert_allclose(applied, expected, rtol=1e-4, atol=1e-7)


def test_a_layer_frozen_after_prunable_is_left_out_of_pruning_and_its_counts(api, frozen_fc1, train_data, numpy, recwarn):
    # The plan over logits' 24 weights alone: 24 -> 11 -> 5 -> 2 alive (removes 13, 6, 3).
    model, variables, frozen = frozen_fc1(api)
    schedule = compile_imp(api, model)
    callback = api.IMPCallback(PLAN, schedule, verbose=0)
    history = []
    for epochs in ((0, 2), (2, 4)):  # two fit calls: one warning
        fitted = model.fit(*train_data, batch_size=16, initial_epoch=epochs[0], epochs=epochs[1], callbacks=[callback], verbose=0, shuffle=False)
        history += fitted.history["sparsity"]
    (warning,) = [w for w in recwarn if "frozen" in str(w.message)]
    assert str(warning.message) == (
        "IMPCallback: 1 masked tensor(s) are frozen (trainable=False) and left out of pruning, their masks kept as they "
        "are: fc1/kernel. The counts are over the 24 weights of the 1 trainable masked tensor(s); keep what is frozen "
        "the same for the whole run."
    )
    assert history == pytest.approx([1 - a / 24 for a in (24, 11, 5, 2)])
    for before, after in zip(frozen, variables):
        np.testing.assert_array_equal(before, numpy(after))  # kernel, bias and mask bit-identical
    report = api.verify(model, PLAN, cycle=3)
    assert (report.names, report.alive, report.total, report.expected_alive, report.frozen) == (("logits/kernel",), 2, 24, 2, ("fc1/kernel",))
    sparsity = api.sparsity_report(model)
    assert (sparsity.total, sparsity.pruned, sparsity.kernel_total, sparsity.unmasked) == (24, 22, 24, ())
    assert api.sparsity_report(api.strip(model)) == sparsity


def test_a_model_whose_masked_layers_are_all_frozen_is_refused(api, make_mlp, train_data):
    plain = make_mlp(api)
    model = api.prunable(plain)
    plain.trainable = False
    compile_imp(api, model)
    with pytest.raises(ValueError, match=r"every masked weight is frozen \(trainable=False\), so there is nothing to prune: fc1/kernel, logits/kernel\."):
        fit_imp(api, model, train_data)


def test_a_subclassed_model_of_unbuilt_mask_holders_prunes_and_refuses_a_ladder_before_training(api, train_data, numpy, tmp_path):
    """The route `prunable` gives for subclassed models: MaskHolders around layers built on the first call."""
    k = api.keras

    class Net(k.Model):
        def __init__(self):
            super().__init__()
            self.fc1 = api.MaskHolder(k.layers.Dense(8, activation="relu", name="fc1"))
            self.logits = api.MaskHolder(k.layers.Dense(3, name="logits"))

        def call(self, x):
            return self.logits(self.fc1(x))

    model = Net()
    model(train_data[0][:1])
    assert [(e.name, tuple(e.mask.shape)) for e in api.masked_weights(model)] == [("fc1/kernel", (12, 8)), ("logits/kernel", (8, 3))]
    compile_imp(api, model)
    for argument in ("ladder_dir", "export_dir"):
        with pytest.raises(ValueError, match=f"`{argument}` needs a Sequential or Functional model: Net is subclassed"):
            fit_imp(api, model, train_data, **{argument: tmp_path / argument})
        assert int(numpy(model.optimizer.iterations)) == 0 and not (tmp_path / argument).exists()
    history, _ = fit_imp(api, model, train_data)
    assert history.history["sparsity"] == pytest.approx([1 - a / 120 for a in ALIVE])
    assert_pruned_stay_zero(api, model, numpy)


def test_prunable_keeps_operations_between_layers_and_input_masks(api, numpy):
    """A residual sum, an activation applied as an op, and Masking before an LSTM (Keras 3 puts
    `NotEqual` and `Any` ops in that graph): the same outputs as the plain model."""
    k = api.keras
    x = k.Input((5, 4))
    h = k.layers.Masking(0.0)(x)
    h = k.layers.LSTM(4, return_sequences=True, name="lstm")(h)
    h = k.activations.relu(k.layers.Dense(4, name="fc")(h) + x)
    plain = k.Model(x, k.layers.Dense(2, name="out")(h))
    model = api.prunable(plain)
    assert [e.name.replace("/cell/", "/lstm_cell/") for e in api.masked_weights(model)] == [
        "lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "fc/kernel", "out/kernel"
    ]
    inputs = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    inputs[:, 3:] = 0.0  # padding that Masking hides from the LSTM
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert np.array_equal(numpy(model(inputs)), numpy(plain(inputs)))
    assert not [w for w in caught if "destroy the mask" in str(w.message)]  # the wrappers pass masks on


def test_steps_the_loss_scale_skips_leave_the_plan_and_the_gmp_goal_exact(api, make_mlp, train_data, numpy):
    """Inputs x300 under mixed_float16: the first steps overflow and LossScaleOptimizer skips them.
    tf_keras's counts them in `iterations`; Keras 3's does not (3 of 16 counted here), which IMP
    allows with a warning and after which GMP still makes its last update, to the goal."""
    if api.FLAVOUR == "tf_keras":
        api.keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        api.keras.config.set_dtype_policy("mixed_float16")
    data = (train_data[0] * 300, train_data[1])
    model = api.prunable(make_mlp(api))
    compile_imp(api, model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history, _ = fit_imp(api, model, data)
    assert history.history["sparsity"] == pytest.approx([1 - a / 120 for a in ALIVE])
    lagging = [str(w.message) for w in caught if "LossScaleOptimizer skipped" in str(w.message)]
    assert len(lagging) == (api.FLAVOUR == "keras3")
    gmp_model = api.prunable(make_mlp(api))
    gmp_model.compile(api.keras.optimizers.SGD(0.1), loss=api.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    gmp = api.GMPCallback(0.9, begin=1, end=4, unit="epoch", frequency=2, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gmp_model.fit(*data, batch_size=16, epochs=4, callbacks=[gmp], verbose=0, shuffle=False)
    assert api.verify(gmp_model).alive == 12
    assert any("before GMP's last update (step 16)" in str(w.message) for w in caught) == (api.FLAVOUR == "keras3")
    assert_pruned_stay_zero(api, gmp_model, numpy)


@pytest.mark.parametrize("method", ["imp", "imp_constant_rate", "gmp"])
def test_a_mid_epoch_backup_resumes_in_step_with_the_epochs(api, make_mlp, train_data, numpy, tmp_path, method):
    """BackupAndRestore(save_freq=2) saves after batches 1 and 3 of every 4-step epoch; a run
    stopped after batch 2 of epoch 2 resumes from step 10. tf_keras runs that epoch's last 2 steps;
    Keras 3 reruns all 4, its step moved back to 8: both end at step 16, with every count the
    uninterrupted run has (IMP: 56 then 26, 12; GMP window epochs 1-3, every 2 steps: 26, 12, 12).
    IMP with a constant rate has no schedule to place the step: the restored masks say it pruned."""
    k = api.keras

    class StopAfter(k.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) == (2, 2):
                raise Interrupt()

    def fit(callbacks):
        model = api.prunable(make_mlp(api))
        compile_imp(api, model, k.optimizers.SGD(0.05, momentum=0.9) if method == "imp_constant_rate" else None)
        pruning = api.IMPCallback(PLAN, verbose=0) if method.startswith("imp") else api.GMPCallback(0.9, begin=1, end=3, unit="epoch", frequency=2, verbose=0)
        history = model.fit(*train_data, batch_size=16, epochs=4, callbacks=[pruning, *callbacks], verbose=0, shuffle=False)
        return model, history

    _, whole = fit([])
    backup = lambda: k.callbacks.BackupAndRestore(str(tmp_path / "backup"), save_freq=2)  # noqa: E731
    with pytest.raises(Interrupt):
        fit([backup(), StopAfter()])
    model, resumed = fit([backup()])
    assert resumed.epoch == [2, 3] and resumed.history["sparsity"] == whole.history["sparsity"][2:]
    rerun = 2 if (method, api.FLAVOUR) == ("imp_constant_rate", "keras3") else 0  # Keras 3 reruns batches 0 and 1
    assert int(numpy(model.optimizer.iterations)) == 16 + rerun
    assert_pruned_stay_zero(api, model, numpy)


def test_export_checks_every_masked_tensor_as_the_sparsity_report_counts_it(api, numpy, tmp_path):
    """LSTM(8) on 4 features + Dense(3): kernel 4x32, recurrent kernel 8x32, fc 8x3 = 128 + 256 +
    24 = 408 masked weights; every other one pruned (204), the recurrent kernel's included."""
    k = api.keras
    x = k.Input((3, 4))
    model = api.prunable(k.Model(x, k.layers.Dense(3, name="fc")(k.layers.LSTM(8, name="lstm")(x))))
    entries = api.masked_weights(model)
    api.apply_masks(entries, [np.arange(int(np.prod(e.mask.shape))).reshape(tuple(e.mask.shape)) % 2 == 1 for e in entries])
    assert (api.sparsity_report(model).pruned, api.sparsity_report(model).total) == (204, 408)
    report = api.export(model, tmp_path, formats=("keras",), verbose=0)
    assert (report.pruned_weights, report.prunable_weights) == (204, 408)
    assert (report["keras"].pruned_zero, report["keras"].pruned_weights) == (204, 204) and report.passed


def test_a_format_that_fails_to_write_removes_the_earlier_exports_file(api, tmp_path):
    """The directory never holds a model this export did not check: model A's model.keras goes
    when model B, whose config cannot be written, is exported over it."""
    k = api.keras

    class NoConfig(k.layers.Layer):
        def call(self, x):
            return 2.0 * x

        def get_config(self):
            raise NotImplementedError("no config")

    def model(extra):
        x = k.Input((4,))
        y = k.layers.Dense(3, name="fc")(x)
        return k.Model(x, NoConfig()(y) if extra else y)

    assert api.export(model(False), tmp_path, formats=("keras",), verbose=0).passed
    report = api.export(model(True), tmp_path, formats=("keras",), verbose=0)
    assert report["keras"].path is None and not report.passed
    assert "NotImplementedError: no config (the earlier export's model.keras there was removed)" in report["keras"].problems[0]
    assert sorted(os.listdir(tmp_path)) == ["export_report.json"]


def test_strip_keeps_the_report_of_a_model_with_excluded_layers(api, make_mlp):
    """fc1 excluded: the report is over logits' 24 weights, half pruned, for the model and its strip."""
    model = api.prunable(make_mlp(api), exclude=["fc1"])
    entries = api.masked_weights(model)
    api.apply_masks(entries, [np.arange(24).reshape(8, 3) % 2 == 0])
    masked = api.sparsity_report(model)
    stripped = api.sparsity_report(api.strip(model))
    assert (masked.pruned, masked.total) == (stripped.pruned, stripped.total) == (12, 24)


def test_keras3_multi_optimizer_slots_are_found_and_kept_zero(api, make_mlp, train_data, numpy):
    """MultiOptimizer keeps the slots in its inner optimizers."""
    if api.FLAVOUR != "keras3":
        pytest.skip("a Keras 3 optimizer")
    k = api.keras
    model = api.prunable(make_mlp(api))
    compile_imp(api, model, k.optimizers.MultiOptimizer(k.optimizers.OptimizerMap(k.optimizers.SGD(0.05, momentum=0.9))))
    fit_imp(api, model, train_data)
    kernel = api.masked_weights(model)[0].weight
    assert api.masking.optimizer_slots(model.optimizer, kernel)  # found, so zeroed and verified
    assert_pruned_stay_zero(api, model, numpy)
    assert api.verify(model, PLAN, cycle=3).alive == 12


@pytest.mark.parametrize("name", ["Ftrl", "Muon"])
def test_optimizers_that_move_pruned_weights_are_refused_before_training(api, make_mlp, train_data, numpy, name):
    """Measured before the refusal: Ftrl's zeroed accumulators made the weights NaN; Muon's
    orthogonalized update left 49 pruned weights of fc1 nonzero after one cycle."""
    if not hasattr(api.keras.optimizers, name):
        pytest.skip(f"{api.FLAVOUR} has no {name}")
    model = api.prunable(make_mlp(api))
    compile_imp(api, model, getattr(api.keras.optimizers, name)(0.05))
    with pytest.raises(ValueError, match=f"^{name} cannot train a pruned model: .* Received: optimizer="):
        fit_imp(api, model, train_data)
    assert int(numpy(model.optimizer.iterations)) == 0
