"""Under MirroredStrategy the CLIP/SigLIP losses use every replica's embeddings
as negatives: with 2 logical CPU devices, loss and one training step equal the
single-device ones on the same global batch. Runs in a fresh process because
the CPU must be split before TensorFlow initialises its devices."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = r"""
import json, sys
from mmtl_tf import runtime
runtime.split_cpu(2)
import keras
import numpy as np
import tensorflow as tf
import mmtl_tf
from mmtl_tf.losses import ClipLoss, SigLipLoss, clip_loss, sigmoid_loss

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {"replicas": strategy.num_replicas_in_sync}
rng = np.random.default_rng(0)
n, d = 8, 5
def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")
a, b = unit(rng.normal(size=(n, d))), unit(rng.normal(size=(n, d)))
batch = next(iter(strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((a, b)).batch(n))))

def distributed(loss, *scalars):
    # Each replica returns its mean divided by the number of replicas (Keras'
    # convention); their sum is the loss of the global batch.
    per_replica = strategy.run(lambda x, y: loss(None, (x, y, *scalars)), args=batch)
    return float(strategy.reduce("SUM", per_replica, axis=None))

out["clip_single"] = float(clip_loss(a, b, 10.0))
out["clip_mirrored"] = distributed(ClipLoss(), 10.0)
out["clip_local_only"] = distributed(ClipLoss(gather_across_replicas=False), 10.0)
out["siglip_single"] = float(sigmoid_loss(a, b, 10.0, -2.0))
out["siglip_mirrored"] = distributed(SigLipLoss(), 10.0, -2.0)

# One SGD step of a dual encoder: same weights and same global batch.
x = {"image": rng.integers(0, 256, (n, 16, 16, 3)).astype("uint8"),
     "text": rng.integers(1, 30, (n, 5)).astype("int32")}
def build():
    keras.utils.set_random_seed(1)
    return mmtl_tf.models.build_dual_encoder(
        mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 3), conv_filters=4),
        mmtl_tf.encoders.TextEncoder(vocab_size=30, sequence_length=5, embedding_dim=4,
                                     lstm_units=4), projection_dim=8)
single = build()
start = single.get_weights()
single.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
fit = dict(epochs=1, batch_size=n, shuffle=False, verbose=0)
out["fit_single"] = single.fit(x, **fit).history["loss"][0]
with strategy.scope():
    mirrored = build()
    mirrored.set_weights(start)
    mirrored.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
out["fit_mirrored"] = mirrored.fit(x, **fit).history["loss"][0]
out["max_weight_difference"] = max(float(np.max(np.abs(p - q))) for p, q in
                                   zip(single.get_weights(), mirrored.get_weights()))
out["max_weight_change"] = max(float(np.max(np.abs(p - q))) for p, q in
                               zip(single.get_weights(), start))
# XLA cannot train over several CPU devices: refused when the model is
# compiled (it failed at fit, deep in TensorFlow's error); an explicit
# jit_compile=False still compiles, and outside the scope True stays True.
runtime.configure(jit_compile=True)
out["xla_outside"] = runtime.get_jit_compile()
with strategy.scope():
    try:
        mirrored.compile(optimizer="sgd")
        out["xla_in_scope"] = "compiled"
    except ValueError as e:
        out["xla_in_scope"] = str(e)
    mirrored.compile(optimizer="sgd", jit_compile=False)
    out["explicit_false"] = mirrored.jit_compile
    # compile_classifier / compile_for_task given jit_compile=True: refused
    # alike (they passed it on, and fit failed).
    inputs = keras.Input((4,))
    head = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    for name, compile_head in (
            ("classifier", lambda: mmtl_tf.training.compile_classifier(head, 2, jit_compile=True)),
            ("for_task", lambda: mmtl_tf.models.compile_for_task(head, "multiclass",
                                                                  jit_compile=True))):
        try:
            compile_head()
            out[f"explicit_true_{name}"] = "compiled"
        except ValueError as e:
            out[f"explicit_true_{name}"] = str(e)
# Under op determinism Keras compiles without XLA: nothing to refuse (it
# refused a setup that trained).
runtime.enable_determinism()
with strategy.scope():
    out["xla_deterministic"] = runtime.get_jit_compile()
runtime.configure(jit_compile="auto")
json.dump(out, open(sys.argv[1], "w"))
"""


def test_mirrored_loss_and_step_equal_single_device(tmp_path):
    result = tmp_path / "result.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", SCRIPT, str(result)], check=True, env=env, cwd=REPO,
                   timeout=600)
    out = json.loads(result.read_text())
    assert out["replicas"] == 2
    assert abs(out["clip_mirrored"] - out["clip_single"]) < 1e-5
    assert abs(out["siglip_mirrored"] - out["siglip_single"]) < 1e-5
    # Without the all-gather each replica sees only 4 negatives: a different loss.
    assert abs(out["clip_local_only"] - out["clip_single"]) > 1e-2
    assert abs(out["fit_mirrored"] - out["fit_single"]) < 1e-5
    assert out["max_weight_change"] > 1e-3
    assert out["max_weight_difference"] < 1e-5
    assert out["xla_outside"] is True and out["explicit_false"] is False
    assert out["xla_in_scope"].startswith("jit_compile=True under a strategy that mirrors over "
                                          "2 CPU devices"), out["xla_in_scope"]
    assert out["xla_deterministic"] is True
    for name in ("classifier", "for_task"):
        assert out[f"explicit_true_{name}"].startswith("jit_compile=True under a strategy "
                                                       "that mirrors over 2 CPU devices")
