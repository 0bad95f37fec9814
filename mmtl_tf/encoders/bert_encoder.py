"""`BertEncoder`: a pretrained BERT-family text tower (keras-hub backbone),
`{"token_ids", "padding_mask"}` in, one pooled vector per text out."""

import os

import keras
from keras import ops

from mmtl_tf.data.bert_preprocessor import check_encoder_directory, check_preset_name
from mmtl_tf.errors import DownloadError, check_choice
from mmtl_tf.files import user_path
from mmtl_tf.layers.masked_pooling import MaskedPooling
from mmtl_tf.saving import rebuild, saved_state

POOLINGS = ("cls", "mean")
TRAINABLE = ("frozen", "partial", "full")


def load_bert_backbone(encoder):
    """Returns a keras-hub backbone from a preset name, a folder or an instance.

    Args:
        encoder: a keras-hub `Backbone` (returned as is), a serialized backbone
            config (dict), a local folder in Hugging Face layout (`config.json`,
            `vocab.txt`, `model.safetensors`; loaded by keras-hub's converter,
            no internet), or a keras-hub preset name such as
            `"bert_tiny_en_uncased"` (downloaded from Kaggle: needs internet).

    Returns:
        A keras-hub `Backbone` with pretrained weights (random for a config).

    Raises:
        DataError: a folder misses `config.json`, `vocab.txt` or the weights.
        RuntimeError: a preset could not be downloaded; the message says how to
            use a local folder instead.
    """
    import keras_hub

    if isinstance(encoder, keras_hub.models.Backbone):
        return encoder
    if isinstance(encoder, dict):
        return keras.saving.deserialize_keras_object(encoder)
    if not isinstance(encoder, (str, os.PathLike)):
        raise TypeError(
            f"encoder must be a keras-hub preset name, a local folder or a keras-hub "
            f"Backbone; got {type(encoder).__name__}.")
    encoder = user_path(encoder)
    if os.path.isdir(encoder):
        check_encoder_directory(encoder)
        return keras_hub.models.Backbone.from_preset(encoder)
    if os.sep in encoder or encoder.startswith("."):
        raise FileNotFoundError(f"encoder folder {encoder!r} does not exist.")
    check_preset_name(encoder, keras_hub.models.Backbone.presets, "backbone")
    try:
        return keras_hub.models.Backbone.from_preset(encoder)
    except Exception as e:  # a failed download surfaces as many error types
        raise DownloadError(
            f"could not load the keras-hub preset {encoder!r} ({type(e).__name__}: {e}). "
            "Presets are downloaded from Kaggle and need internet. Offline, pass a local "
            "Hugging Face-layout folder instead, e.g. mmtl_tf.data.fetch_minilm() "
            "(python data_prep/fetch_minilm.py).") from e


