"""CLIP-style dual encoders: two named towers → one L2-normalised embedding space."""

import math

import keras

from mmtl_tf import runtime
from mmtl_tf._input_checks import static_shape
from mmtl_tf.layers.l2_normalize import L2Normalize
from mmtl_tf.layers.logit_scale import LogitScale
from mmtl_tf.layers.projection_head import ProjectionHead
from mmtl_tf.losses.clip_loss import ClipLoss
from mmtl_tf.losses.sigmoid_loss import SigLipLoss
from mmtl_tf.models.embedding_model import mirror_input
from mmtl_tf.saving import rebuild, saved_state

LOSSES = ("clip", "siglip")
# (initial log scale, initial bias) of each loss: CLIP log(1/0.07); SigLIP log(10), -10.
_INIT = {"clip": (math.log(1 / 0.07), None), "siglip": (math.log(10.0), -10.0)}


@keras.saving.register_keras_serializable(package="mmtl_tf")
class DualEncoder(keras.Model):
    """Two named towers, each followed by a projection head and L2 normalisation.

    The core of every shared-space model in mmtl_tf (image–text here, audio–text
    in the same way): `towers` maps a modality name to a Keras model, e.g.
    `{"image": ImageEncoder(...), "text": TextEncoder(...)}`. The model takes a
    dict with one entry per modality (each with the structure of its tower's
    input, e.g. `{"token_ids", "padding_mask"}` for a BERT tower) and returns

    * `"<modality>_embeddings"`: float32 (B, projection_dim), unit length;
    * `"logit_scale"`: float32 (B,), `exp(t)` of the learnable temperature
      (initialised to 1/0.07 for CLIP, clamped to [1, 100]);
    * `"logit_bias"`: float32 (B,), only for `loss="siglip"`.

    Both modalities' inputs must have the same batch size (row i of one is
    paired with row i of the other): calling the model with batches whose
    static sizes differ (e.g. 4 images and 3 captions) raises a `ValueError`
    naming both; inside a compiled graph where a batch size is unknown it is
    not checked.
    `model.encode_<modality>(inputs)` (e.g. `encode_image`, `encode_text`)
    embeds one modality alone. Training overrides `compute_loss`, which scores
    the `y_pred` that `fit` passes in with `ClipLoss` or `SigLipLoss`: `fit`,
    `evaluate`, XLA and the mixed-float16 loss scaling of `compile` work
    unchanged; labels, if the dataset has any, are ignored. Under
    `tf.distribute.MirroredStrategy` the loss uses every replica's embeddings
    as negatives. Compile with an optimizer only:
    `model.compile(optimizer=keras.optimizers.AdamW(1e-3))`.

    Args:
        towers: dict str → keras.Model (Functional, or Sequential starting
            with `keras.Input`: its inputs must be known). Exactly two towers, in the order
            (query side, gallery side) that `evaluate_retrieval` reports first.
            Their layer names must differ.
        projection_dim: int. Width of the shared space.
        projection_hidden_dim: int or None. None: a linear projection (CLIP);
            an int: an MLP head (see `ProjectionHead`).
        dropout: float. Dropout inside an MLP head.
        loss: str. `"clip"` (softmax InfoNCE) or `"siglip"` (pairwise sigmoid).
        learn_logit_scale: bool. False keeps the initial temperature fixed.
        gather_across_replicas: bool. Negatives from all replicas.

    Example:
        >>> import keras, mmtl_tf
        >>> image = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3))
        >>> text = mmtl_tf.encoders.TextEncoder(vocab_size=100, sequence_length=8)
        >>> model = mmtl_tf.models.DualEncoder({"image": image, "text": text},
        ...                                    projection_dim=16)
        >>> sorted(model.output)
        ['image_embeddings', 'logit_scale', 'text_embeddings']

    References:
        Radford et al. 2021, "Learning Transferable Visual Models From Natural
        Language Supervision" (CLIP); Zhai et al. 2023 (SigLIP); OpenCLIP
        `CLIP.encode_image` / `encode_text`.
    """

    def __init__(self, towers, projection_dim=256, projection_hidden_dim=None, dropout=0.0,
                 loss="clip", learn_logit_scale=True, gather_across_replicas=True,
                 name="dual_encoder", **kwargs):
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is not allowed; use one of "
                             f"{', '.join(map(repr, LOSSES))}.")
        if not isinstance(towers, dict) or len(towers) != 2:
            raise ValueError("towers must be a dict with exactly two entries "
                             "(modality name → keras.Model), e.g. {'image': ..., 'text': ...}; "
                             f"got {type(towers).__name__}"
                             f"{' of ' + str(len(towers)) if isinstance(towers, dict) else ''}.")
        for modality, tower in towers.items():
            if not isinstance(tower, keras.Model):
                raise TypeError(f"tower {modality!r} must be a keras.Model, got "
                                f"{type(tower).__name__}.")
            if not modality.isidentifier() or modality in ("logit", "logit_scale"):
                raise ValueError(f"modality name {modality!r} must be a Python identifier "
                                 "(it names encode_<modality>).")
        names = [t.name for t in towers.values()]
        if len(set(names)) != len(names):
            raise ValueError(f"the two towers have the same layer name {names[0]!r}; build "
                             "them with different name= arguments.")
        modalities = list(towers)
        inputs, outputs = {}, {}
        for modality, tower in towers.items():
            inputs[modality] = mirror_input(tower, modality)
            features = tower(inputs[modality])
            projected = ProjectionHead(projection_dim, hidden_dim=projection_hidden_dim,
                                       dropout=dropout, name=f"{modality}_projection")(features)
            outputs[f"{modality}_embeddings"] = L2Normalize(
                name=f"{modality}_normalize")(projected)
        first = outputs[f"{modalities[0]}_embeddings"]
        init_scale, init_bias = _INIT[loss]
        outputs["logit_scale"] = LogitScale(init_scale, trainable=learn_logit_scale,
                                            name="logit_scale")(first)
        if init_bias is not None:
            outputs["logit_bias"] = LogitScale(init_bias, min_value=None, max_value=None,
                                               exponentiate=False, name="logit_bias")(first)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._modalities = tuple(modalities)
        self._tower_names = tuple(names)
        self._config = {"projection_dim": int(projection_dim),
                        "projection_hidden_dim": projection_hidden_dim,
                        "dropout": float(dropout), "loss": loss,
                        "learn_logit_scale": bool(learn_logit_scale),
                        "gather_across_replicas": bool(gather_across_replicas)}
        loss_class = ClipLoss if loss == "clip" else SigLipLoss
        self.contrastive_loss = loss_class(gather_across_replicas=bool(gather_across_replicas))

    def __call__(self, *args, **kwargs):
        # Checked before Keras runs the graph: a call with 4 images and 3
        # captions used to return both embeddings without complaint.
        self._check_batch_sizes(args[0] if args else kwargs.get("inputs"))
        return super().__call__(*args, **kwargs)

    # Keras' own check of arrays of different lengths in a dict failed with
    # "AttributeError: 'str' object has no attribute 'shape'" (it formats the
    # dict's keys as arrays): the towers' inputs are checked first.
    def fit(self, x=None, *args, **kwargs):
        self._check_batch_sizes(x)
        validation = kwargs.get("validation_data")
        self._check_batch_sizes(validation[0] if isinstance(validation, (tuple, list))
                                and validation else validation)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_batch_sizes(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_batch_sizes(x)
        return super().predict(x, *args, **kwargs)

    def _check_batch_sizes(self, inputs):
        """A `ValueError` naming both batch sizes when they are static and differ."""
        if not isinstance(inputs, dict):
            return
        sizes = {}
        for modality in getattr(self, "_modalities", ()):
            leaves = keras.tree.flatten(inputs.get(modality, ()))
            shapes = [static_shape(x) for x in leaves]
            known = [sh[0] for sh in shapes if sh and sh[0] is not None]
            if known:
                sizes[modality] = known[0]
        if len(set(sizes.values())) > 1:
            shown = " and ".join(f"{n} {m} rows" for m, n in sizes.items())
            raise ValueError(f"{self.name}: the two towers' inputs must have the same batch "
                             f"size (row i of one modality is paired with row i of the "
                             f"other); got {shown}.")

    @property
    def modalities(self):
        """The two modality names, in order."""
        return self._modalities

    def tower(self, modality):
        """The tower (encoder model) of `modality`."""
        self._check_modality(modality)
        return self.get_layer(self._tower_names[self._modalities.index(modality)])

    def _check_modality(self, modality):
        if modality not in self._modalities:
            raise ValueError(f"modality {modality!r} is not one of this model's "
                             f"{', '.join(map(repr, self._modalities))}.")

    def encode(self, modality, inputs, training=False):
        """L2-normalised float32 embeddings (B, projection_dim) of one modality.

        Args:
            modality: str. One of `modalities`.
            inputs: the tower's input (array, tensor or dict of them).
            training: bool.
        """
        self._check_modality(modality)
        x = self.tower(modality)(inputs, training=training)
        x = self.get_layer(f"{modality}_projection")(x, training=training)
        return self.get_layer(f"{modality}_normalize")(x)

    def __getattr__(self, name):
        # encode_image(x), encode_text(x), encode_audio(x), ...: one per tower.
        if name.startswith("encode_"):
            modalities = self.__dict__.get("_modalities", ())
            modality = name[len("encode_"):]
            if modality in modalities:
                return lambda inputs, training=False: self.encode(modality, inputs, training)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def compile(self, optimizer="adam", *args, initial_loss_scale=1.0, **kwargs):
        """`keras.Model.compile`, with a lower starting loss scale under mixed_float16.

        Gradients through the L2 normalisation grow as 1 / |features|; with
        freshly initialised towers (an LSTM's outputs have norms ~0.01) they
        reach the hundreds, so Keras' default initial loss scale of 2^15
        overflows float16 and dynamic loss scaling would skip the first ~10
        steps while it lowers the scale. Even 2^7 overflowed the first step
        for 3 of 25 random initialisations of a small LSTM tower. The risk in
        contrastive training is overflow, not underflow, so under the
        `mixed_float16` policy the optimizer is wrapped here in a
        `LossScaleOptimizer` starting at `initial_loss_scale` = 1
        (`mmtl_tf.runtime.embedding_optimizer`; it still adapts: halved on
        overflow, doubled after 2,000 finite steps). An optimizer that is
        already a `LossScaleOptimizer` is kept as it is.

        Args:
            optimizer: str or `keras.optimizers.Optimizer`.
            initial_loss_scale: float. Starting dynamic loss scale.
            *args, **kwargs: passed to `keras.Model.compile` (`loss` must be
                None: the model computes its own contrastive loss;
                `jit_compile` defaults to `mmtl_tf.runtime.get_jit_compile()`).
        """
        loss = args[0] if args else kwargs.get("loss")  # compile(optimizer, loss, ...)
        if loss is not None:
            raise ValueError("DualEncoder computes its own contrastive loss (loss=... was "
                             "given); compile it with an optimizer only.")
        # XLA as mmtl_tf.runtime.configure(jit_compile=...) says (Keras' own
        # default "auto" ignored it).
        if "jit_compile" not in kwargs:  # (the setting is checked only when it is used)
            kwargs["jit_compile"] = runtime.get_jit_compile()
        super().compile(runtime.embedding_optimizer(optimizer, initial_loss_scale,
                                                    self.dtype_policy.name), *args, **kwargs)

    def compile_from_config(self, config):
        """Recompiles a loaded model with its saved optimizer (see `compile`)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def logit_scale_value(self):
        """The current `exp(t)` as a Python float."""
        return float(self.get_layer("logit_scale").current())

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The contrastive loss of `y_pred` (plus any regularisation losses)."""
        del x, y, training  # the pairing is the row order
        loss = self.contrastive_loss(None, y_pred, sample_weight)
        for extra in self.losses:
            loss = loss + self._aggregate_additional_loss(extra)
        return loss

    def get_config(self):
        return {"name": self.name, **self._config,
                "towers": {m: keras.saving.serialize_keras_object(self.tower(m))
                           for m in self._modalities},
                **saved_state(self)}

    @classmethod
    def from_config(cls, config):
        towers = {m: keras.saving.deserialize_keras_object(t)
                  for m, t in config["towers"].items()}
        return rebuild(cls, config, towers=towers)  # with the flags of a frozen tower


def build_dual_encoder(image_encoder, text_encoder, projection_dim=256, loss="clip",
                       projection_hidden_dim=None, dropout=0.0, learn_logit_scale=True,
                       name="dual_encoder"):
    """An image–text dual encoder (CLIP): `encode_image`, `encode_text`, one space.

    Args:
        image_encoder: keras.Model. The image tower, e.g.
            `mmtl_tf.encoders.ImageEncoder("small_cnn" | "mobilenet_v2" | ...,
            input_shape=(64, 64, 3))` (uint8 pixels in).
        text_encoder: keras.Model. The text tower, e.g.
            `mmtl_tf.encoders.TextEncoder(...)` (token ids from
            `mmtl_tf.data.make_text_vectorizer`) or
            `mmtl_tf.encoders.BertEncoder(...)` (`{"token_ids", "padding_mask"}`).
        projection_dim: int. Width of the shared space.
        loss: str. `"clip"` or `"siglip"`.
        projection_hidden_dim: int or None. MLP projection heads (None: linear).
        dropout: float. Dropout in MLP heads.
        learn_logit_scale: bool.
        name: str.

    Returns:
        A `DualEncoder` with inputs `{"image": ..., "text": ...}` and outputs
        `image_embeddings`, `text_embeddings` (float32, unit length) and
        `logit_scale`.

    Example:
        >>> import mmtl_tf
        >>> model = mmtl_tf.models.build_dual_encoder(
        ...     mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3)),
        ...     mmtl_tf.encoders.TextEncoder(vocab_size=100, sequence_length=8),
        ...     projection_dim=16)
        >>> model.encode_image(np.zeros((2, 32, 32, 3), "uint8")).shape  # doctest: +SKIP
        TensorShape([2, 16])

    References:
        Radford et al. 2021 (CLIP).
    """
    if image_encoder is text_encoder:
        raise ValueError("image_encoder and text_encoder are the same object; a dual "
                         "encoder needs one tower per modality.")
    return DualEncoder({"image": image_encoder, "text": text_encoder},
                       projection_dim=projection_dim, projection_hidden_dim=projection_hidden_dim,
                       dropout=dropout, loss=loss, learn_logit_scale=learn_logit_scale,
                       name=name)
