"""Bad input is refused up front, naming what is wrong: random invalid values in random config
fields (hypothesis), random valid configs that must pass and build their plan, schedule and
optimizer, and a table of bad arguments to every public entry point."""

import functools
import inspect
import math
import re

import ml_collections
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imp_keras
from imp_keras import IMPCallback, NaNGuard, Plan, RetrainSchedule, experiment, keras, models, verify
from imp_keras.data import DATASETS, INPUT_SHAPES
from imp_keras.export.tf_keras import FORMATS
from imp_keras.tf_keras.schedules import KINDS
from imp_keras.core.gradual import UNITS
from imp_keras.core.selection import CRITERIA, select

# ---------------------------------------------------------------------------------------------------
# Random invalid configs


def base():
    """A valid config: base_config() with the folder its `files` source needs."""
    config = experiment.base_config()
    config.data.data_dir = "/data"
    return config


def with_field(config, field, value):
    """A copy of `config` with `field` (dotted) set to `value`, whatever its type (as a config file,
    a JSON file or a script could give it: ConfigDict assignment would refuse another type)."""
    values = config.to_dict()
    *parents, name = field.split(".")
    holder = values
    for parent in parents:
        holder = holder[parent]
    holder[name] = value
    return ml_collections.ConfigDict(values)


nan_inf = st.sampled_from([math.nan, math.inf, -math.inf])
not_a_number = st.one_of(st.none(), st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2))
not_an_int = st.one_of(not_a_number, st.floats(allow_nan=True).filter(lambda f: not float(f).is_integer()), nan_inf)
not_a_bool = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5))
not_a_str = st.one_of(st.none(), st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=2))


def ints_below(minimum):
    return st.one_of(not_an_int, st.integers(max_value=minimum - 1))


def numbers_outside(low, high, *, low_open=False, high_open=False):
    below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False)
    above = st.floats(min_value=high, exclude_min=not high_open, allow_nan=False) if math.isfinite(high) else nan_inf
    return st.one_of(not_a_number, nan_inf, below, above)


def not_one_of(choices):
    return st.one_of(not_a_str, st.text(max_size=12).filter(lambda s: s not in choices))


