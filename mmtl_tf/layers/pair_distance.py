"""`PairDistance`: the distance between two batches of embeddings, row by row."""

import keras
from keras import ops

DISTANCES = ("l2", "squared_l2", "cosine")


@keras.saving.register_keras_serializable(package="mmtl_tf")
class PairDistance(keras.layers.Layer):
    """`[a, b]` (B, D) each → `distance(a[i], b[i])` (B,), in float32.

    Args:
        distance: str. `"l2"` (Euclidean), `"squared_l2"` or `"cosine"`
            (1 − cosine similarity, in [0, 2]).
        epsilon: float. `"l2"` takes `sqrt(max(d², epsilon))`, so the gradient
            stays finite for identical embeddings.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> d = mmtl_tf.layers.PairDistance("l2")
        >>> d([np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])]).numpy().round(4).tolist()
        [5.0]

    References:
        Bromley et al. 1993, "Signature Verification using a Siamese Time Delay
        Neural Network"; Hadsell, Chopra and LeCun 2006, "Dimensionality
        Reduction by Learning an Invariant Mapping".
    """

    def __init__(self, distance="l2", epsilon=1e-12, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if distance not in DISTANCES:
            raise ValueError(f"distance={distance!r} is not allowed; use one of "
                             f"{', '.join(map(repr, DISTANCES))}.")
        self.distance = distance
        self.epsilon = float(epsilon)

    def call(self, inputs):
        a, b = (ops.cast(t, "float32") for t in inputs)
        if self.distance == "cosine":
            a = a * ops.rsqrt(ops.maximum(ops.sum(a * a, axis=-1, keepdims=True), 1e-12))
            b = b * ops.rsqrt(ops.maximum(ops.sum(b * b, axis=-1, keepdims=True), 1e-12))
            return 1.0 - ops.sum(a * b, axis=-1)
        squared = ops.sum(ops.square(a - b), axis=-1)
        if self.distance == "squared_l2":
            return squared
        return ops.sqrt(ops.maximum(squared, self.epsilon))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def get_config(self):
        return {**super().get_config(), "distance": self.distance, "epsilon": self.epsilon}
