import keras
import pytest

from mmtl_tf import runtime


def test_precision_policies_round_trip():
    for name in runtime.PRECISIONS:
        runtime.set_precision(name)
        assert runtime.get_precision() == name == keras.config.dtype_policy().name
    with pytest.raises(ValueError, match="'float32', 'mixed_float16', 'mixed_bfloat16'"):
        runtime.set_precision("float8")


def test_output_layers_stay_float32_under_mixed_precision():
    import mmtl_tf

    with runtime.settings(precision="mixed_float16"):
        model = mmtl_tf.models.build_fusion_classifier(
            image_shape=(16, 16, 3), vocab_size=20, sequence_length=4, num_classes=3)
        assert model.get_layer("hidden").compute_dtype == "float16"
        assert model.get_layer("classifier").compute_dtype == "float32"
        assert model.get_layer("hidden").kernel.dtype == "float32"


def test_jit_setting_and_lstm_kernel_choice():
    runtime.set_jit_compile(True)
    assert runtime.get_jit_compile() is True and runtime.lstm_use_cudnn() is False
    runtime.set_jit_compile(False)
    assert runtime.get_jit_compile() is False and runtime.lstm_use_cudnn() == "auto"
    runtime.set_jit_compile("auto")
    assert runtime.get_jit_compile() == runtime.has_accelerator()
    with pytest.raises(ValueError, match="jit_compile"):
        runtime.set_jit_compile("yes")


def test_settings_context_restores_and_strategy_names():
    before = runtime.current()
    with runtime.settings(precision="mixed_bfloat16", jit_compile=False):
        assert runtime.get_precision() == "mixed_bfloat16"
    assert runtime.current() == before
    assert runtime.get_strategy("default") is not None
    with pytest.raises(ValueError, match="'default', 'mirrored'"):
        runtime.get_strategy("tpu")
    assert runtime.compile_kwargs() == {"jit_compile": runtime.get_jit_compile()}


def test_settings_restore_any_keras_policy_and_keep_the_blocks_own_error():
    import keras

    before = runtime.current()
    keras.config.set_dtype_policy("bfloat16")  # not one of configure's names
    try:
        with runtime.settings(jit_compile=True, strategy="mirrored"):
            assert runtime.get_jit_compile() is True
        # The exit raised "precision='bfloat16' is not allowed" and left
        # jit_compile and the strategy changed.
        assert keras.config.dtype_policy().name == "bfloat16"
        assert (runtime.current().jit_compile, runtime.current().strategy) == \
            (before.jit_compile, before.strategy)
        with pytest.raises(KeyError, match="the block's own"):
            with runtime.settings(precision="mixed_float16", jit_compile=False):
                raise KeyError("the block's own error")
        assert keras.config.dtype_policy().name == "bfloat16"
        assert runtime.current().jit_compile == before.jit_compile
    finally:
        keras.config.set_dtype_policy(before.precision)
    assert runtime.current() == before


_ORDER_SCRIPT = """
import sys, time
import tensorflow as tf
from mmtl_tf import runtime
if sys.argv[1] == "deterministic":
    runtime.enable_determinism()
    runtime.enable_determinism()  # a second call is harmless
def slow_first(i):
    time.sleep(0.5 if int(i) == 0 else 0.0)
    return i
ds = tf.data.Dataset.range(6).map(
    lambda i: tf.py_function(slow_first, [i], tf.int64),
    num_parallel_calls=4, deterministic=False)
print(runtime.is_deterministic(), [int(x) for x in ds])
"""


@pytest.mark.parametrize("mode", ["plain", "deterministic"])
def test_enable_determinism_orders_tf_data(mode):
    # Run in a fresh process: op determinism cannot be switched off again.
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _ORDER_SCRIPT, mode], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    flag, order = out.stdout.strip().splitlines()[-1].split(" ", 1)
    order = eval(order)
    assert sorted(order) == list(range(6))
    if mode == "deterministic":
        assert flag == "True" and order == list(range(6))
    else:
        # The slow first element comes out late when order is not enforced:
        # the nondeterminism that --deterministic removes.
        assert flag == "False" and order != list(range(6))


