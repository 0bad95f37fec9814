"""SigLIP's pairwise sigmoid loss: `sigmoid_loss` and `SigLipLoss`."""

import keras
from keras import ops

from mmtl_tf.losses.clip_loss import (PairedContrastiveLoss, _check_pair, _check_scalar,
                                      _scalar, pair_names, unpack_contrastive_outputs)
from mmtl_tf.losses.cross_replica import gather_across_replicas


def sigmoid_loss_per_example(a_local, b_local, b_all, logit_scale, logit_bias, offset=0):
    """Per-row SigLIP loss of local rows of `a` against all rows of `b`.

    Returns `-Σ_j log σ(z_ij (t · a_i·b_j + bias))` for each local row i
    (z_ij = 1 for the matched pair, −1 otherwise), shape (n_local,), float32.
    The mean over every replica's rows is `sigmoid_loss` of the global batch.
    """
    scale, bias = _scalar(logit_scale), _scalar(logit_bias)
    a_local, b_all = ops.cast(a_local, "float32"), ops.cast(b_all, "float32")
    del b_local  # the matched partners are rows offset + i of b_all
    n_local, n_all = ops.shape(a_local)[0], ops.shape(b_all)[0]
    logits = scale * ops.matmul(a_local, ops.transpose(b_all)) + bias
    rows = ops.arange(n_local, dtype="int32") + ops.cast(offset, "int32")
    match = ops.cast(ops.equal(ops.expand_dims(rows, 1),
                               ops.expand_dims(ops.arange(n_all, dtype="int32"), 0)),
                     "float32")
    signs = 2.0 * match - 1.0
    return -ops.sum(ops.log_sigmoid(signs * logits), axis=1)


def sigmoid_loss(a, b, logit_scale, logit_bias):
    """The pairwise sigmoid loss of SigLIP, computed in float32.

    Every (i, j) pair of the batch is an independent binary problem: matched
    (i = j, label 1) or not (label −1), with logit `t · a_i·b_j + bias`. The
    loss is `-(1/N) Σ_i Σ_j log σ(z_ij · logit_ij)`. Unlike `clip_loss` it
    needs no softmax over the batch, and the learnable `bias` (initialised to
    −10) offsets the N−1 negatives per row.

    Args:
        a: (N, D) float tensor. L2-normalised embeddings of one modality.
        b: (N, D) float tensor. L2-normalised embeddings of the other modality.
        logit_scale: float or float tensor of shape () or (1,). The
            multiplier `t` (exponentiated).
        logit_bias: float or float tensor of shape () or (1,). The bias.
            Another shape of either raises a `ValueError` naming it (a vector
            is not averaged; `SigLipLoss` takes `DualEncoder`'s per-row copies).

    Returns:
        A float32 scalar. An empty batch (N = 0) raises a `ValueError` naming
        the loss when N is known statically (NumPy or eager inputs, or a graph
        traced with batch size 0); inside a compiled graph whose batch size
        is unknown (None) it is not checked and the loss comes out NaN.

    Example:
        >>> import numpy as np
        >>> from mmtl_tf.losses import sigmoid_loss
        >>> e = np.eye(2, dtype="float32")
        >>> round(float(sigmoid_loss(e, e, 1.0, 0.0)), 4)  # log(1 + e^-1) + log(2)
        1.0064

    References:
        Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training",
        algorithm 1; OpenCLIP `SigLipLoss`.
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    _check_pair(a, b, "sigmoid_loss")
    scale = _check_scalar(logit_scale, "logit_scale", "sigmoid_loss")
    bias = _check_scalar(logit_bias, "logit_bias", "sigmoid_loss")
    return ops.mean(sigmoid_loss_per_example(a, b, b, scale, bias))


@keras.saving.register_keras_serializable(package="mmtl_tf")
class SigLipLoss(PairedContrastiveLoss):
    """`sigmoid_loss` as a Keras loss, with negatives from every replica.

    `y_pred` is `(a, b, logit_scale, logit_bias)` or a `DualEncoder` output
    dict built with `loss="siglip"`; `y_true` is ignored. `logit_scale` and
    `logit_bias` are each one number or one copy per row (as in `ClipLoss`).
    `call` returns the per-row sums, so Keras' mean reduction gives
    `sigmoid_loss`. An empty batch raises a `ValueError` when its size is
    static (see `sigmoid_loss`).

    Args:
        gather_across_replicas: bool. Score local rows of `a` against the `b`
            rows of every replica (all (i, j) pairs of the global batch are
            covered exactly once across replicas).
        name: str.
        reduction: str.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> e = np.eye(2, dtype="float32")
        >>> round(float(mmtl_tf.losses.SigLipLoss()(None, (e, e, 1.0, 0.0))), 4)
        1.0064

    References:
        Zhai et al. 2023 (SigLIP).
    """

    DEFAULT_NAME = "siglip_loss"

    def call(self, y_true, y_pred):
        a, b, scale, bias = unpack_contrastive_outputs(y_pred, with_bias=True)
        _check_pair(a, b, "SigLipLoss", pair_names(y_pred))
        scale = _check_scalar(scale, "logit_scale", "SigLipLoss", per_row_of=a)
        bias = _check_scalar(bias, "logit_bias", "SigLipLoss", per_row_of=a)
        if self.gather_across_replicas:
            (b_all,), offset = gather_across_replicas(b)
        else:
            b_all, offset = b, 0
        return sigmoid_loss_per_example(a, b, b_all, scale, bias, offset)
