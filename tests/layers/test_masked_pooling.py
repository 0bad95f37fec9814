import keras
import numpy as np
import pytest

from mmtl_tf import runtime
from mmtl_tf.layers import MaskedPooling


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 6, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0],
                     [0, 0, 0, 0, 0, 0]], "int32")
    return x, mask


def test_mean_max_first_match_numpy():
    x, mask = _data()
    for mode in ("mean", "max", "first"):
        got = np.asarray(MaskedPooling(mode)(x, mask=mask))
        for i in range(len(x)):
            real = x[i][mask[i] == 1]
            if mode == "first":
                expected = x[i, 0]
            elif len(real) == 0:
                expected = np.zeros(3)  # an all-padding row pools to zeros, not NaN
            else:
                expected = real.mean(0) if mode == "mean" else real.max(0)
            np.testing.assert_allclose(got[i], expected, atol=1e-6, err_msg=f"{mode} row {i}")


def test_bool_mask_and_no_mask():
    x, mask = _data()
    pool = MaskedPooling("mean")
    np.testing.assert_allclose(pool(x, mask=mask.astype(bool)), pool(x, mask=mask), atol=0)
    np.testing.assert_allclose(pool(x), x.mean(1), atol=1e-6)


def test_padding_values_never_leak():
    x, mask = _data()
    poisoned = x.copy()
    poisoned[mask == 0] = 1e6
    for mode in ("mean", "max"):
        np.testing.assert_allclose(MaskedPooling(mode)(poisoned, mask=mask),
                                   MaskedPooling(mode)(x, mask=mask), atol=1e-6)


def test_mixed_precision_and_config():
    x, mask = _data()
    with runtime.settings(precision="mixed_float16"):
        pool = MaskedPooling("mean")
        out = pool(x * 1000, mask=mask)
        assert out.dtype == "float16"
        # Same as float32 pooling of the float16-rounded inputs (sums in float32).
        rounded = (x * 1000).astype("float16").astype("float32")
        np.testing.assert_allclose(np.asarray(out, "float32"),
                                   MaskedPooling("mean", dtype="float32")(rounded, mask=mask),
                                   rtol=1e-3)
    clone = MaskedPooling.from_config(MaskedPooling("max", name="p").get_config())
    assert clone.mode == "max" and clone.name == "p"
    assert keras.saving.get_registered_object("mmtl_tf>MaskedPooling") is MaskedPooling


def test_bad_mode_names_the_allowed_ones():
    with pytest.raises(ValueError, match="mode='median'.*'mean', 'max', 'first'"):
        MaskedPooling("median")