def test_jit_compile_takes_only_booleans_and_auto_and_models_follow_it():
    import mmtl_tf

    for bad in (1, 0, 1.0, "True"):  # 1 == True let 1, 0 and 1.0 through
        with pytest.raises(ValueError, match="jit_compile must be True, False or 'auto'"):
            runtime.set_jit_compile(bad)
    with runtime.settings(jit_compile=True):
        image = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 3),
                                              conv_filters=4, conv_blocks=1)
        text = mmtl_tf.encoders.TextEncoder(vocab_size=20, sequence_length=4, embedding_dim=4,
                                            lstm_units=4)
        dual = mmtl_tf.models.build_dual_encoder(image, text, projection_dim=8)
        dual.compile("adam")
        triplet = mmtl_tf.models.build_triplet_network(image, projection_dim=8)
        triplet.compile("adam")
        # Keras' own default "auto" ignored runtime.configure(jit_compile=True).
        assert dual.jit_compile is True and triplet.jit_compile is True
        dual.compile("adam", jit_compile=False)
        assert dual.jit_compile is False


def test_configure_reports_the_precision_keras_has():
    before = runtime.get_precision()
    try:
        runtime.configure(precision="float32")
        keras.config.set_dtype_policy("mixed_float16")
        assert runtime.configure().precision == "mixed_float16"
    finally:
        keras.config.set_dtype_policy(before)


_RECOMPILE_SCRIPT = """
import warnings
import keras
import mmtl_tf
from mmtl_tf import runtime
model = mmtl_tf.models.build_fusion_classifier(
    image_shape=(16, 16, 3), vocab_size=20, sequence_length=4, embedding_dim=4,
    lstm_units=4, conv_filters=4, hidden_units=4, num_classes=3)
mmtl_tf.training.compile_classifier(model, num_classes=3, jit_compile=True)
before = model.jit_compile
inputs = keras.Input((4,))
head = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
mmtl_tf.models.compile_for_task(head, "multiclass", jit_compile=True)
head_before = head.jit_compile
runtime.enable_determinism()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mmtl_tf.training.compile_classifier(model, num_classes=3, jit_compile=True)
said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
# compile_for_task alike (it kept jit_compile=True, silently).
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mmtl_tf.models.compile_for_task(head, "multiclass", jit_compile=True)
head_said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
print("task", head_before, head.jit_compile, len(head_said))
print(before, model.jit_compile, said)
"""


def test_a_model_compiled_with_xla_before_determinism_is_compiled_again_without():
    # Keras kept jit_compile=True, without a warning, on a model compiled with
    # it before enable_determinism() and compiled again after.
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RECOMPILE_SCRIPT], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, said = out.stdout.strip().splitlines()[-1].split(" ", 2)
    assert (before, after) == ("True", "False")
    said = eval(said)
    assert len(said) == 1 and "Keras turned jit_compile off (op determinism is on" in said[0]
    assert out.stdout.strip().splitlines()[-2] == "task True False 1"


def test_configure_checks_every_value_before_applying_any():
    # A bad strategy raised after the precision was already set: the models
    # built next were mixed precision although the call had failed.
    from mmtl_tf import runtime as rt

    rt.configure(precision="float32", jit_compile=False, strategy="default")
    try:
        for kwargs in ({"precision": "mixed_float16", "strategy": "bogus"},
                       {"precision": "mixed_float16", "jit_compile": "yes"},
                       {"jit_compile": True, "precision": "float64"}):
            with pytest.raises(ValueError):
                rt.configure(**kwargs)
            assert (rt.get_precision(), rt.current().jit_compile, rt.current().strategy) == (
                "float32", False, "default"), kwargs
    finally:
        rt.configure(precision="float32", jit_compile="auto", strategy="default")
