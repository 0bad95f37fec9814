"""`pairwise_distance`: the (N, N) distance matrix of a batch of embeddings."""

from keras import ops

DISTANCES = ("l2", "squared_l2", "cosine")
# TF-Addons' `distance_metric` names for the same distances.
_TF_ADDONS_NAMES = {"L2": "l2", "squared-L2": "squared_l2", "angular": "cosine"}


def check_distance(distance):
    if distance not in DISTANCES:
        hint = ""
        if distance in _TF_ADDONS_NAMES:
            hint = (f" (TF-Addons' distance_metric={distance!r} is "
                    f"distance={_TF_ADDONS_NAMES[distance]!r} here)")
        raise ValueError(f"distance={distance!r} is not allowed; use one of "
                         f"{', '.join(map(repr, DISTANCES))}{hint}.")


def pairwise_distance(embeddings, distance="l2"):
    """All pairwise distances between the rows of `embeddings`, in float32.

    Squared distances are `|x|² + |y|² − 2 x·y` of the rows centred on
    their mean (which keeps float32 precision away from the origin), clipped
    at 0 with a zero diagonal; `"l2"` takes their square root with a
    zero-safe gradient (the TF-Addons `pairwise_distance` construction),
    `"cosine"` is `1 − cos(x, y)`, clipped at 0.

    Args:
        embeddings: (N, D) float tensor.
        distance: str. `"l2"`, `"squared_l2"` or `"cosine"`.

    Returns:
        float32 tensor (N, N).

    Example:
        >>> import numpy as np
        >>> from mmtl_tf.losses import pairwise_distance
        >>> pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])).numpy().tolist()
        [[0.0, 5.0], [5.0, 0.0]]

    References:
        Schroff et al. 2015 (FaceNet); TF-Addons `metric_learning.pairwise_distance`.
    """
    check_distance(distance)
    x = ops.cast(embeddings, "float32")
    if len(x.shape) != 2:  # (a 1-D input failed in a reduction, naming no input)
        raise ValueError(f"embeddings must be a batch of vectors (N, D); got shape "
                         f"{tuple(x.shape)}.")
    n = ops.shape(x)[0]
    off_diagonal = 1.0 - ops.eye(n, dtype="float32")
    if distance == "cosine":
        x = x * ops.rsqrt(ops.maximum(ops.sum(x * x, axis=1, keepdims=True), 1e-12))
        return ops.maximum(1.0 - ops.matmul(x, ops.transpose(x)), 0.0) * off_diagonal
    # Centred on the batch mean (distances do not change): in float32,
    # |x|² + |y|² − 2 x·y lost all precision for embeddings far from the
    # origin (rows at 1e4 that are 0.5 and 3 apart came out 0 apart).
    x = x - ops.mean(x, axis=0, keepdims=True)
    norms = ops.sum(ops.square(x), axis=1, keepdims=True)
    squared = norms + ops.transpose(norms) - 2.0 * ops.matmul(x, ops.transpose(x))
    squared = ops.maximum(squared, 0.0) * off_diagonal
    if distance == "squared_l2":
        return squared
    zero = ops.cast(ops.less_equal(squared, 0.0), "float32")
    return ops.sqrt(squared + zero * 1e-16) * (1.0 - zero)
