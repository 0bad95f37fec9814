"""Runtime settings in one place: precision, XLA (`jit_compile`) and distribution.

Every builder and training recipe in mmtl_tf reads these settings from here, so a
program sets them once, before it builds models:

    import mmtl_tf
    mmtl_tf.runtime.configure(precision="mixed_float16", jit_compile=True,
                              strategy="default")

Precision. `"float32"`, `"mixed_float16"` or `"mixed_bfloat16"` (Keras dtype
policies). Under a mixed policy the layers compute in float16/bfloat16 and keep
float32 variables; mmtl_tf's output layers are built with `dtype="float32"` and its
losses cast to float32, so probabilities, logits and losses stay float32.
`model.compile` wraps the optimizer in a `LossScaleOptimizer` under
`mixed_float16` (Keras does this itself because mmtl_tf never writes its own
`train_step`).

XLA. `jit_compile="auto"` (the default) compiles with XLA where there is a GPU
or TPU and not on a CPU-only machine (XLA:CPU is slower there); `True` forces it
everywhere, and every mmtl_tf model trains under it. Keras' LSTM layer picks its cuDNN kernel
on a GPU when `use_cudnn="auto"`, and that kernel cannot be compiled by XLA
(keras-team/keras issue 18456): Keras then silently falls back to
`jit_compile=False` for the whole model. `lstm_use_cudnn()` therefore answers
`False` while `jit_compile` is on (the generic while-loop kernel, which XLA
compiles) and `"auto"` (cuDNN where available) when it is off; the text encoders
ask it when they are built. Build models *after* changing `jit_compile`.

Distribution. `strategy="default"` is TensorFlow's default (one device);
`"mirrored"` is `tf.distribute.MirroredStrategy` over the visible GPUs (or the
logical CPU devices, see `split_cpu`). Build and compile models inside
`get_strategy().scope()`. Mirrored training over several logical CPU devices
does not work with `jit_compile=True` (TensorFlow's XLA:CPU cannot reach the
other replicas' variables: "Trying to access resource ... located in device
CPU:1 from device CPU:0"); use it without XLA there (`get_jit_compile`
refuses `True` inside such a scope).

`model.compile` of a Functional model from a builder takes Keras' own
`jit_compile="auto"` unless given `**compile_kwargs()`;
`mmtl_tf.training.compile_classifier` and the `compile` of `DualEncoder` and
`TripletNetwork` follow this module's setting themselves.
"""

import contextlib
import dataclasses

from mmtl_tf.errors import check_choice

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored")


@dataclasses.dataclass
class RuntimeConfig:
    """The current runtime settings (see the module docstring)."""

    precision: str = "float32"
    jit_compile: object = "auto"
    strategy: str = "default"


_CONFIG = RuntimeConfig()
_STRATEGY_CACHE = {}


def set_precision(precision):
    """Sets the global Keras dtype policy.

    Args:
        precision: str. `"float32"`, `"mixed_float16"` or `"mixed_bfloat16"`.
    """
    check_choice("precision", precision, PRECISIONS)
    import keras

    keras.config.set_dtype_policy(precision)
    _CONFIG.precision = precision


def get_precision():
    """Returns the name of the global Keras dtype policy."""
    import keras

    return keras.config.dtype_policy().name


def set_jit_compile(jit_compile):
    """Sets whether models are compiled with XLA.

    Args:
        jit_compile: bool or `"auto"`. `"auto"` (the default) means XLA on a
            machine with a GPU or TPU and no XLA on a CPU-only machine, where
            XLA:CPU trains mmtl_tf's models more slowly than TensorFlow's own
            kernels (see `bench/bench_input_pipeline.py`). Every model also
            trains with `True` on a CPU; the test suite checks that.
    """
    _check_jit_compile(jit_compile)
    _CONFIG.jit_compile = jit_compile


def _check_jit_compile(jit_compile):
    """A `ValueError` unless `jit_compile` is True, False or "auto"."""
    # `in (True, False, "auto")` also let 1, 0 and 1.0 through (1 == True).
    if not (type(jit_compile) is bool or (isinstance(jit_compile, str)
                                          and jit_compile == "auto")):
        raise ValueError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}.")


