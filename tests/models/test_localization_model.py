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
