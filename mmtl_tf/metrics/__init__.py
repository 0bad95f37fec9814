"""Metrics: retrieval (R@K, mean/median rank, mAP@10) and an embedding index;
mean average precision (multi-label heads); box IoU (localization heads)."""

from mmtl_tf.metrics.retrieval import (EmbeddingIndex, chance_recall, duplicate_positives,
                                       embed_dataset, evaluate_retrieval, paired_positives,
                                       positives_from_labels, retrieval_metrics)
from mmtl_tf.metrics.average_precision import (MeanAveragePrecision, average_precision,
                                               mean_average_precision)
from mmtl_tf.metrics.box_iou import BoxIoU, box_iou
