"""Pair contrastive loss of Siamese networks: `contrastive_loss`, `ContrastiveLoss`."""

import keras
from keras import ops


def _check_margin(margin):
    if not float(margin) > 0:
        raise ValueError(f"margin must be > 0, got {margin}.")


def contrastive_loss_per_pair(y_true, distance, margin=1.0):
    """`y·d² + (1 − y)·max(margin − d, 0)²` for each pair, float32 (N,)."""
    _check_margin(margin)
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
        y_true: (N,) tensor of 0/1. 1 for a similar pair.
        distance: (N,) float tensor. Distance of each pair (e.g. the output of
            `build_siamese_network`).
        margin: float. Dissimilar pairs farther than this cost nothing.

    Returns:
        A float32 scalar.

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
        return contrastive_loss_per_pair(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
