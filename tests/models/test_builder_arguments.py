"""Builders name their own argument, the value and what is allowed."""

import keras
import numpy as np
import pytest

import mmtl_tf.models as M

TEXT = dict(vocab_size=50, sequence_length=4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_shape=(16, 16, 3), conv_blocks=3),
     r"image_shape=\(16, 16, 3\) is too small for the small CNN with conv_blocks=3: "
     r"height and width must be >= 22"),
    (dict(image_shape=(32, 32, 3), conv_blocks=2.5), r"conv_blocks must be an integer >= 1, got 2.5"),
    (dict(image_shape=(32, 32, 3), hidden_units=0), r"hidden_units must be an integer >= 1, got 0"),
    (dict(image_shape=(32, 32, 3), conv_filters=0), r"conv_filters must be an integer >= 1, got 0"),
    (dict(image_shape=(32.7, 32, 3)), r"image_shape must be \(height, width, channels\), "
                                      r"3 integers >= 1; got \(32.7, 32, 3\)"),
])
def test_fusion_classifier_names_a_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        M.build_fusion_classifier(**kwargs, **TEXT)


def test_whole_float_image_sizes_are_taken_as_ints():
    # Refusing 32.7 (it was truncated to 32) refused 32.0 and np.float64(32)
    # too, which lose nothing (computed sizes, e.g. side * 0.5).
    model = M.build_fusion_classifier(image_shape=(32.0, np.float64(24), 3.0), **TEXT)
    assert tuple(model.input["image"].shape) == (None, 32, 24, 3)
    with pytest.raises(ValueError, match=r"3 integers >= 1; got \(nan, 32, 3\)"):
        M.build_fusion_classifier(image_shape=(float("nan"), 32, 3), **TEXT)


def test_fusion_classifier_smallest_image_for_its_conv_blocks_builds():
    model = M.build_fusion_classifier(image_shape=(np.int64(22), 22, 3), conv_blocks=3, **TEXT)
    assert tuple(model.input["image"].shape) == (None, 22, 22, 3)


def test_audio_classifier_names_its_own_arguments():
    with pytest.raises(ValueError, match=r"audio_input='mfcc' is not allowed"):
        M.build_audio_classifier(num_samples=4000, audio_input="mfcc")
    with pytest.raises(ValueError, match=r"conv_filters must be an integer >= 1 or a non-empty "
                                         r"sequence of them .* got \(8, 2.5\)"):
        M.build_audio_classifier(num_samples=4000, conv_filters=(8, 2.5))


def test_audio_classifier_takes_an_int_conv_filters_as_one_block():
    model = M.build_audio_classifier(num_samples=4000, conv_filters=8, num_classes=3)
    assert model.get_layer("audio_encoder").get_layer("conv1").filters == 8
    assert "conv2" not in [l.name for l in model.get_layer("audio_encoder").layers]


def test_head_swap_takes_numpy_integers():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    backbone = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c2")(x))
    model = M.build_head_swap_classifier(backbone, num_classes=3, input_shape=(8, 8, 3),
                                         head_units=(np.int64(8),))
    assert model.get_layer("head").get_layer("head_dense_1").units == 8
    assert M.unfreeze(model, num_layers=np.int64(1)) == ["c2"]
