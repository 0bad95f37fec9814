"""`build_embedding_model`: one tower → (projection) → unit-length embeddings."""

import keras

from mmtl_tf.layers.l2_normalize import L2Normalize
from mmtl_tf.layers.projection_head import ProjectionHead


def tower_input(tower):
    """The input `KerasTensor` (or dict/list of them) of a tower.

    The tower must know its inputs: a Functional model, or a Sequential one
    that starts with `keras.Input` (whose `.input` Keras leaves undefined:
    it failed with "The layer ... has never been called"). Otherwise a
    ValueError says so."""
    try:
        return tower.input
    except AttributeError:
        try:
            inputs = tower.inputs if isinstance(tower, keras.Sequential) else None
        except AttributeError:
            inputs = None
        if not inputs:
            raise ValueError(
                f"the tower {tower.name!r} has no defined inputs; give a Functional model "
                "(keras.Model(inputs, outputs)) or a Sequential model that starts with "
                "keras.Input(shape), so that its input shape and dtype are known.") from None
        return inputs[0] if len(inputs) == 1 else list(inputs)


def mirror_input(tower, name):
    """A new `keras.Input` (or dict/list of them) shaped like the tower's
    input (`tower_input`)."""
    structure = tower_input(tower)
    if isinstance(structure, dict):
        return {k: keras.Input(v.shape[1:], dtype=v.dtype, name=f"{name}_{k}")
                for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [keras.Input(v.shape[1:], dtype=v.dtype, name=f"{name}_{i}")
                for i, v in enumerate(structure)]
    return keras.Input(structure.shape[1:], dtype=structure.dtype, name=name)


def build_embedding_model(encoder, projection_dim=None, normalize=True, name="embedding"):
    """The shared tower of Siamese, triplet and matching networks.

    Args:
        encoder: keras.Model. Any tower (e.g. `mmtl_tf.encoders.ImageEncoder`).
        projection_dim: int or None. A linear `ProjectionHead` to this width
            (None: the encoder's features as they are).
        normalize: bool. L2-normalise the embeddings (float32 output).
        name: str.

    Returns:
        A Functional `keras.Model`: the encoder's input → embeddings (B, D).

    Example:
        >>> import mmtl_tf
        >>> enc = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3))
        >>> mmtl_tf.models.build_embedding_model(enc, projection_dim=16).output.shape
        (None, 16)

    References:
        Bromley et al. 1993 (shared-weight "Siamese" towers).
    """
    if not isinstance(encoder, keras.Model):
        raise TypeError(f"encoder must be a keras.Model, got {type(encoder).__name__}.")
    inputs = mirror_input(encoder, "inputs")
    x = encoder(inputs)
    if projection_dim is not None:
        x = ProjectionHead(projection_dim, name="projection")(x)
    if normalize:
        x = L2Normalize(name="normalize")(x)
    return keras.Model(inputs, x, name=name)
