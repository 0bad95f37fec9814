"""`PerExample`: applies a model to every example of a (batch, set, ...) tensor."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmtl_tf")
class PerExample(keras.layers.Wrapper):
    """Runs `layer` on each element of a set, in one call: (B, S, *x) → (B, S, *y).

    Like `keras.layers.TimeDistributed`, but the batch and set axes are merged
    into one (B·S) batch, so the wrapped model runs once (not once per set
    position) and the set size S may change from call to call (support sets of
    5-way 1-shot and 5-shot episodes). The per-example shape `*x` must be
    static.

    Args:
        layer: keras.layers.Layer or keras.Model. Takes (N, *x), returns (N, *y).

    Example:
        >>> import numpy as np, keras, mmtl_tf
        >>> wrap = mmtl_tf.layers.PerExample(keras.layers.Dense(3))
        >>> tuple(wrap(np.ones((2, 5, 4), "float32")).shape)
        (2, 5, 3)

    References:
        Vinyals et al. 2016 (the same embedding for every support example).
    """

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build((None, *input_shape[2:]))
        self.built = True

    def call(self, inputs, training=None):
        if any(d is None for d in inputs.shape[2:]):
            raise ValueError(f"PerExample needs a static per-example shape; got "
                             f"{tuple(inputs.shape)}.")
        shape = ops.shape(inputs)
        flat = ops.reshape(inputs, (-1, *inputs.shape[2:]))
        out = self.layer(flat, training=training)
        return ops.reshape(out, (shape[0], shape[1], *out.shape[1:]))

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])
