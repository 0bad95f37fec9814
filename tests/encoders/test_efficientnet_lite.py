"""EfficientNet-Lite0: the torch-free .pth reader, the Keras port and its ImageNet weights."""

import collections
import os
import pickle
import sys
import types
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf.data.torch_state_dict import read_torch_state_dict
from mmtl_tf.encoders import ImageEncoder
from mmtl_tf.encoders import efficientnet_lite as lite
from tests.conftest import load_script
from tests.harness import run_model_test

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "efficientnet_lite0_reference.npz")


# ---- A legacy-format .pth written without torch, to test the reader exactly.

class _FakeTensor:
    def __init__(self, key, base, offset, size, stride):
        self.key, self.base, self.offset, self.size, self.stride = key, base, offset, size, stride


def _write_legacy_pth(path, tensors, monkeypatch):
    """Writes {name: _FakeTensor} in torch's legacy format (magic, protocol, info, pickle, data)."""
    torch_mod = types.ModuleType("torch")
    utils_mod = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # only its name matters
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {}
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch_mod, name, cls)
        storage_types[name] = cls
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and obj and obj[0] == "STORAGE":
                _, key, base = obj
                kind = "LongStorage" if base.dtype == np.int64 else "FloatStorage"
                return ("storage", storage_types[kind], key, "cpu", base.size, None)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, _FakeTensor):
                return (_rebuild_tensor_v2, (("STORAGE", obj.key, obj.base), obj.offset,
                                             obj.size, obj.stride, False,
                                             collections.OrderedDict()))
            return NotImplemented

    storages = {}
    for t in tensors.values():
        storages[t.key] = t.base
    with open(path, "wb") as f:
        pickle.dump(lite_magic(), f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        Pickler(f, protocol=2).dump(collections.OrderedDict(tensors))
        pickle.dump(list(storages), f, protocol=2)
        for base in storages.values():
            f.write(np.int64(base.size).tobytes())
            f.write(base.astype(base.dtype.newbyteorder("<")).tobytes())


def lite_magic():
    from mmtl_tf.data import torch_state_dict

    return torch_state_dict._LEGACY_MAGIC


def test_reader_rebuilds_non_contiguous_tensors_from_strides(tmp_path, monkeypatch):
    base = np.arange(24, dtype=np.float32)
    longs = np.arange(10, dtype=np.int64)
    tensors = {
        # (4, 2, 3) view of a (2, 3, 4) buffer permuted: strides (1, 12, 4), not contiguous.
        "permuted": _FakeTensor("0", base, 0, (4, 2, 3), (1, 12, 4)),
        "offset_slice": _FakeTensor("1", longs, 2, (5,), (1,)),
        "scalar": _FakeTensor("1", longs, 7, (), ()),
    }
    path = tmp_path / "tiny.pth"
    _write_legacy_pth(str(path), tensors, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")
    arrays = read_torch_state_dict(str(path))
    assert list(arrays) == ["permuted", "offset_slice", "scalar"]
    np.testing.assert_array_equal(arrays["permuted"], base.reshape(2, 3, 4).transpose(2, 0, 1))
    assert arrays["permuted"].flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(arrays["offset_slice"], [2, 3, 4, 5, 6])
    assert arrays["offset_slice"].dtype == np.int64
    assert arrays["scalar"].shape == () and int(arrays["scalar"]) == 7
    # Reading the buffer as if contiguous would give the wrong values: the pitfall.
    assert not np.array_equal(base[:24].reshape(4, 2, 3), arrays["permuted"])


def test_reader_rejects_bad_files(tmp_path, monkeypatch):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(mmtl_tf.DataError, match="bad.pth"):
        read_torch_state_dict(str(path))
    # A pickle that would call an arbitrary function is refused, not run.
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump(lite_magic(), f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"little_endian": True}, f, protocol=2)
        pickle.dump({"w": os.getcwd}, f, protocol=2)
    with pytest.raises(mmtl_tf.DataError, match="refusing to unpickle"):
        read_torch_state_dict(str(evil))
    # A truncated file names the missing storage.
    good = tmp_path / "good.pth"
    _write_legacy_pth(str(good), {"w": _FakeTensor("0", np.ones(6, np.float32), 0, (6,), (1,))},
                      monkeypatch)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:-8])
    with pytest.raises(mmtl_tf.DataError, match="storage '0'"):
        read_torch_state_dict(str(truncated))


@pytest.fixture(scope="module")
def lite0_pth():
    return lite.efficientnet_lite0_pth()


