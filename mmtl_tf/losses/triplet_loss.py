"""Triplet loss with online mining: `triplet_loss`, `TripletLoss`, and the
explicit-triplet form `triplet_margin_loss` / `TripletMarginLoss` used by the
triplet network."""

import keras
from keras import ops

from mmtl_tf._input_checks import check_not_empty, dims_differ, static_shape
from mmtl_tf.losses.pairwise_distance import check_distance, pairwise_distance

MININGS = ("semi_hard", "batch_hard", "batch_all")


def _check_options(margin, mining, distance):
    if mining not in MININGS:
        raise ValueError(f"mining={mining!r} is not allowed; use one of "
                         f"{', '.join(map(repr, MININGS))}.")
    check_distance(distance)
    if margin is None:
        if mining == "semi_hard":
            raise ValueError("margin=None (the soft margin log(1 + exp(d_ap - d_an))) is "
                             "defined for mining='batch_hard' and 'batch_all', not "
                             "'semi_hard' (whose negatives are chosen relative to a margin "
                             "violation); give a float margin.")
    elif not float(margin) >= 0:
        raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}.")


def _check_labels(labels, embeddings):
    """Static shapes: labels (N,) (or (N, 1)) class ids, embeddings (N, D)."""
    l_shape, e_shape = static_shape(labels), static_shape(embeddings)
    if e_shape is not None and len(e_shape) != 2:
        raise ValueError(f"embeddings must be a (N, D) matrix; got shape {e_shape}.")
    if l_shape is None:
        return
    if not (len(l_shape) == 1 or (len(l_shape) == 2 and l_shape[1] == 1)):
        raise ValueError(f"labels must be (N,) integer class ids, one per embedding (not "
                         f"one-hot: take the argmax); got labels shape {l_shape} for "
                         f"embeddings shape {e_shape}.")
    if e_shape is not None and dims_differ(l_shape[0], e_shape[0]):
        raise ValueError(f"labels must be (N,) integer class ids, one per embedding; got "
                         f"{l_shape[0]} labels (shape {l_shape}) for {e_shape[0]} "
                         f"embeddings (shape {e_shape}).")


def triplet_loss_per_anchor(labels, embeddings, margin=1.0, mining="semi_hard",
                            distance="l2"):
    """Per-anchor values whose mean is `triplet_loss` (shape (N,), float32).

    For `"semi_hard"` and `"batch_all"` the value of anchor a is
    `N · Σ(a's terms) / (number of terms in the batch)`, so that the mean over
    anchors is the loss and Keras' `sum_over_batch_size` reduction (and its
    division by the number of replicas) stays exact. An empty batch raises a
    `ValueError` when its size is static (see `triplet_loss`).
    """
    _check_options(margin, mining, distance)
    _check_labels(labels, embeddings)
    check_not_empty("triplet_loss", labels=labels, embeddings=embeddings)
    labels = ops.reshape(labels, (-1,))
    d = pairwise_distance(embeddings, distance)
    n = ops.shape(d)[0]
    n_float = ops.cast(n, "float32")
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    eye = ops.cast(ops.eye(n), "bool")
    positive = ops.logical_and(same, ops.logical_not(eye))          # [a, p]
    negative = ops.logical_not(same)                                # [a, n]
    pos_f, neg_f = ops.cast(positive, "float32"), ops.cast(negative, "float32")
    num_pairs = ops.sum(pos_f)
    has_pairs = num_pairs > 0

    if mining == "batch_hard":
        row_min = ops.min(d, axis=1)
        row_max = ops.max(d, axis=1)
        hardest_positive = ops.where(ops.any(positive, axis=1),
                                     ops.max(ops.where(positive, d, -1.0), axis=1), row_min)
        hardest_negative = ops.where(ops.any(negative, axis=1),
                                     ops.min(ops.where(negative, d, row_max[:, None] + 1.0),
                                             axis=1), row_max)
        gap = hardest_positive - hardest_negative
        values = ops.softplus(gap) if margin is None else ops.relu(gap + float(margin))
        return ops.where(has_pairs, values, 0.0)

    d_ap = ops.expand_dims(d, 2)     # [a, p, 1]
    d_an = ops.expand_dims(d, 1)     # [a, 1, n]
    if mining == "semi_hard":
        # Negatives farther than the positive: the closest of them; if none,
        # the farthest negative of the anchor; if the anchor has no negative at
        # all, its smallest distance (TF-Addons' masked maximum).
        farther = ops.logical_and(ops.expand_dims(negative, 1), d_an > d_ap)   # [a, p, n]
        big = ops.max(d) + 1.0
        closest_farther = ops.min(ops.where(farther, ops.broadcast_to(d_an, ops.shape(farther)),
                                            big), axis=2)                        # [a, p]
        has_farther = ops.any(farther, axis=2)
        farthest_negative = ops.where(ops.any(negative, axis=1),
                                      ops.max(ops.where(negative, d, -1.0), axis=1),
                                      ops.min(d, axis=1))                        # [a]
        chosen = ops.where(has_farther, closest_farther, farthest_negative[:, None])
        terms = ops.relu((float(margin) + d - chosen) * pos_f)                  # [a, p]
        per_anchor = ops.sum(terms, axis=1)
        return ops.where(has_pairs, per_anchor * n_float / ops.maximum(num_pairs, 1.0), 0.0)

    # batch_all
    valid = ops.expand_dims(pos_f, 2) * ops.expand_dims(neg_f, 1)            # [a, p, n]
    gap = d_ap - d_an
    if margin is None:
        terms = ops.softplus(gap) * valid
        count = ops.sum(valid)
    else:
        terms = ops.relu(gap + float(margin)) * valid
        count = ops.sum(ops.cast(terms > 1e-16, "float32"))
    per_anchor = ops.sum(terms, axis=(1, 2))
    return ops.where(count > 0, per_anchor * n_float / ops.maximum(count, 1.0), 0.0)


