import math

import keras
import numpy as np
import pytest

from mmtl_tf.losses import ClipLoss, SigLipLoss, clip_loss, sigmoid_loss


def _unit(rng, n, d):
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def numpy_clip_loss(a, b, scale):
    """Independent reference: explicit loops over rows and columns."""
    n = len(a)
    total_ab = total_ba = 0.0
    for i in range(n):
        row = [scale * float(np.dot(a[i], b[j])) for j in range(n)]
        top = max(row)
        total_ab += -(row[i] - top - math.log(sum(math.exp(v - top) for v in row)))
        col = [scale * float(np.dot(b[i], a[j])) for j in range(n)]
        top = max(col)
        total_ba += -(col[i] - top - math.log(sum(math.exp(v - top) for v in col)))
    return 0.5 * (total_ab / n + total_ba / n)


def numpy_sigmoid_loss(a, b, scale, bias):
    n = len(a)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            logit = scale * float(np.dot(a[i], b[j])) + bias
            total += math.log1p(math.exp(-z * logit))
    return total / n


@pytest.mark.parametrize("n,d,scale", [(2, 3, 1.0), (7, 5, 1 / 0.07), (16, 8, 100.0)])
def test_clip_loss_matches_numpy_reference(n, d, scale):
    rng = np.random.default_rng(n)
    a, b = _unit(rng, n, d), _unit(rng, n, d)
    expected = numpy_clip_loss(a, b, scale)
    np.testing.assert_allclose(float(clip_loss(a, b, scale)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(ClipLoss()(None, (a, b, scale))), expected, rtol=1e-5)
    # Symmetric in the two modalities; a dict of DualEncoder outputs works too.
    np.testing.assert_allclose(float(clip_loss(b, a, scale)), expected, rtol=1e-5)
    outputs = {"image_embeddings": a, "text_embeddings": b,
               "logit_scale": np.full((n,), scale, "float32")}
    np.testing.assert_allclose(float(ClipLoss()(np.zeros(n), outputs)), expected, rtol=1e-5)


def test_clip_loss_closed_forms():
    n, s = 5, 3.0
    eye = np.eye(n, dtype="float32")
    # Orthonormal matched pairs: each row is softmax(s on the diagonal, 0 elsewhere).
    expected = -math.log(math.exp(s) / (math.exp(s) + n - 1))
    np.testing.assert_allclose(float(clip_loss(eye, eye, s)), expected, rtol=1e-6)
    # Identical embeddings for every row: every logit equal, loss = log(n).
    same = np.tile(eye[:1], (n, 1))
    np.testing.assert_allclose(float(clip_loss(same, same, s)), math.log(n), rtol=1e-6)


def test_clip_loss_is_float32_for_half_inputs_and_weights_pairs():
    rng = np.random.default_rng(0)
    a, b = _unit(rng, 6, 4), _unit(rng, 6, 4)
    value = clip_loss(a.astype("float16"), b.astype("float16"), 10.0)
    assert value.dtype == "float32"
    np.testing.assert_allclose(float(value), numpy_clip_loss(a, b, 10.0), rtol=2e-3)
    weights = np.array([1, 1, 1, 0, 0, 0], "float32")
    weighted = float(ClipLoss()(None, (a, b, 10.0), sample_weight=weights))
    unweighted = float(ClipLoss(reduction="none")(None, (a, b, 10.0))[:3].numpy().sum() / 6)
    np.testing.assert_allclose(weighted, unweighted, rtol=1e-6)


def test_mismatched_numbers_of_images_and_captions_are_an_error():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same number of rows.*got 4 and 3"):
        clip_loss(_unit(rng, 4, 3), _unit(rng, 3, 3), 1.0)
    with pytest.raises(ValueError, match="same embedding width"):
        ClipLoss()(None, (_unit(rng, 4, 3), _unit(rng, 4, 5), 1.0))
    with pytest.raises(ValueError, match="two '<modality>_embeddings' entries"):
        ClipLoss()(None, {"image_embeddings": _unit(rng, 4, 3), "logit_scale": 1.0})


@pytest.mark.parametrize("n,scale,bias", [(3, 1.0, 0.0), (9, 10.0, -10.0)])
def test_sigmoid_loss_matches_numpy_reference(n, scale, bias):
    rng = np.random.default_rng(n)
    a, b = _unit(rng, n, 4), _unit(rng, n, 4)
    expected = numpy_sigmoid_loss(a, b, scale, bias)
    np.testing.assert_allclose(float(sigmoid_loss(a, b, scale, bias)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(SigLipLoss()(None, (a, b, scale, bias))), expected,
                               rtol=1e-5)


def test_sigmoid_loss_closed_form():
    # Orthonormal pairs, scale 1, bias 0: per row log(1 + e^-1) + (n - 1) log 2.
    n = 4
    eye = np.eye(n, dtype="float32")
    expected = math.log1p(math.exp(-1.0)) + (n - 1) * math.log(2.0)
    np.testing.assert_allclose(float(sigmoid_loss(eye, eye, 1.0, 0.0)), expected, rtol=1e-6)


def test_loss_classes_round_trip_and_validate():
    for cls in (ClipLoss, SigLipLoss):
        loss = cls(gather_across_replicas=False)
        again = cls.from_config(loss.get_config())
        assert again.gather_across_replicas is False
        assert keras.losses.deserialize(keras.losses.serialize(loss)).get_config() == \
            loss.get_config()
        with pytest.raises(ValueError, match="gather_across_replicas must be True or False"):
            cls(gather_across_replicas="yes")


@pytest.mark.parametrize("fn,cls,extra", [(clip_loss, ClipLoss, (10.0,)),
                                          (sigmoid_loss, SigLipLoss, (10.0, -10.0))])
def test_an_empty_batch_is_a_clear_error(fn, cls, extra):
    # Used to be "Must have at least one class, but got logits shape [0,0]" (CLIP)
    # or NaN (SigLIP).
    empty = np.zeros((0, 4), "float32")
    with pytest.raises(ValueError, match=rf"{fn.__name__}: the batch is empty \(a has shape "
                                         r"\(0, 4\)\)"):
        fn(empty, empty, *extra)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: the batch is empty"):
        cls()(None, (empty, empty) + extra)


def test_logit_scale_and_bias_must_be_one_number():
    # A vector logit_scale used to be averaged silently (clip_loss gave 0.0 for
    # [1, 100, 10]).
    e = np.eye(3, dtype="float32")
    with pytest.raises(ValueError, match=r"clip_loss: logit_scale must be one number "
                                         r"\(shape \(\) or \(1,\)\); got shape \(3,\)"):
        clip_loss(e, e, np.array([1.0, 100.0, 10.0], "float32"))
    with pytest.raises(ValueError, match=r"sigmoid_loss: logit_scale .*got shape \(1, 1\)"):
        sigmoid_loss(e, e, np.ones((1, 1), "float32"), 0.0)
    with pytest.raises(ValueError, match=r"sigmoid_loss: logit_bias .*got shape \(2,\)"):
        sigmoid_loss(e, e, 1.0, np.array([1.0, 2.0], "float32"))
    # Shape (1,) is one number.
    assert float(clip_loss(e, e, np.array([10.0], "float32"))) == pytest.approx(
        float(clip_loss(e, e, 10.0)))
    # The Loss classes also take DualEncoder's per-row copies, (N,), but no other vector.
    copies = np.full((3,), 10.0, "float32")
    assert float(ClipLoss()(None, (e, e, copies))) == pytest.approx(float(clip_loss(e, e, 10.0)))
    with pytest.raises(ValueError, match=r"ClipLoss: logit_scale .*one copy per row, shape "
                                         r"\(3,\).*got shape \(2,\)"):
        ClipLoss()(None, (e, e, np.array([10.0, 10.0], "float32")))
    with pytest.raises(ValueError, match=r"SigLipLoss: logit_bias of shape \(3,\) holds "
                                         r"3 different values \(0.0, 1.0, 2.0\)"):
        SigLipLoss()(None, (e, e, copies, np.array([0.0, 1.0, 2.0], "float32")))
    # The message lists the distinct values, not the first five copies.
    e6 = np.eye(6, dtype="float32")
    with pytest.raises(ValueError, match=r"logit_scale of shape \(6,\) holds 2 different "
                                         r"values \(5.0, 6.0\)"):
        ClipLoss()(None, (e6, e6, np.array([5, 5, 5, 5, 5, 6], "float32")))
    # Equal NaN copies are copies (np.ptp said "different values ([nan, nan, nan])").
    assert np.isnan(float(ClipLoss()(None, (e, e, np.full((3,), np.nan, "float32")))))


def test_a_logit_scale_of_unknown_length_must_hold_one_value_at_run_time():
    import tensorflow as tf

    spec = tf.TensorSpec([None, 3], tf.float32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([None], tf.float32)])
    def f(a, b, scale):
        return clip_loss(a, b, scale)

    e = tf.constant(np.eye(3, dtype="float32"))
    assert float(f(e, e, tf.constant([10.0]))) == pytest.approx(float(clip_loss(e, e, 10.0)))
    with pytest.raises(tf.errors.InvalidArgumentError):  # not averaged: must be one value
        f(e, e, tf.constant([10.0, 1.0, 1.0]))