INVALID = {
    "name": st.one_of(not_a_str, st.sampled_from(["", "   "])),
    "seed": st.one_of(ints_below(0), st.integers(min_value=2**32)),
    "deterministic": not_a_bool,
    "data.name": not_one_of(DATASETS),
    "data.source": not_one_of(("files", "tfds", "synthetic")),
    "data.data_dir": st.one_of(not_a_str, st.just("")),
    "data.validation_split": numbers_outside(0.0, 1.0, high_open=True),
    "data.augment": not_a_bool,
    "data.synthetic_examples": ints_below(1),
    "data.max_examples": st.one_of(ints_below(0), st.integers(1, 127)),  # fewer examples than a batch of 128
    "model.name": not_one_of(tuple(models.MODELS)),
    "model.kwargs": st.one_of(not_a_str, st.dictionaries(st.sampled_from(["depth", "width", "dropout"]), st.integers(), min_size=1)),
    "batch_size": ints_below(1),
    "optimizer.name": not_one_of(experiment.OPTIMIZERS),
    "optimizer.momentum": numbers_outside(0.0, 1.0, high_open=True),
    "optimizer.nesterov": not_a_bool,
    "optimizer.weight_decay": numbers_outside(0.0, 1.0),
    "lr.initial": numbers_outside(0.0, math.inf, low_open=True),
    "lr.decay": not_one_of(experiment.DECAYS),
    "lr.step_at": st.one_of(
        st.none(), st.integers(), st.text(max_size=3), st.lists(not_a_number, min_size=1, max_size=2),
        st.lists(st.floats(min_value=1.0), min_size=1, max_size=3), st.sampled_from([[0.75, 0.5], []]),
    ),
    "lr.step_factor": numbers_outside(0.0, 1.0, low_open=True),
    "method": not_one_of(experiment.METHODS),
    "keras": not_one_of(("tf_keras", "keras3")),
    "backend": st.one_of(not_one_of(("tensorflow", "jax", "torch")), st.sampled_from(["jax", "torch"])),  # tf_keras: TensorFlow only
    "goal_sparsity": numbers_outside(0.0, 1.0, low_open=True, high_open=True),
    "cycles": ints_below(1),
    "pretrain_epochs": ints_below(1),
    "retrain_epochs": ints_below(1),
    "total_epochs": st.one_of(ints_below(0), st.integers(1, 12)),  # 0, or at least pretrain_epochs + cycles = 13
    "retrain_kind": not_one_of(KINDS),
    "retrain_lr": numbers_outside(0.0, math.inf, high_open=True),
    "selection": not_one_of(tuple(CRITERIA)),
    "block_size": st.one_of(
        st.none(), st.integers(), st.text(min_size=1, max_size=3),
        st.lists(st.integers(1, 8), min_size=1, max_size=4).filter(lambda b: len(b) != 2),
        st.tuples(st.integers(max_value=0), st.integers(1, 4)), st.lists(not_a_number, min_size=2, max_size=2),
    ),
    "min_alive": st.one_of(
        not_a_number, nan_inf, st.floats(max_value=0.0, exclude_max=True), st.integers(max_value=-1),
        st.floats(min_value=1.0, allow_infinity=False).filter(lambda f: not f.is_integer()),
    ),
    "exact_goal": not_a_bool,
    "reset_optimizer": not_a_bool,
    "dense_workdir": not_a_str,
    "gmp_begin": numbers_outside(0.0, math.inf, high_open=True),
    "gmp_end": numbers_outside(0.0, math.inf, high_open=True),
    "gmp_unit": not_one_of(UNITS),
    "gmp_frequency": ints_below(1),
    "distribution": not_one_of(("none", "mirrored", "multi_worker")),
    "mixed_precision": not_a_bool,
    "xla": not_a_bool,
    "export_formats": st.one_of(
        st.none(), st.integers(), st.lists(st.text(max_size=6).filter(lambda f: f not in FORMATS + experiment.EXPORT_PRESETS), min_size=1, max_size=2),
        st.sampled_from(FORMATS).map(lambda f: [f, f]),
    ),
    "export_samples": ints_below(1),
    "export_latency_runs": ints_below(0),
}


def leaves(config, prefix=""):
    found = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict) and prefix + key != "model.kwargs":
            found += leaves(value, prefix + key + ".")
        else:
            found.append(prefix + key)
    return found


