"""Text classifiers: a pretrained BERT-family encoder with a new head (source
document sections 3.2.2 / 4.2.2), the from-scratch LSTM baseline, and the
cached-features helper that trains a frozen encoder's head quickly."""

import keras
import numpy as np

from mmtl_tf.encoders.bert_encoder import BertEncoder
from mmtl_tf.encoders.text_encoder import TextEncoder
from mmtl_tf.errors import check_count, check_texts
from mmtl_tf.models.fusion_classifier import classification_head


def build_text_head(input_dim, num_classes, head_units=(128,), dropout=0.5, name="head"):
    """The new head: [Dense(units, relu) → Dropout] per entry → output layer.

    Args:
        input_dim: int. Width of the pooled text feature.
        num_classes: int. 1 → one sigmoid unit; >1 → softmax.
        head_units: sequence of int. Hidden Dense widths (the document: 128).
        dropout: float. Dropout after each hidden layer (the document: 0.5).
        name: str.

    Returns:
        A Functional `keras.Model` (B, input_dim) → float32 probabilities.

    Example:
        >>> import mmtl_tf
        >>> mmtl_tf.models.build_text_head(384, 8).output.shape
        (None, 8)
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    features = keras.Input((int(input_dim),), name="features")
    x = features
    for i, units in enumerate(head_units):
        x = keras.layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = classification_head(x, num_classes)
    return keras.Model(features, outputs, name=name)


def build_text_classifier(encoder="bert_tiny_en_uncased", num_classes=2, head_units=(128,),
                          dropout=0.5, trainable="frozen", pooling="cls", sequence_length=128,
                          name="text_classifier"):
    """A pretrained BERT-family encoder, pooled, with a new classification head.

    encoder → pooled text vector → Dense(128, relu) → Dropout(0.5) →
    Dense(num_classes), as the source document's head. The document fed the
    whole sequence output (B, L, hidden) to its Dense layers, which then
    classify every token and return (B, L, num_classes); here the encoder
    pools first (`"cls"` or `"mean"` over the padding mask), so the head sees
    one vector per text.

    Inputs are `{"token_ids": int32 (B, sequence_length), "padding_mask": int32
    (B, sequence_length)}` (the mask is a boolean: nonzero on real tokens, 0 on
    padding; same shape as the token ids); make them from raw strings with
    `mmtl_tf.data.BertPreprocessor` in `tf.data` (texts longer than
    `sequence_length - 2` WordPieces are truncated). The exported model takes
    raw strings (`mmtl_tf.export.export_text_classifier`).

    Args:
        encoder: str, keras-hub `Backbone` or `BertEncoder`. A keras-hub preset
            name (internet), a local Hugging Face-layout folder (e.g.
            `mmtl_tf.data.fetch_minilm()`), a backbone instance, or a
            `BertEncoder` used as is (then `trainable`, `pooling` are its own).
        num_classes: int. 1 → one sigmoid output; >1 → softmax.
        head_units: sequence of int. Hidden widths of the head.
        dropout: float. Dropout after each hidden layer of the head.
        trainable: str. `"frozen"` (default), `"partial"` or `"full"`.
        pooling: str. `"cls"` or `"mean"` (see `BertEncoder`).
        sequence_length: int. Token ids per text.
        name: str.

    Returns:
        A Functional `keras.Model` (sub-models `bert_encoder` and `head`) with
        float32 probabilities (B, num_classes), also under mixed precision.

    Example:
        >>> import keras_hub, mmtl_tf
        >>> backbone = keras_hub.models.BertBackbone(
        ...     vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
        ...     intermediate_dim=32, max_sequence_length=64)
        >>> model = mmtl_tf.models.build_text_classifier(backbone, num_classes=8,
        ...                                               sequence_length=32)
        >>> model.output.shape
        (None, 8)

    References:
        Devlin et al., "BERT", NAACL 2019; source document sections 3.2.2 and
        4.2.2 (text transfer learning).
    """
    num_classes = check_count("num_classes", num_classes)
    if isinstance(encoder, BertEncoder):
        tower = encoder
    else:
        # The tower takes any length (the classifier's inputs fix it), so
        # `encode_texts` can run it on batches cut to their longest text.
        tower = BertEncoder(encoder, pooling=pooling, trainable=trainable)
    max_length = getattr(getattr(tower, "backbone", None), "max_sequence_length", None)
    if sequence_length < 3 or (max_length and sequence_length > max_length):
        raise ValueError(f"sequence_length={sequence_length} must be between 3 and the "
                         f"encoder's max_sequence_length={max_length}.")
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((sequence_length,), dtype="int32", name="padding_mask")
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    head = build_text_head(tower.output_dim, num_classes, head_units, dropout)
    outputs = head(tower(inputs))
    return keras.Model(inputs, outputs, name=name)


def build_lstm_text_classifier(vocab_size=20000, sequence_length=128, embedding_dim=128,
                               lstm_units=64, num_classes=2, head_units=(128,), dropout=0.5,
                               name="lstm_text_classifier"):
    """The from-scratch baseline: Embedding → LSTM (`TextEncoder`) → the same head.

    Args:
        vocab_size: int. `TextVectorization` vocabulary size (0 = padding).
        sequence_length: int. Token ids per text.
        embedding_dim: int.
        lstm_units: int.
        num_classes: int.
        head_units: sequence of int.
        dropout: float.
        name: str.

    Returns:
        A Functional `keras.Model`: `text` int32 (B, sequence_length) → float32
        probabilities.

    Example:
        >>> import mmtl_tf
        >>> mmtl_tf.models.build_lstm_text_classifier(1000, 32, num_classes=8).output.shape
        (None, 8)
    """
    tower = TextEncoder(vocab_size=vocab_size, sequence_length=sequence_length,
                        embedding_dim=embedding_dim, lstm_units=lstm_units)
    text = keras.Input((sequence_length,), dtype="int32", name="text")
    head = build_text_head(tower.output_dim, num_classes, head_units, dropout)
    return keras.Model(text, head(tower(text)), name=name)


def encode_texts(encoder, preprocessor, texts, batch_size=64, bucket=16):
    """Pooled features of `texts` from a (frozen) encoder, as a NumPy array.

    This is the cached-features path: encode the training set once, then
    train only the head on the features (`build_text_head`); the head's
    weights are the same objects as in `build_text_classifier`'s model, so the
    final model is the full encoder + head. Texts are sorted by length and each
    batch is cut to its longest text (rounded up to a multiple of `bucket`):
    padding never changes the pooled output (attention and pooling are
    masked), so the features equal those of the full-length inputs up to
    float rounding, at a fraction of the cost for short texts.

    Args:
        encoder: `BertEncoder` (or a model with the same inputs).
        preprocessor: `BertPreprocessor`.
        texts: list of str (a bare str is refused).
        batch_size: int.
        bucket: int. Batch lengths are rounded up to a multiple of this.

    Returns:
        float32 array (len(texts), encoder.output_dim), in the order of `texts`.

    Example:
        >>> feats = mmtl_tf.models.encode_texts(encoder, pre, ["a", "b"])  # doctest: +SKIP
    """
    import tensorflow as tf

    check_texts(texts)
    texts = list(texts)
    if not texts:
        return np.zeros((0, encoder.output.shape[-1]), "float32")
    inputs = preprocessor(tf.constant(texts, dtype=tf.string))
    ids = inputs["token_ids"].numpy()
    mask = inputs["padding_mask"].numpy()
    lengths = mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    full = ids.shape[1]

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None, None], tf.int32)])
    def run(token_ids, padding_mask):
        return tf.cast(encoder({"token_ids": token_ids, "padding_mask": padding_mask},
                               training=False), tf.float32)

    fixed = encoder.input["token_ids"].shape[1] if isinstance(encoder.input, dict) else None
    out = np.zeros((len(texts), encoder.output.shape[-1]), "float32")
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        width = full if fixed else min(full, int(-(-lengths[rows].max() // bucket) * bucket))
        out[rows] = run(ids[rows, :width], mask[rows, :width]).numpy()
    return out
