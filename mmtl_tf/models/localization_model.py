"""Single-object localization: class + bounding box from one swapped backbone."""

import keras

from mmtl_tf.errors import check_count
from mmtl_tf.layers.center_size_to_corners import CenterSizeToCorners
from mmtl_tf.models.head_swap_classifier import (_check_head_units, dense_stack,
                                                 make_image_encoder)


def build_localization_model(backbone="resnet50", num_classes=None, input_shape=(224, 224, 3),
                             weights="imagenet", head_units=(1024,), dropout=0.0,
                             trainable="frozen", pooling="avg", name="localization_model"):
    """Classifies the main object of an image and regresses its bounding box.

    What the source document's "object detection" with a swapped classifier head
    can honestly be: one object per image. The pretrained backbone (as in
    `build_head_swap_classifier`) feeds a shared Dense trunk and two heads:
    `class` (softmax over `num_classes`) and `box` (sigmoid centre and size,
    converted to `[ymin, xmin, ymax, xmax]` in normalised image coordinates,
    the TFDS / Pascal VOC convention). Detecting several objects needs a
    detector (anchors or queries, non-maximum suppression): out of scope here.

    Args:
        backbone: str, keras.Model or ImageEncoder. See `build_head_swap_classifier`.
        num_classes: int >= 1.
        input_shape: (height, width, 3) of the uint8 input.
        weights: `"imagenet"`, None or a weights-file path.
        head_units: tuple of int. Hidden Dense widths of the shared trunk.
        dropout: float. Dropout after each hidden layer.
        trainable: str. `"frozen"`, `"partial"` or `"full"`.
        pooling: str. `"avg"`, `"max"` or `"flatten"`. Prefer `"flatten"`:
            global pooling discards where things are, and on notebook 04's
            emoji pasted on a canvas (EfficientNet-Lite0, 96 px) the box head
            after `"avg"` was unreliable (test IoU 0.363, 0.277, 0.285 over
            three seeds against 0.291 for always predicting the mean
            training box), after `"flatten"` 0.388 and 0.390 (two seeds). `mmtl-tf train
            head-swap --target localization` flattens (recipe
            `localization_pooling`).
        name: str.

    Returns:
        A Functional `keras.Model`: uint8 (B, H, W, 3) → `{"class": float32
        (B, num_classes) probabilities, "box": float32 (B, 4)}`. Its `head`
        layer maps pooled features to both outputs (for cached-feature
        training, see `mmtl_tf.models.fine_tune`). Compile it with
        `mmtl_tf.models.compile_for_task(model, "localization")`.

    Example:
        >>> import mmtl_tf
        >>> model = mmtl_tf.models.build_localization_model(
        ...     "mobilenet_v2", num_classes=20, input_shape=(96, 96, 3), weights=None)
        >>> {k: v.shape for k, v in model.output.items()}
        {'class': (None, 20), 'box': (None, 4)}

    References:
        Sermanet et al., "OverFeat: Integrated Recognition, Localization and
        Detection using Convolutional Networks", ICLR 2014 (a regression head for
        localization on a classification network); source document, section 3.2.1.
    """
    num_classes = check_count("num_classes", num_classes)
    units = _check_head_units(head_units)
    encoder = make_image_encoder(backbone, input_shape, weights, trainable, pooling)
    features = keras.Input((encoder.output_dim,), name="features")
    x = dense_stack(features, units, dropout)
    activation = "softmax" if num_classes > 1 else "sigmoid"
    probabilities = keras.layers.Dense(num_classes, activation=activation, dtype="float32",
                                       name="class")(x)
    center_size = keras.layers.Dense(4, activation="sigmoid", dtype="float32",
                                     name="box_center_size")(x)
    box = CenterSizeToCorners(name="box")(center_size)
    head = keras.Model(features, {"class": probabilities, "box": box}, name="head")
    image = keras.Input(encoder.input.shape[1:], dtype="uint8", name="image")
    return keras.Model(image, head(encoder(image)), name=name)
