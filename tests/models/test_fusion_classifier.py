import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf import runtime
from tests.harness import run_model_test


def _inputs(n=6, size=32, vocab=50, length=7, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (n, size, size, 3)).astype("uint8"),
            "text": rng.integers(0, vocab, (n, length)).astype("int32")}


def test_document_topology_has_exactly_the_documents_parameter_count():
    model = mmtl_tf.models.build_fusion_classifier(image_pooling="flatten")
    assert model.count_params() == 51_162_241
    flatten = model.get_layer("image_encoder").get_layer("flatten")
    assert flatten.output.shape[-1] == 111 * 111 * 64
    dense = model.get_layer("hidden")
    assert dense.kernel.shape == (111 * 111 * 64 + 64, 64)
    assert model.output.shape == (None, 1)
    assert model.get_layer("classifier").activation.__name__ == "sigmoid"


def test_default_avg_pooling_is_at_least_100_times_smaller():
    flatten = mmtl_tf.models.build_fusion_classifier(image_pooling="flatten")
    default = mmtl_tf.models.build_fusion_classifier()
    # The document's text tower: Embedding(5000, 128) + LSTM(64) on it.
    assert flatten.get_layer("text_encoder").count_params() == \
        5000 * 128 + 4 * (128 * 64 + 64 * 64 + 64)
    # The default's: a 64-wide embedding (embedding_dim=None with "avg").
    text = default.get_layer("text_encoder").count_params()
    assert text == 5000 * 64 + 4 * (64 * 64 + 64 * 64 + 64)
    # Conv2D(64, 3x3) on RGB + Dense(64) on 64 + 64 features + Dense(1).
    rest = (3 * 3 * 3 * 64 + 64) + (128 * 64 + 64) + (64 + 1)
    assert default.count_params() == text + rest == 363_137
    assert flatten.count_params() / default.count_params() >= 100


def test_embedding_dim_none_follows_the_pooling_and_an_explicit_width_wins():
    def width(**kwargs):
        model = mmtl_tf.models.build_fusion_classifier(
            image_shape=(32, 32, 3), vocab_size=50, sequence_length=7, **kwargs)
        return model.get_layer("text_encoder").get_layer("embedding").output_dim

    assert width() == 64
    assert width(image_pooling="max") == 64
    assert width(image_pooling="flatten") == 128
    assert width(image_pooling="flatten", embedding_dim=16) == 16
    assert width(embedding_dim=128) == 128
    with pytest.raises(ValueError, match="embedding_dim"):
        width(embedding_dim=0)


@pytest.mark.parametrize("num_classes,activation", [(1, "sigmoid"), (5, "softmax")])
def test_output_head(num_classes, activation):
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(32, 32, 3), vocab_size=50, sequence_length=7, num_classes=num_classes,
        embedding_dim=8, lstm_units=4, conv_filters=4, hidden_units=4)
    probs = np.asarray(model(_inputs()))
    assert probs.shape == (6, num_classes)
    assert model.get_layer("classifier").activation.__name__ == activation
    if num_classes > 1:
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert np.all((probs >= 0) & (probs <= 1))


def test_harness_small_fusion_model():
    x = _inputs()
    y = np.arange(6) % 3
    run_model_test(
        lambda: mmtl_tf.models.build_fusion_classifier(
            image_shape=(32, 32, 3), vocab_size=50, sequence_length=7, embedding_dim=8,
            lstm_units=4, conv_filters=4, hidden_units=4, num_classes=3),
        x, y, loss="sparse_categorical_crossentropy", expected_output_shape=(6, 3))


def test_lstm_kernel_follows_jit_setting():
    with runtime.settings(jit_compile=True):
        model = mmtl_tf.models.build_fusion_classifier(
            image_shape=(32, 32, 3), vocab_size=50, sequence_length=7, num_classes=3)
        lstm = model.get_layer("text_encoder").get_layer("lstm")
        assert lstm.use_cudnn is False
        model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
        assert model.jit_compile is True
    with runtime.settings(jit_compile=False):
        model = mmtl_tf.models.build_fusion_classifier(
            image_shape=(32, 32, 3), vocab_size=50, sequence_length=7, num_classes=3)
        assert model.get_layer("text_encoder").get_layer("lstm").use_cudnn == "auto"


