"""`gather_across_replicas`: every replica's rows, for in-batch negatives."""


def gather_across_replicas(*tensors):
    """All-gathers tensors along the batch axis inside a `tf.distribute` replica.

    Under `tf.distribute.MirroredStrategy` (or any strategy with more than one
    replica in sync) each replica sees only its share of the global batch.
    Contrastive losses need the other replicas' embeddings as negatives: this
    returns the concatenation, in replica order, of every replica's tensors
    (gradients flow back to the replica that produced each row, as
    `ReplicaContext.all_gather` defines them), and the position of this
    replica's first row in that concatenation. Outside a multi-replica context
    (one device, or the JAX/torch backends) it returns the tensors unchanged and
    offset 0.

    Args:
        *tensors: tensors with the same batch size on this replica.

    Returns:
        (tuple of gathered tensors, offset int or int32 scalar tensor).

    Example:
        >>> import numpy as np
        >>> from mmtl_tf.losses import gather_across_replicas
        >>> (a,), offset = gather_across_replicas(np.ones((2, 3)))
        >>> a.shape, offset
        ((2, 3), 0)

    References:
        OpenCLIP `gather_features` (`gather_with_grad=True`).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return tensors, 0
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensors, 0
    gathered = tuple(ctx.all_gather(list(tensors), axis=0))
    local = tf.reshape(tf.shape(tensors[0])[0], [1])
    sizes = ctx.all_gather(local, axis=0)
    offset = tf.reduce_sum(sizes[:ctx.replica_id_in_sync_group])
    return gathered, offset
