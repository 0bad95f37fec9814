"""`PairDistance`: the distance between two batches of embeddings, row by row."""

import keras
from keras import ops

from mmtl_tf._input_checks import dims_differ, static_shape

DISTANCES = ("l2", "squared_l2", "cosine")


@keras.saving.register_keras_serializable(package="mmtl_tf")
class PairDistance(keras.layers.Layer):
    """`[a, b]` (B, D) each → `distance(a[i], b[i])` (B,), in float32.

    `a` and `b` must have the same shape: a batch of 1 is not broadcast against
    a larger one, and embeddings of different widths are an error. Both are
    checked on the static shapes (a `ValueError` naming them), so the check
    also runs when a model is traced or compiled with XLA.

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

    def _check_shapes(self, shape_a, shape_b):
        if shape_a is None or shape_b is None:
            return
        if len(shape_a) != len(shape_b) or len(shape_a) < 2:
            raise ValueError(f"{self.__class__.__name__} {self.name!r} needs two (B, D) "
                             f"embedding batches of the same shape; got shapes "
                             f"{shape_a} and {shape_b}.")
        if dims_differ(shape_a[0], shape_b[0]):
            raise ValueError(f"{self.__class__.__name__} {self.name!r}: the two inputs have "
                             f"different batch sizes ({shape_a[0]} and {shape_b[0]}; shapes "
                             f"{shape_a} and {shape_b}); pair row i of one with row i of "
                             f"the other, with as many rows on each side.")
        if any(dims_differ(x, y) for x, y in zip(shape_a[1:], shape_b[1:])):
            raise ValueError(f"{self.__class__.__name__} {self.name!r}: the two inputs' "
                             f"embeddings differ in width (shapes {shape_a} and "
                             f"{shape_b}); both must come from towers with the same "
                             f"output size.")

    def call(self, inputs):
        if len(inputs) != 2:
            raise ValueError(f"{self.__class__.__name__} takes a list of two tensors "
                             f"[a, b]; got {len(inputs)}.")
        self._check_shapes(static_shape(inputs[0]), static_shape(inputs[1]))
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
        self._check_shapes(*(tuple(shape) for shape in input_shape))
        return (input_shape[0][0],)

    def get_config(self):
        return {**super().get_config(), "distance": self.distance, "epsilon": self.epsilon}
