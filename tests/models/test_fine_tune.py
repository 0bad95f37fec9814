import keras
import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf.models import build_head_swap_classifier, extract_features, fine_tune
from tests.models.test_head_swap_classifier import tiny_backbone


@pytest.fixture(scope="module")
def emoji():
    return {split: mmtl_tf.data.make_image_classification_dataset(
                "default", split, image_size=(16, 16), batch_size=64)
            for split in ("train", "validation")}


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return build_head_swap_classifier(tiny_backbone(), num_classes=9, input_shape=(16, 16, 3),
                                      weights=None, head_units=(32,))


def test_cached_features_train_the_same_model(emoji):
    model = _model()
    backbone_before = [np.array(w) for w in model.get_layer("image_encoder").weights]
    result = fine_tune(model, emoji["train"], emoji["validation"], head_epochs=3,
                       fine_tune_epochs=0, cache_features=True, verbose=0)
    history = result["head"]
    assert len(history["loss"]) == 3 and history["loss"][-1] < history["loss"][0]
    assert result["seconds"]["features"] > 0 and result["fine_tune"] == {}
    # The head trained on cached features is the model's head: the full model's
    # predictions are the head applied to the backbone features.
    features, labels = extract_features(model, emoji["validation"])
    head_pred = model.get_layer("head").predict(features, verbose=0)
    images = np.concatenate([x.numpy() for x, _ in emoji["validation"]])
    np.testing.assert_allclose(model.predict(images, verbose=0), head_pred, atol=1e-5)
    for a, b in zip(backbone_before, model.get_layer("image_encoder").weights):
        np.testing.assert_array_equal(a, np.array(b))   # the frozen backbone never moved
    # Best epoch restored: the model's validation loss is the best one in the history.
    val_loss = model.evaluate(emoji["validation"], verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(val_loss, min(history["val_loss"]), rtol=1e-4)


def test_two_phases_keep_both_histories_and_fine_tune_the_top(emoji):
    model = _model(1)
    backbone = model.get_layer("image_encoder").backbone
    conv0, conv2 = (np.array(backbone.get_layer(n).kernel) for n in ("conv0", "conv2"))
    result = fine_tune(model, emoji["train"], emoji["validation"], head_epochs=2,
                       fine_tune_epochs=2, fine_tune_learning_rate=1e-3, unfreeze_from="conv2",
                       cache_features=False, verbose=0)
    assert result["unfrozen"] == ["conv2"]
    assert result["head_epochs"] == 2
    assert len(result["history"]["loss"]) == 4 and len(result["fine_tune"]["val_loss"]) == 2
    assert result["history"]["loss"][:2] == result["head"]["loss"]
    np.testing.assert_array_equal(conv0, np.array(backbone.get_layer("conv0").kernel))
    assert not np.allclose(conv2, np.array(backbone.get_layer("conv2").kernel))
    # Phase 2 recompiled with the small learning rate.
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)
    with pytest.raises(ValueError, match="head_epochs must be an int >= 0"):
        fine_tune(model, emoji["train"], head_epochs=-1)


def test_cached_head_training_is_faster_per_epoch_than_running_the_backbone(emoji):
    """Not a timing assertion on the machine: the cached phase calls the backbone once."""
    model = _model(2)
    calls = {"n": 0}
    encoder = model.get_layer("image_encoder")
    original = encoder.predict_on_batch

    def counting(x):
        calls["n"] += 1
        return original(x)

    encoder.predict_on_batch = counting
    fine_tune(model, emoji["train"], None, head_epochs=3, fine_tune_epochs=0, verbose=0)
    batches = sum(1 for _ in emoji["train"])
    assert calls["n"] == batches   # one pass over the data, not one per epoch


def test_compile_for_task_says_which_labels_it_takes():
    import keras
    import numpy as np

    from mmtl_tf.models import build_head_swap_classifier, compile_for_task

    inputs = keras.Input((8, 8, 3))
    backbone = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    images = np.zeros((4, 8, 8, 3), "uint8")
    multilabel = build_head_swap_classifier(backbone, num_classes=3, input_shape=(8, 8, 3),
                                            head_units=(), task="multilabel")
    compile_for_task(multilabel, jit_compile=False)
    with pytest.raises(ValueError, match=r"takes multi-hot labels of shape \(N, 3\)"):
        multilabel.fit(images, np.array([0, 1, 2, 1]), verbose=0)
    multiclass = build_head_swap_classifier(backbone, num_classes=3, input_shape=(8, 8, 3),
                                            head_units=())
    compile_for_task(multiclass, jit_compile=False)
    with pytest.raises(ValueError, match=r"int class ids of shape \(N,\) or \(N, 1\)"):
        multiclass.fit(images, np.eye(3)[[0, 1, 2, 1]], verbose=0)
    # (Keras cannot fit a model again after an error inside its first traced
    # step, "Creating variables on a non-first call", with or without this check.)
    multiclass = build_head_swap_classifier(backbone, num_classes=3, input_shape=(8, 8, 3),
                                            head_units=())
    compile_for_task(multiclass, jit_compile=False)
    multiclass.fit(images, np.array([0, 1, 2, 1]), verbose=0)