def test_every_config_field_has_an_invalid_strategy():
    assert sorted(INVALID) == sorted(leaves(base()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_invalid_field_is_refused_naming_it(data):
    field = data.draw(st.sampled_from(sorted(INVALID)), label="field")
    value = data.draw(INVALID[field], label="value")
    config = with_field(base(), field, value)
    with pytest.raises(ValueError) as caught:  # any other exception (TypeError, a TF error) fails the test
        experiment.validate(config)
    assert type(caught.value) is ValueError
    assert f"`{field}" in str(caught.value), str(caught.value)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_missing_or_unknown_field_is_refused_naming_it(data):
    values = base().to_dict()
    field = data.draw(st.sampled_from(leaves(base())), label="field")
    *parents, name = field.split(".")
    holder = values
    for parent in parents:
        holder = holder[parent]
    if data.draw(st.booleans(), label="missing"):
        del holder[name]
        expected = f"`{field}` is missing"
    else:
        extra = name + data.draw(st.sampled_from(["s", "_", "2"]), label="typo")
        holder[extra] = holder[name]
        expected = f"`{'.'.join(parents + [extra])}` is not a config field; did you mean `{field}`?"
    with pytest.raises(ValueError, match="^" + re.escape(expected)):
        experiment.validate(ml_collections.ConfigDict(values))


def test_config_that_is_no_configdict_is_refused():
    with pytest.raises(TypeError, match=r"`config` must be an ml_collections.ConfigDict"):
        experiment.validate({"name": "x"})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"model.name": "vgg16_bn"}, r"`model.name` must be a model for the 28x28 images of data.name='mnist' \(vgg16_bn needs at least 32x32\)"),
        ({"model.name": "resnet_cifar", "model.kwargs": {"depth": 21}}, r"`model.kwargs.depth` must be 6n\+2 .* Received: model.kwargs.depth=21"),
        ({"model.kwargs": {"depth": 20}}, r"`model.kwargs`: Model 'lenet_300_100' takes no argument 'depth'.* Received: model.kwargs.depth=20"),
        ({"data.source": "synthetic", "data.synthetic_examples": 100}, r"`batch_size` must be at most the 100 training examples"),
        (
            {"data.source": "synthetic", "data.synthetic_examples": 256, "data.validation_split": 0.6},
            r"`batch_size` must be at most the 102 training examples \(`data.synthetic_examples`=256, less `data.validation_split`=0.6\)",
        ),
        (
            {"data.source": "synthetic", "data.synthetic_examples": 2, "data.validation_split": 0.1, "batch_size": 1},
            r"`data.validation_split` must leave at least one training and one validation example of the 2",
        ),
        ({"method": "dense", "dense_workdir": "/runs/dense"}, r"`dense_workdir` must be empty with method='dense'"),
        (
            {"method": "bimp", "total_epochs": 20, "retrain_kind": "ft"},
            r"`retrain_kind` must be left at its default 'slr' with method='bimp' \(BIMP's schedule is its own: linear to 0 "
            r"over pretrain_epochs, then ALLR\). Received: retrain_kind='ft'",
        ),
        ({"method": "bimp", "total_epochs": 20, "lr.decay": "cosine"}, r"`lr.decay` must be left at its default 'step' with method='bimp'"),
        (
            {"retrain_kind": "slr", "retrain_lr": 0.05},
            r"`retrain_lr` must be left at its default 0.0 with retrain_kind='slr' \(only constant, linear, cosine retraining takes it\)",
        ),
        ({"optimizer.name": "adam", "optimizer.momentum": 0.5}, r"`optimizer.momentum` must be left at its default 0.9 with optimizer.name='adam' \(only SGD uses it\)"),
        ({"method": "dense", "min_alive": 0.01}, r"`min_alive` must be left at its default 0.0 with method='dense' \(a dense run prunes nothing\). Received: min_alive=0.01"),
        ({"block_size": (4, 1), "selection": "lamp"}, r"`block_size` must be \(\) with selection='lamp'"),
        ({"retrain_kind": "lrw", "total_epochs": 18, "pretrain_epochs": 2, "cycles": 2}, r"`retrain_epochs` must be at most pretrain_epochs=2 for LRW"),
        ({"method": "bimp", "total_epochs": 0}, r"`total_epochs` must be at least pretrain_epochs \+ cycles = 13 for BIMP"),
        ({"seed": 2**32}, r"`seed` must be an integer in \[0, 4294967295\]"),
    ],
)
def test_inconsistent_settings_are_refused_naming_the_field(fields, message):
    config = base()
    for field, value in fields.items():
        config = with_field(config, field, value)
    with pytest.raises(ValueError, match=message):
        experiment.validate(config)


# ---------------------------------------------------------------------------------------------------
# Random valid configs: validate passes, and every object the trainer builds from them builds


