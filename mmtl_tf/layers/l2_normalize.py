"""`L2Normalize`: unit-length vectors, computed in float32."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmtl_tf")
class L2Normalize(keras.layers.Layer):
    """Divides vectors by their L2 norm along `axis`.

    The layer computes in float32 by default (`dtype="float32"`), also under a
    mixed-precision policy: embeddings that feed similarity logits, distances
    and retrieval keep float32 precision and a float16 overflow cannot occur in
    the sum of squares.

    Args:
        axis: int. The axis to normalise.
        epsilon: float. Lower bound on the squared norm (a zero vector stays
            zero instead of becoming NaN).

    Example:
        >>> import numpy as np, mmtl_tf
        >>> mmtl_tf.layers.L2Normalize()(np.array([[3.0, 4.0]])).numpy().tolist()
        [[0.6000000238418579, 0.800000011920929]]

    References:
        Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric
        Instance Discrimination" (normalised embeddings for contrastive learning).
    """

    def __init__(self, axis=-1, epsilon=1e-12, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        squared = ops.sum(ops.square(x), axis=self.axis, keepdims=True)
        return x * ops.rsqrt(ops.maximum(squared, self.epsilon))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
