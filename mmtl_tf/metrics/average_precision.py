"""Multi-label average precision (per class) and its mean, mAP, in `keras.ops`."""

import keras
import numpy as np
from keras import ops

from mmtl_tf._input_checks import concrete_value, dims_differ
from mmtl_tf.errors import check_count


def _check_shapes(y_true, y_score, true_name, score_name, num_classes=None):
    """Static checks: y_score is (N, C) (or (N,) when num_classes is None),
    y_true has the same shape, C equals num_classes when given."""
    t, s = tuple(y_true.shape), tuple(y_score.shape)
    if num_classes is not None:
        if len(s) != 2 or s[-1] not in (None, num_classes):
            raise ValueError(f"{score_name} must be (N, num_classes={num_classes}) scores; "
                             f"got shape {s}.")
        if len(t) != 2 or t[-1] not in (None, num_classes):
            raise ValueError(f"{true_name} must be (N, num_classes={num_classes}) 0/1 labels "
                             f"(multi-hot, not class indices); got shape {t}.")
    elif len(s) not in (1, 2):
        raise ValueError(f"{score_name} must be (N, C) scores or (N,) for one class; "
                         f"got shape {s}.")
    if len(t) != len(s) or any(dims_differ(a, b) for a, b in zip(t, s)):
        raise ValueError(f"{true_name} and {score_name} must have the same shape (0/1 labels "
                         f"for each score, not class indices); got {t} and {s}.")
    if s and s[0] == 0:
        # (It failed in Keras' segment_sum: "segment_ids and data should have
        # same leading dimension".)
        raise ValueError(f"{score_name} has no rows (shape {s}): average precision needs at "
                         "least one example.")


def _check_values(y_true, y_score, true_name, score_name):
    """Value checks on concrete inputs: labels 0/1, scores finite."""
    labels, scores = concrete_value(y_true), concrete_value(y_score)
    if labels is not None and not np.isin(labels, (0, 1)).all():
        bad = sorted(set(np.unique(labels[~np.isin(labels, (0, 1))]).tolist()))[:5]
        raise ValueError(f"{true_name} must hold 0/1 labels; got values {bad}.")
    if scores is not None and not np.all(np.isfinite(scores.astype("float64"))):
        bad = np.argwhere(~np.isfinite(scores.astype("float64")))[0].tolist()
        raise ValueError(f"{score_name} has non-finite values (first at index {bad}).")


def _invalid(y_true, y_score):
    """float32 scalar: NaN if any label is not 0/1 or any score is not finite,
    else 0 (adding it makes the result NaN where values cannot be checked)."""
    bad = ops.logical_or(
        ops.any(ops.logical_and(ops.not_equal(y_true, 0.0), ops.not_equal(y_true, 1.0))),
        ops.logical_not(ops.all(ops.isfinite(y_score))))
    return ops.where(bad, float("nan"), 0.0)


def _grouped_average_precision(positives, counts):
    """AP from per-group positive and total counts, groups in descending score order.

    Args:
        positives: (C, G) float. Positives in each tie group (or score bin).
        counts: (C, G) float. Items in each group.

    Returns:
        (ap (C,), number of positives (C,)).
    """
    # Counts may be fractional (weighted examples): 0/0 is 0, nothing else
    # is clamped (dividing by max(count, 1) scaled AP by weights below 1).
    tp = ops.cumsum(positives, axis=1)
    seen = ops.cumsum(counts, axis=1)
    precision = ops.divide_no_nan(tp, seen)
    n_pos = ops.sum(positives, axis=1)
    ap = ops.divide_no_nan(ops.sum(positives * precision, axis=1), n_pos)
    return ap, n_pos


