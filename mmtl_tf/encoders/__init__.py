"""One tower per modality."""

from mmtl_tf.encoders.image_encoder import (BACKBONES, ImageEncoder,
                                            make_application_backbone,
                                            recalibrate_batch_norm, set_backbone_trainable)
from mmtl_tf.encoders.text_encoder import TextEncoder
from mmtl_tf.encoders.bert_encoder import (BertEncoder, load_bert_backbone,
                                           set_bert_trainable)
from mmtl_tf.encoders.efficientnet_lite import (EfficientNetLite0,
                                                efficientnet_lite0_imagenet_weights)
from mmtl_tf.encoders.audio_encoder import AudioEncoder