def triplet_loss(labels, embeddings, margin=1.0, mining="semi_hard", distance="l2"):
    """Triplet loss with triplets mined inside the batch, computed in float32.

    For anchor a, positive p (same label, p ≠ a) and negative n (other label)
    the term is `max(d(a, p) − d(a, n) + margin, 0)`. Mining strategies:

    * `"semi_hard"` (FaceNet; exactly TF-Addons' `triplet_semihard_loss`): for
      each anchor–positive pair, the closest negative farther than the
      positive; if there is none, the anchor's farthest negative. Mean over all
      anchor–positive pairs (including those with zero loss).
    * `"batch_hard"` (Hermans et al.; exactly TF-Addons' `triplet_hard_loss`):
      per anchor, the farthest positive and the closest negative; mean over all
      anchors. An anchor without a positive uses its smallest distance (0) as
      the positive distance, as TF-Addons does. `margin=None` is the soft
      margin `log(1 + exp(d_ap − d_an))`.
    * `"batch_all"`: every valid triplet; the mean over those with a positive
      loss (`margin=None`: mean softplus over all valid triplets).

    A batch without any positive pair (every label distinct) gives 0 for every
    strategy, not NaN: use a class-balanced sampler
    (`mmtl_tf.data.class_balanced_batches`) so that every batch has positives.

    An empty batch (N = 0) has no loss: it raises a `ValueError` naming the
    loss when N is known statically (NumPy or eager inputs, or a graph traced
    with batch size 0). Inside a compiled graph whose batch size is unknown
    (None) it is not checked and the loss comes out NaN.

    Distances: `"l2"` (Euclidean; TF-Addons' default `distance_metric="L2"`),
    `"squared_l2"` (TF-Addons' `"squared-L2"`), `"cosine"` (1 − cos;
    TF-Addons' `"angular"`).

    Args:
        labels: (N,) int tensor. Class of each row (one per embedding; a
            count that differs from N, or one-hot (N, C) labels, raise a
            `ValueError`).
        embeddings: (N, D) float tensor. Usually L2-normalised.
        margin: float or None. The margin (None: soft margin, see above).
        mining: str. `"semi_hard"`, `"batch_hard"` or `"batch_all"`.
        distance: str. `"l2"`, `"squared_l2"` or `"cosine"`.

    Returns:
        A float32 scalar.

    Example:
        >>> import numpy as np
        >>> from mmtl_tf.losses import triplet_loss
        >>> x = np.array([[0.0, 0.0], [0.0, 0.1], [1.0, 0.0], [1.0, 0.1]])
        >>> round(float(triplet_loss([0, 0, 1, 1], x, margin=0.5)), 4)
        0.0

    References:
        Schroff, Kalenichenko and Philbin 2015, "FaceNet"; Hermans, Beyer and
        Leibe 2017, "In Defense of the Triplet Loss for Person
        Re-Identification"; TF-Addons `triplet_semihard_loss`,
        `triplet_hard_loss`.
    """
    return ops.mean(triplet_loss_per_anchor(labels, embeddings, margin, mining, distance))