def test_real_checkpoint_matches_values_read_by_torch(lite0_pth):
    arrays = read_torch_state_dict(lite0_pth)
    assert len(arrays) == 296
    stem = arrays["_conv_stem.weight"]  # stored HWIO-ordered in the file: non-contiguous
    assert stem.shape == (32, 3, 3, 3)
    # Values printed by torch 2.13 (`torch.load(...)["_conv_stem.weight"]`).
    np.testing.assert_allclose(stem[5, 1, 2, 0], 0.06300771236419678, rtol=1e-7)
    np.testing.assert_allclose(stem.sum(), -26.81137466430664, rtol=1e-5)
    # Every tensor lands in the Keras model, and the parameter counts agree.
    model = lite.EfficientNetLite0(include_top=True, classifier_activation=None)
    lite.set_weights_from_torch_state_dict(model, arrays)
    torch_params = sum(a.size for k, a in arrays.items() if not k.endswith("num_batches_tracked"))
    assert model.count_params() == torch_params == 4_694_024


def _verify_module():
    return load_script("data_prep", "verify_efficientnet_lite0")


def _check_against_reference(only_sklearn):
    verify = _verify_module()
    stored = np.load(REFERENCE)
    names = list(stored["names"])
    if only_sklearn:
        import sklearn.datasets

        folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
        photos = [(f"sklearn:{n}", os.path.join(folder, n)) for n in verify.SKLEARN_PHOTOS]
    else:
        photos = verify.sample_photos()
    rows = [names.index(n) for n, _ in photos]
    ours = verify.keras_logits(verify.photo_pixels(photos))
    result = verify.compare([n for n, _ in photos], ours, stored["logits"][rows])
    assert result["top1_agree"] == len(photos), result["rows"]
    assert result["correlation"] > 0.9999
    assert result["max_abs_diff"] < 1e-3
    return result


def test_port_reproduces_pytorch_logits_on_sklearn_photos():
    """china.jpg → palace (698), flower.jpg → daisy (985), as the PyTorch original."""
    result = _check_against_reference(only_sklearn=True)
    assert [r["keras_top1"] for r in result["rows"]] == [698, 985]


@pytest.mark.slow
def test_port_reproduces_pytorch_logits_on_all_24_sample_photos():
    result = _check_against_reference(only_sklearn=False)
    assert result["images"] == 24


def test_headless_weights_load_into_the_encoder_and_match_the_full_model():
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    encoder = ImageEncoder("efficientnet_lite0", input_shape=(64, 64, 3), weights="imagenet",
                           pooling="avg", trainable="frozen")
    full = lite.EfficientNetLite0(weights="imagenet", input_shape=(64, 64, 3))
    pooled = keras.Model(full.input, full.get_layer("avg_pool").output)
    np.testing.assert_allclose(encoder(x), pooled(x.astype("float32")), atol=1e-4)
    assert encoder.backbone.trainable is False


@pytest.mark.slow
def test_lite0_image_encoder_harness():
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    y = np.zeros((2, 1280), "float32")
    run_model_test(lambda: ImageEncoder("efficientnet_lite0", input_shape=(32, 32, 3),
                                        trainable="partial"),
                   x, y, loss="mse", expected_output_shape=(2, 1280), float32_outputs=False,
                   precisions=("mixed_bfloat16",))


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "mobilenet.weights.h5")
    other.save_weights(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="does not fit backbone 'efficientnet_lite0'"):
            ImageEncoder("efficientnet_lite0", input_shape=(32, 32, 3), weights=path)
    # Only the error: not Keras' warning for each of the layers it skipped on the way.
    assert not [w for w in caught if "Skipping nested container" in str(w.message)]
    with pytest.raises(ValueError, match="'efficientnet_lite0'"):  # unknown names list it
        ImageEncoder("efficientnet_lite9", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="needs input_shape"):
        ImageEncoder("efficientnet_lite0", input_shape=(16, 16, 3))


def test_tf_same_padding_is_what_makes_the_port_exact():
    """Symmetric padding (as keras-hub's EfficientNet uses) changes the outputs."""
    model = lite.EfficientNetLite0(weights="imagenet", classifier_activation=None)
    x = tf.constant(np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3)), tf.float32)
    stem = model.get_layer("stem_conv")
    same = stem(model.get_layer("rescaling")(x))
    padded = tf.pad(model.get_layer("rescaling")(x), [[0, 0], [1, 1], [1, 1], [0, 0]])
    symmetric = tf.nn.conv2d(padded, stem.kernel, strides=2, padding="VALID")
    assert same.shape == symmetric.shape
    assert float(tf.reduce_max(tf.abs(same - symmetric))) > 0.1