def average_precision(y_true, y_score):
    """Average precision of each class (column), exactly as scikit-learn defines it.

    AP = Σ_k (R_k − R_{k−1}) · P_k over the distinct score thresholds k in
    decreasing order (no interpolation); tied scores form one threshold.
    Equivalent to `sklearn.metrics.average_precision_score(y_true, y_score,
    average=None)`.

    Args:
        y_true: (N, C) 0/1 labels (multi-hot), or (N,) for one class. Class
            indices are refused: the shapes must match.
        y_score: same shape; finite scores or probabilities, higher = more likely.

    Returns:
        float32 (C,) (or a scalar for 1-D input). Classes without any positive
        get 0 (see `mean_average_precision`, which leaves them out). float64
        scores (also Python lists of floats) are ranked in float64 (scores
        that differ only beyond float32's precision are not tied), others in
        float32.

    Raises:
        ValueError: shapes differ or are not (N,) / (N, C); for concrete
            inputs (NumPy, eager), labels other than 0/1 or non-finite scores.
            Symbolic inputs (inside `tf.function` / XLA) cannot be checked for
            values: there such inputs make the result NaN.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> float(mmtl_tf.metrics.average_precision(
        ...     np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])))
        0.8333...

    References:
        Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge",
        IJCV 2010 (mAP for multi-label image classification); scikit-learn's
        `average_precision_score`.
    """
    if isinstance(y_score, (list, tuple)):
        # Python floats are float64; Keras would make them float32.
        y_score = np.asarray(y_score)
    y_true = ops.convert_to_tensor(y_true)
    y_score = ops.convert_to_tensor(y_score)
    _check_shapes(y_true, y_score, "y_true", "y_score")
    _check_values(y_true, y_score, "y_true", "y_score")
    one_class = len(y_score.shape) == 1
    if one_class:
        y_true, y_score = y_true[:, None], y_score[:, None]
    # float64 scores are ranked in float64: in float32, probabilities such as
    # 0.99999999998 and 0.99999998 both round to 1.0 and were counted as tied.
    dtype = "float64" if keras.backend.standardize_dtype(y_score.dtype) == "float64" else "float32"
    y_true = ops.cast(y_true, dtype)
    y_score = ops.cast(y_score, dtype)
    invalid = ops.cast(_invalid(y_true, y_score), dtype)
    y_score = ops.where(ops.isfinite(y_score), y_score, 0.0)
    n, c = ops.shape(y_score)[0], ops.shape(y_score)[1]
    # Sort each column by decreasing score.
    order = ops.argsort(-y_score, axis=0)
    scores = ops.take_along_axis(y_score, order, axis=0)
    labels = ops.take_along_axis(y_true, order, axis=0)
    # Tie groups: a new group starts where the score changes.
    starts = ops.concatenate(
        [ops.ones((1, c), "int32"), ops.cast(ops.not_equal(scores[1:], scores[:-1]), "int32")],
        axis=0)
    group = ops.cumsum(starts, axis=0) - 1                    # (N, C), 0-based per column
    ids = ops.transpose(group + ops.arange(c, dtype="int32")[None, :] * n)   # (C, N)
    flat_ids = ops.reshape(ids, (-1,))
    positives = ops.segment_sum(ops.reshape(ops.transpose(labels), (-1,)), flat_ids,
                                num_segments=n * c)
    counts = ops.segment_sum(ops.ones_like(flat_ids, dtype), flat_ids, num_segments=n * c)
    ap, _ = _grouped_average_precision(ops.reshape(positives, (c, n)), ops.reshape(counts, (c, n)))
    ap = ops.cast(ap + invalid, "float32")
    return ap[0] if one_class else ap


def mean_average_precision(y_true, y_score):
    """mAP: the mean of `average_precision` over the classes that have positives.

    Args:
        y_true: (N, C) 0/1 labels.
        y_score: (N, C) scores.

    Returns:
        float32 scalar. Classes with no positive example are left out of the
        mean (their AP is undefined); 0 if no class has one.
    """
    ap = average_precision(y_true, y_score)
    has_pos = ops.cast(ops.sum(ops.cast(ops.convert_to_tensor(y_true), "float32"), axis=0) > 0,
                       "float32")
    return ops.sum(ap * has_pos) / ops.maximum(ops.sum(has_pos), 1.0)


