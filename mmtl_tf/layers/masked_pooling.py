"""`MaskedPooling`: pools a sequence of vectors over its real (unpadded) steps."""

import keras
from keras import ops

from mmtl_tf._input_checks import dims_differ, static_shape

MODES = ("mean", "max", "first")


@keras.saving.register_keras_serializable(package="mmtl_tf")
class MaskedPooling(keras.layers.Layer):
    """Mean, max or first-step pooling of `(B, L, D)` vectors under a `(B, L)` mask.

    The mask is a padding mask, read as a boolean: any nonzero value (1,
    True) marks a real step, 0 / False a padding step; its values are never
    used as weights. Its shape must be the first two dimensions of `inputs`
    (a `ValueError` otherwise, checked on the static shapes; a mask of batch
    1 is not broadcast over a larger batch). Padding positions never
    contribute: `"mean"` divides the
    sum of the real steps by their number (as sentence-transformers' mean
    pooling does), `"max"` takes the maximum over the real steps, `"first"`
    returns step 0 (e.g. BERT's `[CLS]` token). A row whose mask is all zeros
    gives zeros for `"mean"` and `"max"` instead of NaN or -inf. The sums are
    computed in float32 and cast back to the layer's compute dtype, so long
    sequences under `mixed_float16` do not overflow.

    Args:
        mode: str. `"mean"`, `"max"` or `"first"`.

    Call args:
        inputs: float tensor (B, L, D).
        mask: bool or int tensor (B, L), nonzero on real steps; None means
            every step is real.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> pool = mmtl_tf.layers.MaskedPooling("mean")
        >>> x = np.array([[[1.0], [3.0], [100.0]]], "float32")
        >>> float(pool(x, mask=np.array([[1, 1, 0]]))[0, 0])
        2.0

    References:
        Reimers and Gurevych, "Sentence-BERT", EMNLP 2019 (mean pooling).
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not allowed; use one of "
                             f"{', '.join(map(repr, MODES))}.")
        self.mode = mode
        self.supports_masking = True

    def _check_mask_shape(self, input_shape, mask_shape):
        if input_shape is None or mask_shape is None:
            return
        if len(input_shape) != 3:
            raise ValueError(f"{self.__class__.__name__} {self.name!r} pools (B, L, D) "
                             f"sequences; got inputs of shape {input_shape}.")
        if len(mask_shape) != 2 or any(
                dims_differ(m, x) for m, x in zip(mask_shape, input_shape[:2])):
            raise ValueError(f"{self.__class__.__name__} {self.name!r}: the mask must have "
                             f"shape (B, L) = {input_shape[:2]}, the inputs' batch size and "
                             f"length; got mask shape {mask_shape} for inputs of shape "
                             f"{input_shape}.")

    def call(self, inputs, mask=None):
        if mask is not None:
            self._check_mask_shape(static_shape(inputs), static_shape(mask))
        if self.mode == "first":
            return inputs[:, 0, :]
        x = ops.cast(inputs, "float32")
        if mask is None:
            mask = ops.ones(ops.shape(x)[:2], dtype="float32")
        # A padding mask: nonzero = real step. Cast through bool so that e.g.
        # token ids passed as the mask select the real steps, not weight them.
        weights = ops.expand_dims(ops.cast(ops.cast(mask, "bool"), "float32"), -1)
        if self.mode == "mean":
            total = ops.sum(x * weights, axis=1)
            count = ops.maximum(ops.sum(weights, axis=1), 1.0)
            pooled = total / count
        else:
            lowest = ops.full_like(x, -3.0e38)
            pooled = ops.max(ops.where(weights > 0, x, lowest), axis=1)
            any_real = ops.sum(weights, axis=1) > 0
            pooled = ops.where(any_real, pooled, ops.zeros_like(pooled))
        return ops.cast(pooled, self.compute_dtype)

    def compute_output_spec(self, inputs, mask=None):
        # Symbolic calls (building a Functional model) skip `call`: check here too.
        if mask is not None:
            self._check_mask_shape(static_shape(inputs), static_shape(mask))
        return super().compute_output_spec(inputs, mask=mask)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
