"""`MatchingAttention`: the read-out of a matching network (Vinyals et al. 2016)."""

import math

import keras
import numpy as np
from keras import ops

from mmtl_tf._input_checks import concrete_value, dims_differ, static_shape


@keras.saving.register_keras_serializable(package="mmtl_tf")
class MatchingAttention(keras.layers.Layer):
    """Labels of a support set, weighted by cosine attention, for each query.

    Inputs `[queries (B, Q, D), support (B, S, D), support_labels (B, S, N)]`
    (one-hot labels, N classes per episode: each row 0/1 with a single 1) →
    class probabilities
    `(B, Q, N)`: `p(y | x̂) = Σ_i a(x̂, x_i) y_i` with
    `a(x̂, x_i) = softmax_i(s · cos(f(x̂), g(x_i)))`. Vinyals et al. use the
    softmax of plain cosines (`s = 1`); with cosines in [-1, 1] that attention
    can never be sharp, so the scale `s` is a learnable scalar here
    (initialised to `initial_scale`, `learn_scale=False` fixes it). N, Q and S
    may differ between calls: one model serves 5-way 1-shot and 5-shot.
    The output is float32.

    Checks (`ValueError`): the three inputs must be rank 3 with the same batch
    size, the support and its labels the same S, the queries and the support
    the same D (static shapes, so also when traced or compiled with XLA); when
    the labels are concrete (NumPy, eager tensors) each row must be one-hot.
    Sparse class ids are not accepted: one-hot them first (e.g.
    `keras.ops.one_hot(ids, N)`). Inside a compiled graph the values are not
    checked, and non-one-hot rows give meaningless "probabilities".

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

    def _check_shapes(self, queries, support, labels):
        names = ("queries", "support", "support_labels")
        if any(shape is None for shape in (queries, support, labels)):
            return
        described = ", ".join(f"{n} {s}" for n, s in zip(names, (queries, support, labels)))
        if any(len(shape) != 3 for shape in (queries, support, labels)):
            raise ValueError(f"{self.__class__.__name__} {self.name!r} needs queries "
                             f"(B, Q, D), support (B, S, D) and one-hot support_labels "
                             f"(B, S, N); got {described}.")
        batch = [shape[0] for shape in (queries, support, labels)]
        if any(dims_differ(a, b) for a in batch for b in batch):
            raise ValueError(f"{self.__class__.__name__} {self.name!r}: the inputs have "
                             f"different batch sizes ({described}).")
        if dims_differ(support[1], labels[1]):
            raise ValueError(f"{self.__class__.__name__} {self.name!r}: support_labels must "
                             f"have one one-hot row (B, S, N) per support example; got "
                             f"{described}.")
        if dims_differ(queries[2], support[2]):
            raise ValueError(f"{self.__class__.__name__} {self.name!r}: queries and support "
                             f"embeddings differ in width ({described}).")

    def _check_one_hot(self, labels):
        values = concrete_value(labels)
        if values is None or values.size == 0:
            return
        binary = np.isin(values, (0, 1)).all()
        if not (binary and (values.sum(axis=-1) == 1).all()):
            row = np.argwhere(~(np.isin(values, (0, 1)).all(-1)
                                & (values.sum(-1) == 1)))[0]
            raise ValueError(
                f"{self.__class__.__name__} {self.name!r}: support_labels must be one-hot "
                f"(B, S, N) rows (0/1 with a single 1); row {tuple(int(i) for i in row)} "
                f"is {values[tuple(row)].tolist()} (shape {values.shape}). One-hot sparse "
                f"class ids first, e.g. keras.ops.one_hot(ids, num_classes).")

    def call(self, inputs):
        queries, support, labels = inputs
        self._check_shapes(static_shape(queries), static_shape(support), static_shape(labels))
        self._check_one_hot(labels)
        cosine = ops.einsum("bqd,bsd->bqs", self._normalize(queries), self._normalize(support))
        attention = ops.softmax(ops.exp(self.log_scale) * cosine, axis=-1)
        return ops.einsum("bqs,bsn->bqn", attention, ops.cast(labels, "float32"))

    def compute_output_shape(self, input_shape):
        self._check_shapes(*(tuple(shape) for shape in input_shape))
        return (input_shape[0][0], input_shape[0][1], input_shape[2][-1])

    def get_config(self):
        return {**super().get_config(), "initial_scale": self.initial_scale,
                "learn_scale": self.learn_scale}
