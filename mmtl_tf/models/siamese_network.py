"""`build_siamese_network`: one shared tower, a pair in, their distance out."""

import keras

from mmtl_tf.layers.pair_distance import PairDistance
from mmtl_tf.models.embedding_model import build_embedding_model, mirror_input


def build_siamese_network(encoder, projection_dim=None, normalize=True, distance="l2",
                          name="siamese_network"):
    """A Siamese network: both inputs go through the same tower; output their distance.

    Train it on labelled pairs (`mmtl_tf.data.random_pairs`) with
    `mmtl_tf.losses.ContrastiveLoss` (y = 1 for a similar pair). The embedding
    part is the layer `"embedding"` (`model.get_layer("embedding")`), usable
    for retrieval on its own.

    Args:
        encoder: keras.Model. The shared tower (any modality).
        projection_dim: int or None. Linear projection after the tower.
        normalize: bool. L2-normalise embeddings before the distance.
        distance: str. `"l2"`, `"squared_l2"` or `"cosine"`.
        name: str.

    Returns:
        A Functional `keras.Model` with inputs `{"left": ..., "right": ...}`
        (each shaped like the encoder's input) and float32 distances (B,).

    Example:
        >>> import mmtl_tf
        >>> enc = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3))
        >>> model = mmtl_tf.models.build_siamese_network(enc, projection_dim=16)
        >>> model.output.shape
        (None,)

    References:
        Bromley et al. 1993, "Signature Verification using a Siamese Time Delay
        Neural Network"; Koch, Zemel and Salakhutdinov 2015, "Siamese Neural
        Networks for One-shot Image Recognition"; Hadsell et al. 2006.
    """
    embedding = build_embedding_model(encoder, projection_dim, normalize)
    left, right = mirror_input(encoder, "left"), mirror_input(encoder, "right")
    out = PairDistance(distance, name="distance")([embedding(left), embedding(right)])
    return keras.Model({"left": left, "right": right}, out, name=name)
