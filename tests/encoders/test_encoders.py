import warnings

import keras
import numpy as np
import pytest

from mmtl_tf.encoders import ImageEncoder, TextEncoder
from tests.harness import run_model_test


def test_image_encoder_small_cnn_harness():
    x = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("uint8")
    y = np.zeros((4, 8), "float32")
    run_model_test(lambda: ImageEncoder("small_cnn", input_shape=(16, 16, 3), conv_filters=8),
                   x, y, loss="mse", expected_output_shape=(4, 8), float32_outputs=False)


def test_text_encoder_harness():
    x = np.random.default_rng(0).integers(0, 30, (4, 6)).astype("int32")
    y = np.zeros((4, 5), "float32")
    run_model_test(lambda: TextEncoder(vocab_size=30, sequence_length=6, embedding_dim=4,
                                       lstm_units=5), x, y, loss="mse",
                   expected_output_shape=(4, 5), float32_outputs=False)


def test_application_encoder_round_trip_and_frozen_batchnorm(tmp_path):
    enc = ImageEncoder("mobilenet_v2", input_shape=(32, 32, 3), trainable="partial",
                       batch_norm="frozen")   # as for pretrained weights
    assert enc.get_config()["batch_norm"] == "frozen"
    backbone = enc.backbone
    bns = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and not any(l.trainable for l in bns)
    assert any(l.trainable for l in backbone.layers if isinstance(l, keras.layers.Conv2D))
    assert not all(l.trainable for l in backbone.layers if isinstance(l, keras.layers.Conv2D))
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    model = keras.Sequential([keras.Input((32, 32, 3), dtype="uint8"), enc])
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_bad_encoder_arguments():
    with pytest.raises(ValueError, match="needs input_shape"):
        ImageEncoder("resnet50", input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="trainable='some'"):
        ImageEncoder("small_cnn", input_shape=(16, 16, 3), trainable="some")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageEncoder("vgg16", input_shape=(32, 32, 3), weights="/no/such.weights.h5")
    with pytest.raises(ValueError, match="vocab_size"):
        TextEncoder(vocab_size=1)


@pytest.mark.parametrize("kwargs,message", [
    # vocab_size="50" used to be a TypeError ("'<' not supported between
    # instances of 'str' and 'int'"); 8.0 a Keras shape error.
    (dict(vocab_size="50"), "vocab_size must be an integer >= 2, got '50'"),
    (dict(vocab_size=True), "vocab_size must be an integer >= 2, got True"),
    (dict(sequence_length=8.0), "sequence_length must be an integer >= 1, got 8.0"),
    (dict(embedding_dim="4"), "embedding_dim must be an integer >= 1, got '4'"),
    (dict(lstm_units=None), "lstm_units must be an integer >= 1, got None"),
    (dict(lstm_units=0), "lstm_units must be an integer >= 1, got 0"),
    (dict(mask_zero="yes"), "mask_zero must be True or False, got 'yes'"),
    (dict(use_cudnn="on"), "use_cudnn must be None, True, False or 'auto', got 'on'"),
    (dict(use_cudnn=1), "use_cudnn must be None, True, False or 'auto', got 1"),
    (dict(embeddings=np.zeros((20, 3))),
     r"embeddings must be a \(vocab_size, embedding_dim\) = \(20, 4\) matrix; got shape "
     r"\(20, 3\)"),
])
def test_text_encoder_checks_its_arguments_up_front(kwargs, message):
    base = dict(vocab_size=20, sequence_length=3, embedding_dim=4, lstm_units=2)
    with pytest.raises(ValueError, match=message):
        TextEncoder(**{**base, **kwargs})


def test_text_encoder_takes_numpy_integers():
    enc = TextEncoder(vocab_size=np.int64(20), sequence_length=np.int32(3), embedding_dim=4,
                      lstm_units=2)
    assert enc.output_dim == 2 and enc.get_config()["vocab_size"] == 20


