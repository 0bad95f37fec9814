"""Inputs of the wrong width that were silently read (boxes of 3 or 5 numbers,
a float gallery index cut to an int, num_classes not matching the model)."""
import keras
import numpy as np
import pytest

import mmtl_tf
from mmtl_tf import training


def test_center_size_to_corners_needs_four_numbers():
    layer = mmtl_tf.layers.CenterSizeToCorners()
    with pytest.raises(ValueError, match=r"boxes \(\.\.\., 4\) as \(cy, cx, h, w\); got "
                                         r"shape \(1, 3\)"):
        layer(np.array([[0.5, 0.5, 0.2]]))
    with pytest.raises(ValueError, match=r"got shape \(None, 5\)"):
        layer(keras.Input((5,)))
    np.testing.assert_allclose(layer(np.array([[0.5, 0.5, 0.2, 0.4]])).numpy(),
                               [[0.4, 0.3, 0.6, 0.7]], atol=1e-6)


def test_box_iou_needs_four_numbers_per_box():
    five = np.array([[0.1, 0.1, 0.5, 0.5, 7.0]])
    with pytest.raises(ValueError, match=r"boxes_true must be boxes \(\.\.\., 4\).*\(1, 5\)"):
        mmtl_tf.metrics.box_iou(five, five[:, :4])
    with pytest.raises(ValueError, match=r"boxes_pred must be boxes \(\.\.\., 4\).*\(1, 5\)"):
        mmtl_tf.metrics.box_iou(five[:, :4], five)
    assert float(mmtl_tf.metrics.box_iou(five[:, :4], five[:, :4])[0]) == pytest.approx(1.0)


def test_float_positives_array_with_a_non_integer_is_refused():
    q = np.random.default_rng(0).normal(size=(4, 5))
    with pytest.raises(ValueError, match=r"positives\[3\] contains 3.5, which is not a gallery"):
        mmtl_tf.metrics.retrieval_metrics(q, q, positives=np.array([0, 1, 2, 3.5]), ks=(1,))
    exact = mmtl_tf.metrics.retrieval_metrics(q, q, positives=np.array([0, 1, 2, 3.0]), ks=(1,))
    assert exact == mmtl_tf.metrics.retrieval_metrics(q, q, positives=[0, 1, 2, 3], ks=(1,))


def test_compile_classifier_num_classes_must_match_the_output_width():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match=r"num_classes=5 but .* has 3 outputs \(shape "
                                         r"\(None, 3\)\); pass num_classes=3"):
        training.compile_classifier(model, num_classes=5)
    training.compile_classifier(model, num_classes=3, jit_compile=False)
    assert model.compiled
