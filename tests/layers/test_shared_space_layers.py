import math

import keras
import numpy as np
import pytest

from mmtl_tf import runtime
from mmtl_tf.layers import (L2Normalize, LogitScale, MatchingAttention, PairDistance,
                            PerExample, ProjectionHead)


def _round_trip(layer):
    again = layer.__class__.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    return again


def test_l2_normalize_unit_length_zero_safe_and_float32():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], "float32")
    y = np.asarray(L2Normalize()(x))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], atol=1e-6)
    with runtime.settings(precision="mixed_float16"):
        layer = L2Normalize()
        out = layer(x.astype("float16"))
        assert layer.compute_dtype == "float32" and out.dtype == "float32"
    _round_trip(L2Normalize(axis=1, epsilon=1e-6))


def test_logit_scale_initial_value_clamp_and_constraint():
    layer = LogitScale()
    out = np.asarray(layer(np.zeros((3, 2))))
    np.testing.assert_allclose(out, np.full(3, 1 / 0.07), rtol=1e-6)
    assert out.dtype == np.float32
    # Above log(100) the forward pass clips; the constraint clamps after a step.
    layer.value.assign(10.0)
    np.testing.assert_allclose(np.asarray(layer(np.zeros((1, 2)))), [100.0], rtol=1e-6)
    np.testing.assert_allclose(float(layer.value.constraint(layer.value)), math.log(100.0))
    layer.value.assign(-3.0)
    np.testing.assert_allclose(np.asarray(layer(np.zeros((1, 2)))), [1.0], rtol=1e-6)
    bias = LogitScale(-10.0, min_value=None, max_value=None, exponentiate=False)
    assert float(bias(np.zeros((1, 2)))[0]) == -10.0
    _round_trip(bias)
    with pytest.raises(ValueError, match="larger than max_value"):
        LogitScale(min_value=2.0, max_value=1.0)
    # An initial value outside the clamps would silently start at the bound.
    with pytest.raises(ValueError, match=r"initial_value=10.0 is outside \[min_value, "
                                         r"max_value\] = \[0.0, 4.60"):
        LogitScale(initial_value=10.0)
    with pytest.raises(ValueError, match="initial_value=-1.0 is outside"):
        LogitScale(initial_value=-1.0, max_value=None)
    assert float(LogitScale(initial_value=10.0, max_value=None)(np.zeros((1, 2)))[0]) == \
        pytest.approx(math.exp(10.0), rel=1e-6)
    # A layer saved before this check still loads (its config had 10.0).
    config = {**LogitScale().get_config(), "initial_value": 10.0}
    assert LogitScale.from_config(config).initial_value == pytest.approx(math.log(100.0))


def test_logit_scale_stays_clamped_during_training():
    inputs = keras.Input((2,))
    scale = LogitScale(initial_value=math.log(99.0), name="scale")
    model = keras.Model(inputs, scale(inputs))
    model.compile(optimizer=keras.optimizers.SGD(10.0), loss=lambda y, p: -keras.ops.mean(p))
    model.fit(np.zeros((4, 2)), np.zeros(4), epochs=3, verbose=0)
    assert float(scale.value.numpy()) == pytest.approx(math.log(100.0))


@pytest.mark.parametrize("distance", ["l2", "squared_l2", "cosine"])
def test_pair_distance_matches_numpy(distance):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 3)).astype("float32")
    got = np.asarray(PairDistance(distance)([a, b]))
    if distance == "cosine":
        ref = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    else:
        ref = ((a - b) ** 2).sum(1)
        ref = ref if distance == "squared_l2" else np.sqrt(ref)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    _round_trip(PairDistance(distance))
    with pytest.raises(ValueError, match="'l2', 'squared_l2', 'cosine'"):
        PairDistance("manhattan")


