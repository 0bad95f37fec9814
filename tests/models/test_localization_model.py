import keras
import numpy as np
import pytest

from mmtl_tf.metrics import box_iou
from mmtl_tf.models import build_localization_model, compile_for_task
from tests.harness import run_model_test
from tests.models.test_head_swap_classifier import tiny_backbone


def square_scenes(n, size=16, seed=0):
    """A bright square (red: class 0, green: class 1) at a random place on a dark image."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (n, size, size, 3)).astype("uint8")
    labels = rng.integers(0, 2, n).astype("int32")
    boxes = np.zeros((n, 4), "float32")
    for i in range(n):
        side = rng.integers(5, 9)
        top, left = rng.integers(0, size - side + 1, 2)
        x[i, top:top + side, left:left + side, labels[i]] = 255
        boxes[i] = [top / size, left / size, (top + side) / size, (left + side) / size]
    return x, {"class": labels, "box": boxes}


def test_localization_harness():
    x, y = square_scenes(4)
    run_model_test(
        lambda: build_localization_model(tiny_backbone(), num_classes=2, input_shape=(16, 16, 3),
                                         weights=None, head_units=(8,), trainable="full"),
        x, y, {"class": keras.losses.SparseCategoricalCrossentropy(),
               "box": keras.losses.MeanAbsoluteError()},
        expected_output_shape={"class": (4, 2), "box": (4, 4)})


def test_boxes_are_valid_and_learnt_better_than_the_mean_box():
    keras.utils.set_random_seed(0)
    x, y = square_scenes(384, seed=1)
    x_test, y_test = square_scenes(128, seed=2)
    model = build_localization_model(tiny_backbone(), num_classes=2, input_shape=(16, 16, 3),
                                     weights=None, head_units=(32,), trainable="full",
                                     pooling="flatten")
    compile_for_task(model, learning_rate=3e-3)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    pred = model.predict(x_test, verbose=0)
    boxes = pred["box"]
    assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])
    assert np.all((boxes >= 0) & (boxes <= 1))
    learnt = float(np.mean(box_iou(y_test["box"], boxes)))
    mean_box = float(np.mean(box_iou(y_test["box"], np.broadcast_to(y["box"].mean(0),
                                                                     y_test["box"].shape))))
    assert learnt > mean_box + 0.15, (learnt, mean_box)
    accuracy = float(np.mean(pred["class"].argmax(-1) == y_test["class"]))
    assert accuracy > 0.9
    results = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert {"class_accuracy", "box_iou", "box_iou@0.5"} <= set(results)
    np.testing.assert_allclose(results["box_iou"], learnt, atol=1e-4)


def test_localization_bad_arguments():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        build_localization_model("resnet50", num_classes=-1, weights=None)
    with pytest.raises(ValueError, match="head_units must be positive ints"):
        build_localization_model("resnet50", num_classes=3, weights=None, head_units=(0,))


def feature_grid_scenes(n, rng, grid=6, channels=128):
    """Frozen-backbone-like features (grid x grid x channels, ReLU6-ranged)
    lit where one object lies: class 0 or 1 in alternate channels."""
    features = rng.uniform(0, 1, (n, grid, grid, channels)).astype("float32")
    labels = rng.integers(0, 2, n).astype("int32")
    boxes = np.zeros((n, 4), "float32")
    for i in range(n):
        side = rng.uniform(0.3, 0.6)
        top, left = rng.uniform(0, 1 - side, 2)
        boxes[i] = [top, left, top + side, left + side]
        a, b, c, d = (boxes[i] * grid).round().astype(int)
        features[i, a:max(c, a + 1), b:max(d, b + 1), labels[i]::2] += 5.0
    return np.minimum(features, 6.0), {"class": labels, "box": boxes}


def test_the_default_head_learning_rate_lets_a_wide_box_head_learn():
    # fine_tune's head phase ran at 1e-3 for every task: a box head on a
    # flattened feature grid (here 4,608 raw features into Dense(1024), as
    # EfficientNet-Lite0's 3x3x1280 at 96 px) saturated its sigmoids and did
    # little better than always answering the mean box (IoU 0.305 and 0.349
    # for seeds 0 and 1 against 0.299; notebook 04's pasted emoji 0.377 /
    # 0.226 against 0.276), or worse (a helper's shapes: 0.070 against 0.187).
    # Localization now defaults to 1e-4: 0.428, 0.416.
    import tensorflow as tf

    from mmtl_tf.models import fine_tune
    from mmtl_tf.models.fine_tune import head_learning_rate_for

    assert (head_learning_rate_for("localization"), head_learning_rate_for("multiclass"),
            head_learning_rate_for("multilabel")) == (1e-4, 1e-3, 1e-3)
    rng = np.random.default_rng(0)
    x, y = feature_grid_scenes(512, rng)
    x_test, y_test = feature_grid_scenes(256, rng)
    keras.utils.set_random_seed(0)
    grid = keras.Input((6, 6, 128))
    # (A first Rescaling layer: the encoder passes the features on unscaled.)
    model = build_localization_model(keras.Model(grid, keras.layers.Rescaling(1.0)(grid)),
                                     num_classes=2, input_shape=(6, 6, 128), weights=None,
                                     head_units=(1024,), pooling="flatten")
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    fine_tune(model, batches, head_epochs=15, fine_tune_epochs=0, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)
    learnt = float(np.mean(box_iou(y_test["box"], model.predict(x_test, verbose=0)["box"])))
    mean_box = float(np.mean(box_iou(y_test["box"], np.broadcast_to(y["box"].mean(0),
                                                                     y_test["box"].shape))))
    assert learnt > mean_box + 0.08, (learnt, mean_box)
    # compile_for_task's default follows the task too; a given rate is kept.
    assert float(compile_for_task(model).optimizer.learning_rate) == pytest.approx(1e-4)
    assert float(compile_for_task(model, learning_rate=3e-3).optimizer.learning_rate) == \
        pytest.approx(3e-3)
