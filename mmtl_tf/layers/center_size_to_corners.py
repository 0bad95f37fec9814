"""`CenterSizeToCorners`: (cy, cx, h, w) → [ymin, xmin, ymax, xmax]."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmtl_tf")
class CenterSizeToCorners(keras.layers.Layer):
    """Converts boxes given by centre and size into corner coordinates.

    A box head that predicts (cy, cx, h, w) with a sigmoid always yields a valid
    box (ymin <= ymax, xmin <= xmax) once converted; predicting the four corners
    directly does not. The output is clipped to [0, 1] (normalised image
    coordinates, the TFDS / Pascal VOC convention) and computed in float32.

    Example:
        >>> import numpy as np, mmtl_tf
        >>> mmtl_tf.layers.CenterSizeToCorners()(np.array([[0.5, 0.5, 0.2, 0.4]])).numpy().round(2)
        array([[0.4, 0.3, 0.6, 0.7]], dtype=float32)

    References:
        Ren et al., "Faster R-CNN", NeurIPS 2015 (centre/size box parameterisation).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    @staticmethod
    def _check_shape(shape):
        shape = tuple(shape)
        if not shape or shape[-1] not in (None, 4):
            raise ValueError(f"CenterSizeToCorners takes boxes (..., 4) as (cy, cx, h, w); "
                             f"got shape {shape}.")

    def call(self, boxes):
        boxes = ops.cast(boxes, "float32")
        self._check_shape(boxes.shape)
        center, size = boxes[..., :2], boxes[..., 2:]
        corners = ops.concatenate([center - size / 2.0, center + size / 2.0], axis=-1)
        return ops.clip(corners, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return input_shape
