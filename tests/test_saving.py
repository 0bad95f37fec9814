"""`.keras` files keep what was frozen or unfrozen after building, and
`mmtl_tf.load_model` loads them after a bare `import mmtl_tf`."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.encoders import AudioEncoder, BertEncoder, ImageEncoder, TextEncoder
from tests.tiny_bert import tiny_backbone


def _trainable_paths(model):
    return sorted(w.path for w in model.trainable_weights)


def _head_swap_unfrozen():
    model = mmtl_tf.models.build_head_swap_classifier(
        "mobilenet_v2", 3, input_shape=(32, 32, 3), weights=None, head_units=(8,))
    mmtl_tf.models.unfreeze(model, num_layers=10)  # built frozen; top 10 layers opened
    return model


def _head_swap_refrozen():
    model = mmtl_tf.models.build_head_swap_classifier(
        "mobilenet_v2", 3, input_shape=(32, 32, 3), weights=None, head_units=(8,))
    mmtl_tf.models.unfreeze(model)
    mmtl_tf.models.freeze(model)
    return model


def _text_encoder_frozen():
    encoder = TextEncoder(vocab_size=30, sequence_length=5, embedding_dim=4, lstm_units=4)
    encoder.trainable = False
    return encoder


def _audio_encoder_unfrozen():
    encoder = AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4,), trainable="frozen")
    encoder.trainable = True
    return encoder


def _bert_encoder_partly_frozen():
    encoder = BertEncoder(tiny_backbone(num_layers=2, hidden_dim=8), trainable="full")
    encoder.backbone.get_layer("transformer_layer_0").trainable = False
    return encoder


def _dual_encoder_image_tower_frozen():
    image = ImageEncoder("small_cnn", input_shape=(16, 16, 3), conv_filters=4)
    text = TextEncoder(vocab_size=30, sequence_length=5, embedding_dim=4, lstm_units=4)
    model = mmtl_tf.models.build_dual_encoder(image, text, projection_dim=8)
    model.tower("image").trainable = False
    return model


@pytest.mark.parametrize("build", [
    _head_swap_unfrozen, _head_swap_refrozen, _text_encoder_frozen, _audio_encoder_unfrozen,
    _bert_encoder_partly_frozen, _dual_encoder_image_tower_frozen])
def test_a_saved_model_keeps_its_trainable_layers(tmp_path, build):
    # Loading rebuilt the encoders from their arguments: fine-tuning resumed
    # from a checkpoint trained another set of weights than was saved.
    model = build()
    before = _trainable_paths(model)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert _trainable_paths(loaded) == before
    assert len(loaded.non_trainable_weights) == len(model.non_trainable_weights)


def test_load_model_after_a_bare_import_in_a_fresh_process(tmp_path):
    model = mmtl_tf.models.build_fusion_classifier(image_shape=(16, 16, 3), vocab_size=30,
                                                   sequence_length=5, num_classes=3)
    x = {"image": np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype("uint8"),
         "text": np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]], "int32")}
    np.savez(tmp_path / "x.npz", **x)
    np.save(tmp_path / "y.npy", np.asarray(model.predict(x, verbose=0)))
    model.save(tmp_path / "model.keras")
    code = (
        "import sys, numpy as np, mmtl_tf\n"
        "assert 'mmtl_tf.models' not in sys.modules\n"
        f"model = mmtl_tf.load_model({str(tmp_path / 'model.keras')!r})\n"
        f"x = dict(np.load({str(tmp_path / 'x.npz')!r}))\n"
        f"y = np.load({str(tmp_path / 'y.npy')!r})\n"
        "np.testing.assert_allclose(model.predict(x, verbose=0), y, atol=1e-6)\n"
        "print('same outputs')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "same outputs" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("saved, program", [("mixed_float16", "float32"),
                                            ("float32", "mixed_float16")])
def test_a_model_loads_under_the_precision_it_was_saved_with(tmp_path, saved, program):
    # mmtl_tf's encoders rebuilt their layers under the loading program's
    # policy: a mixed_float16 model came back partly float32 (other outputs)
    # and its loss-scale optimizer was dropped ("Skipping variable loading for
    # optimizer"), and a float32 model loaded in a mixed program the other way.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(saved)
    try:
        model = mmtl_tf.models.build_fusion_classifier(
            image_shape=(16, 16, 3), vocab_size=30, sequence_length=5, num_classes=3,
            conv_filters=8, embedding_dim=8, lstm_units=8)
        mmtl_tf.training.compile_classifier(model, 3)
        x = {"image": np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("uint8"),
             "text": np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]] * 2, "int32")}
        model.fit(x, np.array([0, 1, 2, 0]), epochs=2, verbose=0)
        y = np.asarray(model.predict(x, verbose=0))
        model.save(tmp_path / "model.keras")
    finally:
        keras.config.set_dtype_policy(previous)
    np.savez(tmp_path / "x.npz", y=y, **x)
    code = (
        "import warnings, keras, numpy as np, mmtl_tf\n"
        f"keras.config.set_dtype_policy({program!r})\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('error')\n"
        f"    model = mmtl_tf.load_model({str(tmp_path / 'model.keras')!r})\n"
        f"d = np.load({str(tmp_path / 'x.npz')!r})\n"
        "np.testing.assert_array_equal(model.predict({'image': d['image'], 'text': d['text']},"
        " verbose=0), d['y'])\n"
        "encoders = {model.get_layer(n).dtype_policy.name for n in ('image_encoder', "
        "'text_encoder')}\n"
        f"assert encoders == {{{saved!r}}}, encoders\n"
        f"assert keras.config.dtype_policy().name == {program!r}\n"
        "print('same precision')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "same precision" in out.stdout, out.stderr[-2000:]
