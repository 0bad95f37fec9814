"""Triplet losses against a loop-based NumPy reimplementation of TF-Addons'
documented semantics (`triplet_semihard_loss`, `triplet_hard_loss`)."""

import math

import numpy as np
import pytest

from mmtl_tf.losses import (TripletLoss, TripletMarginLoss, pairwise_distance, triplet_loss,
                            triplet_margin_loss)


def np_distances(x, distance):
    n = len(x)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            diff = x[i] - x[j]
            if distance == "l2":
                d[i, j] = math.sqrt(float(np.dot(diff, diff)))
            elif distance == "squared_l2":
                d[i, j] = float(np.dot(diff, diff))
            else:
                cos = float(np.dot(x[i], x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])))
                d[i, j] = max(1.0 - cos, 0.0)
    return d


def np_semi_hard(labels, x, margin, distance, branches=None):
    d = np_distances(x, distance)
    n = len(labels)
    total, count = 0.0, 0
    for a in range(n):
        negatives = [d[a, k] for k in range(n) if labels[k] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            count += 1
            farther = [v for v in negatives if v > d[a, p]]
            if farther:
                negative = min(farther)
                branch = "semi-hard"
            elif negatives:
                negative = max(negatives)
                branch = "farthest"
            else:
                negative = min(d[a])  # TF-Addons' masked maximum without any negative
                branch = "none"
            if branches is not None:
                branches.add(branch)
            total += max(margin + d[a, p] - negative, 0.0)
    return total / count if count else 0.0


def np_batch_hard(labels, x, margin, distance):
    d = np_distances(x, distance)
    n = len(labels)
    if not any(labels[a] == labels[p] for a in range(n) for p in range(n) if a != p):
        return 0.0
    values = []
    for a in range(n):
        positives = [d[a, p] for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [d[a, k] for k in range(n) if labels[k] != labels[a]]
        hardest_positive = max(positives) if positives else min(d[a])
        hardest_negative = min(negatives) if negatives else max(d[a])
        gap = hardest_positive - hardest_negative
        values.append(math.log1p(math.exp(gap)) if margin is None else max(gap + margin, 0.0))
    return sum(values) / n


def np_batch_all(labels, x, margin, distance):
    d = np_distances(x, distance)
    n = len(labels)
    terms = []
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for k in range(n):
                if labels[k] == labels[a]:
                    continue
                gap = d[a, p] - d[a, k]
                terms.append(math.log1p(math.exp(gap)) if margin is None else
                             max(gap + margin, 0.0))
    if margin is None:
        return sum(terms) / len(terms) if terms else 0.0
    positive = [t for t in terms if t > 1e-16]
    return sum(positive) / len(positive) if positive else 0.0


def _batch(seed, n=12, dim=4, classes=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    labels[-1] = classes + 7  # one anchor without any positive
    x = rng.normal(size=(n, dim)).astype("float32")
    return labels, x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("distance", ["l2", "squared_l2", "cosine"])
def test_pairwise_distance_matches_loops(distance):
    labels, x = _batch(0)
    np.testing.assert_allclose(np.asarray(pairwise_distance(x * 3, distance)),
                               np_distances(x * 3, distance), atol=1e-5)
    # A 1-D input failed in a reduction ("Invalid reduction dimension").
    for bad in (x[0], x[None]):
        with pytest.raises(ValueError, match=r"batch of vectors \(N, D\); got shape"):
            pairwise_distance(bad, distance)


@pytest.mark.parametrize("distance", ["l2", "squared_l2"])
def test_pairwise_distance_keeps_its_precision_away_from_the_origin(distance):
    # In float32, |x|² + |y|² − 2 x·y of rows at 1e4 gave 0 for distances 0.5 and 3.
    x = np.array([[1e4, 0.0], [1e4 + 0.5, 0.0], [1e4, 3.0]], "float32")
    expected = np.array([[0, 0.5, 3], [0.5, 0, np.hypot(0.5, 3)], [3, np.hypot(0.5, 3), 0]])
    if distance == "squared_l2":
        expected = expected ** 2
    np.testing.assert_allclose(np.asarray(pairwise_distance(x, distance)), expected,
                               rtol=1e-5, atol=1e-5)
    assert float(triplet_loss(np.array([0, 0, 1]), x, 1.0, "batch_hard")) == 0.0


@pytest.mark.parametrize("distance", ["l2", "squared_l2", "cosine"])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_semi_hard_matches_tf_addons_semantics(distance, margin):
    branches = set()
    for seed in range(4):
        labels, x = _batch(seed)
        expected = np_semi_hard(labels, x, margin, distance, branches)
        got = float(triplet_loss(labels, x, margin, "semi_hard", distance))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            float(TripletLoss(margin, "semi_hard", distance)(labels, x)), expected,
            rtol=1e-5, atol=1e-6)
    # Both the semi-hard negative and the farthest-negative fallback were exercised.
    assert {"semi-hard", "farthest"} <= branches


@pytest.mark.parametrize("distance", ["l2", "squared_l2", "cosine"])
@pytest.mark.parametrize("margin", [0.5, None])
def test_batch_hard_matches_tf_addons_semantics(distance, margin):
    for seed in range(3):
        labels, x = _batch(seed)
        expected = np_batch_hard(labels, x, margin, distance)
        np.testing.assert_allclose(float(triplet_loss(labels, x, margin, "batch_hard", distance)),
                                   expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("margin", [0.3, None])
def test_batch_all_matches_reference(margin):
    for seed in range(3):
        labels, x = _batch(seed)
        expected = np_batch_all(labels, x, margin, "l2")
        np.testing.assert_allclose(float(triplet_loss(labels, x, margin, "batch_all")),
                                   expected, rtol=1e-5, atol=1e-6)


def test_closed_forms_and_degenerate_batches():
    # Two tight, well-separated classes: no margin violation, loss 0.
    x = np.array([[0.0, 0.0], [0.0, 0.1], [1.0, 0.0], [1.0, 0.1]], "float32")
    for mining in ("semi_hard", "batch_hard", "batch_all"):
        assert float(triplet_loss([0, 0, 1, 1], x, 0.5, mining)) == pytest.approx(0.0, abs=1e-7)
    # One anchor-positive pair at distance 1 and a negative at 3 (farther): semi-hard
    # picks it; margin 5 → 5 + 1 - 3 = 3 for both ordered pairs.
    x = np.array([[0.0], [1.0], [3.0]], "float32")
    assert float(triplet_loss([0, 0, 1], x, 5.0, "semi_hard")) == pytest.approx(
        np_semi_hard([0, 0, 1], x, 5.0, "l2"))
    # Every label distinct: no positive pair → a documented 0, never NaN.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype("float32")
    for mining in ("semi_hard", "batch_hard", "batch_all"):
        value = float(triplet_loss(np.arange(5), x, 1.0, mining))
        assert value == 0.0
    # One class only: no negatives; TF-Addons' fallback (row minimum = 0) is kept.
    labels = np.zeros(4, "int32")
    np.testing.assert_allclose(float(triplet_loss(labels, x[:4], 1.0, "semi_hard")),
                               np_semi_hard(labels, x[:4], 1.0, "l2"), rtol=1e-5)


def test_triplet_margin_loss_closed_form():
    d = np.array([[0.2, 1.0], [0.9, 0.5]], "float32")
    np.testing.assert_allclose(np.asarray(triplet_margin_loss(d, 0.5)), [0.0, 0.9], atol=1e-6)
    np.testing.assert_allclose(np.asarray(triplet_margin_loss(d, None)),
                               np.log1p(np.exp(d[:, 0] - d[:, 1])), rtol=1e-6)
    assert float(TripletMarginLoss(0.5)(None, d)) == pytest.approx(0.45)


def test_labels_must_be_one_class_id_per_embedding():
    e = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    # A single label used to broadcast to a number; one-hot labels gave
    # "Incompatible shapes: [8,8] vs. [4,4]".
    for loss in (TripletLoss(), lambda y, x: triplet_loss(y, x, mining="batch_hard")):
        with pytest.raises(ValueError, match=r"labels must be \(N,\) integer class ids, one per "
                                             r"embedding; got 1 labels \(shape \(1,\)\) for 4"):
            loss(np.array([0]), e)
        with pytest.raises(ValueError, match=r"not one-hot.*got labels shape \(4, 2\)"):
            loss(np.eye(2)[[0, 0, 1, 1]], e)
    with pytest.raises(ValueError, match=r"embeddings must be a \(N, D\) matrix"):
        triplet_loss([0, 1], np.ones((2, 3, 4), "float32"))
    # (N, 1) labels are fine.
    assert float(TripletLoss()(np.array([[0], [0], [1], [1]]), e)) == pytest.approx(
        float(triplet_loss([0, 0, 1, 1], e)), rel=1e-6)
    with pytest.raises(ValueError, match=r"distances must be \(N, 2\).*got shape \(2, 3\)"):
        triplet_margin_loss([[0.2, 1.0, 9.0], [0.9, 0.5, 9.0]])


def test_options_are_validated_and_round_trip():
    with pytest.raises(ValueError, match="mining='hardest' is not allowed; use one of "
                                         "'semi_hard', 'batch_hard', 'batch_all'"):
        TripletLoss(mining="hardest")
    with pytest.raises(ValueError, match="distance='L_2' is not allowed; use one of "
                                         "'l2', 'squared_l2', 'cosine'"):
        triplet_loss([0, 0], np.zeros((2, 2)), distance="L_2")
    # TF-Addons' names are refused with the name to use instead.
    for tfa_name, ours in [("L2", "l2"), ("squared-L2", "squared_l2"), ("angular", "cosine")]:
        with pytest.raises(ValueError, match=f"TF-Addons' distance_metric='{tfa_name}' "
                                             f"is distance='{ours}' here"):
            TripletLoss(distance=tfa_name)
    with pytest.raises(ValueError, match="margin=None .* not 'semi_hard'"):
        TripletLoss(margin=None, mining="semi_hard")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        TripletLoss(margin=-1.0)
    loss = TripletLoss(margin=None, mining="batch_hard", distance="cosine")
    config = TripletLoss.from_config(loss.get_config()).get_config()
    assert (config["margin"], config["mining"], config["distance"]) == (None, "batch_hard",
                                                                        "cosine")


def test_gradient_is_finite_with_duplicate_embeddings():
    import tensorflow as tf

    x = tf.Variable(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], "float32"))
    for mining in ("semi_hard", "batch_hard", "batch_all"):
        with tf.GradientTape() as tape:
            value = triplet_loss([0, 0, 1, 1], x, 1.0, mining)
        grad = tape.gradient(value, x)
        assert np.all(np.isfinite(grad.numpy())), mining


@pytest.mark.parametrize("mining", ["semi_hard", "batch_hard", "batch_all"])
def test_the_keras_loss_keeps_large_integer_labels_apart(mining):
    # Keras casts y_true to float32, where 16777216 and 16777217 are equal.
    labels = np.array([16777216, 16777217, 5, 5, 16777217, 7])
    x = np.random.default_rng(2).normal(size=(6, 3)).astype("float32")
    small = np.array([0, 1, 2, 2, 1, 3])  # the same classes as small ids
    expected = float(triplet_loss(small, x, 0.5, mining))
    assert float(triplet_loss(labels, x, 0.5, mining)) == pytest.approx(expected, abs=1e-6)
    loss = TripletLoss(margin=0.5, mining=mining)
    assert float(loss(labels, x)) == pytest.approx(expected, abs=1e-6)
    assert float(loss(labels[:, None], x)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("mining", ["semi_hard", "batch_hard", "batch_all"])
def test_an_empty_batch_is_a_clear_error(mining):
    # Used to be an InvalidArgumentError ("Cannot compute the max of an empty
    # tensor", or ArgMax's "Reduction axis 1 is empty" in TripletLoss) or NaN.
    labels, embeddings = np.zeros((0,), "int32"), np.zeros((0, 3), "float32")
    with pytest.raises(ValueError, match=r"triplet_loss: the batch is empty \(labels has "
                                         r"shape \(0,\)\)"):
        triplet_loss(labels, embeddings, mining=mining)
    with pytest.raises(ValueError, match=r"TripletLoss: the batch is empty"):
        TripletLoss(mining=mining)(labels, embeddings)


def test_an_empty_batch_of_explicit_triplets_is_a_clear_error():
    # TripletMarginLoss used to hand back an empty tensor (shape (0,)) instead
    # of a loss, and triplet_margin_loss an empty (0,) whose mean is NaN.
    empty = np.zeros((0, 2), "float32")
    with pytest.raises(ValueError, match=r"triplet_margin_loss: the batch is empty \(distances "
                                         r"has shape \(0, 2\)\)"):
        triplet_margin_loss(empty)
    for margin in (0.5, None):
        with pytest.raises(ValueError, match=r"TripletMarginLoss: the batch is empty \(y_pred "
                                             r"has shape \(0, 2\)\)"):
            TripletMarginLoss(margin)(None, empty)
    # One triplet is still fine.
    assert float(TripletMarginLoss(0.5)(None, np.array([[0.9, 0.5]], "float32"))) == \
        pytest.approx(0.9)


def test_an_empty_batch_is_not_checked_in_a_graph_of_unknown_batch_size():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, 3], tf.float32)])
    def f(labels, embeddings):
        return triplet_loss(labels, embeddings, mining="batch_all")

    assert math.isnan(float(f(tf.zeros([0], tf.int32), tf.zeros([0, 3]))))  # as documented
    assert float(f(tf.constant([0, 0, 1]), tf.constant(np.eye(3, dtype="float32")))) >= 0.0
