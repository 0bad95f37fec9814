"""Small reusable Keras layers (one class a file)."""

from mmtl_tf.layers.image_preprocessing import ImagePreprocessing
