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


def test_the_mask_is_a_boolean_padding_mask_not_weights():
    # Token ids passed as the mask used to weight the mean by the ids.
    x, mask = _data()
    ids = mask * np.arange(2, 8)[None]
    for mode in ("mean", "max"):
        pool = MaskedPooling(mode)
        np.testing.assert_allclose(pool(x, mask=ids), pool(x, mask=mask), atol=0)
    one = np.array([[[1.0], [3.0], [100.0]]], "float32")
    assert float(MaskedPooling("mean")(one, mask=np.array([[5, 9, 0]]))[0, 0]) == 2.0


def test_a_mask_of_another_batch_or_length_is_an_error():
    x, mask = _data()
    for mode in ("mean", "max", "first"):
        with pytest.raises(ValueError, match=r"mask must have shape \(B, L\) = \(4, 6\).*"
                                             r"got mask shape \(1, 6\)"):
            MaskedPooling(mode)(x, mask=mask[:1])
    with pytest.raises(ValueError, match=r"got mask shape \(4, 5\)"):
        MaskedPooling("mean")(x, mask=mask[:, :5])
    with pytest.raises(ValueError, match="mask must have shape"):     # symbolic
        MaskedPooling("mean")(keras.Input((6, 3)), mask=keras.Input((5,)))
    assert MaskedPooling("mean")(keras.Input((None, 3)), mask=keras.Input((None,))).shape == (
        None, 3)


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
