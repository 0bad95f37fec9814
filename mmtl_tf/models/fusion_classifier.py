"""The source document's image-text fusion classifier (its section 4.1.1)."""

import keras

from mmtl_tf.encoders.image_encoder import (TRAINABLE, ImageEncoder, check_image_shape,
                                            check_small_cnn_size)
from mmtl_tf.encoders.text_encoder import TextEncoder
from mmtl_tf.errors import check_choice, check_count


# embedding_dim=None: the document's width for its Flatten model; half of it for
# the pooled default, whose size is otherwise mostly the Embedding(5000, 128)
# table (see build_fusion_classifier).
DOCUMENT_EMBEDDING_DIM = 128
DEFAULT_EMBEDDING_DIM = 64


def classification_head(x, num_classes, name="classifier"):
    """Dense output layer: 1 sigmoid unit if `num_classes == 1`, else softmax.

    The layer computes in float32 even under a mixed-precision policy, so the
    probabilities (and the loss computed from them) keep float32 precision.
    """
    num_classes = check_count("num_classes", num_classes)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return keras.layers.Dense(num_classes, activation=activation, dtype="float32",
                              name=name)(x)


def fusion_head(branches, hidden_units, num_classes, dropout=0.0, fusion_dropout=0.0):
    """Late fusion: Concatenate → [Dropout] → Dense(hidden, relu) → [Dropout] → head.

    Args:
        branches: list of symbolic tensors (B, features), one per modality.
        hidden_units: int. Width of the fusion layer.
        num_classes: int. See `classification_head`.
        dropout: float. Dropout after the fusion layer (0: none).
        fusion_dropout: float. Dropout on the concatenated features (0: none).

    Returns:
        The float32 output of `classification_head`.
    """
    hidden_units = check_count("hidden_units", hidden_units)
    features = keras.layers.Concatenate(name="fusion")(list(branches))
    if fusion_dropout:
        features = keras.layers.Dropout(fusion_dropout, name="fusion_dropout")(features)
    x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return classification_head(x, num_classes)


