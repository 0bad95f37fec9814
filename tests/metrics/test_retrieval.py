import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf.metrics import (EmbeddingIndex, chance_recall, duplicate_positives,
                             evaluate_retrieval, positives_from_labels, retrieval_metrics)


def numpy_reference(q, g, positives, ks=(1, 5, 10)):
    """Loop reference: cosine scores, pessimistic ties, AP@10 over min(|P|, 10)."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    ranks, aps = [], []
    for i in range(len(q)):
        scores = [float(np.dot(qn[i], gn[j])) for j in range(len(g))]
        pos = set(int(p) for p in positives[i])
        best = max(scores[p] for p in pos)
        rank = 1 + sum(1 for j, s in enumerate(scores) if j not in pos and s >= best)
        ranks.append(rank)
        # Order: higher score first; among equal scores non-matches first.
        order = sorted(range(len(g)), key=lambda j: (-scores[j], j in pos))
        hits, precision_sum = 0, 0.0
        for position, j in enumerate(order[:10], start=1):
            if j in pos:
                hits += 1
                precision_sum += hits / position
        aps.append(precision_sum / min(len(pos), 10))
    out = {f"R@{k}": float(np.mean([r <= k for r in ranks])) for k in ks}
    out["mean_rank"] = float(np.mean(ranks))
    out["median_rank"] = float(np.floor(np.median(np.array(ranks) - 1)) + 1)
    out["mAP@10"] = float(np.mean(aps))
    return out


def test_matches_loop_reference_with_several_positives():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(40, 6)), rng.normal(size=(60, 6))
    positives = [rng.choice(60, size=rng.integers(1, 4), replace=False) for _ in range(40)]
    got = retrieval_metrics(q, g, positives, batch_size=7)
    expected = numpy_reference(q, g, positives)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def test_closed_forms():
    eye = np.eye(4)
    perfect = retrieval_metrics(eye, eye)
    assert perfect == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "mean_rank": 1.0,
                       "median_rank": 1.0, "mAP@10": 1.0}
    # The gallery in reverse order: query i's match has rank 1, others orthogonal.
    assert retrieval_metrics(eye, eye[::-1], positives=np.arange(3, -1, -1))["R@1"] == 1.0
    # Constant embeddings tie everywhere and are ranked last, not first.
    const = retrieval_metrics(np.ones((5, 3)), np.ones((5, 3)))
    assert const["R@1"] == 0.0 and const["mean_rank"] == 5.0
    # Query 0's match is second, query 1's first: R@1 = 0.5, mean rank 1.5.
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = np.array([[0.9, 0.1], [0.0, 1.0]])
    m = retrieval_metrics(q, g, positives=[[1], [1]], ks=(1,))
    assert m["R@1"] == 0.5 and m["mean_rank"] == 1.5 and m["mAP@10"] == pytest.approx(0.75)


def test_exclude_leaves_items_out_of_the_ranking():
    # Leave-one-out: the queries are the gallery and none may find itself.
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(30, 5)), np.repeat(np.arange(6), 5)
    positives = positives_from_labels(labels, labels) & ~np.eye(30, dtype=bool)
    got = retrieval_metrics(x, x, positives, exclude=np.eye(30, dtype=bool), batch_size=7)
    expected = {k: [] for k in got}
    for i in range(30):  # the reference on a gallery without query i
        others = np.delete(np.arange(30), i)
        ref = numpy_reference(x[i:i + 1], x[others], [np.flatnonzero(positives[i, others])])
        for key, value in ref.items():
            expected[key].append(value)
    for key in ("R@1", "R@5", "R@10", "mean_rank", "mAP@10"):
        assert got[key] == pytest.approx(np.mean(expected[key]), abs=1e-9), key
    with pytest.raises(ValueError, match="no positive gallery item left"):
        retrieval_metrics(np.eye(2), np.eye(2), exclude=np.eye(2, dtype=bool))
    with pytest.raises(ValueError, match=r"boolean \(2, 2\) matrix"):
        retrieval_metrics(np.eye(2), np.eye(2), exclude=np.eye(2))


def test_boolean_positives_and_labels():
    positives = positives_from_labels([0, 1], [1, 0, 0])
    assert positives.tolist() == [[False, True, True], [True, False, False]]
    m = retrieval_metrics(np.array([[1.0, 0.0], [0.0, 1.0]]),
                          np.array([[0.0, 1.0], [1.0, 0.1], [1.0, -0.1]]), positives)
    assert m["R@1"] == 1.0 and m["mAP@10"] == 1.0


def test_bad_positives_and_shapes_are_named():
    q, g = np.eye(3), np.eye(3)
    with pytest.raises(ValueError, match=r"positives\[1\] contains 7, which is not a gallery "
                                         r"index in \[0, 2\]"):
        retrieval_metrics(q, g, positives=[[0], [7], [2]])
    with pytest.raises(ValueError, match=r"positives\[2\] contains -1"):
        retrieval_metrics(q, g, positives=np.array([0, 1, -1]))
    with pytest.raises(ValueError, match=r"positives\[0\] is empty"):
        retrieval_metrics(q, g, positives=[[], [1], [2]])
    with pytest.raises(ValueError, match="3 queries and 2 gallery items"):
        retrieval_metrics(q, g[:2])
    with pytest.raises(ValueError, match="differ in width"):
        retrieval_metrics(q, np.eye(4))
    with pytest.raises(ValueError, match="metric='hamming'"):
        retrieval_metrics(q, g, metric="hamming")


def test_ties_between_identical_gallery_rows_count_against_the_model():
    # A float32 matmul rounds the last G % 8 columns differently, so identical
    # rows scored 1 ulp apart and some ties went the model's way (a collapsed
    # model got mean rank 280 of 285 and R@10 0.018, not 285 and 0).
    rng = np.random.default_rng(3)
    for dim, n in ((7, 10), (64, 285)):
        collapsed = np.repeat(rng.normal(size=(1, dim)), n, axis=0)
        m = retrieval_metrics(collapsed, collapsed)
        assert m["mean_rank"] == m["median_rank"] == n and m["R@10"] == float(n <= 10)
    for dim in (7, 128, 256):
        for _ in range(20):
            x = rng.normal(size=(10, dim)).astype("float32")
            gallery = x.copy()
            gallery[8] = gallery[3]  # a duplicate caption: queries 3 and 8 tie
            assert retrieval_metrics(x, gallery, ks=(1,))["R@1"] <= 0.8


def test_l2_scores_keep_their_precision_away_from_the_origin():
    # |x|² + |y|² − 2 x·y in float32: at 1e4 the distances 0.5 and 3 came out 0.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 16)) + 1e4
    m = retrieval_metrics(x, x + rng.normal(scale=1e-3, size=x.shape), metric="l2")
    assert m["R@1"] == 1.0
    index = EmbeddingIndex(x, metric="l2")
    _, ids = index.search(x[:5] + 0.01, k=5)
    exact = np.argsort(((x[:5, None] + 0.01 - x[None]) ** 2).sum(-1), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, exact)


def test_a_0_1_positives_matrix_must_be_boolean():
    # An int 0/1 matrix was read as lists of gallery indices {0, 1}: R@1 0.5
    # for a perfect ranking.
    eye = np.eye(4)
    with pytest.raises(ValueError, match=r"a \(4, 4\) array of 0s and 1s: pass a boolean"):
        retrieval_metrics(eye, eye, positives=np.eye(4, dtype=int))
    with pytest.raises(ValueError, match="array of 0s and 1s"):
        retrieval_metrics(eye, eye, positives=np.eye(4).tolist())
    nested_bools = (np.eye(4) > 0).tolist()
    assert retrieval_metrics(eye, eye, positives=nested_bools)["R@1"] == 1.0
    with pytest.raises(ValueError, match="must have shape"):
        retrieval_metrics(eye, eye, positives=np.ones(4, bool))
    # Index lists and one index per query still work.
    assert retrieval_metrics(eye, eye, positives=[[0], [1], [2, 0], [3]])["R@1"] == 1.0
    assert retrieval_metrics(eye, eye, positives=np.arange(4))["R@1"] == 1.0


def test_chance_recall():
    assert chance_recall(100, 1) == pytest.approx(0.01)
    assert chance_recall(10, 10) == 1.0
    assert chance_recall(4, 1, num_positives=2) == pytest.approx(0.5)


def test_duplicate_positives():
    positives = duplicate_positives(["x", "y", "x"], ["a", "b", "b"])
    assert [p.tolist() for p in positives] == [[0, 2], [1, 2], [0, 1, 2]]


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_embedding_index_search_save_load(tmp_path, metric):
    rng = np.random.default_rng(1)
    gallery, queries = rng.normal(size=(50, 8)), rng.normal(size=(7, 8))
    index = EmbeddingIndex(gallery, ids=[f"item{i}" for i in range(50)], metric=metric,
                           batch_size=3)
    scores, ids = index.search(queries, k=5)
    if metric == "cosine":
        ref = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ \
            (gallery / np.linalg.norm(gallery, axis=1, keepdims=True)).T
    elif metric == "dot":
        ref = queries @ gallery.T
    else:
        ref = -((queries[:, None, :] - gallery[None]) ** 2).sum(-1)
    order = np.argsort(-ref, axis=1)[:, :5]
    assert ids.tolist() == [[f"item{j}" for j in row] for row in order]
    np.testing.assert_allclose(scores, np.take_along_axis(ref, order, 1), rtol=1e-4, atol=1e-4)
    path = index.save(str(tmp_path / "index.npz"))
    again = EmbeddingIndex.load(path)
    assert again.metric == metric and len(again) == 50
    assert again.search(queries, k=5)[1].tolist() == ids.tolist()
    scores, ids = index.search(np.zeros((0, 8)), k=5)  # was NumPy's "need at least one array"
    assert scores.shape == ids.shape == (0, 5) and ids.dtype == index.ids.dtype


def test_embedding_index_faiss_backend_agrees():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    gallery, queries = rng.normal(size=(200, 16)), rng.normal(size=(9, 16))
    for metric in ("cosine", "l2"):
        tf_ids = EmbeddingIndex(gallery, metric=metric).search(queries, 10)[1]
        faiss_ids = EmbeddingIndex(gallery, metric=metric, backend="faiss").search(queries, 10)[1]
        assert tf_ids.tolist() == faiss_ids.tolist()


def test_embedding_index_errors():
    with pytest.raises(ValueError, match="backend='scann'"):
        EmbeddingIndex(np.eye(3), backend="scann")
    with pytest.raises(ValueError, match="2 ids for 3 embeddings"):
        EmbeddingIndex(np.eye(3), ids=[1, 2])
    with pytest.raises(ValueError, match="width 2"):
        EmbeddingIndex(np.eye(3)).search(np.ones((1, 2)))


def test_evaluate_retrieval_names_and_duplicates():
    """A dual encoder whose towers are identities: retrieval is exact, except for
    two identical captions, which count as the same answer only with match_keys."""
    import keras

    def identity(name):
        inputs = keras.Input((3,))
        return keras.Model(inputs, keras.layers.Identity()(inputs), name=name)

    image, text = identity("image_tower"), identity("text_tower")
    model = mmtl_tf.models.DualEncoder({"image": image, "text": text}, projection_dim=3)
    for m in ("image", "text"):
        model.get_layer(f"{m}_projection").set_weights([np.eye(3, dtype="float32")])
    images = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0.2, 0]], "float32")
    texts = images.copy()
    texts[3] = texts[0]  # caption 3 says exactly what caption 0 says
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "text": texts}).batch(3)
    strict = evaluate_retrieval(model, ds, ks=(1,))
    assert strict["num_pairs"] == 4 and strict["chance_R@1"] == pytest.approx(0.25)
    # Captions 0 and 3 are identical: caption 3 finds image 0 first, and images 0
    # and 3 tie between captions 0 and 3 (ties count against the model).
    assert strict["text_to_image_R@1"] == 0.75 and strict["image_to_text_R@1"] == 0.5
    keyed = evaluate_retrieval(model, ds, ks=(1,), match_keys={"text": ["a", "b", "c", "a"]})
    assert keyed["text_to_image_R@1"] == 1.0 and keyed["image_to_text_R@1"] == 1.0
    assert keyed["mean_R@1"] == 1.0
    assert set(keyed) >= {"image_to_text_mean_rank", "text_to_image_median_rank",
                          "image_to_text_mAP@10"}
    with pytest.raises(ValueError, match=r"match_keys\['text'\] has 2 keys for 4 pairs"):
        evaluate_retrieval(model, ds, match_keys={"text": ["a", "b"]})
