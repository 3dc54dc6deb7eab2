"""What an experiment is: its config (an `ml_collections.ConfigDict`), checked up front, and the
Plan, learning-rate schedule and optimizer it describes. Durations are given in epochs in the
config and become optimizer steps here, in one place.

Importing this module (as every config file does) imports neither Keras nor TensorFlow: the
Keras of a run is its config's `keras` and `backend` fields, imported only by the functions that
build something (`method`, `make_optimizer`, `add_weight_decay`, `load_data`) and by `validate` for
the export formats, after `imp_keras.runtime.use` chose it.

A config file defines `get_config(arg=None)` and builds on `base_config()`:

    def get_config(arg=None):
        config = experiment.base_config()
        config.data.name = "cifar10"
        ...
        return experiment.variant(config, arg)   # `--config=file.py:quick` gives the smoke-test size
"""

import dataclasses
import difflib
import importlib
import numbers
import types
from typing import Any

import ml_collections

from imp_keras import distribution, runtime
from imp_keras.core.gradual import UNITS, CubicSchedule
from imp_keras.core.plan import Plan
from imp_keras.core.schedule import KINDS
from imp_keras.core.selection import CRITERIA, check_min_alive
from imp_keras.datasets import DATASETS, INPUT_SHAPES, SOURCES, validation_count
from imp_keras.models import MIN_IMAGE_SIDE, MODELS, check_arguments

__all__ = [
    "DECAYS",
    "EXPORT_PRESETS",
    "GMP_FIELDS",
    "METHODS",
    "OPTIMIZERS",
    "VARIANTS",
    "Method",
    "base_config",
    "base_schedule",
    "cifar_config",
    "add_weight_decay",
    "gmp_schedule",
    "export_formats",
    "keras_of",
    "load_data",
    "make_optimizer",
    "method",
    "min_alive",
    "validate",
    "variant",
]

