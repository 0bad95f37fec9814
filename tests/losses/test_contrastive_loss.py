import numpy as np
import pytest

from mmtl_tf.losses import ContrastiveLoss, contrastive_loss


def numpy_contrastive(y, d, margin):
    total = 0.0
    for yi, di in zip(y, d):
        total += di * di if yi == 1 else max(margin - di, 0.0) ** 2
    return total / len(y)


def test_closed_form_values():
    # similar at distance 0.5 → 0.25; dissimilar at 0.25 with margin 1 → 0.5625.
    assert float(contrastive_loss([1, 0], [0.5, 0.25], margin=1.0)) == pytest.approx(0.40625)
    # Dissimilar pairs beyond the margin cost nothing; identical similar pairs neither.
    assert float(contrastive_loss([0, 0, 1], [2.0, 1.0, 0.0], margin=1.0)) == 0.0


@pytest.mark.parametrize("margin", [0.5, 1.0, 2.0])
def test_matches_numpy_reference_and_class(margin):
    rng = np.random.default_rng(int(margin * 10))
    y = rng.integers(0, 2, 50)
    d = rng.uniform(0, 2.5, 50).astype("float32")
    expected = numpy_contrastive(y, d, margin)
    np.testing.assert_allclose(float(contrastive_loss(y, d, margin)), expected, rtol=1e-5)
    loss = ContrastiveLoss(margin)
    np.testing.assert_allclose(float(loss(y, d)), expected, rtol=1e-5)
    assert ContrastiveLoss.from_config(loss.get_config()).margin == margin


def test_bad_margin():
    with pytest.raises(ValueError, match="margin must be > 0"):
        ContrastiveLoss(margin=0)


def test_labels_must_be_one_0_1_label_per_distance():
    d = np.array([0.1, 0.5, 1.2, 0.3], "float32")
    # These used to give a number: a broadcast label, or negative losses.
    with pytest.raises(ValueError, match=r"y_true must be \(N,\) 0/1 labels, one per distance"
                                         r".*got y_true shape \(1,\) for distance shape \(4,\)"):
        ContrastiveLoss()([1], d)
    with pytest.raises(ValueError, match=r"got y_true shape \(4, 2\)"):      # one-hot
        contrastive_loss(np.eye(2)[[1, 0, 0, 1]], d)
    with pytest.raises(ValueError, match=r"y_true must be 0/1.*got values \[2, 3\]"):
        contrastive_loss([2, 3, 0, 1], d)
    with pytest.raises(ValueError, match=r"got values \[-1(\.0)?\].*\(y \+ 1\) / 2"):
        ContrastiveLoss()(np.array([1, -1, -1, 1]), d)
    # (N, 1) labels and bool labels are fine.
    expected = float(contrastive_loss([1, 0, 0, 1], d))
    assert float(ContrastiveLoss()(np.array([[1], [0], [0], [1]]), d)) == pytest.approx(expected)
    assert float(contrastive_loss(np.array([True, False, False, True]), d)) == pytest.approx(
        expected)


def test_label_checks_leave_compiled_graphs_alone():
    import tensorflow as tf

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None], tf.float32)] * 2)
    def f(y, d):
        return contrastive_loss(y, d)

    assert float(f(tf.constant([1.0, 0.0]), tf.constant([0.5, 0.25]))) == pytest.approx(0.40625)


def test_an_empty_batch_is_a_clear_error():
    # Used to return NaN (contrastive_loss) or a TypeError from Keras (ContrastiveLoss).
    empty_labels, empty_distances = np.zeros((0,), "float32"), np.zeros((0,), "float32")
    with pytest.raises(ValueError, match=r"contrastive_loss: the batch is empty \(y_true has "
                                         r"shape \(0,\)\)"):
        contrastive_loss(empty_labels, empty_distances)
    with pytest.raises(ValueError, match=r"ContrastiveLoss: the batch is empty"):
        ContrastiveLoss()(empty_labels, empty_distances)
    with pytest.raises(ValueError, match=r"contrastive_loss: the batch is empty"):
        contrastive_loss([], [])
