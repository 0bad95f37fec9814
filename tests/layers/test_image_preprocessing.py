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


@pytest.mark.parametrize("mode", ["caffe", "torch"])
@pytest.mark.parametrize("channels", [1, 4])
def test_per_channel_modes_need_three_channels(mode, channels):
    # A 1-channel image used to come out with 3 channels (broadcast against the
    # RGB mean); 4 channels gave a raw "Incompatible shapes" error.
    layer = ImagePreprocessing(mode)
    with pytest.raises(ValueError, match=rf"mode='{mode}' needs RGB images with 3 channels.*"
                                         rf"got images of shape \(2, 5, 4, {channels}\)"):
        layer(np.zeros((2, 5, 4, channels), "uint8"))
    with pytest.raises(ValueError, match=rf"got images of shape \(None, 5, 4, {channels}\)"):
        layer(keras.Input((5, 4, channels), dtype="uint8"))


@pytest.mark.parametrize("mode", ["rescale", "tf", "none"])
def test_per_value_modes_take_any_channel_count(mode):
    gray = np.full((1, 2, 2, 1), 255, "uint8")
    out = np.asarray(ImagePreprocessing(mode)(gray))
    assert out.shape == (1, 2, 2, 1)
    assert out[0, 0, 0, 0] == {"rescale": 1.0, "tf": 1.0, "none": 255.0}[mode]
