import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.errors import check_choice, check_count


def test_check_count_accepts_integers_and_refuses_the_rest():
    assert check_count("n", 3) == 3 and type(check_count("n", np.int64(3))) is int
    assert check_count("n", 0, minimum=0) == 0
    for bad in (0, -2, 2.5, 3.0, True, "3", None):
        with pytest.raises(ValueError, match=f"n must be an integer >= 1, got {bad!r}"):
            check_count("n", bad)


def test_check_choice_names_the_allowed_values():
    check_choice("mode", "a", ("a", None))
    check_choice("mode", None, ("a", None))
    with pytest.raises(ValueError, match=r"mode='b' is not allowed; use one of 'a', None\."):
        check_choice("mode", "b", ("a", None))


@pytest.mark.parametrize("build", [
    lambda: mmtl_tf.data.make_image_text_dataset("default", "validation", image_size=(8, 8),
                                                 batch_size=0),
    lambda: mmtl_tf.data.make_image_classification_dataset("default", "validation",
                                                           image_size=(8, 8), batch_size=0),
    lambda: mmtl_tf.data.make_audio_text_dataset("default", "validation", batch_size=0),
    lambda: mmtl_tf.data.make_text_classification_dataset("default", split="validation",
                                                          batch_size=0),
])
def test_dataset_builders_refuse_batch_size_0_before_reading(build):
    # TensorFlow's own error came after every file was decoded, and read
    # "{{function_node __wrapped__BatchDatasetV2...}} Batch size must be greater than zero".
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        build()


def test_classifier_builders_refuse_fractional_class_counts():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 2.5"):
        mmtl_tf.models.build_fusion_classifier(image_shape=(8, 8, 3), vocab_size=10,
                                               sequence_length=4, num_classes=2.5)
    model = mmtl_tf.models.build_fusion_classifier(image_shape=(8, 8, 3), vocab_size=10,
                                                   sequence_length=4)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        mmtl_tf.training.compile_classifier(model, num_classes=0)