def test_masking_ignores_padding_tokens():
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(32, 32, 3), vocab_size=50, sequence_length=7, num_classes=3,
        embedding_dim=16)
    x = _inputs(n=1)
    x["text"][:] = [[5, 9, 0, 0, 0, 0, 0]]
    text = model.get_layer("text_encoder")
    short = text.predict(x["text"], verbose=0)
    unmasked = mmtl_tf.encoders.TextEncoder(vocab_size=50, sequence_length=7, embedding_dim=16,
                                              mask_zero=False)
    unmasked.set_weights(text.get_weights())
    assert not np.allclose(unmasked.predict(x["text"], verbose=0), short)
    # The same two tokens without padding give the same feature.
    two = mmtl_tf.encoders.TextEncoder(vocab_size=50, sequence_length=2, embedding_dim=16)
    two.set_weights(text.get_weights())
    np.testing.assert_allclose(two.predict(x["text"][:, :2], verbose=0), short, atol=1e-6)


def test_application_backbone_and_custom_model_as_image_encoder():
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(32, 32, 3), vocab_size=50, sequence_length=7, num_classes=2,
        image_encoder="mobilenet_v2", image_trainable="frozen")
    backbone = model.get_layer("image_encoder").backbone
    assert backbone.name.startswith("mobilenetv2")
    assert not backbone.trainable
    assert model(_inputs()).shape == (6, 2)

    custom = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(5, 3)])
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(32, 32, 3), vocab_size=50, sequence_length=7, num_classes=2,
        image_encoder=custom)
    assert model.get_layer("image_encoder").output_dim == 5
    assert model(_inputs()).shape == (6, 2)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_classes"):
        mmtl_tf.models.build_fusion_classifier(num_classes=0)
    with pytest.raises(ValueError, match="image_pooling|pooling='mean'"):
        mmtl_tf.models.build_fusion_classifier(image_pooling="mean")
    with pytest.raises(ValueError, match="'resnet50'"):
        mmtl_tf.models.build_fusion_classifier(image_encoder="resnet5O")
    # None (a feature map) cannot be concatenated with the text features:
    # it failed later inside Keras' Concatenate.
    with pytest.raises(ValueError, match=r"image_pooling=None is not allowed"):
        mmtl_tf.models.build_fusion_classifier(image_shape=(16, 16, 3), image_pooling=None)
    with pytest.raises(ValueError, match=r"image_trainable='bogus' is not allowed"):
        mmtl_tf.models.build_fusion_classifier(image_shape=(16, 16, 3), image_trainable="bogus")


def test_image_trainable_frozen_freezes_the_small_cnn_too():
    # It was ignored without an image_encoder: the CNN trained anyway.
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(16, 16, 3), vocab_size=30, sequence_length=5, image_trainable="frozen")
    assert model.get_layer("image_encoder").trainable_weights == []
    assert len(model.trainable_weights) > 0  # the text branch and the head train


def test_image_encoder_weights_without_a_backbone_to_load_them_into_is_refused():
    # The small CNN ignored image_encoder_weights (even a file that did not exist).
    with pytest.raises(ValueError, match="applies to a named or given backbone, not to the "
                                         "small CNN"):
        mmtl_tf.models.build_fusion_classifier(image_shape=(16, 16, 3),
                                               image_encoder_weights="/no/such.weights.h5")


def test_the_bundled_recipe_builds_the_builder_default_widths():
    # `mmtl-tf train fusion --image-pooling flatten` builds the document's
    # 128-wide embedding, the default "avg" the 64-wide one: the recipe's
    # embedding_dim is null, not a width that would hold for one pooling only.
    from mmtl_tf.tasks import common, fusion

    config = common.resolve_config("fusion", "base")
    assert config["embedding_dim"] is None
    for pooling, width in (("avg", 64), ("max", 64), ("flatten", 128)):
        model = fusion._build({**config, "image_pooling": pooling, "image_size": 16}, 9)
        assert model.get_layer("text_encoder").get_layer("embedding").output_dim == width
    # The quickstart's model (64 px, 9 classes): 363,137 + 8 more outputs.
    assert fusion._build(config, 9).count_params() == 363_137 + 8 * 65