@st.composite
def valid_configs(draw):
    config = base()
    config.method = draw(st.sampled_from(experiment.METHODS))
    config.data.name = draw(st.sampled_from(DATASETS))
    config.data.source = "synthetic"
    config.data.synthetic_examples = draw(st.integers(8, 600))
    config.data.validation_split = draw(st.sampled_from([0.0, 0.1, 0.5]))
    config.data.max_examples = draw(st.sampled_from([0, 7, 1000]))
    train = config.data.synthetic_examples - round(config.data.validation_split * config.data.synthetic_examples)
    config.batch_size = draw(st.integers(1, min(train, config.data.max_examples or train)))
    side = min(INPUT_SHAPES[config.data.name][:2])
    name = draw(st.sampled_from([m for m in models.MODELS if models.MIN_IMAGE_SIDE.get(m, 0) <= side]))
    config.model.name = name
    kwargs = {
        "conv_net": {"depth": draw(st.sampled_from([2, 4, 6]))},
        "resnet_cifar": {"depth": draw(st.sampled_from([8, 20, 56]))},
        "wide_resnet": {"depth": 16, "width": draw(st.integers(1, 4)), "dropout": draw(st.floats(0, 0.9))},
    }.get(name, {})
    config.model.kwargs = ml_collections.ConfigDict(kwargs)
    config.optimizer.name = draw(st.sampled_from(experiment.OPTIMIZERS))
    config.optimizer.momentum = draw(st.floats(0, 0.99))
    config.optimizer.weight_decay = draw(st.sampled_from([0.0, 5e-4]))
    config.lr.initial = draw(st.floats(1e-5, 10))
    config.lr.decay = draw(st.sampled_from(experiment.DECAYS))
    config.lr.step_at = tuple(sorted(draw(st.sets(st.sampled_from([0.25, 0.5, 0.75, 0.9]), min_size=1, max_size=3))))
    config.lr.step_factor = draw(st.floats(0.01, 1.0))
    config.goal_sparsity = draw(st.floats(0.01, 0.99))
    config.cycles = draw(st.integers(1, 5))
    config.pretrain_epochs = draw(st.integers(1, 8))
    config.retrain_epochs = draw(st.integers(1, 4))
    config.retrain_kind = draw(st.sampled_from(KINDS))
    config.retrain_lr = draw(st.floats(1e-4, 1.0))
    if config.method == "bimp" or draw(st.booleans()):
        config.total_epochs = config.pretrain_epochs + config.cycles + draw(st.integers(0, 10))
    if config.method == "imp" and config.retrain_kind == "lrw":
        config.retrain_epochs = min(config.retrain_epochs, config.pretrain_epochs)
        config.total_epochs = 0
    config.selection = draw(st.sampled_from(sorted(CRITERIA)))
    config.block_size = draw(st.sampled_from([(), (4, 1)])) if config.selection == "global" else ()
    config.exact_goal = draw(st.booleans())
    if config.method == "imp" and draw(st.booleans()):
        config.dense_workdir = "/runs/dense"
    config.export_formats = tuple(draw(st.lists(st.sampled_from(FORMATS), unique=True, max_size=3)))
    # Fields the method, retraining kind or optimizer would not read stay at their defaults.
    unread = {
        "gmp": ("cycles", "retrain_epochs", "total_epochs", "retrain_kind", "retrain_lr", "exact_goal"),
        "bimp": ("retrain_kind", "retrain_lr", "lr.decay", "lr.step_at", "lr.step_factor"),
        "imp": () if config.retrain_kind in ("constant", "linear", "cosine") else ("retrain_lr",),
    }.get(config.method, ())
    if config.optimizer.name != "sgd":
        unread += ("optimizer.momentum", "optimizer.nesterov")
    if config.lr.decay != "step":
        unread += ("lr.step_at", "lr.step_factor")
    defaults = experiment.base_config()
    for field in unread:
        *parents, leaf = field.split(".")
        functools.reduce(getattr, parents, config)[leaf] = defaults[field]
    if config.method == "gmp":  # a window within any run of >= 1 step
        config.gmp_unit, config.gmp_begin, config.gmp_end = draw(
            st.sampled_from([("fraction", 0.0, 1.0), ("epoch", 0.0, float(config.pretrain_epochs)), ("step", 0.0, 1.0)])
        )
        config.gmp_frequency = draw(st.integers(1, 100))
    return config


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=valid_configs(), steps_per_epoch=st.integers(1, 3))
def test_random_valid_config_passes_and_builds(config, steps_per_epoch):
    experiment.validate(config)
    method = experiment.method(config, steps_per_epoch)
    experiment.make_optimizer(config, method.schedule)
    models.check_arguments(config.model.name, config.model.kwargs.to_dict())
    assert method.epochs >= 1 and method.prunes == (config.method != "dense") and (method.gradual is None) == (config.method != "gmp")


# ---------------------------------------------------------------------------------------------------
# Public arguments


def mlp():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])


PLAN = Plan(0.9, 2, 2, 2)

