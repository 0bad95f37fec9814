"""CLIP's symmetric InfoNCE loss: `clip_loss` and `ClipLoss`."""

import keras
import numpy as np
from keras import ops

from mmtl_tf._input_checks import check_not_empty, concrete_value, dims_differ, static_shape
from mmtl_tf.losses.cross_replica import gather_across_replicas


def _check_pair(a, b, loss, what="a and b"):
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ValueError(f"{loss}: {what} must be (N, D) matrices; got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}.")
    if dims_differ(a.shape[0], b.shape[0]):
        raise ValueError(
            f"{loss}: {what} must have the same number of rows (one per matched pair, "
            f"e.g. one caption per image); got {a.shape[0]} and {b.shape[0]} (shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}).")
    if dims_differ(a.shape[1], b.shape[1]):
        raise ValueError(f"{loss}: {what} must have the same embedding width; got "
                         f"{a.shape[1]} and {b.shape[1]}.")
    check_not_empty(loss, a=a, b=b)


def _scalar(value):
    value = ops.cast(value, "float32")
    return ops.mean(value) if len(value.shape) else value


def _check_scalar(value, name, loss, per_row_of=None):
    """`value` as a float32 scalar, or a `ValueError` naming `loss`, `name` and
    the shape unless it is one number: shape () or (1,).

    With `per_row_of` (the embeddings a Loss class scores) a vector of one copy
    per row, shape (N,) as `DualEncoder` outputs it, is accepted too: concrete
    copies (NumPy, eager) must be equal; in a graph they are averaged. Without
    it a rank-1 shape of unknown length (in a graph) must hold one value at run
    time.
    """
    shape = static_shape(value)
    rows = None if per_row_of is None else static_shape(per_row_of)
    rows = rows[0] if rows else None
    per_row = (per_row_of is not None and shape is not None and len(shape) == 1
               and not dims_differ(shape[0], rows))
    if shape is not None and shape not in ((), (1,), (None,)) and not per_row:
        allowed = "shape () or (1,)"
        if per_row_of is not None:
            allowed += (f", or one copy per row, shape ({'N' if rows is None else rows},), as "
                        "DualEncoder outputs it")
        raise ValueError(f"{loss}: {name} must be one number ({allowed}); got shape {shape}.")
    if not per_row:
        return ops.reshape(ops.cast(value, "float32"), ())
    values = concrete_value(value)
    if values is not None and np.unique(values).size > 1:  # equal NaNs count as equal
        distinct = np.unique(values)
        listed = ", ".join(map(str, distinct[:5].tolist())) + (", ..." if distinct.size > 5 else "")
        raise ValueError(f"{loss}: {name} of shape {shape} holds {distinct.size} different "
                         f"values ({listed}); it must be one number, or copies "
                         "of it, one per row, as DualEncoder outputs it.")
    return _scalar(value)


def clip_loss_per_example(a_local, b_local, a_all, b_all, logit_scale, offset=0):
    """Per-row CLIP loss of local rows against all rows (see `clip_loss`).

    Row i of the local batch is the pair `(a_local[i], b_local[i])`; its
    correct partners sit at `offset + i` in `a_all` / `b_all`. Returns the mean
    of the two cross-entropies of row i, shape (n_local,), in float32; the mean
    over every replica's rows is `clip_loss` of the global batch.
    """
    scale = _scalar(logit_scale)
    a_local, b_local, a_all, b_all = (ops.cast(t, "float32")
                                      for t in (a_local, b_local, a_all, b_all))
    labels = ops.arange(ops.shape(a_local)[0], dtype="int32") + ops.cast(offset, "int32")
    logits_ab = scale * ops.matmul(a_local, ops.transpose(b_all))
    logits_ba = scale * ops.matmul(b_local, ops.transpose(a_all))
    ce_ab = ops.sparse_categorical_crossentropy(labels, logits_ab, from_logits=True)
    ce_ba = ops.sparse_categorical_crossentropy(labels, logits_ba, from_logits=True)
    return 0.5 * (ce_ab + ce_ba)