def set_bert_trainable(backbone, trainable, num_layers=None):
    """Freezes a transformer backbone fully, partially or not at all.

    Args:
        backbone: keras-hub `Backbone`.
        trainable: str. `"frozen"`, `"partial"` (the last `num_layers`
            transformer blocks and everything after them, e.g. BERT's pooler;
            default a quarter of the blocks, at least one) or `"full"`.
        num_layers: int or None. For `"partial"`.
    """
    check_choice("trainable", trainable, TRAINABLE)
    if trainable == "frozen":
        backbone.trainable = False
        return
    backbone.trainable = True
    if trainable == "full":
        for layer in backbone.layers:
            layer.trainable = True
        return
    import keras_hub

    blocks = [l for l in backbone.layers
              if isinstance(l, keras_hub.layers.TransformerEncoder)]
    if not blocks:
        raise ValueError(f"{backbone.name}: no transformer blocks found for trainable='partial'.")
    n = num_layers if num_layers is not None else max(1, len(blocks) // 4)
    if not 1 <= n <= len(blocks):
        raise ValueError(f"num_layers={n} must be between 1 and {len(blocks)} "
                         f"(the backbone's transformer blocks).")
    first = backbone.layers.index(blocks[len(blocks) - n])
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= first


@keras.saving.register_keras_serializable(package="mmtl_tf")
class BertEncoder(keras.Model):
    """Text tower: a pretrained BERT-family encoder, pooled to one vector per text.

    Inputs are `{"token_ids": int32 (B, L), "padding_mask": int (B, L)}` (1 or
    True on real tokens: the mask is read as a boolean, nonzero = real token;
    it must have the token ids' shape), as `mmtl_tf.data.BertPreprocessor` makes them from raw
    strings in `tf.data`. Token-type (segment) ids, which BERT expects, are
    zeros inside the model. The output is (B, hidden) in the compute dtype.

    The backbone always runs with `training=False` (no dropout, as for the
    image backbones), also when it is being fine-tuned.

    Args:
        encoder: str, dict or keras-hub `Backbone`. A keras-hub preset name
            (internet), a local Hugging Face-layout folder, or a backbone
            instance (see `load_bert_backbone`).
        pooling: str. `"cls"`: the backbone's pooled `[CLS]` output (BERT's
            pooler, Dense + tanh; the raw `[CLS]` vector for backbones without a
            pooler); `"mean"`: the mean of the token vectors over the padding
            mask (how sentence-transformers such as all-MiniLM-L6-v2 pool).
        trainable: str. `"frozen"` (default), `"partial"` (the last
            `num_trainable_layers` blocks) or `"full"`. With `pooling="mean"`
            the backbone's pooler (unused) stays frozen.
        sequence_length: int or None. Fixed input length (None: any length up
            to the backbone's maximum).
        num_trainable_layers: int or None. Blocks unfrozen by `"partial"`.

    Example:
        >>> import numpy as np, keras_hub, mmtl_tf
        >>> backbone = keras_hub.models.BertBackbone(
        ...     vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        ...     intermediate_dim=32, max_sequence_length=32)
        >>> enc = mmtl_tf.encoders.BertEncoder(backbone, pooling="mean")
        >>> x = {"token_ids": np.ones((2, 8), "int32"), "padding_mask": np.ones((2, 8), "int32")}
        >>> tuple(enc(x).shape)
        (2, 16)

    References:
        Devlin et al., "BERT", NAACL 2019; Reimers and Gurevych,
        "Sentence-BERT", EMNLP 2019 (mean pooling).
    """

    def __init__(self, encoder="bert_tiny_en_uncased", pooling="cls", trainable="frozen",
                 sequence_length=None, num_trainable_layers=None, name="bert_encoder",
                 **kwargs):
        check_choice("pooling", pooling, POOLINGS)
        check_choice("trainable", trainable, TRAINABLE)
        backbone = load_bert_backbone(encoder)
        max_length = getattr(backbone, "max_sequence_length", None)
        if sequence_length is not None:
            sequence_length = int(sequence_length)
            if sequence_length < 2 or (max_length and sequence_length > max_length):
                raise ValueError(
                    f"sequence_length={sequence_length} must be between 2 and the "
                    f"backbone's max_sequence_length={max_length}.")
        set_bert_trainable(backbone, trainable, num_trainable_layers)
        pooler = getattr(backbone, "pooled_dense", None)
        if pooling == "mean" and pooler is not None:
            # Mean pooling does not use the pooler: trainable, it would get no
            # gradient and Keras would warn "Gradients do not exist" each fit.
            pooler.trainable = False
        token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
        padding_mask = keras.Input((sequence_length,), dtype="int32", name="padding_mask")
        backbone_inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        if isinstance(backbone.input, dict) and "segment_ids" in backbone.input:
            backbone_inputs["segment_ids"] = ops.zeros_like(token_ids)
        outputs = backbone(backbone_inputs, training=False)
        if isinstance(outputs, dict):
            sequence, pooled = outputs["sequence_output"], outputs.get("pooled_output")
        else:
            sequence, pooled = outputs, None
        if pooling == "mean":
            x = MaskedPooling("mean", name="mean_pool")(sequence, mask=padding_mask)
        elif pooled is not None:
            x = pooled
        else:
            x = MaskedPooling("first", name="cls_token")(sequence)
        super().__init__(inputs={"token_ids": token_ids, "padding_mask": padding_mask},
                         outputs=x, name=name, **kwargs)
        self.backbone = backbone
        self.pooling = pooling
        self._config = {"pooling": pooling, "trainable": trainable,
                        "sequence_length": sequence_length,
                        "num_trainable_layers": num_trainable_layers}

    @property
    def output_dim(self):
        return self.output.shape[-1]

    def get_config(self):
        # The backbone is stored as its architecture; the weights travel in the
        # .keras file, so a saved encoder never downloads or reads a folder again.
        return {"name": self.name, **self._config,
                "encoder": keras.saving.serialize_keras_object(self.backbone),
                **saved_state(self)}

    @classmethod
    def from_config(cls, config):
        return rebuild(cls, config)  # with the flags of freezing layers after building