def test_pair_distance_rejects_inputs_of_different_shapes():
    # A batch of 1 used to broadcast against a batch of 4, and a width-1
    # embedding against a width-3 one (plain keras.layers.Subtract refuses).
    with pytest.raises(ValueError, match=r"different batch sizes \(1 and 4"):
        PairDistance()([np.ones((1, 3)), np.zeros((4, 3))])
    with pytest.raises(ValueError, match=r"differ in width \(shapes \(2, 1\) and \(2, 3\)"):
        PairDistance()([np.ones((2, 1)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="differ in width"):    # symbolic, at build time
        PairDistance()([keras.Input((3,)), keras.Input((5,))])
    # Unknown batch sizes are fine.
    assert PairDistance()([keras.Input((3,)), keras.Input((3,))]).shape == (None,)


def test_matching_attention_closed_form():
    layer = MatchingAttention(initial_scale=2.0, learn_scale=False)
    queries = np.array([[[1.0, 0.0], [0.0, 1.0]]], "float32")
    support = np.array([[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]], "float32")
    labels = np.eye(2, dtype="float32")[[0, 1, 1]][None]
    got = np.asarray(layer([queries, support, labels]))
    cos = np.array([[1.0, 0.0, 1 / math.sqrt(2)], [0.0, 1.0, 1 / math.sqrt(2)]])
    weights = np.exp(2.0 * cos) / np.exp(2.0 * cos).sum(1, keepdims=True)
    expected = weights @ labels[0]
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-6)
    assert not layer.trainable_weights
    _round_trip(layer)


def test_matching_attention_checks_its_inputs():
    att = MatchingAttention()
    q, sup = np.ones((1, 2, 4), "float32"), np.ones((1, 6, 4), "float32")
    ids = np.array([[0, 0, 1, 1, 2, 2]])
    one_hot = np.eye(3, dtype="float32")[ids]
    assert att([q, sup, one_hot]).shape == (1, 2, 3)
    # Sparse ids as (B, S, 1) used to give "probabilities" of 1.0; one-hot * 2 sums to 2.
    with pytest.raises(ValueError, match=r"must be one-hot.*row \(0, 0\) is \[0.0\]"):
        att([q, sup, ids[..., None].astype("float32")])
    with pytest.raises(ValueError, match=r"must be one-hot.*row \(0, 0\) is \[2.0, 0.0, 0.0\]"):
        att([q, sup, 2 * one_hot])
    with pytest.raises(ValueError, match=r"one-hot support_labels \(B, S, N\); got"):
        att([q, sup, ids.astype("float32")])
    with pytest.raises(ValueError, match=r"one one-hot row \(B, S, N\) per support example"):
        att([q, sup, one_hot[:, :5]])
    with pytest.raises(ValueError, match="different batch sizes"):
        att([np.ones((2, 2, 4), "float32"), sup, one_hot])
    with pytest.raises(ValueError, match="differ in width"):
        att([np.ones((1, 2, 3), "float32"), sup, one_hot])
    with pytest.raises(ValueError, match="different batch sizes"):    # symbolic
        MatchingAttention()([keras.Input((2, 4), batch_size=1), keras.Input((6, 4), batch_size=2),
                             keras.Input((6, 3), batch_size=2)])


def test_per_example_equals_applying_the_model_to_each_example():
    dense = keras.layers.Dense(4)
    wrapped = PerExample(dense)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    y = np.asarray(wrapped(x))
    assert y.shape == (2, 5, 4)
    np.testing.assert_allclose(y[1, 3], np.asarray(dense(x[1, 3:4]))[0], rtol=1e-5)
    assert np.asarray(wrapped(x[:, :2])).shape == (2, 2, 4)    # another set size


def test_projection_head_variants():
    x = np.ones((2, 5), "float32")
    assert ProjectionHead(8)(x).shape == (2, 8)
    head = ProjectionHead(8, hidden_dim=16, residual=True, dropout=0.1)
    assert head(x).shape == (2, 8)
    assert len(head.trainable_weights) == 5  # first, hidden, dense kernels + LayerNorm
    _round_trip(head)
    with pytest.raises(ValueError, match="residual=True needs a hidden_dim"):
        ProjectionHead(8, residual=True)
    with pytest.raises(ValueError, match="activation='tanh'"):
        ProjectionHead(8, hidden_dim=4, activation="tanh")