BAD_ARGUMENTS = [
    # (call, error, message naming the argument)
    (lambda: Plan(1.0, 2, 1, 1), ValueError, r"`goal_sparsity` must be in \[0, 1\). Received: goal_sparsity=1.0"),
    (lambda: Plan(math.nan, 2, 1, 1), ValueError, r"`goal_sparsity` must be in \[0, 1\)"),
    (lambda: Plan(0.9, 0, 1, 1), ValueError, r"`cycles` must be an integer >= 1. Received: cycles=0"),
    (lambda: Plan(0.9, 2.0, 1, 1), ValueError, r"`cycles` must be an integer >= 1"),
    (lambda: Plan(0.9, 2, -1, 1), ValueError, r"`pretrain_epochs` must be an integer >= 0"),
    (lambda: Plan(0.9, 2, 1, [1]), ValueError, r"`retrain_epochs` must give one value per cycle \(2\)"),
    (lambda: Plan(0.9, 2, 1, "3"), ValueError, r"`retrain_epochs` must be an integer >= 1"),
    (lambda: Plan(0.9, 2, 1, 1, "yes"), ValueError, r"`exact_goal` must be a bool"),
    (lambda: Plan.budgeted(0.9, 3, 2, 2), ValueError, r"`total_epochs` - `pretrain_epochs` must leave at least one epoch per cycle"),
    (lambda: PLAN.alive_after(1, -5), ValueError, r"`n_total` must be an integer >= 0. Received: n_total=-5"),
    (lambda: PLAN.alive_after(3, 100), ValueError, r"`cycle` must be at most cycles=2"),
    (lambda: RetrainSchedule(0.1, None, 10), TypeError, r"`plan` must be an imp_keras.Plan"),
    (lambda: RetrainSchedule("0.1", PLAN, 10), TypeError, r"`base` must be a tf_keras `LearningRateSchedule`"),
    (lambda: RetrainSchedule(math.inf, PLAN, 10), ValueError, r"`base` must be a finite number >= 0. Received: base=inf"),
    (lambda: RetrainSchedule(-0.1, PLAN, 10), ValueError, r"`base` must be a finite number >= 0"),
    (lambda: RetrainSchedule(0.1, PLAN, 0), ValueError, r"`steps_per_epoch` must be an integer >= 1"),
    (lambda: RetrainSchedule(0.1, PLAN, 10, "xyz"), ValueError, r"`kind` must be one of"),
    (lambda: RetrainSchedule(0.1, Plan(0.9, 2, 1, 3), 10, "lrw"), ValueError, r"kind='lrw' rewinds .* longer than the base schedule"),
    (lambda: RetrainSchedule(0.1, PLAN, 10, max_learning_rate=math.inf), ValueError, r"`max_learning_rate` must be a finite number >= 0"),
    (lambda: RetrainSchedule(0.1, PLAN, 10, "constant", initial_learning_rate=math.inf), ValueError, r"needs a finite `initial_learning_rate` > 0"),
    (
        lambda: RetrainSchedule(0.1, PLAN, 10, "constant", initial_learning_rate=0.1, warmup_fraction=1.0),
        ValueError, r"`warmup_fraction` must be in \[0, 1\)",
    ),
    (lambda: RetrainSchedule.budgeted(math.inf, PLAN, 10), ValueError, r"`initial_learning_rate` must be a finite number >= 0"),
    (lambda: IMPCallback(None), TypeError, r"`plan` must be an imp_keras.Plan"),
    (lambda: IMPCallback(PLAN, 0.1), TypeError, r"`schedule` must be an imp_keras\.tf_keras\.RetrainSchedule \(a schedule of this callback's Keras\) or None"),
    (lambda: IMPCallback(PLAN, selection="xyz"), ValueError, r"`selection` must be one of"),
    (lambda: IMPCallback(PLAN, ladder_dir=5), TypeError, r"`ladder_dir` must be a path or None. Received: ladder_dir=5"),
    (lambda: IMPCallback(PLAN, export_dir=5), TypeError, r"`export_dir` must be a path or None. Received: export_dir=5"),
    (lambda: IMPCallback(PLAN, export_options=["formats"]), ValueError, r"`export_options` must be a dict"),
    (lambda: IMPCallback(PLAN, export_options={"format": "keras"}), ValueError, r"`export_options` has unknown arguments \['format'\]"),
    (lambda: IMPCallback(PLAN, block_size=(4, 0)), ValueError, r"`block_size` must be a tuple of 2 positive integers"),
    (lambda: NaNGuard("plan"), TypeError, r"`plan` must be an imp_keras.Plan or None"),
    (lambda: imp_keras.prunable(None), TypeError, r"`model` must be a Keras model \(Keras 3, or tf_keras for the tfmot path\). Received: model=None"),
    (lambda: imp_keras.prunable(mlp(), exclude=5), ValueError, r"`exclude` must be a list of layer names or classes. Received: exclude=5"),
    (lambda: imp_keras.prunable(mlp(), exclude=["nope"]), ValueError, r"`exclude` names layers that are not in the model: \['nope'\]"),
    (lambda: imp_keras.prunable(mlp(), exclude=["fc"]), ValueError, r"`model` 'sequential' has no prunable weights"),
    (lambda: select("xyz", [np.ones(3)], [np.ones(3)], 1), ValueError, r"`selection` must be one of"),
    (lambda: select("global", None, None, 1), ValueError, r"`weights` and `masks` must be lists of arrays, one per tensor"),
    (lambda: select("global", "abc", "abc", 1), ValueError, r"`weights` and `masks` must be lists of arrays, one per tensor"),
    (lambda: select("global", [np.array(["a", "b"])], [np.ones(2)], 1), ValueError, r"`weights` must be numbers"),
    (lambda: select("global", [np.ones(3)], [np.ones(3)], 4), ValueError, r"`count` must be an integer in \[0, 3\]"),
    (lambda: select("global", [np.ones(3)], [np.ones(3)], 1.5), ValueError, r"`count` must be an integer in \[0, 3\]"),
    (lambda: select("global", [np.array([1.0, np.nan])], [np.ones(2)], 1), ValueError, r"NaN or Inf weights"),
    (lambda: imp_keras.tf_keras.export(None, "out"), TypeError, r"`model` must be a tf_keras `Model`"),
    (lambda: imp_keras.tf_keras.export(mlp(), 5), TypeError, r"`out_dir` must be a path. Received: out_dir=5"),
    (lambda: imp_keras.tf_keras.export(mlp(), "out", formats="keras"), ValueError, r"`formats` must be a non-empty tuple"),
    (lambda: imp_keras.tf_keras.export(mlp(), "out", formats=("xyz",)), ValueError, r"`formats` contains unknown format 'xyz'"),
    (lambda: imp_keras.tf_keras.export(mlp(), "out", latency_runs=-1), ValueError, r"`latency_runs` must be an integer >= 0"),
    (lambda: imp_keras.tf_keras.export(mlp(), "out", representative_data="abc"), ValueError, r"`representative_data` must hold arrays of numbers"),
    (lambda: imp_keras.tf_keras.export(mlp(), "out", sample_inputs=np.ones((2, 5))), ValueError, r"`sample_inputs` for input .* has shape \(2, 5\)"),
    (lambda: verify(None), TypeError, r"`model` must be a Keras model \(Keras 3, or tf_keras for the tfmot path\). Received: model=None"),
    (lambda: verify(mlp()), ValueError, r"`model` 'sequential' has no imp_keras mask holders"),
    (lambda: models.build("resnet18", (32, 32, 3), 10), ValueError, r"`name` must be one of"),
    (
        lambda: models.build("vgg16_bn", (28, 28, 1), 10),
        ValueError, r"`input_shape` must be \(height, width, channels\) of at least 32x32 for vgg16_bn",
    ),
    (lambda: imp_keras.data.load("mnist", "synthetic", synthetic_examples=0), ValueError, r"`synthetic_examples` must be an integer >= 1"),
]


def test_every_model_argument_is_checked_without_building():
    for name, builder in models.MODELS.items():
        defaults = {p.name: p.default for p in inspect.signature(builder).parameters.values() if p.name not in ("input_shape", "classes", "keras")}
        models.check_arguments(name, defaults)


@pytest.mark.parametrize("call, error, message", BAD_ARGUMENTS, ids=[m.split("`")[1] if "`" in m else m[:20] for _, _, m in BAD_ARGUMENTS])
def test_public_argument_is_refused_naming_it(call, error, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # export's out_dir, were it ever reached
    with pytest.raises(error, match=message):
        call()