def test_callbacks_see_the_whole_model_while_the_head_trains_on_features(emoji, tmp_path):
    # A ModelCheckpoint of phase 1 saved the head alone ("expected shape=(None,
    # 1280), found shape=(8, 64, 64, 3)" when given images).
    model = _model(2)

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.seen = self.model.name
            if epoch == 1:
                self.model.stop_training = True

    stop = StopAfterTwo()
    best = str(tmp_path / "best.keras")
    result = fine_tune(model, emoji["train"], emoji["validation"], head_epochs=5,
                       fine_tune_epochs=0, cache_features=True, verbose=0,
                       callbacks=[stop, keras.callbacks.ModelCheckpoint(best)])
    assert stop.seen == model.name
    assert len(result["head"]["loss"]) == 2  # its stop_training stopped the head's fit
    saved = mmtl_tf.load_model(best)
    images = next(iter(emoji["validation"]))[0].numpy()[:4]
    assert saved.predict(images, verbose=0).shape == (4, 9)


def test_class_weight_reaches_both_phases_and_weighted_datasets_are_named(emoji):
    model = _model(3)
    plain = fine_tune(model, emoji["train"], emoji["validation"], head_epochs=1,
                      fine_tune_epochs=0, verbose=0, seed=1)["head"]["loss"][0]
    model = _model(3)
    heavy = {c: 10.0 for c in range(9)}  # every class 10x: the training loss 10x
    weighted = fine_tune(model, emoji["train"], emoji["validation"], head_epochs=1,
                         fine_tune_epochs=1, fine_tune_learning_rate=1e-9, verbose=0, seed=1,
                         class_weight=heavy)
    np.testing.assert_allclose(weighted["head"]["loss"][0], 10 * plain, rtol=1e-3)
    assert weighted["fine_tune"]["loss"][0] > 5 * weighted["fine_tune"]["val_loss"][0]
    # (images, targets, weights): "too many values to unpack" before.
    with_weights = emoji["train"].map(lambda x, y: (x, y, tf.ones_like(y, tf.float32)))
    with pytest.raises(ValueError, match="yields 3-tuples .*pass class_weight=.*"
                                         "cache_features=False"):
        fine_tune(_model(3), with_weights, head_epochs=1, fine_tune_epochs=0, verbose=0)


def test_models_fine_tune_cannot_train_are_named_before_any_work(emoji):
    model = _model(4)
    model.trainable = False  # trained nothing, with Keras' warning alone
    with pytest.raises(ValueError, match="has trainable=False, so nothing would train"):
        fine_tune(model, emoji["train"], head_epochs=1, fine_tune_epochs=0, verbose=0)
    # A model of your own around an ImageEncoder, without a "head" layer.
    from mmtl_tf.models.head_swap_classifier import find_image_encoder

    encoder = find_image_encoder(_model(4))
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    own = keras.Model(inputs, keras.layers.Dense(9, activation="softmax")(encoder(inputs)))
    with pytest.raises(ValueError, match="has no layer named 'head'.*cache_features=False"):
        fine_tune(own, emoji["train"], head_epochs=1, fine_tune_epochs=0, verbose=0,
                  task="multiclass")


def test_a_bad_unfreeze_setting_is_refused_before_the_head_trains(emoji):
    # It failed after the features were computed and the head had trained,
    # naming unfreeze()'s num_layers / from_layer.
    model = _model(5)
    head_before = [np.array(w) for w in model.get_layer("head").weights]
    for kwargs, message in (
            ({"unfreeze_layers": 100000}, r"^unfreeze_layers must be an int in \[1, 6\]"),
            ({"unfreeze_from": "nope"}, r"^unfreeze_from='nope' is not a layer of backbone"),
            ({"unfreeze_layers": 2, "unfreeze_from": "conv1"},
             "pass unfreeze_layers or unfreeze_from, not both")):
        with pytest.raises(ValueError, match=message):
            fine_tune(model, emoji["train"], head_epochs=1, fine_tune_epochs=1, verbose=0,
                      **kwargs)
    for a, b in zip(head_before, model.get_layer("head").weights):
        np.testing.assert_array_equal(a, np.array(b))   # the head never trained
