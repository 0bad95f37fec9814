import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.losses import clip_loss
from tests.encoders.test_audio_encoder import _waves
from tests.harness import run_model_test


def _build(**kw):
    return mmtl_tf.models.build_audio_text_dual_encoder(
        num_samples=4000, n_mels=16, conv_filters=(4, 8), vocab_size=30, sequence_length=5,
        embedding_dim=8, lstm_units=8, projection_dim=8, **kw)


def _inputs(n=8):
    rng = np.random.default_rng(0)
    return {"audio": _waves(n), "text": rng.integers(1, 30, (n, 5)).astype("int32")}


def test_harness_audio_text_dual_encoder():
    model = run_model_test(
        _build, _inputs(), np.zeros(8), loss=None,
        expected_output_shape={"audio_embeddings": (8, 8), "text_embeddings": (8, 8),
                               "logit_scale": (8,)})
    assert list(model.modalities) == ["audio", "text"]


def test_encoders_embed_one_side_and_loss_is_clip():
    model = _build()
    x = _inputs(6)
    out = model(x)
    for m in ("audio", "text"):
        emb = np.asarray(out[f"{m}_embeddings"])
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(getattr(model, f"encode_{m}")(x[m])), emb,
                                   atol=1e-6)
    expected = float(clip_loss(out["audio_embeddings"], out["text_embeddings"], 1 / 0.07))
    assert float(model.compute_loss(y_pred=out)) == pytest.approx(expected, rel=1e-6)
    # The default audio tower uses BatchNorm momentum 0.9 (see the builder's docstring).
    assert model.tower("audio").get_layer("bn1").momentum == pytest.approx(0.9)


def test_pretrained_audio_tower_and_bad_arguments(tmp_path):
    audio = mmtl_tf.encoders.AudioEncoder(num_samples=4000, n_mels=16, conv_filters=(4,))
    path = str(tmp_path / "audio.weights.h5")
    audio.save_weights(path)
    model = mmtl_tf.models.build_audio_text_dual_encoder(
        num_samples=4000, n_mels=16, conv_filters=(4,), audio_weights=path,
        vocab_size=30, sequence_length=5, projection_dim=8)
    for a, b in zip(audio.get_weights(), model.tower("audio").get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="audio_encoder must be a keras.Model"):
        mmtl_tf.models.build_audio_text_dual_encoder(audio_encoder="cnn")
    text = mmtl_tf.encoders.TextEncoder(vocab_size=30, sequence_length=5)
    with pytest.raises(ValueError, match="same object"):
        mmtl_tf.models.build_audio_text_dual_encoder(audio_encoder=text, text_encoder=text)
    with pytest.raises(ValueError, match="float32"):
        mmtl_tf.models.build_audio_text_dual_encoder(
            audio_encoder=mmtl_tf.encoders.TextEncoder(vocab_size=30, sequence_length=5,
                                                       name="other_text"),
            text_encoder=text)
    with pytest.raises(ValueError, match="loss='infonce'"):
        _build(loss="infonce")


def test_training_pulls_matched_clips_and_captions_together():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 16
    t = np.arange(4000) / 16000
    # Each clip a different pitch, each caption a different random token sequence.
    audio = np.stack([0.5 * np.sin(2 * np.pi * (200 + 150 * i) * t) for i in range(n)])
    x = {"audio": audio.astype("float32"), "text": rng.integers(1, 30, (n, 5)).astype("int32")}
    model = mmtl_tf.models.build_audio_text_dual_encoder(
        num_samples=4000, n_mels=16, conv_filters=(8, 16), vocab_size=30, sequence_length=5,
        embedding_dim=16, lstm_units=16, projection_dim=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, epochs=40, batch_size=n, verbose=0).history["loss"]
    assert history[-1] < 0.3 * history[0]
    metrics = mmtl_tf.metrics.retrieval_metrics(
        model.encode_audio(x["audio"]), model.encode_text(x["text"]), ks=(1,))
    assert metrics["R@1"] > 0.5  # chance: 1/16


def test_batches_of_different_sizes_are_refused():
    model = _build()
    x = _inputs(n=4)
    with pytest.raises(ValueError, match=r"got 4 audio rows and 2 text rows"):
        model({"audio": x["audio"], "text": x["text"][:2]})