METHODS = ("imp", "bimp", "gmp", "dense")
DECAYS = ("step", "linear", "cosine", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw")
VARIANTS = ("quick",)
# Names `export_formats` may hold instead of formats, resolved by the run's Keras and backend
# (`export_formats`): every format it can write, or a few quick ones.
EXPORT_PRESETS = ("all", "light")
_TUNABLE = ("constant", "linear", "cosine")
# Formats of the Keras 3 exporter that need TensorFlow on a backend that does not: never chosen by a preset.
_NEEDS_TENSORFLOW = ("tf_saved_model",)
# Fields only GMP uses, and fields GMP does not use: a method refuses the other's set away from its default.
GMP_FIELDS = ("gmp_begin", "gmp_end", "gmp_unit", "gmp_frequency")
_IMP_FIELDS = ("cycles", "retrain_epochs", "total_epochs", "retrain_kind", "retrain_lr", "exact_goal", "reset_optimizer")


def base_config() -> ml_collections.ConfigDict:
    """Every field an experiment has, with the defaults of a small MNIST IMP run.

    method: `imp` (prune-retrain cycles), `bimp` (budgeted IMP: `total_epochs` in all, the first
      `pretrain_epochs` dense with a linear schedule, then ALLR cycles) or `dense` (no pruning; a
      dense run whose model later runs feed from with `dense_workdir`). One-shot pruning is
      `imp` with `cycles=1`. `gmp` (gradual magnitude pruning, Zhu & Gupta's cubic schedule with
      the global, monotone masks of `imp_keras.GMPCallback`) trains from scratch for
      `pretrain_epochs`, its whole budget, with the dense schedule `lr` stretched over them, while
      the sparsity rises to `goal_sparsity` inside the window [`gmp_begin`, `gmp_end`] (in
      `gmp_unit`s: `fraction` of the run's steps, `epoch` or `step`), the masks updated every
      `gmp_frequency` steps. It has no dense model, cycles or phases: its metrics.csv rows leave
      `phase` and `cycle` out (`sparsity` and `lr` every epoch), and its ladder holds the final
      model as `gmp_sparsityXX.XX.keras`. The IMP fields (`cycles`, `retrain_epochs`,
      `total_epochs`, `retrain_kind`, `retrain_lr`, `exact_goal`, `reset_optimizer`,
      `dense_workdir`) must stay at their defaults with `gmp`, and the `gmp_*` fields with the
      other methods.
    total_epochs: for `bimp` the whole budget; for `imp`, when > 0, the retraining epochs
      (`total_epochs - pretrain_epochs`) are split evenly over the cycles instead of `retrain_epochs`.
    retrain_kind: FT/LRW/SLR/CLR/LLR/ALLR (`ft`, ..., `allr`) or a tunable schedule
      (`constant`, `linear`, `cosine`) peaking at `retrain_lr`.
    dense_workdir: workdir of a finished run whose dense model (end of pretraining) this run prunes,
      instead of training its own; its data, model, batch, learning-rate settings and
      `pretrain_epochs` must match.
    min_alive: a floor every pruned tensor keeps (IMPCallback's and GMPCallback's `min_alive`): 0
      none (the only value with `dense`), a number in (0, 1) a fraction of each tensor, a whole number >= 1 a number of weights.
    lr: the dense schedule. `step` multiplies by `step_factor` at the fractions `step_at` of the
      dense epochs; `linear` and `cosine` go to 0 at their end.

    A field the run would not read must stay at its default, or the config is refused: besides the
    GMP and IMP fields above, `retrain_kind`, `retrain_lr` and `lr.decay`/`step_at`/`step_factor`
    with `bimp` (its schedule is its own), `retrain_lr` with a retraining kind that is not tunable,
    `lr.step_at`/`step_factor` with another `lr.decay` than `step`, `min_alive` with `dense`, and
    `optimizer.momentum`/`nesterov` with Adam and AdamW.
    """
    config = ml_collections.ConfigDict()
    config.name = "experiment"
    # tf_keras (Keras 2 with tfmot, on TensorFlow) or keras3 (Keras 3 on `backend`: tensorflow, jax or torch).
    config.keras = "tf_keras"
    config.backend = "tensorflow"
    config.seed = 0
    config.deterministic = False  # deterministic ops (TensorFlow's op determinism, torch's algorithms): bit-identical resumes

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist"
    config.data.source = "files"
    config.data.data_dir = ""
    config.data.validation_split = 0.0
    config.data.augment = True
    config.data.synthetic_examples = 256
    config.data.max_examples = 0  # > 0: only the first N training and evaluation examples

    config.model = ml_collections.ConfigDict()
    config.model.name = "lenet_300_100"
    config.model.kwargs = ml_collections.ConfigDict()

    config.batch_size = 128  # global, over all replicas
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = 0.0

    config.lr = ml_collections.ConfigDict()
    config.lr.initial = 0.1
    config.lr.decay = "step"
    config.lr.step_at = (0.5, 0.75)
    config.lr.step_factor = 0.1

    config.method = "imp"
    config.goal_sparsity = 0.9
    config.cycles = 3
    config.pretrain_epochs = 10
    config.retrain_epochs = 3
    config.total_epochs = 0
    config.retrain_kind = "slr"
    config.retrain_lr = 0.0
    config.selection = "global"
    # A float field: ml_collections turns an int given for it into a float, and refuses a float for an int field.
    config.min_alive = 0.0
    config.block_size = ()  # e.g. (4, 1): Dense kernels pruned in whole blocks TFLite runs fast (global selection)
    config.exact_goal = False
    config.reset_optimizer = True
    config.dense_workdir = ""
    config.gmp_begin = 0.1
    config.gmp_end = 0.5
    config.gmp_unit = "fraction"
    config.gmp_frequency = 100

    config.distribution = "none"
    config.mixed_precision = False
    config.xla = False

    # Deployable files at the end of the run (imp_keras.export): format names of the run's Keras, or a
    # preset of EXPORT_PRESETS: "all" every format it can write on its backend without TensorFlow
    # where the backend needs none (tf_keras: all nine, full-integer ones calibrated on the first
    # `export_samples` evaluation images), "light" a quick few; () to skip.
    config.export_formats = ("all",)
    config.export_samples = 256
    config.export_latency_runs = 100
    return config


def cifar_config(dataset: str, weight_decay: float) -> ml_collections.ConfigDict:
    """`base_config()` with the paper's CIFAR recipe: tfds `dataset`, 200 dense epochs (SGD,
    Nesterov momentum 0.9, batch 128, LR 0.1 divided by 10 at 50 % and 75 %), `weight_decay`, then
    3 cycles of 10 retraining epochs. Config files add the model, the goal and the schedule."""
    config = base_config()
    config.data.name = dataset
    config.data.source = "tfds"
    config.optimizer.weight_decay = weight_decay
    config.pretrain_epochs = 200
    config.cycles = 3
    config.retrain_epochs = 10
    return config


def variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """`config` itself (arg None or ""), or its `quick` variant: the same experiment at a tiny budget
    (1 dense epoch, 2 one-epoch cycles; GMP: 1 epoch; the first 1024 examples of MNIST or Fashion-MNIST files, 32
    synthetic examples of the right shape for the others, a light export), so that every config
    file also serves as a smoke test."""
    if not arg:
        return config
    if arg not in VARIANTS:
        raise ValueError(f"The config argument must be one of {VARIANTS} or empty. Received: {arg!r}")
    config.name += "_quick"
    config.pretrain_epochs = 1
    if config.method != "gmp":  # GMP's window is a fraction of its one epoch
        config.cycles = 2
        config.retrain_epochs = 1
        config.total_epochs = 3 if config.method == "bimp" else 0
    config.export_samples = 16
    config.export_latency_runs = 2
    if config.data.name in ("mnist", "fashion_mnist"):
        config.data.max_examples = 1024
        config.export_formats = ("light",)
    else:
        config.data.source = "synthetic"
        config.data.synthetic_examples = 32
        config.batch_size = 16
        config.export_formats = ("keras",)  # converting the large models to TFLite takes minutes
    return config


def _fail(field: str, requirement: str, value: Any) -> None:
    raise ValueError(f"`{field}` must be {requirement}. Received: {field}={value!r}")


def _check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        _fail(field, f"one of {choices}", value)


def _check_int(field: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    too_big = maximum is not None and isinstance(value, numbers.Integral) and value > maximum
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum or too_big:
        _fail(field, f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]", value)


def _check_number(field: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and (low < value if low_open else low <= value)
        and (value < high if high_open else value <= high)
    )
    if not ok:
        _fail(field, f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}", value)


def _check_bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(field, "True or False", value)


def _check_str(field: str, value: Any, what: str) -> None:
    if not isinstance(value, str):
        _fail(field, what, value)


def _check_list(field: str, value: Any, what: str, item: type | tuple[type, ...]) -> tuple:
    """`value` as a tuple, after checking it is a list or tuple of `item`s (never bools)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
        _fail(field, what, value)
    return tuple(value)


def _check_fields(config: Any, expected: ml_collections.ConfigDict, prefix: str = "") -> None:
    """Every field of `base_config()` present, and no other: a misspelt field would be ignored."""
    for key in expected.keys():
        field = prefix + key
        if key not in config:
            raise ValueError(f"`{field}` is missing from the config; build configs on experiment.base_config().")
        if isinstance(expected[key], ml_collections.ConfigDict):
            if not isinstance(config[key], ml_collections.ConfigDict):
                _fail(field, "a group of fields (an ml_collections.ConfigDict)", config[key])
            if field != "model.kwargs":  # the model builder's own arguments
                _check_fields(config[key], expected[key], field + ".")
    for key in config.keys():
        if key not in expected:
            close = difflib.get_close_matches(key, list(expected.keys()), n=1)
            hint = f"; did you mean `{prefix}{close[0]}`?" if close else ""
            raise ValueError(f"`{prefix}{key}` is not a config field{hint} (the fields are those of experiment.base_config()).")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks that `config` has exactly the fields of `base_config()`, each field's type and range,
    and the fields' consistency; raises a `ValueError` naming the (dotted) field and the value
    received (a `TypeError` if `config` is no ConfigDict). Run before anything is built or trained.
    It makes the config's Keras this process's Keras (`runtime.use`, to check the export formats
    against its exporter): Keras 3's backend is fixed when Keras is first imported."""
    if not isinstance(config, ml_collections.ConfigDict):
        raise TypeError(
            f"`config` must be an ml_collections.ConfigDict (see base_config). Received: config of type {type(config).__name__}"
        )
    _check_fields(config, base_config())
    if not isinstance(config.name, str) or not config.name.strip():
        _fail("name", "a non-empty string", config.name)
    _check_choice("keras", config.keras, runtime.FLAVOURS)
    _check_choice("backend", config.backend, runtime.BACKENDS)
    problem = runtime.backend_problem(config.keras, config.backend)
    if problem:
        _fail("backend", problem, config.backend)
    _check_int("seed", config.seed, 0, 2**32 - 1)  # NumPy's seeds are 32-bit
    _check_bool("deterministic", config.deterministic)

    data = config.data
    _check_choice("data.name", data.name, DATASETS)
    _check_choice("data.source", data.source, SOURCES)
    _check_str("data.data_dir", data.data_dir, "a path (or empty)")
    if data.source == "files" and not data.data_dir:
        _fail("data.data_dir", "the folder holding the original files with data.source='files'", data.data_dir)
    _check_number("data.validation_split", data.validation_split, 0.0, 1.0, high_open=True)
    _check_bool("data.augment", data.augment)
    _check_int("data.synthetic_examples", data.synthetic_examples, 1)
    _check_int("data.max_examples", data.max_examples, 0)

    _check_choice("model.name", config.model.name, tuple(MODELS))
    check_arguments(config.model.name, config.model.kwargs.to_dict(), prefix="model.kwargs.")
    side, shape = MIN_IMAGE_SIDE.get(config.model.name), INPUT_SHAPES[data.name]
    if side and min(shape[:2]) < side:
        images = f"the {shape[0]}x{shape[1]} images of data.name={data.name!r}"
        _fail("model.name", f"a model for {images} ({config.model.name} needs at least {side}x{side})", config.model.name)

    _check_int("batch_size", config.batch_size, 1)
    _check_choice("optimizer.name", config.optimizer.name, OPTIMIZERS)
    _check_number("optimizer.momentum", config.optimizer.momentum, 0.0, 1.0, high_open=True)
    _check_bool("optimizer.nesterov", config.optimizer.nesterov)
    _check_number("optimizer.weight_decay", config.optimizer.weight_decay, 0.0, 1.0)
    _check_number("lr.initial", config.lr.initial, 0.0, float("inf"), low_open=True, high_open=True)
    _check_choice("lr.decay", config.lr.decay, DECAYS)
    step_at = _check_list("lr.step_at", config.lr.step_at, "a list of fractions of the dense epochs", numbers.Real)
    increasing = bool(step_at) and all(0 < f < 1 for f in step_at) and list(step_at) == sorted(set(step_at))
    if config.lr.decay == "step" and not increasing:
        _fail("lr.step_at", "at least one, increasing fractions of the dense epochs, each in (0, 1)", config.lr.step_at)
    _check_number("lr.step_factor", config.lr.step_factor, 0.0, 1.0, low_open=True)

    _check_choice("method", config.method, METHODS)
    # 0 would make a pruning method's cycles or window prune nothing, and still count as pruning.
    _check_number("goal_sparsity", config.goal_sparsity, 0.0, 1.0, low_open=config.method != "dense", high_open=True)
    _check_int("cycles", config.cycles, 1)
    # With `dense_workdir` too: the reused run's dense epochs, which must match.
    _check_int("pretrain_epochs", config.pretrain_epochs, 1)
    _check_int("retrain_epochs", config.retrain_epochs, 1)
    _check_int("total_epochs", config.total_epochs, 0)
    _check_choice("retrain_kind", config.retrain_kind, KINDS)
    _check_number("retrain_lr", config.retrain_lr, 0.0, float("inf"), high_open=True)
    _check_choice("selection", config.selection, tuple(sorted(CRITERIA)))
    block_size_expected = "() or two positive integers, e.g. (4, 1)"
    block_size = _check_list("block_size", config.block_size, block_size_expected, numbers.Integral)
    if block_size and (len(block_size) != 2 or min(block_size) < 1):
        _fail("block_size", block_size_expected, config.block_size)
    min_alive(config)
    _check_bool("exact_goal", config.exact_goal)
    _check_bool("reset_optimizer", config.reset_optimizer)
    _check_str("dense_workdir", config.dense_workdir, "a path (or empty)")
    _check_number("gmp_begin", config.gmp_begin, 0.0, float("inf"), high_open=True)
    _check_number("gmp_end", config.gmp_end, 0.0, float("inf"), high_open=True)
    _check_choice("gmp_unit", config.gmp_unit, UNITS)
    _check_int("gmp_frequency", config.gmp_frequency, 1)
    _check_choice("distribution", config.distribution, distribution.STRATEGIES)
    _check_bool("mixed_precision", config.mixed_precision)
    _check_bool("xla", config.xla)
    _check_export_formats(config)
    _check_int("export_samples", config.export_samples, 1)
    _check_int("export_latency_runs", config.export_latency_runs, 0)

    _check_consistency(config)


def _exporter(config: ml_collections.ConfigDict) -> types.ModuleType:
    """The exporter of the config's Keras, which it imports (after `runtime.use` chose it)."""
    runtime.use(config.keras, config.backend)
    return importlib.import_module(f"imp_keras.export.{config.keras}")


def _check_export_formats(config: ml_collections.ConfigDict) -> None:
    known = _exporter(config).FORMATS
    expected = f"distinct formats of keras={config.keras!r} among {known}, or one of {EXPORT_PRESETS} alone, or empty"
    formats = _check_list("export_formats", config.export_formats, expected, str)
    presets = [f for f in formats if f in EXPORT_PRESETS]
    if any(f not in known + EXPORT_PRESETS for f in formats) or len(set(formats)) != len(formats) or (presets and len(formats) > 1):
        _fail("export_formats", expected, config.export_formats)
    if config.keras == "keras3" and not presets:
        refused = [f"{f}: {why}" for f in formats if (why := _exporter(config).refusal(f, config.backend))]
        if refused:
            _fail("export_formats", f"formats keras3 can write on backend={config.backend!r} ({'; '.join(refused)})", config.export_formats)


def min_alive(config: ml_collections.ConfigDict) -> int | float | None:
    """`config.min_alive` as the callbacks take it: None for 0, an int for a whole number >= 1
    (ml_collections holds it as a float), a fraction as it is."""
    value = config.min_alive
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if value == 0:
            return None
        try:
            return check_min_alive(int(value) if value >= 1 and float(value).is_integer() else float(value))
        except ValueError:
            pass
    _fail("min_alive", "0 (no floor), a number of weights (a whole number >= 1) or a fraction of each tensor (a number in (0, 1))", value)


def export_formats(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The formats the run of `config` exports, its presets resolved: "all" is every format of
    tf_keras, or every format Keras 3 can write on the backend with the packages installed (on JAX
    and PyTorch without those needing TensorFlow); "light" is a quick few (tf_keras: `keras`,
    `tflite_float_sparse`, `tflite_int8_full`; Keras 3: `keras`)."""
    formats = tuple(config.export_formats)
    if formats == ("all",):
        if config.keras == "tf_keras":
            return _exporter(config).FORMATS
        formats = _exporter(config).default_formats(config.backend)
        return tuple(f for f in formats if config.backend == "tensorflow" or f not in _NEEDS_TENSORFLOW)
    if formats == ("light",):
        return ("keras", "tflite_float_sparse", "tflite_int8_full") if config.keras == "tf_keras" else ("keras",)
    return formats


def _check_consistency(config: ml_collections.ConfigDict) -> None:
    data = config.data
    train, sources = None, []  # otherwise the files tell, when they are read
    if data.source == "synthetic":
        train, sources = data.synthetic_examples, [f"`data.synthetic_examples`={data.synthetic_examples}"]
        if data.validation_split:
            train -= validation_count(train, data.validation_split, "data.validation_split")
            sources.append(f"less `data.validation_split`={data.validation_split}")
    if data.max_examples:
        train = min(train or data.max_examples, data.max_examples)
        sources.append(f"`data.max_examples`={data.max_examples}")
    if train is not None and config.batch_size > train:
        _fail("batch_size", f"at most the {train} training examples ({', '.join(sources)})", config.batch_size)
    if config.backend != "tensorflow" and (data.source == "tfds" or data.name == "imagenet2012"):
        what = "data.source='tfds'" if data.source == "tfds" else "data.name='imagenet2012' (JPEG decoding)"
        _fail("backend", f"'tensorflow' for {what}: the NumPy pipeline of the other backends reads files and synthetic data", config.backend)
    if config.keras == "keras3" and config.distribution not in ("none", "data_parallel"):
        _fail("distribution", "'none' or 'data_parallel' with keras='keras3' (tf.distribute strategies run tf_keras models)", config.distribution)
    if config.distribution == "data_parallel" and (config.keras, config.backend) != ("keras3", "jax"):
        _fail("distribution", f"one of {distribution.STRATEGIES[:3]} with keras={config.keras!r} and backend={config.backend!r} "
              "('data_parallel' is keras.distribution's, run here with keras='keras3' on jax)", config.distribution)
    if config.retrain_kind in _TUNABLE and config.method == "imp" and not config.retrain_lr > 0:
        _fail("retrain_lr", f"> 0 for the tunable retrain_kind={config.retrain_kind!r}", config.retrain_lr)
    if config.block_size and config.selection != "global":
        why = "blocks are ranked by the global criterion"
        _fail("block_size", f"() with selection={config.selection!r} ({why})", config.block_size)
    if config.dense_workdir and config.method != "imp":
        _fail("dense_workdir", f"empty with method={config.method!r} (it trains its own dense epochs)", config.dense_workdir)
    _check_method_fields(config)
    dense_epochs = config.pretrain_epochs
    if config.method == "bimp" and config.total_epochs < dense_epochs + config.cycles:
        _fail("total_epochs", f"at least pretrain_epochs + cycles = {dense_epochs + config.cycles} for BIMP", config.total_epochs)
    if config.method == "imp" and config.total_epochs and config.total_epochs < dense_epochs + config.cycles:
        _fail("total_epochs", f"0 or at least pretrain_epochs + cycles = {dense_epochs + config.cycles}", config.total_epochs)
    if config.method == "imp" and config.retrain_kind == "lrw":
        longest = max(_retrain_epochs(config))
        if longest > dense_epochs:
            _fail("retrain_epochs", f"at most pretrain_epochs={dense_epochs} for LRW (it rewinds within the dense schedule)", longest)


def _unread_fields(config: ml_collections.ConfigDict) -> list[tuple[str, str, str]]:
    """(field, the setting that leaves it unread, why) for every field this config's method,
    retraining kind and optimizer do not read."""
    method = f"method={config.method!r}"
    if config.method == "gmp":
        unread = [(field, method, "only IMP and BIMP use it") for field in _IMP_FIELDS]
    else:
        unread = [(field, method, "only GMP uses it") for field in GMP_FIELDS]
    if config.method == "bimp":
        why = "BIMP's schedule is its own: linear to 0 over pretrain_epochs, then ALLR"
        unread += [(field, method, why) for field in ("retrain_kind", "retrain_lr", "lr.decay", "lr.step_at", "lr.step_factor")]
    else:
        if config.method == "imp" and config.retrain_kind not in _TUNABLE:
            unread.append(("retrain_lr", f"retrain_kind={config.retrain_kind!r}", f"only {', '.join(_TUNABLE)} retraining takes it"))
        if config.lr.decay != "step":
            unread += [(field, f"lr.decay={config.lr.decay!r}", "only the step decay uses it") for field in ("lr.step_at", "lr.step_factor")]
    if config.method == "dense":
        unread.append(("min_alive", method, "a dense run prunes nothing"))
    if config.optimizer.name != "sgd":
        unread += [(field, f"optimizer.name={config.optimizer.name!r}", "only SGD uses it") for field in ("optimizer.momentum", "optimizer.nesterov")]
    return unread


def _check_method_fields(config: ml_collections.ConfigDict) -> None:
    """Refuses fields that the method, retraining kind or optimizer would ignore, set away from their
    defaults, and a GMP window that cannot reach the goal within `pretrain_epochs` (in steps: when
    the data are read)."""
    defaults = base_config()
    for field, setting, why in _unread_fields(config):
        if config[field] != defaults[field]:
            _fail(field, f"left at its default {defaults[field]!r} with {setting} ({why})", config[field])
    if config.method != "gmp":
        return
    schedule = gmp_schedule(config)
    if schedule.unit == "epoch" and schedule.end > config.pretrain_epochs:
        _fail("gmp_end", f"at most pretrain_epochs={config.pretrain_epochs} with gmp_unit='epoch' (GMP would not reach its goal)", config.gmp_end)


def _gmp_fields(config: ml_collections.ConfigDict) -> str:
    return ", ".join(f"{field}={config[field]!r}" for field in GMP_FIELDS)


def gmp_schedule(config: ml_collections.ConfigDict) -> CubicSchedule:
    """GMP's sparsity schedule from the config's `goal_sparsity` and `gmp_*` fields; a `ValueError`
    naming them when they make no window."""
    begin, end = config.gmp_begin, config.gmp_end
    if config.gmp_unit == "step":  # the fields hold floats (a ConfigDict keeps a field's type): whole ones are steps
        begin, end = (int(v) if float(v).is_integer() else v for v in (begin, end))
    try:
        return CubicSchedule(config.goal_sparsity, begin, end, config.gmp_unit, config.gmp_frequency)
    except ValueError as e:
        raise ValueError(f"{e} (config fields {_gmp_fields(config)})") from None


def _retrain_epochs(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    if config.total_epochs and config.method != "dense":
        return Plan.budgeted(config.goal_sparsity, config.total_epochs, config.pretrain_epochs, config.cycles).retrain_epochs
    return (config.retrain_epochs,) * config.cycles


def keras_of(config: ml_collections.ConfigDict) -> types.ModuleType:
    """The adapter of the config's Keras (`imp_keras.tf_keras` or `imp_keras.keras3`, its `keras`
    that Keras), after `runtime.use` made it this process's Keras."""
    return runtime.use(config.keras, config.backend)


def load_data(config: ml_collections.ConfigDict) -> Any:
    """The data of `config.data`, split and shuffled with `config.seed`: tf.data pipelines
    (`imp_keras.data.Data`) on TensorFlow, NumPy batches (`imp_keras.numpy_data.Data`) on JAX and PyTorch."""
    pipeline = "data" if config.backend == "tensorflow" else "numpy_data"
    return importlib.import_module(f"imp_keras.{pipeline}").load(
        config.data.name, config.data.source, config.data.data_dir or None,
        validation_split=config.data.validation_split, seed=config.seed, augment=config.data.augment,
        synthetic_examples=config.data.synthetic_examples, max_examples=config.data.max_examples,
    )


@dataclasses.dataclass(frozen=True)
class Method:
    """What a run trains, in epochs and steps.

    plan: the Plan of this run's own epochs (`pretrain_epochs=0` when the dense model comes from
      `dense_workdir`); None for a dense run.
    schedule: the learning rate of every optimizer step of this run (a `LearningRateSchedule` of the
      config's Keras).
    dense_epochs: epochs of the dense training, this run's or the reused one's (0 for GMP).
    epochs: epochs this run trains.
    gradual: GMP's sparsity schedule (None for the other methods), whose window fits `epochs`.
    """

    plan: Plan | None
    schedule: Any
    dense_epochs: int
    epochs: int
    steps_per_epoch: int
    gradual: CubicSchedule | None = None

    @property
    def prunes(self) -> bool:
        return self.plan is not None or self.gradual is not None

    @property
    def trains_dense(self) -> bool:
        """Whether this run trains dense epochs of its own (and writes their model)."""
        return self.gradual is None and (self.plan is None or self.plan.pretrain_epochs > 0)


def base_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> Any:
    """The dense training's schedule over `config.pretrain_epochs` epochs, in the config's Keras."""
    schedules = keras_of(config).keras.optimizers.schedules
    steps = config.pretrain_epochs * steps_per_epoch
    initial = float(config.lr.initial)
    if config.lr.decay == "step":
        # PiecewiseConstantDecay switches after a boundary: the new rate starts at step round(f * steps).
        boundaries = [max(round(fraction * steps) - 1, 0) for fraction in config.lr.step_at]
        values = [initial * config.lr.step_factor**i for i in range(len(boundaries) + 1)]
        return schedules.PiecewiseConstantDecay(boundaries, values)
    if config.lr.decay == "linear":
        return schedules.PolynomialDecay(initial, steps, end_learning_rate=0.0, power=1.0)
    if config.lr.decay == "cosine":
        return schedules.CosineDecay(initial, steps)
    return schedules.PolynomialDecay(initial, steps, end_learning_rate=initial, power=1.0)


def method(config: ml_collections.ConfigDict, steps_per_epoch: int) -> Method:
    """The plan and schedule of `config`; with `dense_workdir`, `config.pretrain_epochs` are the
    reused run's dense epochs and this run only prunes and retrains. For GMP, the dense schedule over
    its `pretrain_epochs` and its window placed in steps (refused, naming the fields, when it ends
    after the run or is empty)."""
    retrain_schedule = keras_of(config).RetrainSchedule
    reuse = bool(config.dense_workdir)
    dense_epochs = config.pretrain_epochs
    if config.method == "dense":
        schedule = base_schedule(config, steps_per_epoch)
        return Method(None, schedule, dense_epochs, dense_epochs, steps_per_epoch)
    if config.method == "gmp":
        gradual = gmp_schedule(config)
        try:
            gradual.window(config.pretrain_epochs, steps_per_epoch)
        except ValueError as e:
            raise ValueError(f"{e} (config fields {_gmp_fields(config)}, pretrain_epochs={config.pretrain_epochs})") from None
        return Method(None, base_schedule(config, steps_per_epoch), 0, config.pretrain_epochs, steps_per_epoch, gradual)
    if config.method == "bimp":
        plan = Plan.budgeted(config.goal_sparsity, config.total_epochs, dense_epochs, config.cycles, config.exact_goal)
        schedule = retrain_schedule.budgeted(config.lr.initial, plan, steps_per_epoch)
        return Method(plan, schedule, dense_epochs, plan.total_epochs, steps_per_epoch)
    plan = Plan(config.goal_sparsity, config.cycles, 0 if reuse else dense_epochs, _retrain_epochs(config), config.exact_goal)
    tunable = config.retrain_kind in _TUNABLE
    schedule = retrain_schedule(
        base_schedule(config, steps_per_epoch),
        plan,
        steps_per_epoch,
        config.retrain_kind,
        base_epochs=dense_epochs,
        initial_learning_rate=float(config.retrain_lr) if tunable else None,
    )
    return Method(plan, schedule, dense_epochs, plan.total_epochs, steps_per_epoch)


def make_optimizer(config: ml_collections.ConfigDict, learning_rate) -> Any:
    """The optimizer of `config.optimizer`, in the config's Keras. Weight decay is applied by
    `add_weight_decay` for SGD and Adam, and by the optimizer itself (decoupled) for AdamW."""
    optimizers = keras_of(config).keras.optimizers
    options = config.optimizer
    if options.name == "sgd":
        return optimizers.SGD(learning_rate, momentum=float(options.momentum), nesterov=options.nesterov)
    if options.name == "adam":
        return optimizers.Adam(learning_rate)
    return optimizers.AdamW(learning_rate, weight_decay=float(options.weight_decay))


def add_weight_decay(model: Any, config: ml_collections.ConfigDict) -> None:
    """Weight decay for SGD and Adam as in the paper's PyTorch code: weight_decay * w added to every
    gradient, so it passes through momentum (Keras' own `weight_decay` is decoupled, w -= lr * wd *
    w, about 1 / (1 - momentum) times weaker under momentum). Done as the loss term weight_decay / 2
    * ||w||^2 over every trainable variable; pruned weights stay 0.0 (their term and gradient are 0).
    Call before `compile`; AdamW decays in the optimizer instead.

    tf_keras: one loss added to the model. Keras 3: an L2 regularizer on every trainable variable,
    which Keras evaluates inside the compiled step on every backend (on JAX a loss closure over the
    variables would see their values at tracing time)."""
    weight_decay = float(config.optimizer.weight_decay)
    if not weight_decay or config.optimizer.name == "adamw":
        return
    variables = model.trainable_weights
    if config.keras == "keras3":
        regularizer = keras_of(config).keras.regularizers.L2(weight_decay / 2)
        for variable in variables:
            variable.regularizer = regularizer
        return
    import tensorflow as tf  # the tf_keras flavour runs on TensorFlow

    model.add_loss(lambda: (weight_decay / 2) * tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in variables]))
