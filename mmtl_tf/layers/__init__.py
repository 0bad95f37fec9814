"""Small reusable Keras layers (one class a file)."""

from mmtl_tf.layers.image_preprocessing import ImagePreprocessing
from mmtl_tf.layers.l2_normalize import L2Normalize
from mmtl_tf.layers.logit_scale import ClipToRange, LogitScale
from mmtl_tf.layers.masked_pooling import MaskedPooling
from mmtl_tf.layers.matching_attention import MatchingAttention
from mmtl_tf.layers.pair_distance import PairDistance
from mmtl_tf.layers.projection_head import ProjectionHead
from mmtl_tf.layers.center_size_to_corners import CenterSizeToCorners
from mmtl_tf.layers.log_mel_spectrogram import LogMelSpectrogram
from mmtl_tf.layers.per_example import PerExample
