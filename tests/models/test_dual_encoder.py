import math

import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf import runtime
from mmtl_tf.losses import clip_loss, sigmoid_loss
from tests.harness import run_model_test


def _towers(size=16, vocab=30, length=5):
    image = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(size, size, 3),
                                          conv_filters=4)
    text = mmtl_tf.encoders.TextEncoder(vocab_size=vocab, sequence_length=length,
                                        embedding_dim=4, lstm_units=4)
    return image, text


def _inputs(n=16, size=16, vocab=30, length=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (n, size, size, 3)).astype("uint8"),
            "text": rng.integers(1, vocab, (n, length)).astype("int32")}


def test_harness_dual_encoder():
    x = _inputs()
    model = run_model_test(
        lambda: mmtl_tf.models.build_dual_encoder(*_towers(), projection_dim=8), x,
        np.zeros(16), loss=None,
        expected_output_shape={"image_embeddings": (16, 8), "text_embeddings": (16, 8),
                               "logit_scale": (16,)})
    assert sorted(model.modalities) == ["image", "text"]


def test_outputs_encoders_and_loss_agree():
    model = mmtl_tf.models.build_dual_encoder(*_towers(), projection_dim=8)
    x = _inputs(n=6)
    out = model(x)
    for m in ("image", "text"):
        emb = np.asarray(out[f"{m}_embeddings"])
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(getattr(model, f"encode_{m}")(x[m])), emb,
                                   atol=1e-6)
    np.testing.assert_allclose(np.asarray(out["logit_scale"]), 1 / 0.07, rtol=1e-6)
    assert model.logit_scale_value() == pytest.approx(1 / 0.07)
    expected = float(clip_loss(out["image_embeddings"], out["text_embeddings"], 1 / 0.07))
    assert float(model.compute_loss(y_pred=out)) == pytest.approx(expected, rel=1e-6)
    model.compile(optimizer="adam")
    assert model.evaluate(x, verbose=0) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(AttributeError, match="encode_audio"):
        model.encode_audio(x["image"])


def test_siglip_variant_has_a_learnable_bias():
    model = mmtl_tf.models.build_dual_encoder(*_towers(), projection_dim=8, loss="siglip")
    out = model(_inputs(n=4))
    assert float(out["logit_scale"][0]) == pytest.approx(10.0)
    assert float(out["logit_bias"][0]) == pytest.approx(-10.0)
    expected = float(sigmoid_loss(out["image_embeddings"], out["text_embeddings"], 10.0, -10.0))
    assert float(model.compute_loss(y_pred=out)) == pytest.approx(expected, rel=1e-6)


def test_training_pulls_matched_pairs_together():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Each image a distinct colour (random noise would look alike after pooling).
    colours = rng.integers(0, 256, (16, 1, 1, 3)) + rng.integers(-20, 21, (16, 16, 16, 3))
    x = {"image": np.clip(colours, 0, 255).astype("uint8"),
         "text": rng.integers(1, 30, (16, 5)).astype("int32")}
    image = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 3), conv_filters=8)
    text = mmtl_tf.encoders.TextEncoder(vocab_size=30, sequence_length=5, embedding_dim=16,
                                        lstm_units=16)
    model = mmtl_tf.models.build_dual_encoder(image, text, projection_dim=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, epochs=30, batch_size=16, verbose=0).history["loss"]
    assert history[-1] < 0.3 * history[0]
    metrics = mmtl_tf.metrics.retrieval_metrics(
        model.encode_image(x["image"]), model.encode_text(x["text"]), ks=(1,))
    assert metrics["R@1"] > 0.5  # chance: 1/16


def test_mixed_float16_uses_a_low_initial_loss_scale():
    with runtime.settings(precision="mixed_float16"):
        model = mmtl_tf.models.build_dual_encoder(*_towers(), projection_dim=8)
        model.compile(optimizer="adam")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.optimizer.initial_scale == 1.0
        assert model(_inputs(n=2))["image_embeddings"].dtype == "float32"


def test_mixed_float16_first_step_is_not_skipped():
    # Seed 5 gives LSTM features of norm ~0.01 and gradients ~400: at a loss
    # scale of 2^7 the first float16 step overflowed and was skipped.
    keras.utils.set_random_seed(5)
    with runtime.settings(precision="mixed_float16", jit_compile=True):
        model = mmtl_tf.models.build_dual_encoder(*_towers(), projection_dim=8)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        before = [np.array(w) for w in model.trainable_weights]
        model.fit(_inputs(), epochs=1, batch_size=16, verbose=0)
        changed = [not np.allclose(a, np.array(w))
                   for a, w in zip(before, model.trainable_weights)]
        assert all(changed), f"{changed.count(False)} variables unchanged"


def test_bert_text_tower_with_dict_inputs():
    keras_hub = pytest.importorskip("keras_hub")
    if not hasattr(mmtl_tf.encoders, "BertEncoder"):
        pytest.skip("mmtl_tf.encoders.BertEncoder is not available")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16)
    text = mmtl_tf.encoders.BertEncoder(backbone, pooling="mean", trainable="full",
                                        sequence_length=6)
    image, _ = _towers()
    model = mmtl_tf.models.build_dual_encoder(image, text, projection_dim=8)
    rng = np.random.default_rng(0)
    x = {"image": rng.integers(0, 256, (8, 16, 16, 3)).astype("uint8"),
         "text": {"token_ids": rng.integers(1, 50, (8, 6)).astype("int32"),
                  "padding_mask": np.ones((8, 6), "int32")}}
    assert model.encode_text(x["text"]).shape == (8, 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    before = [w.numpy().copy() for w in text.trainable_weights]
    loss = model.fit(x, epochs=1, batch_size=8, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, text.trainable_weights))