@keras.saving.register_keras_serializable(package="mmtl_tf")
class TripletLoss(keras.losses.Loss):
    """`triplet_loss` as a Keras loss: `y_true` labels (N,), `y_pred` embeddings (N, D).

    Options are checked here: an unknown mining strategy or distance raises a
    `ValueError` naming the allowed values. Train with class-balanced batches
    (`mmtl_tf.data.class_balanced_batches`) so that mining finds positives.
    Under `tf.distribute` each replica mines inside its own share of the batch.
    An empty batch raises a `ValueError` when its size is static (NaN inside
    a compiled graph with unknown batch size; see `triplet_loss`).

    Args:
        margin: float or None. None: soft margin (`"batch_hard"`, `"batch_all"`).
        mining: str. `"semi_hard"`, `"batch_hard"` or `"batch_all"`.
        distance: str. `"l2"`, `"squared_l2"` or `"cosine"`.
        name: str.
        reduction: str.

    Example:
        >>> import mmtl_tf
        >>> loss = mmtl_tf.losses.TripletLoss(margin=0.2, mining="batch_hard")
        >>> loss.get_config()["mining"]
        'batch_hard'

    References:
        Schroff et al. 2015 (FaceNet); Hermans et al. 2017.
    """

    def __init__(self, margin=1.0, mining="semi_hard", distance="l2", name="triplet_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        _check_options(margin, mining, distance)
        self.margin = None if margin is None else float(margin)
        self.mining = mining
        self.distance = distance

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras casts y_true to the loss dtype (float32), in which integer ids
        # from 2**24 on collide (16777216 == 16777217): pass each label's first
        # position in the batch instead, the same classes as small exact numbers.
        _check_labels(y_true, y_pred)
        check_not_empty("TripletLoss", y_true=y_true, y_pred=y_pred)
        labels = ops.reshape(ops.convert_to_tensor(y_true), (-1,))
        same = ops.cast(ops.equal(labels[:, None], labels[None, :]), "int32")
        return super().__call__(ops.argmax(same, axis=1), y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return triplet_loss_per_anchor(y_true, y_pred, self.margin, self.mining, self.distance)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "mining": self.mining,
                "distance": self.distance}


def triplet_margin_loss(distances, margin=1.0):
    """Loss of explicit (anchor, positive, negative) triplets, per triplet.

    Args:
        distances: (N, 2) float tensor: `d(anchor, positive)`,
            `d(anchor, negative)` (the output of `build_triplet_network`).
        margin: float or None. `max(d_ap − d_an + margin, 0)`; None for the soft
            margin `log(1 + exp(d_ap − d_an))`.

    Returns:
        float32 tensor (N,). An empty batch (N = 0) raises a `ValueError`
        naming the loss when N is known statically (NumPy or eager inputs, or
        a graph traced with batch size 0); inside a compiled graph whose batch
        size is unknown (None) it is not checked (the result is empty).

    Example:
        >>> from mmtl_tf.losses import triplet_margin_loss
        >>> [round(float(v), 4) for v in triplet_margin_loss([[0.2, 1.0], [0.9, 0.5]], margin=0.5)]
        [0.0, 0.9]

    References:
        Schroff et al. 2015 (FaceNet), equation (1).
    """
    if margin is not None and not float(margin) >= 0:
        raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}.")
    shape = static_shape(distances)
    if shape is not None and (len(shape) != 2 or dims_differ(shape[1], 2)):
        raise ValueError(f"distances must be (N, 2): d(anchor, positive), d(anchor, "
                         f"negative) per triplet; got shape {shape}.")
    check_not_empty("triplet_margin_loss", distances=distances)
    distances = ops.cast(distances, "float32")
    gap = distances[:, 0] - distances[:, 1]
    return ops.softplus(gap) if margin is None else ops.relu(gap + float(margin))


@keras.saving.register_keras_serializable(package="mmtl_tf")
class TripletMarginLoss(keras.losses.Loss):
    """`triplet_margin_loss` as a Keras loss: `y_pred` (N, 2) distances, `y_true` ignored.

    An empty batch raises a `ValueError` when its size is static (inside a
    compiled graph with unknown batch size it is not checked and the loss
    comes out 0; see `triplet_margin_loss`).

    Args:
        margin: float or None. None: soft margin.
        name: str.
        reduction: str.

    Example:
        >>> import mmtl_tf
        >>> loss = mmtl_tf.losses.TripletMarginLoss(margin=0.5)
        >>> round(float(loss(None, [[0.2, 1.0], [0.9, 0.5]])), 4)
        0.45

    References:
        Schroff et al. 2015 (FaceNet).
    """

    def __init__(self, margin=1.0, name="triplet_margin_loss", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        if margin is not None and not float(margin) >= 0:
            raise ValueError(f"margin must be >= 0 or None (soft margin), got {margin}.")
        self.margin = None if margin is None else float(margin)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Explicit triplets carry no labels: y_true may be None.
        check_not_empty("TripletMarginLoss", y_pred=y_pred)
        return super().__call__(0.0 if y_true is None else y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return triplet_margin_loss(y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
