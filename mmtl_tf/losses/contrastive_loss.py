"""Pair contrastive loss of Siamese networks: `contrastive_loss`, `ContrastiveLoss`."""

import keras
import numpy as np
from keras import ops

from mmtl_tf._input_checks import check_not_empty, concrete_value, static_shape


def _check_margin(margin):
    if not float(margin) > 0:
        raise ValueError(f"margin must be > 0, got {margin}.")


def _pair_count(shape):
    """N for a (N,) or (N, 1) shape (1 for a scalar), "bad" for any other rank/width."""
    if len(shape) == 0:
        return 1
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0]
    return "bad"


def _check_pairs(y_true, distance):
    """Static shapes: one 0/1 label per distance; concrete labels: only 0 and 1."""
    y_shape, d_shape = static_shape(y_true), static_shape(distance)
    if y_shape is not None and d_shape is not None:
        n_y, n_d = _pair_count(y_shape), _pair_count(d_shape)
        if n_d == "bad":
            raise ValueError(f"distance must be (N,) pair distances (e.g. the output of "
                             f"build_siamese_network); got shape {d_shape}.")
        if n_y == "bad" or (n_y is not None and n_d is not None and n_y != n_d):
            raise ValueError(f"y_true must be (N,) 0/1 labels, one per distance (1 = similar "
                             f"pair, 0 = dissimilar); got y_true shape {y_shape} for distance "
                             f"shape {d_shape}.")
    values = concrete_value(y_true)
    if values is not None and not np.isin(values, (0, 1)).all():
        bad = np.unique(values[~np.isin(values, (0, 1))])[:5].tolist()
        raise ValueError(f"y_true must be 0/1 (1 = similar pair, 0 = dissimilar); got "
                         f"values {bad}. For class ids give `left_class == right_class`; "
                         f"for +1/-1 labels give `(y + 1) / 2`.")


def contrastive_loss_per_pair(y_true, distance, margin=1.0):
    """`y·d² + (1 − y)·max(margin − d, 0)²` for each pair, float32 (N,).

    `y_true` must hold one 0/1 label per distance ((N,) or (N, 1)): a shape
    that does not fit raises a `ValueError` (static shapes, so also under
    XLA), and so do concrete (NumPy, eager) labels other than 0 and 1; in a
    compiled graph the values are not checked. An empty batch raises a
    `ValueError` when its size is static (see `contrastive_loss`).
    """
    _check_margin(margin)
    _check_pairs(y_true, distance)
    check_not_empty("contrastive_loss", y_true=y_true, distance=distance)
    y = ops.cast(ops.reshape(y_true, (-1,)), "float32")
    d = ops.cast(ops.reshape(distance, (-1,)), "float32")
    return y * ops.square(d) + (1.0 - y) * ops.square(ops.relu(float(margin) - d))


def contrastive_loss(y_true, distance, margin=1.0):
    """Contrastive loss of Hadsell, Chopra and LeCun (2006), in float32.

    `mean(y·d² + (1 − y)·max(margin − d, 0)²)`: similar pairs (y = 1, the
    TF-Addons convention) are pulled together, dissimilar pairs (y = 0) are
    pushed apart until they are `margin` away. In the source document's
    L = Σ_i D(f(x_i), g(y_i)) + α Σ_j D(f(x_j), g(y_j)), the first sum is the
    similar pairs' term and the second the dissimilar pairs' hinge (α = 1 here;
    weight pairs with `sample_weight` in `ContrastiveLoss`).

    Args:
        y_true: (N,) tensor of 0/1 (or (N, 1)), one per distance. 1 for a
            similar pair, 0 for a dissimilar one; class ids, +1/-1 or one-hot
            labels are refused (`ValueError`; values are checked only on
            concrete inputs, see `contrastive_loss_per_pair`).
        distance: (N,) float tensor. Distance of each pair (e.g. the output of
            `build_siamese_network`).
        margin: float. Dissimilar pairs farther than this cost nothing.

    Returns:
        A float32 scalar. An empty batch (N = 0) raises a `ValueError` naming
        the loss when N is known statically (NumPy or eager inputs, or a graph
        traced with batch size 0); inside a compiled graph whose batch size
        is unknown (None) it is not checked and the loss comes out NaN.

    Example:
        >>> from mmtl_tf.losses import contrastive_loss
        >>> round(float(contrastive_loss([1, 0], [0.5, 0.25], margin=1.0)), 4)
        0.4062

    References:
        Hadsell, Chopra and LeCun 2006, "Dimensionality Reduction by Learning an
        Invariant Mapping", equation (4) (with their Y inverted);
        TF-Addons `contrastive_loss`.
    """
    return ops.mean(contrastive_loss_per_pair(y_true, distance, margin))


@keras.saving.register_keras_serializable(package="mmtl_tf")
class ContrastiveLoss(keras.losses.Loss):
    """`contrastive_loss` as a Keras loss: `y_true` 0/1 (N,), `y_pred` distances (N,).

    One label per distance (a `ValueError` otherwise); concrete labels must be
    0 or 1 (not checked inside a compiled `fit`). An empty batch raises a
    `ValueError` when its size is static (NaN inside a compiled graph with
    unknown batch size).

    Args:
        margin: float. Must be > 0.
        name: str.
        reduction: str.

    Example:
        >>> import mmtl_tf
        >>> loss = mmtl_tf.losses.ContrastiveLoss(margin=1.0)
        >>> round(float(loss([1, 0], [0.5, 0.25])), 4)
        0.4062

    References:
        Hadsell, Chopra and LeCun 2006.
    """

    def __init__(self, margin=1.0, name="contrastive_loss", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        _check_margin(margin)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        check_not_empty("ContrastiveLoss", y_true=y_true, y_pred=y_pred)
        return contrastive_loss_per_pair(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
