"""`TripletNetwork` / `build_triplet_network`: anchor, positive and negative
through one tower; trained on explicit triplets."""

import keras

from mmtl_tf import runtime
from mmtl_tf.layers.pair_distance import PairDistance
from mmtl_tf.losses.triplet_loss import TripletMarginLoss
from mmtl_tf.models.embedding_model import build_embedding_model, mirror_input
from mmtl_tf.saving import rebuild, saved_state


@keras.saving.register_keras_serializable(package="mmtl_tf")
class TripletNetwork(keras.Model):
    """Three inputs through one embedding model → `[d(a, p), d(a, n)]` (B, 2) float32.

    `compute_loss` applies `TripletMarginLoss(margin)` to the `y_pred` that
    `fit` passes in, so the model trains on a dataset of
    `{"anchor", "positive", "negative"}` dicts without labels (see
    `mmtl_tf.data.random_triplets`). For triplets mined inside class-balanced
    batches instead, train the embedding model alone with
    `mmtl_tf.losses.TripletLoss`.

    Args:
        embedding: keras.Model. The shared embedding model (see
            `build_embedding_model`).
        distance: str. `"l2"`, `"squared_l2"` or `"cosine"`.
        margin: float or None. None: soft margin.

    Example:
        >>> import mmtl_tf
        >>> enc = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3))
        >>> model = mmtl_tf.models.build_triplet_network(enc, projection_dim=16)
        >>> model.output.shape
        (None, 2)

    References:
        Hoffer and Ailon 2015, "Deep Metric Learning Using Triplet Network";
        Schroff et al. 2015 (FaceNet).
    """

    def __init__(self, embedding, distance="l2", margin=1.0, name="triplet_network", **kwargs):
        if not isinstance(embedding, keras.Model):
            raise TypeError(f"embedding must be a keras.Model, got {type(embedding).__name__}.")
        self.triplet_loss = TripletMarginLoss(margin)
        inputs = {k: mirror_input(embedding, k) for k in ("anchor", "positive", "negative")}
        anchor, positive, negative = (embedding(inputs[k])
                                      for k in ("anchor", "positive", "negative"))
        d_ap = PairDistance(distance, name="positive_distance")([anchor, positive])
        d_an = PairDistance(distance, name="negative_distance")([anchor, negative])
        column = keras.layers.Reshape((1,), dtype="float32", name="column")
        out = keras.layers.Concatenate(dtype="float32", name="distances")(
            [column(d_ap), column(d_an)])
        super().__init__(inputs=inputs, outputs=out, name=name, **kwargs)
        self.embedding_name = embedding.name
        self._config = {"distance": distance, "margin": self.triplet_loss.margin}

    @property
    def embedding(self):
        """The shared embedding model."""
        return self.get_layer(self.embedding_name)

    def compile(self, optimizer="rmsprop", *args, initial_loss_scale=1.0, **kwargs):
        """`keras.Model.compile`; `jit_compile` defaults to
        `mmtl_tf.runtime.get_jit_compile()` (Keras' own "auto" ignored
        `mmtl_tf.runtime.configure(jit_compile=...)`). Under `mixed_float16`
        the optimizer's loss scale starts at `initial_loss_scale` = 1, as
        `DualEncoder`'s (`mmtl_tf.runtime.embedding_optimizer`): with 2^15 an
        LSTM tower's first steps overflowed and were skipped."""
        if "jit_compile" not in kwargs:  # (the setting is checked only when it is used)
            kwargs["jit_compile"] = runtime.get_jit_compile()
        super().compile(runtime.embedding_optimizer(optimizer, initial_loss_scale,
                                                    self.dtype_policy.name), *args, **kwargs)

    def compile_from_config(self, config):
        """Recompiles a loaded model with its saved settings and optimizer
        (Keras skips a `compile` it does not know, with a warning)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del x, y, training
        loss = self.triplet_loss(None, y_pred, sample_weight)
        for extra in self.losses:
            loss = loss + self._aggregate_additional_loss(extra)
        return loss

    def get_config(self):
        return {"name": self.name, **self._config,
                "embedding": keras.saving.serialize_keras_object(self.embedding),
                **saved_state(self)}

    @classmethod
    def from_config(cls, config):
        embedding = keras.saving.deserialize_keras_object(config["embedding"])
        return rebuild(cls, config, embedding=embedding)  # with the flags of frozen layers


def build_triplet_network(encoder, projection_dim=None, normalize=True, distance="l2",
                          margin=1.0, name="triplet_network"):
    """A triplet network on explicit (anchor, positive, negative) triplets.

    Args:
        encoder: keras.Model. The shared tower.
        projection_dim: int or None. Linear projection after the tower.
        normalize: bool. L2-normalise the embeddings.
        distance: str. `"l2"`, `"squared_l2"` or `"cosine"`.
        margin: float or None. Triplet margin (None: soft margin).
        name: str.

    Returns:
        A `TripletNetwork` (inputs `{"anchor", "positive", "negative"}`, output
        float32 (B, 2) distances; compile it with an optimizer only).

    Example:
        >>> import mmtl_tf
        >>> enc = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3))
        >>> mmtl_tf.models.build_triplet_network(enc, margin=0.2).embedding.name
        'embedding'

    References:
        Hoffer and Ailon 2015; Schroff et al. 2015.
    """
    return TripletNetwork(build_embedding_model(encoder, projection_dim, normalize),
                          distance=distance, margin=margin, name=name)