def build_fusion_classifier(image_shape=(224, 224, 3), vocab_size=5000,
                            sequence_length=100, embedding_dim=None, lstm_units=64,
                            conv_filters=64, conv_blocks=1, image_pooling="avg", hidden_units=64,
                            num_classes=1, image_encoder=None,
                            image_encoder_weights=None, image_trainable="full",
                            dropout=0.0, fusion_dropout=0.0, mask_zero=True,
                            name="fusion_classifier"):
    """Image branch + text branch, concatenated, then a small classifier.

    Image: `ImageEncoder` (uint8 pixels in; rescaling is inside the model).
    Text: `TextEncoder` (Embedding → LSTM on int token ids; see
    `mmtl_tf.data.make_text_vectorizer`). Their features are concatenated →
    Dense(hidden_units, relu) → Dense(num_classes).

    With `image_pooling="flatten"` and the other defaults this is exactly the
    source document's model: Conv2D(64, 3×3, relu) → MaxPool(2×2) → Flatten;
    Embedding(5000, 128) → LSTM(64); Concatenate → Dense(64, relu) →
    Dense(1, sigmoid): 51,162,241 parameters, 50.5 M of them in the Dense
    layer behind the 111×111×64 Flatten. The default `"avg"` (global average
    pooling) has a 64-wide image feature and a 64-wide text embedding:
    363,137 parameters, 140.9× fewer (320,000 of them are the embedding).
    With the document's 128-wide embedding it would have 699,521, only 73×
    fewer, because Embedding(5000, 128) alone is 640,000 parameters, more
    than 1/100 of the document's model; hence `embedding_dim=None`.

    Args:
        image_shape: (height, width, channels), integers, of the uint8 image input
            (pixels 0-255; Keras casts float input to uint8, so images
            already scaled to [0, 1] would become 0s and 1s).
        vocab_size: int. Token-id vocabulary size (0 = padding).
        sequence_length: int. Token ids per caption.
        embedding_dim: int or None. Text embedding width. None (the default)
            → 128 with `image_pooling="flatten"` (the document's model), 64
            with `"avg"` or `"max"`. It follows the `image_pooling` argument,
            also when a given `ImageEncoder` pools its own way.
        lstm_units: int. LSTM width.
        conv_filters: int. Filters of the small CNN (when `image_encoder` is None).
        conv_blocks: int. Conv → MaxPool blocks of the small CNN (1 in the
            document). Height and width must be at least 4, 10, 22, … for
            1, 2, 3, … blocks (a `ValueError` names image_shape, conv_blocks and
            the minimum).
        image_pooling: str. `"avg"`, `"max"` or `"flatten"` (the document's).
        hidden_units: int. Width of the fusion Dense layer.
        num_classes: int. 1 → one sigmoid output (binary); >1 → softmax.
        image_encoder: None, str or keras.Model. None → the document's small CNN;
            a `keras.applications` name (e.g. `"mobilenet_v2"`, see
            `mmtl_tf.encoders.BACKBONES`) or any Keras model → transfer learning
            inside the multimodal model; an `ImageEncoder` is used as is.
        image_encoder_weights: None, `"imagenet"` or a weights-file path, for a
            named `image_encoder`. None (the default) never downloads. With
            the small CNN or an `ImageEncoder` it is a `ValueError`.
        image_trainable: str. `"frozen"`, `"partial"` or `"full"` for a named or
            given backbone; `"frozen"` or `"full"` for the small CNN.
        dropout: float. Dropout after the fusion Dense layer (0 in the document).
        fusion_dropout: float. Dropout on the concatenated image and text
            features (0 in the document). It keeps the classifier from leaning on
            whichever branch memorises the training set first.
        mask_zero: bool. Mask padding in the LSTM (see `TextEncoder`).
        name: str.

    Returns:
        A Functional `keras.Model` with inputs `{"image": uint8 (B, H, W, C),
        "text": int32 (B, sequence_length)}` and float32 probabilities
        (B, num_classes).

    Example:
        >>> import mmtl_tf
        >>> model = mmtl_tf.models.build_fusion_classifier(
        ...     image_shape=(64, 64, 3), vocab_size=1000, sequence_length=16,
        ...     num_classes=9)
        >>> model.output.shape
        (None, 9)

    References:
        Source document, section 4.1.1 ("image and text fusion").
    """
    num_classes = check_count("num_classes", num_classes)
    check_choice("image_pooling", image_pooling, ("avg", "max", "flatten"))
    check_choice("image_trainable", image_trainable, TRAINABLE)
    image_shape = check_image_shape("image_shape", image_shape)
    hidden_units = check_count("hidden_units", hidden_units)
    if image_encoder_weights is not None and (image_encoder is None
                                              or isinstance(image_encoder, ImageEncoder)):
        # It was ignored without a word (a weights file that did not even exist).
        given = "an ImageEncoder (give it its weights)" if image_encoder is not None \
            else "the small CNN (image_encoder=None)"
        raise ValueError(f"image_encoder_weights={image_encoder_weights!r} applies to a named "
                         f"or given backbone, not to {given}; load weights into the built "
                         "model with model.load_weights(...).")
    if isinstance(image_encoder, ImageEncoder):
        image_tower = image_encoder
    elif image_encoder is None:
        if image_trainable == "partial":
            raise ValueError("image_trainable='partial' applies to a named or given "
                             "image_encoder; the small CNN is 'frozen' or 'full'.")
        conv_blocks = check_count("conv_blocks", conv_blocks)
        conv_filters = check_count("conv_filters", conv_filters)
        check_small_cnn_size("image_shape", image_shape, conv_blocks)
        image_tower = ImageEncoder("small_cnn", input_shape=image_shape,
                                   pooling=image_pooling, conv_filters=conv_filters,
                                   conv_blocks=conv_blocks, trainable=image_trainable)
    else:
        image_tower = ImageEncoder(image_encoder, input_shape=image_shape,
                                   pooling=image_pooling, weights=image_encoder_weights,
                                   trainable=image_trainable)
    if embedding_dim is None:
        embedding_dim = DOCUMENT_EMBEDDING_DIM if image_pooling == "flatten" \
            else DEFAULT_EMBEDDING_DIM
    text_tower = TextEncoder(vocab_size=vocab_size, sequence_length=sequence_length,
                             embedding_dim=embedding_dim, lstm_units=lstm_units,
                             mask_zero=mask_zero)
    image_in = keras.Input(image_tower.input.shape[1:], dtype="uint8", name="image")
    text_in = keras.Input((sequence_length,), dtype="int32", name="text")
    outputs = fusion_head([image_tower(image_in), text_tower(text_in)], hidden_units,
                          num_classes, dropout=dropout, fusion_dropout=fusion_dropout)
    return keras.Model({"image": image_in, "text": text_in}, outputs, name=name)
