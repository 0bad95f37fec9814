"""Task models assembled from encoders, layers and heads."""

from mmtl_tf.models.fusion_classifier import (build_fusion_classifier,
                                              classification_head)
