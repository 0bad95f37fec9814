import keras
import numpy as np
import pytest

from mmtl_tf.layers import ImagePreprocessing


@pytest.mark.parametrize("mode,reference", [
    ("caffe", lambda x: keras.applications.resnet50.preprocess_input(x.copy())),
    ("tf", lambda x: keras.applications.mobilenet_v2.preprocess_input(x.copy())),
    ("torch", lambda x: keras.applications.densenet.preprocess_input(x.copy())),
    ("rescale", lambda x: x / 255.0),
    ("none", lambda x: x),
])
def test_modes_match_keras_applications(mode, reference):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3)).astype("uint8")
    got = np.asarray(ImagePreprocessing(mode)(pixels))
    np.testing.assert_allclose(got, reference(pixels.astype("float32")), rtol=1e-5, atol=1e-4)


def test_unknown_mode_and_config():
    with pytest.raises(ValueError, match="'rescale', 'tf', 'torch', 'caffe', 'none'"):
        ImagePreprocessing("imagenet")
    layer = ImagePreprocessing("caffe", name="p")
    assert ImagePreprocessing.from_config(layer.get_config()).mode == "caffe"