def clip_loss(a, b, logit_scale):
    """The symmetric contrastive loss of CLIP, computed in float32.

    `logits = logit_scale * a @ b.T`; row i of `a` belongs with row i of `b`.
    The loss is the mean of the cross-entropy of each row of `logits` against
    `arange(N)` (a → b) and of each column (b → a). With the source document's
    notation it is the loss L = Σ_i D(f(x_i), g(y_i)) + α Σ_j D(f(x_j), g(y_j)):
    the matched pairs' similarity enters each softmax's numerator, every other
    pair of the batch enters its denominator.

    Args:
        a: (N, D) float tensor. L2-normalised embeddings of one modality.
        b: (N, D) float tensor. L2-normalised embeddings of the other modality.
        logit_scale: float or float tensor of shape () or (1,). The
            multiplier, already exponentiated (`exp(t)`, 1/temperature).
            Any other shape raises a `ValueError` naming it (a vector is not
            averaged; `ClipLoss` takes `DualEncoder`'s per-row copies).

    Returns:
        A float32 scalar. An empty batch (N = 0) raises a `ValueError` naming
        the loss when N is known statically (NumPy or eager inputs, or a graph
        traced with batch size 0); inside a compiled graph whose batch size
        is unknown (None) it is not checked and TensorFlow fails at run time
        ("Must have at least one class").

    Example:
        >>> import numpy as np
        >>> from mmtl_tf.losses import clip_loss
        >>> e = np.eye(3, dtype="float32")
        >>> round(float(clip_loss(e, e, 100.0)), 6)
        0.0

    References:
        Radford et al. 2021 (CLIP), figure 3; van den Oord et al. 2018
        (InfoNCE); OpenCLIP `ClipLoss`.
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    _check_pair(a, b, "clip_loss")
    scale = _check_scalar(logit_scale, "logit_scale", "clip_loss")
    return ops.mean(clip_loss_per_example(a, b, a, b, scale))


def pair_names(y_pred):
    """How `_check_pair` names the two embeddings of `y_pred` in its messages."""
    if isinstance(y_pred, dict):
        return " and ".join(sorted(k for k in y_pred if k.endswith("_embeddings")))
    return "a and b"


def unpack_contrastive_outputs(y_pred, with_bias=False):
    """(a, b, logit_scale[, logit_bias]) from a tuple or a dual-encoder output dict.

    A dict must hold exactly two `*_embeddings` entries and `logit_scale`
    (and `logit_bias` when `with_bias`), as `mmtl_tf.models.DualEncoder`
    returns. The two embeddings are taken in sorted key order; the CLIP and
    SigLIP losses are symmetric in them.
    """
    if isinstance(y_pred, dict):
        keys = sorted(k for k in y_pred if k.endswith("_embeddings"))
        needed = ["logit_scale"] + (["logit_bias"] if with_bias else [])
        missing = [k for k in needed if k not in y_pred]
        if len(keys) != 2 or missing:
            raise ValueError(
                "expected a dict with two '<modality>_embeddings' entries and "
                f"{', '.join(needed)}; got keys {sorted(y_pred)}.")
        values = [y_pred[keys[0]], y_pred[keys[1]]] + [y_pred[k] for k in needed]
    else:
        values = list(y_pred)
        expected = 4 if with_bias else 3
        if len(values) != expected:
            raise ValueError(
                f"expected (a, b, logit_scale{', logit_bias' if with_bias else ''}); got "
                f"{len(values)} values.")
    return values


class PairedContrastiveLoss(keras.losses.Loss):
    """Base of `ClipLoss` and `SigLipLoss`: a float32 Keras loss over matched
    rows of two embedding batches (`y_true` ignored, may be None), with the
    option to take negatives from every replica.

    It scores several outputs of a model together, so call it on the whole
    output, as `DualEncoder.compute_loss` does (or your own `compute_loss` /
    training step): `model.compile(loss=ClipLoss())` on a model whose output
    is a list or dict fails in Keras, which gives each output its own loss
    ("The path: (0,) in the loss argument, can't be found").

    Args:
        gather_across_replicas: bool. Use other replicas' rows as negatives.
        name: str or None. None: the subclass's `DEFAULT_NAME`.
        reduction: str. Keras reduction of the per-row values.
        dtype: the loss dtype (float32 by default).
    """

    DEFAULT_NAME = "paired_contrastive_loss"

    def __init__(self, gather_across_replicas=True, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name or self.DEFAULT_NAME, reduction=reduction,
                         dtype=dtype or "float32")
        if not isinstance(gather_across_replicas, bool):
            raise ValueError("gather_across_replicas must be True or False, got "
                             f"{gather_across_replicas!r}.")
        self.gather_across_replicas = gather_across_replicas

    def __call__(self, y_true, y_pred, sample_weight=None):
        # The pairing is the row order: y_true may be None (fit without labels).
        return super().__call__(0.0 if y_true is None else y_true, y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(), "gather_across_replicas": self.gather_across_replicas}


@keras.saving.register_keras_serializable(package="mmtl_tf")
class ClipLoss(PairedContrastiveLoss):
    """`clip_loss` as a Keras loss, with negatives from every replica.

    `y_pred` is `(a, b, logit_scale)` or a `DualEncoder` output dict;
    `y_true` is ignored (the pairing is the row order). `logit_scale` is one
    number (shape () or (1,)) or one copy per row (N,), as `DualEncoder`
    outputs it; another shape, or concrete copies that differ, raise a
    `ValueError`. `call` returns one value per row (the mean of its two
    cross-entropies), so Keras' mean reduction gives `clip_loss` and
    `sample_weight` weights pairs. It is not a `compile(loss=...)` loss: see
    `PairedContrastiveLoss`.

    Under `tf.distribute.MirroredStrategy` (`gather_across_replicas=True`)
    each replica scores its rows against the embeddings of *all* replicas, so
    the loss and its gradient equal those of one device on the global batch.
    An empty batch raises a `ValueError` when its size is static (see
    `clip_loss`).

    Args:
        gather_across_replicas: bool. Use other replicas' rows as negatives.
        name: str.
        reduction: str. Keras reduction of the per-row values.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> e = np.eye(4, dtype="float32")
        >>> loss = mmtl_tf.losses.ClipLoss()
        >>> round(float(loss(None, (e, e, 1.0))), 4)
        0.7437

    References:
        Radford et al. 2021 (CLIP); OpenCLIP `ClipLoss` (`gather_with_grad`).
    """

    DEFAULT_NAME = "clip_loss"

    def call(self, y_true, y_pred):
        a, b, scale = unpack_contrastive_outputs(y_pred)
        _check_pair(a, b, "ClipLoss", pair_names(y_pred))
        scale = _check_scalar(scale, "logit_scale", "ClipLoss", per_row_of=a)
        if self.gather_across_replicas:
            (a_all, b_all), offset = gather_across_replicas(a, b)
        else:
            a_all, b_all, offset = a, b, 0
        return clip_loss_per_example(a, b, a_all, b_all, scale, offset)