def get_jit_compile():
    """Returns the resolved XLA setting as a bool (`"auto"` → accelerator present).

    Inside the scope of a strategy that mirrors over several CPU devices
    (`split_cpu`), `True` is a `ValueError`: TensorFlow's XLA cannot train
    there, and said so only at `fit`, deep in its own error ("Trying to
    access resource ... located in device CPU:1 from device CPU:0")."""
    value = has_accelerator() if _CONFIG.jit_compile == "auto" else _CONFIG.jit_compile
    if value:
        _check_xla_strategy()
    return value


def _check_xla_strategy():
    """The `ValueError` of `get_jit_compile` for XLA under a strategy that
    mirrors over several CPU devices (nothing when TensorFlow is not
    imported: then no strategy is in use)."""
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None or not tf.distribute.has_strategy() or is_deterministic():
        return  # (under op determinism Keras compiles without XLA anyway)
    strategy = tf.distribute.get_strategy()
    devices = list(strategy.extended.worker_devices)
    if strategy.num_replicas_in_sync > 1 and all("CPU" in d.upper() for d in devices):
        raise ValueError(
            f"jit_compile=True under a strategy that mirrors over {len(devices)} CPU "
            "devices: TensorFlow's XLA cannot train there (it fails at fit, 'Trying to "
            "access resource ... located in device CPU:1'); use "
            "mmtl_tf.runtime.configure(jit_compile=False) (or 'auto', which is False on a "
            "CPU) for mirrored CPU training, or --no-jit-compile.")


def has_accelerator():
    """True when TensorFlow sees a GPU or TPU."""
    import tensorflow as tf

    return any(d.device_type in ("GPU", "TPU") for d in tf.config.list_physical_devices())


def lstm_use_cudnn(jit_compile=None):
    """The `use_cudnn` value for Keras LSTM/GRU layers under the XLA setting.

    Args:
        jit_compile: bool or None. The XLA setting to plan for; None reads
            `get_jit_compile()`.

    Returns:
        `False` when XLA is on (the cuDNN kernel cannot be XLA-compiled, keras
        issue 18456), else `"auto"`.
    """
    if jit_compile is None:
        jit_compile = get_jit_compile()
    return False if jit_compile else "auto"


