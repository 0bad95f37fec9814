import keras
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mmtl_tf.metrics import MeanAveragePrecision, average_precision, mean_average_precision


def test_closed_form_values():
    # Ranked: +, -, +, -  → precision at the positives 1/1 and 2/3 → AP = (1 + 2/3) / 2.
    ap = average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    np.testing.assert_allclose(float(ap), 5 / 6, rtol=1e-6)
    # A perfect ranking has AP 1; ties count as one threshold.
    np.testing.assert_allclose(float(average_precision(np.array([1, 1, 0]),
                                                       np.array([0.9, 0.8, 0.1]))), 1.0)
    np.testing.assert_allclose(float(average_precision(np.array([1, 0]),
                                                       np.array([0.5, 0.5]))), 0.5)


@pytest.mark.parametrize("rounding", [None, 1])
def test_matches_sklearn_per_class_with_and_without_ties(rounding):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (300, 6))
    y[0] = 1
    scores = rng.random((300, 6)) + 0.3 * y
    if rounding is not None:
        scores = np.round(scores, rounding)   # many ties
    ours = np.asarray(average_precision(y, scores))
    np.testing.assert_allclose(ours, average_precision_score(y, scores, average=None), atol=1e-6)
    np.testing.assert_allclose(float(mean_average_precision(y, scores)),
                               average_precision_score(y, scores, average="macro"), atol=1e-6)


def test_float64_scores_that_float32_would_tie_are_ranked_apart():
    # sigmoid(25), sigmoid(20) and sigmoid(18) all round to 1.0 in float32:
    # counted as one tie group, AP was 0.644 where scikit-learn gives 0.756.
    scores = 1 / (1 + np.exp(-np.array([25.0, 20.0, 18.0, 3.0, -1.0])))
    y = np.array([1, 0, 1, 0, 1])
    ap = average_precision(y, scores)
    assert ap.dtype == "float32"
    np.testing.assert_allclose(float(ap), average_precision_score(y, scores), atol=1e-6)
    np.testing.assert_allclose(float(average_precision(list(y), scores.tolist())),
                               average_precision_score(y, scores), atol=1e-6)
    np.testing.assert_allclose(float(mean_average_precision(y[:, None], scores[:, None])),
                               average_precision_score(y, scores), atol=1e-6)


def test_classes_without_positives_are_left_out_of_the_mean():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.2], [0.1, 0.9], [0.8, 0.5]])
    np.testing.assert_allclose(float(mean_average_precision(y, scores)), 1.0)


def test_streaming_metric_matches_the_exact_value():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (400, 5))
    scores = np.round(rng.random((400, 5)), 2)    # multiples of 1/100: exact with 100 bins
    metric = MeanAveragePrecision(num_classes=5, num_bins=100)
    for start in range(0, 400, 64):
        metric.update_state(y[start:start + 64], scores[start:start + 64])
    np.testing.assert_allclose(float(metric.result()), average_precision_score(y, scores),
                               atol=1e-6)
    raw = rng.random((400, 5))
    metric = MeanAveragePrecision(num_classes=5)
    metric.update_state(y, raw)
    np.testing.assert_allclose(float(metric.result()), average_precision_score(y, raw), atol=2e-3)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    again = MeanAveragePrecision.from_config(metric.get_config())
    assert again.num_classes == 5 and again.num_bins == 1000


def test_streaming_metric_takes_weights_per_example_or_per_label():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (200, 4))
    y[0] = 1
    scores = np.round(rng.random((200, 4)), 2)
    per_label = rng.integers(0, 3, (200, 4)).astype("float32")  # 2 counts a label twice
    per_example = per_label[:, 0]

    def sklearn_map(weights):
        return np.mean([average_precision_score(y[:, c], scores[:, c], sample_weight=weights[:, c])
                        for c in range(4)])

    # Fractional weights too: dividing by max(count, 1) scaled AP down by
    # weights below 1 (uniform weights 0.1 gave 0.03 for an AP of 0.83).
    fractional = rng.random((200, 4)).astype("float32") * 0.2
    for weight, expected in [(per_label, sklearn_map(per_label)),
                             (per_example, sklearn_map(np.repeat(per_example[:, None], 4, 1))),
                             (per_example[:, None],
                              sklearn_map(np.repeat(per_example[:, None], 4, 1))),
                             (fractional, sklearn_map(fractional)),
                             (fractional[:, 0], sklearn_map(np.repeat(fractional[:, :1], 4, 1)))]:
        metric = MeanAveragePrecision(num_classes=4, num_bins=100)
        metric.update_state(y, scores, sample_weight=weight)
        np.testing.assert_allclose(float(metric.result()), expected, atol=1e-5)
    for w in (0.1, 0.5, 3.0):  # a uniform weight changes nothing
        metric = MeanAveragePrecision(num_classes=4, num_bins=100)
        metric.update_state(y, scores, sample_weight=np.full(200, w, "float32"))
        np.testing.assert_allclose(float(metric.result()), sklearn_map(np.ones((200, 4))),
                                   atol=1e-5)
    # One weight for all (a scalar, or N of 1) broadcasts, as before.
    unweighted = MeanAveragePrecision(num_classes=4, num_bins=100)
    unweighted.update_state(y, scores)
    for weight in (2.0, np.array([2.0]), np.array([[2.0]])):
        metric = MeanAveragePrecision(num_classes=4, num_bins=100)
        metric.update_state(y, scores, sample_weight=weight)
        np.testing.assert_allclose(float(metric.result()), float(unweighted.result()), atol=1e-6)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(N,\) or \(N, 1\).*"
                                         r"N=200 the rows of y_pred; got shape \(200, 3\)"):
        MeanAveragePrecision(num_classes=4).update_state(y, scores, np.ones((200, 3)))


