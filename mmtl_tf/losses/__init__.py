"""Losses: pure `keras.ops` functions plus thin `keras.losses.Loss` classes."""

from mmtl_tf.losses.classifier_losses import ClassIdCrossentropy, MultiHotCrossentropy
from mmtl_tf.losses.clip_loss import ClipLoss, clip_loss
from mmtl_tf.losses.contrastive_loss import ContrastiveLoss, contrastive_loss
from mmtl_tf.losses.cross_replica import gather_across_replicas
from mmtl_tf.losses.pairwise_distance import pairwise_distance
from mmtl_tf.losses.sigmoid_loss import SigLipLoss, sigmoid_loss
from mmtl_tf.losses.triplet_loss import (TripletLoss, TripletMarginLoss, triplet_loss,
                                         triplet_margin_loss)
