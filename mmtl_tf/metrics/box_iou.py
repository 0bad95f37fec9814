"""Intersection over union of bounding boxes, in `keras.ops`."""

import keras
from keras import ops

from mmtl_tf._input_checks import dims_differ


def box_iou(boxes_true, boxes_pred):
    """Element-wise IoU of two sets of boxes `[ymin, xmin, ymax, xmax]`.

    The TFDS / Pascal VOC convention: normalised coordinates, y first. A box
    with ymax < ymin or xmax < xmin has zero area.

    Args:
        boxes_true: (..., 4) float.
        boxes_pred: (..., 4) float, same leading shape.

    Returns:
        float32 (...) in [0, 1]; 0 where the union is empty, NaN where
        either box holds NaN (it was 0, as for a miss).

    Example:
        >>> import numpy as np, mmtl_tf
        >>> float(mmtl_tf.metrics.box_iou(np.array([0., 0., 1., 1.]), np.array([0., 0., 1., 0.5])))
        0.5

    References:
        Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge",
        IJCV 2010 (a detection counts when IoU > 0.5; `BoxIoU(threshold=0.5)`
        counts IoU >= 0.5, as COCO's evaluation does).
    """
    a = ops.cast(ops.convert_to_tensor(boxes_true), "float32")
    b = ops.cast(ops.convert_to_tensor(boxes_pred), "float32")
    for name, boxes in (("boxes_true", a), ("boxes_pred", b)):
        if not boxes.shape or boxes.shape[-1] not in (None, 4):
            raise ValueError(f"{name} must be boxes (..., 4) [ymin, xmin, ymax, xmax]; got "
                             f"shape {tuple(boxes.shape)}.")
    # Known shapes must match: one box against three was broadcast to three
    # IoUs, two against three was TensorFlow's "Incompatible shapes ... [Op:Minimum]".
    if len(a.shape) != len(b.shape) or any(
            dims_differ(x, y) for x, y in zip(a.shape[:-1], b.shape[:-1])):
        raise ValueError(f"boxes_true and boxes_pred must have the same shape (..., 4), one "
                         f"predicted box per true box; got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}.")

    def area(box):
        return ops.maximum(box[..., 2] - box[..., 0], 0.0) * \
            ops.maximum(box[..., 3] - box[..., 1], 0.0)

    height = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
    width = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
    intersection = height * width
    union = area(a) + area(b) - intersection
    iou = ops.where(union > 0, intersection / ops.maximum(union, 1e-12), 0.0)
    # A box holding NaN (a diverged model's output) gave 0, like a miss.
    nan = ops.logical_or(ops.any(ops.isnan(a), axis=-1), ops.any(ops.isnan(b), axis=-1))
    return ops.where(nan, float("nan"), iou)


# Tolerance of BoxIoU's threshold for float32 rounding of the IoU.
_ROUNDING = 1e-6


@keras.saving.register_keras_serializable(package="mmtl_tf")
class BoxIoU(keras.metrics.Mean):
    """Mean IoU between true and predicted boxes, or the fraction above a threshold.

    Args:
        threshold: float or None. None → the mean IoU; a value → the fraction of
            predictions with IoU >= threshold (0.5: the Pascal VOC criterion,
            which counts IoU > 0.5, except that a box at exactly 0.5 counts here:
            within float32 rounding, 1e-6, since IoU computed in float32 may
            land just below a threshold it equals exactly).
        name: str or None. Default `"iou"` or `"iou@{threshold}"`.

    Example:
        >>> model.compile(..., metrics={"box": [mmtl_tf.metrics.BoxIoU()]})  # doctest: +SKIP
    """

    def __init__(self, threshold=None, name=None, **kwargs):
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] or None, got {threshold!r}.")
        self.threshold = None if threshold is None else float(threshold)
        name = name or ("iou" if threshold is None else f"iou@{self.threshold:g}")
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        iou = box_iou(y_true, y_pred)
        if self.threshold is not None:
            # (A box of IoU exactly 0.5, e.g. [0, 0, 0.01, 0.06] against
            # [0, 0, 0.01, 0.03], came out 0.49999994 in float32 and missed.)
            iou = ops.cast(iou >= self.threshold - _ROUNDING, "float32")
        return super().update_state(iou, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}