def test_metric_runs_inside_fit_under_xla():
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :3] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=[MeanAveragePrecision(3)],
                  jit_compile=True)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert model.jit_compile and 0.0 < history.history["mAP"][-1] <= 1.0
    result = model.evaluate(x, y, verbose=0, return_dict=True)["mAP"]
    # The streaming metric is the exact AP of the scores rounded to 1/1000.
    rounded = np.round(model.predict(x, verbose=0).astype("float64") * 1000) / 1000
    np.testing.assert_allclose(result, average_precision_score(y, rounded), atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        MeanAveragePrecision(num_classes=0)
    with pytest.raises(ValueError, match="num_bins must be >= 2"):
        MeanAveragePrecision(num_classes=2, num_bins=1)


def test_labels_and_scores_must_be_n_by_num_classes_0_1_and_finite():
    def streaming(y_true, y_pred, num_classes):
        metric = MeanAveragePrecision(num_classes=num_classes)
        metric.update_state(y_true, y_pred)
        return float(metric.result())

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"y_true must be \(N, num_classes=4\).*\(4,\)"):
        streaming(np.array([0, 1, 2, 3]), np.eye(4) * 0.9, 4)          # class indices
    with pytest.raises(ValueError, match=r"y_true must be \(N, num_classes=4\).*\(4, 1\)"):
        streaming(np.array([[0], [1], [2], [3]]), rng.random((4, 4)), 4)
    with pytest.raises(ValueError, match=r"y_pred must be \(N, num_classes=2\).*\(4, 4\)"):
        streaming(np.eye(4), rng.random((4, 4)), 2)
    with pytest.raises(ValueError, match=r"same shape.*\(3, 2\) and \(4, 2\)"):
        streaming(np.eye(3, 2), rng.random((4, 2)), 2)
    yt = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    ys = np.array([[0.9, 0.2], [0.1, 0.8], [0.6, 0.7], [0.3, 0.1]])
    nan_scores = np.where(ys > 0.5, np.nan, ys)
    with pytest.raises(ValueError, match="y_pred has non-finite values"):
        streaming(yt, nan_scores, 2)
    with pytest.raises(ValueError, match="y_score has non-finite values"):
        average_precision(yt, nan_scores)
    with pytest.raises(ValueError, match=r"y_true must hold 0/1 labels; got values \[2, 3\]"):
        average_precision(np.array([[2, 0], [0, 3], [1, 1], [0, 0]]), ys)
    with pytest.raises(ValueError, match="y_true must hold 0/1 labels"):
        streaming(np.array([[2, 0], [0, 3], [1, 1], [0, 0]]), ys, 2)
    with pytest.raises(ValueError, match=r"same shape.*\(4, 1\) and \(4, 2\)"):
        average_precision(yt[:, :1], ys)


def test_unchecked_bad_values_make_a_compiled_result_nan():
    import tensorflow as tf

    yt = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], "float32")
    ys = np.array([[0.9, 0.2], [0.1, 0.8], [0.6, 0.7], [0.3, 0.1]], "float32")
    metric = MeanAveragePrecision(num_classes=2)
    update = tf.function(metric.update_state, jit_compile=True)
    update(yt, ys)
    assert 0.0 < float(metric.result()) <= 1.0
    update(yt, np.where(ys > 0.5, np.nan, ys).astype("float32"))
    assert np.isnan(float(metric.result()))
    metric.reset_state()
    update(yt * 2, ys)
    assert np.isnan(float(metric.result()))
    ap = tf.function(average_precision, jit_compile=True)
    assert np.isnan(np.asarray(ap(yt, np.where(ys > 0.5, np.inf, ys).astype("float32")))).all()


def test_empty_input_is_named():
    # It failed in Keras' segment_sum ("segment_ids and data should have same
    # leading dimension").
    for f in (average_precision, mean_average_precision):
        for shape in ((0,), (0, 3)):
            with pytest.raises(ValueError, match=r"y_score has no rows .*needs at least one "
                                                 r"example"):
                f(np.zeros(shape), np.zeros(shape))
