"""`MatchingAttention`: the read-out of a matching network (Vinyals et al. 2016)."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmtl_tf")
class MatchingAttention(keras.layers.Layer):
    """Labels of a support set, weighted by cosine attention, for each query.

    Inputs `[queries (B, Q, D), support (B, S, D), support_labels (B, S, N)]`
    (one-hot labels, N classes per episode) → class probabilities
    `(B, Q, N)`: `p(y | x̂) = Σ_i a(x̂, x_i) y_i` with
    `a(x̂, x_i) = softmax_i(s · cos(f(x̂), g(x_i)))`. Vinyals et al. use the
    softmax of plain cosines (`s = 1`); with cosines in [-1, 1] that attention
    can never be sharp, so the scale `s` is a learnable scalar here
    (initialised to `initial_scale`, `learn_scale=False` fixes it). N, Q and S
    may differ between calls: one model serves 5-way 1-shot and 5-shot.
    The output is float32.

    Args:
        initial_scale: float. Initial multiplier `s` of the cosines.
        learn_scale: bool. Whether `s` is trained (its logarithm is the weight).

    Example:
        >>> import numpy as np, mmtl_tf
        >>> att = mmtl_tf.layers.MatchingAttention()
        >>> q = np.array([[[1.0, 0.0]]]); s = np.array([[[1.0, 0.0], [0.0, 1.0]]])
        >>> p = att([q, s, np.eye(2)[None]]).numpy()
        >>> bool(p[0, 0, 0] > 0.99)
        True

    References:
        Vinyals et al. 2016, "Matching Networks for One Shot Learning",
        equations (1) and (2).
    """

    def __init__(self, initial_scale=10.0, learn_scale=True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not float(initial_scale) > 0:
            raise ValueError(f"initial_scale must be positive, got {initial_scale}.")
        self.initial_scale = float(initial_scale)
        self.learn_scale = bool(learn_scale)
        self.log_scale = self.add_weight(
            shape=(), name="log_scale", dtype="float32", trainable=self.learn_scale,
            initializer=keras.initializers.Constant(math.log(self.initial_scale)))

    @staticmethod
    def _normalize(x):
        x = ops.cast(x, "float32")
        return x * ops.rsqrt(ops.maximum(ops.sum(x * x, axis=-1, keepdims=True), 1e-12))

    def call(self, inputs):
        queries, support, labels = inputs
        cosine = ops.einsum("bqd,bsd->bqs", self._normalize(queries), self._normalize(support))
        attention = ops.softmax(ops.exp(self.log_scale) * cosine, axis=-1)
        return ops.einsum("bqs,bsn->bqn", attention, ops.cast(labels, "float32"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][1], input_shape[2][-1])

    def get_config(self):
        return {**super().get_config(), "initial_scale": self.initial_scale,
                "learn_scale": self.learn_scale}
