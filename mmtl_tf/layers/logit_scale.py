"""`LogitScale`: the learnable temperature of contrastive (CLIP) training."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmtl_tf")
class ClipToRange(keras.constraints.Constraint):
    """Keeps a variable in [min_value, max_value] after each optimizer step.

    Args:
        min_value: float or None. Lower bound (None: unbounded).
        max_value: float or None. Upper bound (None: unbounded).

    Example:
        >>> import numpy as np
        >>> from mmtl_tf.layers import ClipToRange
        >>> ClipToRange(0.0, 1.0)(np.array([-1.0, 0.5, 3.0])).numpy().tolist()
        [0.0, 0.5, 1.0]
    """

    def __init__(self, min_value=None, max_value=None):
        self.min_value = None if min_value is None else float(min_value)
        self.max_value = None if max_value is None else float(max_value)

    def __call__(self, w):
        if self.min_value is not None:
            w = ops.maximum(w, ops.cast(self.min_value, w.dtype))
        if self.max_value is not None:
            w = ops.minimum(w, ops.cast(self.max_value, w.dtype))
        return w

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value}


@keras.saving.register_keras_serializable(package="mmtl_tf")
class LogitScale(keras.layers.Layer):
    """A learnable scalar `t`; returns `exp(t)` once per batch row, in float32.

    CLIP multiplies the cosine similarities by `exp(t)`, with `t` initialised
    to `log(1/0.07)` (a temperature of 0.07) and clamped to `[0, log(100)]`
    (OpenCLIP clamps the parameter after each step; here a variable constraint
    does that and the forward pass clips as well). With `exponentiate=False`
    the layer returns `t` itself: SigLIP's learnable bias (initialised to -10)
    is such a scalar.

    The input only provides the batch size: the output has shape (batch,) so
    that it can be one of a model's outputs (per-replica outputs are
    concatenated along the batch axis under `tf.distribute`).

    Args:
        initial_value: float. Initial `t` (the logarithm of the scale).
        min_value: float or None. Lower clamp of `t` (None: none).
        max_value: float or None. Upper clamp of `t` (None: none).
            `initial_value` outside the clamps is a ValueError.
        exponentiate: bool. Return `exp(t)` (a scale) or `t` (a bias).
        trainable: bool. Whether `t` is learned (False: a fixed temperature).

    Example:
        >>> import numpy as np, mmtl_tf
        >>> scale = mmtl_tf.layers.LogitScale()
        >>> round(float(scale(np.zeros((3, 4)))[0]), 4)
        14.2857

    References:
        Radford et al. 2021 (CLIP), section 2.5; OpenCLIP `CLIP.logit_scale`;
        Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training"
        (SigLIP: `t' = log 10`, bias -10).
    """

    def __init__(self, initial_value=math.log(1 / 0.07), min_value=0.0,
                 max_value=math.log(100.0), exponentiate=True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if (min_value is not None and max_value is not None
                and float(min_value) > float(max_value)):
            raise ValueError(f"min_value={min_value} is larger than max_value={max_value}.")
        self.initial_value = float(initial_value)
        self.min_value = None if min_value is None else float(min_value)
        self.max_value = None if max_value is None else float(max_value)
        if ((self.min_value is not None and self.initial_value < self.min_value)
                or (self.max_value is not None and self.initial_value > self.max_value)):
            # Clamped, it would be another value, with no gradient until the
            # first step moved it in.
            raise ValueError(
                f"initial_value={initial_value} is outside [min_value, max_value] = "
                f"[{min_value}, {max_value}] (t is the logarithm of the scale: a scale of "
                f"100 is t = log(100) = {math.log(100):.4f}); widen the range or pass "
                "min_value=None / max_value=None.")
        self.exponentiate = bool(exponentiate)
        self.value = self.add_weight(
            shape=(), name="value", dtype="float32",
            initializer=keras.initializers.Constant(self.initial_value),
            constraint=ClipToRange(self.min_value, self.max_value))

    def current(self):
        """The clamped `t` (or `exp(t)`) as a float32 scalar tensor."""
        t = ops.cast(self.value, "float32")
        if self.min_value is not None or self.max_value is not None:
            t = ops.clip(t, -math.inf if self.min_value is None else self.min_value,
                         math.inf if self.max_value is None else self.max_value)
        return ops.exp(t) if self.exponentiate else t

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        return ops.broadcast_to(self.current(), (batch,))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        return {**super().get_config(), "initial_value": self.initial_value,
                "min_value": self.min_value, "max_value": self.max_value,
                "exponentiate": self.exponentiate}

    @classmethod
    def from_config(cls, config):
        # A layer saved before initial values outside the clamps were refused
        # loads with its initial value clamped (its weight is loaded anyway).
        config = dict(config)
        low, high = config.get("min_value"), config.get("max_value")
        value = float(config.get("initial_value", math.log(1 / 0.07)))
        if low is not None:
            value = max(value, float(low))
        if high is not None:
            value = min(value, float(high))
        config["initial_value"] = value
        return cls(**config)
