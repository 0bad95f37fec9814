"""`ImagePreprocessing`: uint8 pixels → the input scaling a backbone expects."""

import keras
from keras import ops

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

    def call(self, images):
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
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
