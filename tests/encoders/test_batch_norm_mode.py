"""ImageEncoder's batch_norm mode: a backbone with random weights trains its
BatchNorm (with frozen initial statistics a deep random backbone's features
all but vanish, and a fusion model learnt nothing from its images)."""
import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.encoders import ImageEncoder
from tests.models.test_head_swap_classifier import tiny_backbone


def batch_norms(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("trainable,pretrained,expected", [
    ("full", False, "train"), ("partial", False, "train"),
    ("frozen", False, "frozen"),            # nothing trains: as before
    ("full", True, "frozen"), ("partial", True, "frozen"),
])
def test_the_mode_follows_the_backbones_statistics(trainable, pretrained, expected):
    enc = ImageEncoder(tiny_backbone(pretrained=pretrained), input_shape=(16, 16, 3),
                       trainable=trainable)
    assert enc.get_config()["batch_norm"] == expected
    trainable_bn = [layer.trainable and enc.backbone.trainable for layer in batch_norms(enc)]
    assert trainable_bn == [expected == "train" and trainable != "frozen"] * 3


def test_a_named_backbone_without_weights_trains_its_batch_norm():
    enc = ImageEncoder("mobilenet_v2", input_shape=(32, 32, 3), weights=None, trainable="full")
    assert enc.get_config()["batch_norm"] == "train"
    assert all(layer.trainable for layer in batch_norms(enc))


def test_the_mode_survives_saving_and_old_configs_stay_frozen(tmp_path):
    enc = ImageEncoder(tiny_backbone(pretrained=False), input_shape=(16, 16, 3),
                       trainable="full")
    model = keras.Sequential([keras.Input((16, 16, 3), dtype="uint8"), enc])
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert again.layers[0].get_config()["batch_norm"] == "train"
    config = enc.get_config()
    del config["batch_norm"]          # saved before the mode existed
    assert ImageEncoder.from_config(config).get_config()["batch_norm"] == "frozen"
    with pytest.raises(ValueError, match="batch_norm='moving'"):
        ImageEncoder("small_cnn", input_shape=(16, 16, 3), batch_norm="moving")


def test_unfreeze_keeps_a_trained_from_scratch_batch_norm_training():
    model = mmtl_tf.models.build_head_swap_classifier(
        tiny_backbone(pretrained=False), num_classes=3, input_shape=(16, 16, 3),
        weights=None, head_units=(), trainable="full")
    backbone = model.get_layer("image_encoder").backbone
    mmtl_tf.models.freeze(model)
    assert not backbone.trainable
    for kwargs in ({}, {"num_layers": 2}, {"from_layer": "conv2"}):
        names = mmtl_tf.models.unfreeze(model, **kwargs)
        assert "bn2" in names and "bn0" in names, (kwargs, names)


def _bright_or_dark(n=48, size=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None, None, None] == 1, 170, 60)
    images = np.clip(base + rng.normal(0, 25, (n, size, size, 3)), 0, 255).astype("uint8")
    return images, labels


@pytest.mark.parametrize("batch_norm,learns", [(None, True), ("frozen", False)])
def test_a_fusion_model_learns_from_a_random_mobilenet(batch_norm, learns):
    import tensorflow as tf

    from mmtl_tf.encoders import recalibrate_batch_norm

    images, labels = _bright_or_dark()
    held_out, held_out_labels = _bright_or_dark(seed=1)
    keras.utils.set_random_seed(0)
    tower = ImageEncoder("mobilenet_v2", input_shape=(32, 32, 3), trainable="full",
                         batch_norm=batch_norm)
    model = mmtl_tf.models.build_fusion_classifier(
        image_shape=(32, 32, 3), vocab_size=10, sequence_length=4, num_classes=1,
        image_encoder=tower)
    text = np.ones((len(labels), 4), "int32")       # the same caption for every image
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit({"image": images, "text": text}, labels, batch_size=16, epochs=6,
                        verbose=0).history["loss"]
    # ln 2 = 0.693: what a model that cannot tell the images apart keeps.
    if learns:
        assert history[-1] < 0.45, history
    else:
        assert history[-1] > 0.65, history
    # Held out, with the moving statistics: they lag behind the weights
    # (chance here) until re-estimated from the training data.
    train = tf.data.Dataset.from_tensor_slices(({"image": images, "text": text}, labels)).batch(16)
    used = recalibrate_batch_norm(model, train)
    assert used == (3 if learns else 0)             # frozen BatchNorm is left alone
    _, accuracy = model.evaluate({"image": held_out, "text": text}, held_out_labels, verbose=0)
    if learns:
        assert accuracy >= 0.75, accuracy
    else:
        assert accuracy == 0.5, accuracy


def test_recalibration_averages_the_batches_and_restores_the_momenta():
    backbone = tiny_backbone(pretrained=False)
    enc = ImageEncoder(backbone, input_shape=(16, 16, 3), trainable="full")
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (4, 16, 16, 3)).astype("uint8") for _ in range(3)]
    from mmtl_tf.encoders import recalibrate_batch_norm

    assert recalibrate_batch_norm(enc, batches, batches=2) == 2
    bn = enc.backbone.get_layer("bn0")
    assert bn.momentum == 0.99
    # NumPy: the mean over the two batches of bn0's input (conv0 of x / 255).
    conv = keras.Model(enc.backbone.input, enc.backbone.get_layer("conv0").output)
    means = [np.asarray(conv(b.astype("float32") / 255)).mean(axis=(0, 1, 2))
             for b in batches[:2]]
    np.testing.assert_allclose(np.asarray(bn.moving_mean), np.mean(means, axis=0), rtol=1e-4,
                               atol=1e-6)
