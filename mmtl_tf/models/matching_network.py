"""`build_matching_network`: few-shot classification by attention over a support set."""

import keras

from mmtl_tf.layers.matching_attention import MatchingAttention
from mmtl_tf.layers.per_example import PerExample
from mmtl_tf.models.embedding_model import build_embedding_model


def build_matching_network(encoder, projection_dim=None, initial_scale=10.0, learn_scale=True,
                           name="matching_network"):
    """A matching network (Vinyals et al. 2016) without full-context embeddings.

    Every support and query example goes through the same embedding model
    (`PerExample`: one call on all examples of the episode); each query's class
    distribution is the attention-weighted sum of the support labels, the
    attention being a softmax over scaled cosine similarities
    (`MatchingAttention`). The number of classes N, shots and queries can
    change from one call to the next, so one model trained on 5-way 5-shot
    episodes also answers 5-way 1-shot ones. Train on episodes from
    `mmtl_tf.data.few_shot_episodes` with sparse categorical cross-entropy on
    the query labels.

    Not included: the paper's full-context embeddings (a bidirectional LSTM
    over the support set and an attention LSTM for the query); its ablations
    found them to matter most on miniImageNet, less on Omniglot.

    Args:
        encoder: keras.Model. The tower for one example (e.g. an
            `ImageEncoder`).
        projection_dim: int or None. Linear projection after the tower.
        initial_scale: float. Initial multiplier of the cosines.
        learn_scale: bool. Learn the multiplier (the paper uses 1, fixed).
        name: str.

    Returns:
        A Functional `keras.Model` with inputs `support` (B, S, *example),
        `support_labels` float32 one-hot (B, S, N) and `queries`
        (B, Q, *example), and float32 probabilities (B, Q, N). Sparse class
        ids are not accepted as `support_labels`: one-hot them first. Shapes
        that do not fit together (batch sizes, S) raise a `ValueError`, and so
        do concrete (NumPy / eager) labels whose rows are not one-hot, in a
        direct call `model(inputs)`; `predict` and `fit` run a compiled
        graph, where values cannot be checked (such rows then give
        "probabilities" that do not sum to 1).

    Example:
        >>> import mmtl_tf
        >>> enc = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3))
        >>> mmtl_tf.models.build_matching_network(enc).output.shape
        (None, None, None)

    References:
        Vinyals, Blundell, Lillicrap, Kavukcuoglu and Wierstra 2016, "Matching
        Networks for One Shot Learning", NeurIPS.
    """
    embedding = build_embedding_model(encoder, projection_dim, normalize=False)
    if isinstance(embedding.input, (dict, list, tuple)):
        raise ValueError("build_matching_network needs an encoder with a single input "
                         "tensor (e.g. images); got a structured input.")
    example_shape = tuple(embedding.input.shape[1:])
    dtype = embedding.input.dtype
    support = keras.Input((None, *example_shape), dtype=dtype, name="support")
    labels = keras.Input((None, None), dtype="float32", name="support_labels")
    queries = keras.Input((None, *example_shape), dtype=dtype, name="queries")
    per_example = PerExample(embedding, name="embed")
    probabilities = MatchingAttention(initial_scale, learn_scale, name="attention")(
        [per_example(queries), per_example(support), labels])
    return keras.Model({"support": support, "support_labels": labels, "queries": queries},
                       probabilities, name=name)