def test_load_weights_file_shows_keras_warnings_only_when_the_load_succeeds():
    from mmtl_tf.encoders.image_encoder import load_weights_file

    class Loads:
        def load_weights(self, path):
            warnings.warn(f"a note on {path}")

    class Fails:
        def load_weights(self, path):
            warnings.warn("skipping layer 1 of 200")
            raise ValueError("does not fit")

    with pytest.warns(UserWarning, match="a note on w.h5"):
        load_weights_file(Loads(), "w.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="does not fit"):
            load_weights_file(Fails(), "w.h5")
    assert not caught


def _backbone(input_shape, output="map"):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3)(inputs)
    if output == "vector":
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="my_backbone")


@pytest.mark.parametrize("backbone_input", [(None, None, 1), (32, 48, 1), (32, 40, 3)])
def test_image_encoder_refuses_a_backbone_model_of_another_input_shape(backbone_input):
    with pytest.raises(ValueError, match=r"my_backbone.*takes images of shape .* but "
                                         r"image_shape=\(32, 48, 3\)"):
        ImageEncoder(_backbone(backbone_input), input_shape=(32, 48, 3))
    # Through build_fusion_classifier the message names its argument too (it
    # named only ImageEncoder's and build_head_swap_classifier's).
    import mmtl_tf

    with pytest.raises(ValueError, match=r"image_shape=\(32, 48, 3\) \(image_shape= of "
                                         r"build_fusion_classifier; input_shape= of "):
        mmtl_tf.models.build_fusion_classifier(image_shape=(32, 48, 3),
                                               image_encoder=_backbone(backbone_input))


def test_image_encoder_takes_a_backbone_model_of_any_size_or_returning_features():
    enc = ImageEncoder(_backbone((None, None, 3)), input_shape=(32, 48, 3))
    assert tuple(enc(np.zeros((2, 32, 48, 3), "uint8")).shape) == (2, 4)
    enc = ImageEncoder(_backbone((32, 48, 3), "vector"), input_shape=(32, 48, 3))
    assert tuple(enc(np.zeros((2, 32, 48, 3), "uint8")).shape) == (2, 4)


def _pixels_seen(backbone, **kwargs):
    """The values reaching `backbone` inside an ImageEncoder for pixels 0..255."""
    import mmtl_tf

    enc = ImageEncoder(backbone, input_shape=(32, 32, 3), **kwargs)
    x = np.arange(32 * 32 * 3).reshape(1, 32, 32, 3) % 256
    seen = keras.Model(enc.input, enc.get_layer("preprocess").output)(x.astype("uint8"))
    return enc, np.asarray(seen), x, mmtl_tf


def test_a_backbone_that_scales_its_own_pixels_gets_pixels_0_to_255(tmp_path):
    # keras.applications.MobileNetV3Small(include_top=False) passed as a model
    # of your own got x / 255, then scaled it again itself: its convolutions
    # saw values within 1/127.5 of -1.
    scaling = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3),
                                                  include_top=False)
    enc, seen, x, mmtl_tf = _pixels_seen(scaling)
    np.testing.assert_allclose(seen, x)
    inside = keras.Model(scaling.input, scaling.layers[1].output)(seen)
    assert float(np.min(inside)) == -1.0 and float(np.max(inside)) == 1.0
    # Saved and loaded, it keeps the mode.
    enc.save(tmp_path / "m.keras")
    again = mmtl_tf.load_model(tmp_path / "m.keras")
    probe = (x[:1] * 7 % 256).astype("uint8")
    np.testing.assert_allclose(again(probe), enc(probe), atol=1e-5)
    assert again.get_config()["preprocessing"] == "none"
    # A Sequential model whose first layer rescales: the same.
    own = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                            keras.layers.Conv2D(4, 3)])
    np.testing.assert_allclose(_pixels_seen(own)[1], x)
    # Models without such a layer still get x / 255; a mode given is used.
    plain = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3),
                                                include_top=False, include_preprocessing=False)
    np.testing.assert_allclose(_pixels_seen(plain)[1], x / 255, rtol=1e-6)
    np.testing.assert_allclose(_pixels_seen(scaling, preprocessing="rescale")[1], x / 255,
                               rtol=1e-6)
    # A saved config of the old kind (no mode saved) keeps its x / 255.
    config = enc.get_config()
    config["preprocessing"] = None
    old = ImageEncoder.from_config(config)
    seen_old = keras.Model(old.input, old.get_layer("preprocess").output)(x.astype("uint8"))
    np.testing.assert_allclose(seen_old, x / 255, rtol=1e-6)