@keras.saving.register_keras_serializable(package="mmtl_tf")
class MeanAveragePrecision(keras.metrics.Metric):
    """Streaming multi-label mAP over an epoch (Keras metric).

    Keeps, per class, a histogram of the scores of positive and of negative
    examples, each score rounded to the nearest multiple of 1/num_bins; the
    result is the exact average precision of the rounded scores (scores that
    round alike count as tied). It equals `mean_average_precision` when the
    scores are multiples of 1/num_bins; on raw scores the difference comes only
    from scores closer than 1/num_bins being merged (a few 1e-3 at most in our
    tests with the default 1,000 bins). Classes without positives are left out of the
    mean. Works inside `fit` under XLA (`jit_compile=True`).

    `update_state(y_true, y_pred)` takes y_true and y_pred both of shape
    (N, num_classes): multi-hot 0/1 labels (not class indices) and scores.
    Other shapes raise a ValueError. `sample_weight` may be one weight per
    example, (N,) or (N, 1), or one per label, (N, num_classes): a weight w
    counts an example (or label) as w examples. Concrete (eager / NumPy) labels other than
    0/1 or non-finite scores raise a ValueError too; inside a compiled `fit`
    they cannot be checked and make the result NaN until `reset_state`.

    Args:
        num_classes: int. Output width.
        num_bins: int. Resolution: scores (clipped to [0, 1]) are rounded to
            multiples of 1/num_bins.
        name: str.

    Example:
        >>> import mmtl_tf
        >>> m = mmtl_tf.metrics.MeanAveragePrecision(num_classes=20)
        >>> model.compile(loss="binary_crossentropy", metrics=[m])  # doctest: +SKIP

    References:
        Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010.
    """

    def __init__(self, num_classes, num_bins=1000, name="mAP", **kwargs):
        super().__init__(name=name, **kwargs)
        num_classes = check_count("num_classes", num_classes)
        if int(num_bins) < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}.")
        self.num_classes, self.num_bins = num_classes, int(num_bins)
        shape = (self.num_classes * (self.num_bins + 1),)
        self.positives = self.add_variable(shape=shape, initializer="zeros", name="positives")
        self.counts = self.add_variable(shape=shape, initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
        _check_shapes(y_true, y_pred, "y_true", "y_pred", self.num_classes)
        _check_values(y_true, y_pred, "y_true", "y_pred")
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        invalid = _invalid(y_true, y_pred)
        y_pred = ops.where(ops.isfinite(y_pred), y_pred, 0.0)
        weight = ops.ones_like(y_pred) if sample_weight is None else \
            ops.ones_like(y_pred) * self._weight(sample_weight, y_pred)
        # Slot 0 holds the highest scores, so the histogram is in decreasing score order.
        slots = self.num_bins + 1
        bins = self.num_bins - ops.cast(
            ops.round(ops.clip(y_pred, 0.0, 1.0) * self.num_bins), "int32")
        ids = ops.reshape(bins + ops.arange(self.num_classes, dtype="int32")[None, :] * slots,
                          (-1,))
        n = self.num_classes * slots
        self.positives.assign_add(ops.segment_sum(ops.reshape(y_true * weight, (-1,)), ids,
                                                  num_segments=n) + invalid)
        self.counts.assign_add(ops.segment_sum(ops.reshape(weight, (-1,)), ids, num_segments=n))

    def _weight(self, sample_weight, y_pred):
        """`sample_weight` of shape (N,) or (N, 1) (one per example) or
        (N, num_classes) (one per label), or one for all (a scalar, or N of
        1), as a float32 array that broadcasts to `y_pred`; other shapes are
        a ValueError."""
        w = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
        shape, rows = tuple(w.shape), tuple(y_pred.shape)[0]
        if len(shape) == 0:  # one weight for all, as Keras' metrics take it
            return w
        if len(shape) == 1 and (shape[0] == 1 or not dims_differ(shape[0], rows)):
            return ops.reshape(w, (-1, 1))
        if (len(shape) == 2 and (shape[0] == 1 or not dims_differ(shape[0], rows))
                and shape[1] in (None, 1, self.num_classes)):
            return w
        raise ValueError(f"{self.name}: sample_weight must have shape (N,) or (N, 1), one "
                         f"weight per example, or (N, num_classes={self.num_classes}), one "
                         f"per label, with N={rows} the rows of y_pred; got shape {shape}.")

    def result(self):
        shape = (self.num_classes, self.num_bins + 1)
        ap, n_pos = _grouped_average_precision(ops.reshape(self.positives, shape),
                                               ops.reshape(self.counts, shape))
        has_pos = ops.cast(n_pos > 0, "float32")
        return ops.sum(ap * has_pos) / ops.maximum(ops.sum(has_pos), 1.0)

    def reset_state(self):
        for v in (self.positives, self.counts):
            v.assign(ops.zeros_like(v))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_bins": self.num_bins}