def split_cpu(num_devices):
    """Splits the physical CPU into `num_devices` logical devices.

    Must run before TensorFlow initialises its devices (before any op runs).
    Used for testing `MirroredStrategy` on a machine without GPUs.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)


def get_strategy(strategy=None):
    """Returns a `tf.distribute.Strategy`.

    Args:
        strategy: str or None. `"default"` or `"mirrored"`; None reads the value
            set by `configure`. `"mirrored"` mirrors over all GPUs, or over all
            logical CPU devices when there is no GPU.
    """
    strategy = strategy or _CONFIG.strategy
    check_choice("strategy", strategy, STRATEGIES)
    import tensorflow as tf

    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy not in _STRATEGY_CACHE:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [
            d.name for d in tf.config.list_logical_devices("CPU")]
        _STRATEGY_CACHE[strategy] = tf.distribute.MirroredStrategy(devices)
    return _STRATEGY_CACHE[strategy]


def configure(precision=None, jit_compile=None, strategy=None):
    """Sets any of precision, `jit_compile` and strategy; returns the settings.

    Args:
        precision: str or None. See `set_precision`.
        jit_compile: bool or None. See `set_jit_compile`.
        strategy: str or None. `"default"` or `"mirrored"`.

    Returns:
        A copy of the current `RuntimeConfig`.

    Example:
        >>> import mmtl_tf
        >>> mmtl_tf.runtime.configure(precision="float32", jit_compile=True).jit_compile
        True
    """
    # Every value is checked before any is applied: a bad strategy left the
    # precision already changed, and the models built next mixed precision.
    if precision is not None:
        check_choice("precision", precision, PRECISIONS)
    if jit_compile is not None:
        _check_jit_compile(jit_compile)
    if strategy is not None:
        check_choice("strategy", strategy, STRATEGIES)
    if precision is not None:
        set_precision(precision)
    if jit_compile is not None:
        set_jit_compile(jit_compile)
    if strategy is not None:
        _CONFIG.strategy = strategy
    # The precision Keras actually has (it may have been set with
    # keras.config.set_dtype_policy since), not the last one set here.
    return dataclasses.replace(_CONFIG, precision=get_precision())


def enable_determinism():
    """Makes TensorFlow ops and `tf.data` pipelines deterministic, for good.

    Calls `tf.config.experimental.enable_op_determinism()`: with the same seeds
    (`keras.utils.set_random_seed`, which every mmtl_tf task applies from its
    recipe's `seed`), the same data and the same machine, training ends with
    the same weights. TensorFlow picks deterministic kernels and runs `tf.data`
    maps in order, which can be slower (a head-swap run here was not; see the
    README). It cannot be switched off again in the same process; that is why
    it is a separate call and not a `configure` setting. `mmtl-tf train
    --deterministic` calls it. Calling it again does nothing.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def is_deterministic():
    """Whether TensorFlow's op determinism is on in this process (by
    `enable_determinism` or by a direct TensorFlow call)."""
    from tensorflow.python.framework import config as tf_config

    return tf_config.is_op_determinism_enabled()


def current():
    """Returns a copy of the current `RuntimeConfig`."""
    cfg = dataclasses.replace(_CONFIG)
    cfg.precision = get_precision()
    return cfg


@contextlib.contextmanager
def settings(precision=None, jit_compile=None, strategy=None):
    """Context manager: applies `configure(...)` and restores the old settings.

    On exit, `jit_compile`, the strategy and Keras' global dtype policy are
    put back as they were, whatever they were: also a policy that `configure`
    does not set itself (e.g. `keras.config.set_dtype_policy("bfloat16")`,
    which made the exit raise a ValueError and leave the other two
    changed), and also when the block raises (its error is the one you get).
    """
    import keras

    old, old_policy = dataclasses.replace(_CONFIG), keras.config.dtype_policy()
    try:
        yield configure(precision, jit_compile, strategy)
    finally:
        _CONFIG.jit_compile, _CONFIG.strategy = old.jit_compile, old.strategy
        _CONFIG.precision = old.precision
        keras.config.set_dtype_policy(old_policy)


def embedding_optimizer(optimizer="adam", initial_loss_scale=1.0, policy=None):
    """`optimizer` for a model whose loss goes through L2-normalised
    embeddings: under `mixed_float16` wrapped in a `LossScaleOptimizer` that
    starts at `initial_loss_scale` (1) instead of Keras' 2^15; otherwise, or
    if it already is one, as it is.

    Gradients through the L2 normalisation grow as 1 / |features|; with
    freshly initialised towers (an LSTM's outputs have norms ~0.01) they
    reach the hundreds, so 2^15 overflows float16 and dynamic loss scaling
    skips the first steps while it lowers the scale (a triplet network with
    an LSTM tower changed none of its weights in its first 3 steps). The
    scale still adapts: halved on overflow, doubled after 2,000 finite steps.
    `DualEncoder.compile`, `TripletNetwork.compile` and the shared-space
    tasks use it; pass it to `compile` of your own embedding model (e.g.
    `build_embedding_model` with a `TripletLoss`).

    Args:
        optimizer: str or `keras.optimizers.Optimizer`.
        initial_loss_scale: float. Starting dynamic loss scale.
        policy: str or None. The model's dtype policy name (default: the
            global one).
    """
    import keras

    optimizer = keras.optimizers.get(optimizer)
    policy = keras.config.dtype_policy().name if policy is None else policy
    if policy == "mixed_float16" and not isinstance(optimizer,
                                                    keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(
            optimizer, initial_scale=float(initial_loss_scale))
    return optimizer


def compile_kwargs():
    """Keyword arguments for `model.compile` that follow the runtime settings."""
    return {"jit_compile": get_jit_compile()}
