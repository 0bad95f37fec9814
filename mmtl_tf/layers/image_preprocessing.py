"""`ImagePreprocessing`: uint8 pixels → the input scaling a backbone expects."""

import keras
from keras import ops

from mmtl_tf._input_checks import dims_differ, static_shape

_MODES = ("rescale", "tf", "torch", "caffe", "none")
_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="mmtl_tf")
class ImagePreprocessing(keras.layers.Layer):
    """Casts uint8 (or float) pixels in [0, 255] and scales them for a backbone.

    Putting this inside the model lets the model, and its exported SavedModel,
    take raw uint8 pixels. The modes match `keras.applications`'
    `preprocess_input` functions.

    Args:
        mode: str. `"rescale"` (x / 255), `"tf"` (x / 127.5 - 1, MobileNet),
            `"torch"` (ImageNet mean/std on x / 255), `"caffe"` (RGB → BGR minus
            the ImageNet mean, ResNet50 / VGG16) or `"none"` (only the cast; for
            backbones that rescale themselves, like EfficientNet).

    `"caffe"` and `"torch"` work per RGB channel, so they need images with 3
    channels (last axis): another static channel count raises a `ValueError`
    naming the mode and the shape (a 1-channel image used to be broadcast to
    3 channels silently; convert grayscale first, e.g. with
    `tf.image.grayscale_to_rgb`). Inside a graph where the channel count is
    unknown it is not checked. `"rescale"`, `"tf"` and `"none"` scale every
    value alike and take any channel count.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> layer = mmtl_tf.layers.ImagePreprocessing("tf")
        >>> layer(np.array([[[[0, 255, 255]]]], "uint8")).numpy().tolist()
        [[[[-1.0, 1.0, 1.0]]]]
    """

    def __init__(self, mode="rescale", **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(
                f"mode={mode!r} is not allowed; use one of {', '.join(map(repr, _MODES))}.")
        self.mode = mode

    def _check_channels(self, shape):
        if self.mode in ("caffe", "torch") and shape and dims_differ(shape[-1], 3):
            raise ValueError(
                f"ImagePreprocessing mode={self.mode!r} needs RGB images with 3 channels "
                f"(its mean{'/std' if self.mode == 'torch' else ''} is per RGB channel); got "
                f"images of shape {shape}. Convert grayscale images to RGB first (e.g. "
                f"tf.image.grayscale_to_rgb) or use mode 'rescale', 'tf' or 'none'.")

    def call(self, images):
        self._check_channels(static_shape(images))
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "rescale":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_IMAGENET_MEAN_RGB, self.compute_dtype)
            std = ops.convert_to_tensor(_IMAGENET_STD_RGB, self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
        return x

    def compute_output_shape(self, input_shape):
        self._check_channels(tuple(input_shape))
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
