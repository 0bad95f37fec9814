import numpy as np
import pytest

from mmtl_tf.metrics import BoxIoU, box_iou


def numpy_iou(a, b):
    ih = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iw = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ih * iw
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def random_boxes(rng, n):
    corners = np.sort(rng.random((n, 2, 2)), axis=1)   # (n, [min, max], [y, x])
    return np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], -1)


def test_closed_form_cases():
    unit = np.array([0.0, 0.0, 1.0, 1.0])
    assert float(box_iou(unit, unit)) == 1.0
    assert float(box_iou(unit, np.array([0.0, 0.0, 1.0, 0.5]))) == 0.5
    np.testing.assert_allclose(float(box_iou(np.array([0, 0, 0.5, 0.5]),
                                             np.array([0.25, 0.25, 0.75, 0.75]))), 1 / 7, rtol=1e-6)
    assert float(box_iou(np.array([0, 0, 0.2, 0.2]), np.array([0.5, 0.5, 1, 1]))) == 0.0
    # Degenerate (inverted) boxes have no area.
    assert float(box_iou(np.array([0.5, 0.5, 0.2, 0.2]), np.array([0.5, 0.5, 0.2, 0.2]))) == 0.0


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 500), random_boxes(rng, 500)
    np.testing.assert_allclose(np.asarray(box_iou(a, b)), numpy_iou(a, b), atol=1e-6)


def test_boxes_of_another_count_are_refused():
    # One box against three was broadcast to three IoUs; two against three
    # was TensorFlow's "Incompatible shapes".
    rng = np.random.default_rng(2)
    for a, b in ((random_boxes(rng, 1), random_boxes(rng, 3)),
                 (random_boxes(rng, 2), random_boxes(rng, 3)),
                 (random_boxes(rng, 3)[None], random_boxes(rng, 3))):
        with pytest.raises(ValueError, match="must have the same shape"):
            box_iou(a, b)
        with pytest.raises(ValueError, match="must have the same shape"):
            BoxIoU().update_state(a, b)


def test_metric_mean_and_threshold():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 64), random_boxes(rng, 64)
    b[:16] = a[:16]
    reference = numpy_iou(a, b)
    mean = BoxIoU()
    mean.update_state(a[:40], b[:40])
    mean.update_state(a[40:], b[40:])
    np.testing.assert_allclose(float(mean.result()), reference.mean(), atol=1e-6)
    hit = BoxIoU(threshold=0.5)
    hit.update_state(a, b)
    np.testing.assert_allclose(float(hit.result()), np.mean(reference >= 0.5), atol=1e-6)
    assert hit.name == "iou@0.5" and BoxIoU.from_config(hit.get_config()).threshold == 0.5
    with pytest.raises(ValueError, match="threshold must be in"):
        BoxIoU(threshold=2)


def test_a_box_at_exactly_the_threshold_counts_despite_float32_rounding():
    # IoU 0.5 exactly (0.01 x 0.03 inside 0.01 x 0.06) came out 0.49999994 in
    # float32, and BoxIoU(0.5) scored it 0.
    true = np.array([[0, 0, 0.01, 0.06]], "float32")
    pred = np.array([[0, 0, 0.01, 0.03]], "float32")
    assert numpy_iou(true.astype("float64"), pred.astype("float64"))[0] == pytest.approx(0.5)
    hit = BoxIoU(threshold=0.5)
    hit.update_state(true, pred)
    assert float(hit.result()) == 1.0
    below = BoxIoU(threshold=0.5)
    below.update_state(true, np.array([[0, 0, 0.01, 0.0299]], "float32"))  # IoU 0.498
    assert float(below.result()) == 0.0


def test_a_box_holding_nan_gives_nan_not_a_miss():
    # A diverged localization head's NaN boxes scored IoU 0, as a miss, and
    # the BoxIoU mean stayed finite.
    true = np.array([[0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.6, 0.6]], "float32")
    pred = np.array([[0.0, 0.0, 0.5, 0.5], [np.nan, 0.1, 0.6, 0.6]], "float32")
    iou = np.asarray(box_iou(true, pred))
    assert iou[0] == 1.0 and np.isnan(iou[1])
    assert np.isnan(np.asarray(box_iou(pred, true))[1])
    metric = BoxIoU()
    metric.update_state(true, pred)
    assert np.isnan(float(metric.result()))