def test_sequential_towers_train_save_and_load(tmp_path):
    # "Any Keras model is a tower": a Sequential one starting with keras.Input
    # failed with "The layer ta has never been called and thus has no defined
    # input" (Keras leaves its .input undefined).
    ta = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)], name="ta")
    tb = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)], name="tb")
    model = mmtl_tf.models.DualEncoder({"a": ta, "b": tb})
    model.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    x = {"a": rng.random((8, 8)).astype("float32"), "b": rng.random((8, 5)).astype("float32")}
    assert np.isfinite(model.fit(x, epochs=1, batch_size=8, verbose=0).history["loss"][0])
    model.save(tmp_path / "m.keras")
    loaded = mmtl_tf.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded.encode_a(x["a"])),
                               np.asarray(model.encode_a(x["a"])), atol=1e-6)
    siamese = mmtl_tf.models.build_siamese_network(
        keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)]))
    assert siamese.output.shape == (None,)
    # The audio builders take any audio tower too (they read its .input).
    audio = keras.Sequential([keras.Input((1600,)), keras.layers.Reshape((1600, 1)),
                              keras.layers.GlobalAveragePooling1D()], name="aud")
    clap = mmtl_tf.models.build_audio_text_dual_encoder(
        audio_encoder=audio, vocab_size=20, sequence_length=4, embedding_dim=4, lstm_units=4,
        projection_dim=4)
    assert clap.encode_audio(np.zeros((2, 1600), "float32")).shape == (2, 4)
    classifier = mmtl_tf.models.build_audio_classifier(audio_encoder=audio, num_classes=3)
    assert classifier.output.shape == (None, 3)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.dense = keras.layers.Dense(4)

        def call(self, x):
            return self.dense(x)

    for tower in (Subclassed(), keras.Sequential([keras.layers.Dense(4)], name="unbuilt")):
        with pytest.raises(ValueError, match="has no defined inputs; give a Functional model"):
            mmtl_tf.models.DualEncoder({"a": tower, "b": tb})


def test_bad_arguments():
    image, text = _towers()
    with pytest.raises(ValueError, match="loss='infonce' is not allowed; use one of 'clip', "
                                         "'siglip'"):
        mmtl_tf.models.build_dual_encoder(image, text, loss="infonce")
    with pytest.raises(ValueError, match="same layer name 'image_encoder'"):
        mmtl_tf.models.DualEncoder({"a": image, "b": mmtl_tf.encoders.ImageEncoder(
            "small_cnn", input_shape=(16, 16, 3))})
    with pytest.raises(ValueError, match="exactly two entries"):
        mmtl_tf.models.DualEncoder({"image": image})
    model = mmtl_tf.models.build_dual_encoder(image, text, projection_dim=4)
    with pytest.raises(ValueError, match="compile it with an optimizer only"):
        model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="compile it with an optimizer only"):
        model.compile("adam", "mse")  # positional: was accepted and then ignored
    with pytest.raises(ValueError, match="modality 'audio' is not one of"):
        model.encode("audio", np.zeros((1, 3)))
    assert math.isclose(model.get_config()["projection_dim"], 4)


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_batches_of_different_sizes_are_refused(loss):
    # 4 images and 3 captions used to return both embeddings ((4, 8) and (3, 8)).
    model = mmtl_tf.models.build_dual_encoder(*_towers(), projection_dim=8, loss=loss)
    x = _inputs(n=4)
    with pytest.raises(ValueError, match=r"the two towers' inputs must have the same batch "
                                         r"size .*got 4 image rows and 3 text rows"):
        model({"image": x["image"], "text": x["text"][:3]})
    # predict, evaluate and fit on such arrays failed in Keras' own check
    # ("'str' object has no attribute 'shape'").
    model.compile()
    unequal = {"image": np.asarray(x["image"]), "text": np.asarray(x["text"])[:3]}
    for call in (model.predict, model.evaluate, model.fit):
        with pytest.raises(ValueError, match=r"got 4 image rows and 3 text rows"):
            call(unequal, verbose=0)
    equal = {"image": np.asarray(x["image"]), "text": np.asarray(x["text"])}
    for validation in (unequal, (unequal,), (unequal, None)):
        with pytest.raises(ValueError, match=r"got 4 image rows and 3 text rows"):
            model.fit(equal, validation_data=validation, verbose=0)
    # The loss that compute_loss uses names the two outputs and their row counts.
    out = dict(model(x))
    out["text_embeddings"] = out["text_embeddings"][:3]
    with pytest.raises(ValueError, match=r"(Clip|SigLip)Loss: image_embeddings and "
                                         r"text_embeddings must have the same number of rows"
                                         r".*got 4 and 3"):
        model.compute_loss(y_pred=out)
    # Unknown (symbolic) batch sizes are not checked.
    spec = {"image": keras.Input((16, 16, 3), dtype="uint8"),
            "text": keras.Input((5,), dtype="int32")}
    assert model(spec)["image_embeddings"].shape == (None, 8)
