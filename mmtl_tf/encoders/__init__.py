"""One tower per modality."""

from mmtl_tf.encoders.image_encoder import (BACKBONES, ImageEncoder,
                                            make_application_backbone,
                                            set_backbone_trainable)
from mmtl_tf.encoders.text_encoder import TextEncoder
