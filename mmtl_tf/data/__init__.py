"""tf.data pipelines and data sources."""

from mmtl_tf.data.assets import cache_dir, fetch_pypi_package
from mmtl_tf.data.image import (augment_image, decode_image, decoded_image_dataset,
                                preprocess_image_batch, preprocess_image_bytes,
                                resize_and_crop)
from mmtl_tf.data.pairs import make_image_text_dataset
from mmtl_tf.data.sources import (DEFAULT_SAMPLE_DIR, ImageTextRecords,
                                  load_image_text_records, read_captions_file)
from mmtl_tf.data.text import (load_text_vectorizer, make_text_vectorizer,
                               save_text_vectorizer)
