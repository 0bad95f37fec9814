import keras
import numpy as np
import pytest

import mmtl_tf
from tests.harness import run_model_test


def _encoder(size=16):
    return mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(size, size, 3),
                                         conv_filters=4)


def _images(n, size=16, seed=0, shape=()):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*shape, n, size, size, 3)).astype("uint8")


def test_harness_siamese_network():
    x = {"left": _images(6), "right": _images(6, seed=1)}
    model = run_model_test(lambda: mmtl_tf.models.build_siamese_network(_encoder(), 8), x,
                           np.array([1, 0, 1, 0, 1, 0]), loss=mmtl_tf.losses.ContrastiveLoss(),
                           expected_output_shape=(6,))
    # Both inputs share one embedding model; the same image has distance ~0.
    assert len([l for l in model.layers if isinstance(l, keras.Model)]) == 1
    same = np.asarray(model({"left": x["left"], "right": x["left"]}))
    np.testing.assert_allclose(same, 0.0, atol=1e-3)


def test_harness_triplet_network():
    x = {"anchor": _images(6), "positive": _images(6, seed=1), "negative": _images(6, seed=2)}
    model = run_model_test(lambda: mmtl_tf.models.build_triplet_network(_encoder(), 8), x,
                           np.zeros(6), loss=None, expected_output_shape=(6, 2))
    out = np.asarray(model(x))
    expected = np.maximum(out[:, 0] - out[:, 1] + 1.0, 0.0).mean()
    assert float(model.compute_loss(y_pred=out)) == pytest.approx(expected, rel=1e-5)


def test_a_loaded_triplet_network_is_compiled_with_its_optimizer(tmp_path):
    # With its own compile (which follows runtime jit_compile) Keras skipped
    # recompiling a loaded TripletNetwork, with a warning.
    import warnings

    x = {"anchor": _images(6), "positive": _images(6, seed=1), "negative": _images(6, seed=2)}
    model = mmtl_tf.models.build_triplet_network(_encoder(), 8)
    model.compile(keras.optimizers.Adam(0.01), jit_compile=False)
    model.fit(x, epochs=2, verbose=0)
    model.save(tmp_path / "t.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = mmtl_tf.load_model(tmp_path / "t.keras")
    assert loaded.compiled and loaded.jit_compile is False
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    np.testing.assert_allclose(loaded.optimizer.learning_rate, 0.01)


def _episode(batch=2, way=3, shot=2, queries=2, size=16, seed=0):
    labels = np.eye(way, dtype="float32")[np.repeat(np.arange(way), shot)]
    x = {"support": _images(way * shot, size, seed, shape=(batch,)),
         "support_labels": np.stack([labels] * batch),
         "queries": _images(way * queries, size, seed + 1, shape=(batch,))}
    y = np.stack([np.repeat(np.arange(way), queries)] * batch)
    return x, y


def test_harness_matching_network():
    x, y = _episode()
    model = run_model_test(lambda: mmtl_tf.models.build_matching_network(_encoder(), 8), x, y,
                           loss="sparse_categorical_crossentropy")
    probabilities = np.asarray(model(x))
    assert probabilities.shape == (2, 6, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_matching_network_takes_any_way_and_shot_and_copies_the_support():
    model = mmtl_tf.models.build_matching_network(_encoder(), 8)
    for way, shot in ((5, 1), (5, 5), (2, 3)):
        x, _ = _episode(batch=1, way=way, shot=shot, queries=1)
        assert model(x).shape == (1, way, way)
    # A query identical to a support image, all others different: that label wins.
    x, _ = _episode(batch=1, way=4, shot=1, queries=1)
    x["queries"] = x["support"][:, ::-1]
    assert np.asarray(model(x)).argmax(-1).tolist() == [[3, 2, 1, 0]]


def test_siamese_and_triplet_networks_refuse_different_batch_sizes():
    siamese = mmtl_tf.models.build_siamese_network(_encoder())
    with pytest.raises(ValueError, match=r"different batch sizes \(1 and 4"):
        siamese({"left": _images(1), "right": _images(4)})
    triplet = mmtl_tf.models.build_triplet_network(_encoder())
    with pytest.raises(ValueError, match=r"different batch sizes \(1 and 4"):
        triplet({"anchor": _images(1), "positive": _images(4), "negative": _images(4)})


def test_matching_network_needs_one_hot_support_labels():
    model = mmtl_tf.models.build_matching_network(_encoder(), 8)
    x, _ = _episode(batch=1, way=3, shot=2, queries=1)
    ids = x["support_labels"].argmax(-1)
    with pytest.raises(ValueError, match="support_labels must be one-hot"):
        model({**x, "support_labels": ids[..., None].astype("float32")})
    with pytest.raises(ValueError, match="support_labels must be one-hot"):
        model({**x, "support_labels": 2 * x["support_labels"]})
    with pytest.raises(ValueError, match="one one-hot row"):
        model({**x, "support_labels": x["support_labels"][:, :-1]})


def test_bad_inputs():
    with pytest.raises(ValueError, match="distance='hamming'"):
        mmtl_tf.models.build_siamese_network(_encoder(), distance="hamming")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        mmtl_tf.models.build_triplet_network(_encoder(), margin=-1)
    with pytest.raises(TypeError, match="encoder must be a keras.Model"):
        mmtl_tf.models.build_embedding_model("small_cnn")


def test_triplet_models_under_mixed_float16_start_with_a_loss_scale_of_1():
    from mmtl_tf import runtime

    def text_tower():
        return mmtl_tf.encoders.TextEncoder(vocab_size=30, sequence_length=6, embedding_dim=8,
                                            lstm_units=8)

    rng = np.random.default_rng(0)
    tokens = lambda: rng.integers(1, 30, (8, 6)).astype("int32")  # noqa: E731
    keras.utils.set_random_seed(0)
    with runtime.settings(precision="mixed_float16", jit_compile=False):
        triplet = mmtl_tf.models.build_triplet_network(text_tower(), projection_dim=8)
        triplet.compile(keras.optimizers.SGD(0.1))
        # An embedding model of your own, compiled with the same helper.
        embedding = mmtl_tf.models.build_embedding_model(text_tower(), projection_dim=8)
        embedding.compile(runtime.embedding_optimizer(keras.optimizers.SGD(0.1)),
                          mmtl_tf.losses.TripletLoss())
        cases = [(triplet, {"anchor": tokens(), "positive": tokens(), "negative": tokens()},
                  None), (embedding, tokens(), np.array([0, 0, 1, 1, 2, 2, 3, 3]))]
        for model, x, y in cases:
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            assert model.optimizer.initial_scale == 1.0
            before = [np.array(w) for w in model.trainable_weights]
            model.fit(x, y, batch_size=8, epochs=3, verbose=0)
            # With Keras' 2^15 the LSTM tower's first steps overflowed and
            # were skipped: no weight had changed after 3 steps.
            assert int(model.optimizer.inner_optimizer.iterations) == 3
            assert all(not np.array_equal(a, np.array(w))
                       for a, w in zip(before, model.trainable_weights))
    assert runtime.embedding_optimizer("sgd").__class__ is keras.optimizers.SGD  # float32
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(), initial_scale=8.0)
    assert runtime.embedding_optimizer(scaled, policy="mixed_float16") is scaled
