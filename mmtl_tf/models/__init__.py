"""Task models assembled from encoders, layers and heads."""

from mmtl_tf.models.fusion_classifier import (build_fusion_classifier,
                                              classification_head)
from mmtl_tf.models.text_classifier import (build_lstm_text_classifier,
                                            build_text_classifier, build_text_head,
                                            encode_texts)
from mmtl_tf.models.dual_encoder import DualEncoder, build_dual_encoder
from mmtl_tf.models.embedding_model import build_embedding_model
from mmtl_tf.models.matching_network import build_matching_network
from mmtl_tf.models.siamese_network import build_siamese_network
from mmtl_tf.models.triplet_network import TripletNetwork, build_triplet_network
from mmtl_tf.models.head_swap_classifier import (build_head_swap_classifier, freeze,
                                                 unfreeze)
from mmtl_tf.models.localization_model import build_localization_model
from mmtl_tf.models.fine_tune import compile_for_task, extract_features, fine_tune
from mmtl_tf.models.audio_classifier import build_audio_classifier
from mmtl_tf.models.audio_text_fusion_classifier import build_audio_text_fusion_classifier
from mmtl_tf.models.audio_text_dual_encoder import build_audio_text_dual_encoder
