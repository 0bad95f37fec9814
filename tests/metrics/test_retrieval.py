import os

import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf.metrics import (EmbeddingIndex, chance_recall, duplicate_positives,
                             evaluate_retrieval, paired_positives, positives_from_labels,
                             retrieval_metrics)


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



def _identity_dual_encoder(first="image", second="text", exact=True):
    """A `DualEncoder` whose two towers take 3-vectors and pass them on; with
    `exact` its projections are the identity too, so an embedding is its
    input, normalised."""
    import keras

    def identity(name):
        inputs = keras.Input((3,))
        return keras.Model(inputs, keras.layers.Identity()(inputs), name=name)

    model = mmtl_tf.models.DualEncoder({first: identity(f"{first}_tower"),
                                        second: identity(f"{second}_tower")}, projection_dim=3)
    if exact:
        for m in (first, second):
            model.get_layer(f"{m}_projection").set_weights([np.eye(3, dtype="float32")])
    return model

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
    assert chance_recall(4, 4, num_positives=0) == 0.0
    # The first two and the last gave 1.0; k=0 gave 0.0.
    for args, words in (((0, 1), "at least 1"), ((-3, 1), "at least 1"), ((5, 0), "at least 1"),
                        ((5, 1, 7), "between 0 and num_gallery=5")):
        with pytest.raises(ValueError, match=words):
            chance_recall(*args)


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
    model = _identity_dual_encoder()
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


def full_sort_reference(q, g, positives, exclude=None, ks=(1, 5, 10)):
    """Straightforward reference: dot scores of integer vectors (exact in any
    precision, so ties are exact), excluded items dropped, every remaining
    item sorted by (score descending, non-hit first, index)."""
    return full_sort_of_scores(q.astype(np.int64) @ g.T.astype(np.int64), positives,
                               exclude, ks)


def full_sort_of_scores(scores, positives, exclude=None, ks=(1, 5, 10)):
    """`full_sort_reference` on a (Q, G) score matrix (±inf allowed)."""
    ranks, aps = [], []
    for i in range(scores.shape[0]):
        items = [j for j in range(scores.shape[1]) if exclude is None or not exclude[i, j]]
        hit = {j: bool(positives[i, j]) for j in items}
        order = sorted(items, key=lambda j: (-scores[i, j], hit[j], j))
        hits = [hit[j] for j in order]
        ranks.append(hits.index(True) + 1)
        found, total = 0, 0.0
        for position, h in enumerate(hits[:10], start=1):
            if h:
                found += 1
                total += found / position
        aps.append(total / min(sum(hits), 10))
    ranks = np.asarray(ranks)
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["mean_rank"] = float(np.mean(ranks))
    out["median_rank"] = float(np.floor(np.median(ranks - 1)) + 1)
    out["mAP@10"] = float(np.mean(aps))
    return out


def _tied_case(rng, num_queries, num_gallery, dim):
    """Integer embeddings in {-1, 0, 1}: many exact ties, duplicate rows."""
    q = rng.integers(-1, 2, size=(num_queries, dim))
    g = rng.integers(-1, 2, size=(num_gallery, dim))
    g[1::3] = g[0::3][:len(g[1::3])]  # duplicated gallery rows
    return q, g


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_full_sort_with_ties_duplicates_and_exclusions(seed):
    # The ranks are counted and only the top 10 sorted; a full sort with the
    # tie rule (non-matches first) must give exactly the same metrics.
    rng = np.random.default_rng(seed)
    checked = 0
    for trial in range(40):
        nq, ng = int(rng.integers(1, 30)), int(rng.integers(1, 45))
        q, g = _tied_case(rng, nq, ng, int(rng.integers(1, 4)))
        form = trial % 4
        if form == 0 and nq == ng:
            positives, mask = None, np.eye(nq, dtype=bool)
        elif form == 1:  # boolean matrix, several positives, sometimes over 10
            mask = rng.random((nq, ng)) < rng.choice([0.1, 0.5])
            mask[np.arange(nq), rng.integers(0, ng, nq)] = True
            positives = mask
        elif form == 2:  # lists, some long enough for the vectorised check
            lists = [rng.choice(ng, size=int(rng.integers(1, ng + 1)), replace=False)
                     for _ in range(nq)]
            positives = [row.tolist() if i % 2 else row for i, row in enumerate(lists)]
            mask = np.zeros((nq, ng), bool)
            for i, row in enumerate(lists):
                mask[i, row] = True
        else:  # one index per query
            positives = rng.integers(0, ng, nq)
            mask = np.zeros((nq, ng), bool)
            mask[np.arange(nq), positives] = True
        exclude = None
        if trial % 3 == 0:
            exclude = rng.random((nq, ng)) < 0.3
            if not (mask & ~exclude).any(axis=1).all():
                exclude = None
        expected = full_sort_reference(q, g, mask, exclude, ks=(1, 2, 5, 10))
        for batch_size in (1, 7, 1024):
            got = retrieval_metrics(q, g, positives, ks=(1, 2, 5, 10), metric="dot",
                                    batch_size=batch_size, exclude=exclude)
            assert got.keys() == expected.keys()
            for key in expected:
                if key == "mAP@10":  # summed in another order
                    assert got[key] == pytest.approx(expected[key], abs=1e-12), key
                else:
                    assert got[key] == expected[key], (key, trial, batch_size)
        checked += 1
    assert checked == 40


def test_ties_at_the_tenth_place_are_ordered_as_a_full_sort():
    # 30 gallery items with the same score, a few of them hits: which of
    # them fill places 1-10 decides mAP@10 (non-matches first, so none).
    q = np.ones((3, 2), int)
    g = np.ones((30, 2), int)
    g[:4] = 2  # four items score higher than the tied block
    mask = np.zeros((3, 30), bool)
    mask[0, [1, 3]] = True          # hits above the tie
    mask[1, [5, 6, 29]] = True      # hits inside the tied block
    mask[2, [0, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
             26, 27, 28, 29]] = True  # more hits at the tie than places left
    expected = full_sort_reference(q, g, mask)
    got = retrieval_metrics(q, g, mask, metric="dot")
    assert got["mAP@10"] == pytest.approx(expected["mAP@10"], abs=1e-12)
    assert {k: got[k] for k in got if k != "mAP@10"} == \
        {k: expected[k] for k in expected if k != "mAP@10"}


def test_excluded_items_never_count_where_ranked_items_score_minus_inf():
    # l2 scores of embeddings near the float32 limit overflow to -inf; the
    # items `exclude` leaves out also scored -inf, and were counted as
    # non-hits tied with a best hit at -inf (mean rank 3 of 2 ranked items).
    e = np.array([[0.0], [3e19], [-3e19]], np.float32)
    positives = np.array([[False, True, False], [False, False, True], [True, False, False]])
    got = retrieval_metrics(e, e, positives, ks=(1, 2), metric="l2",
                            exclude=np.eye(3, dtype=bool))
    # Each query ranks its 2 other items, both at -inf: the tie puts the
    # non-hit first.
    assert got == {"R@1": 0.0, "R@2": 1.0, "mean_rank": 2.0, "median_rank": 2.0,
                   "mAP@10": 0.5}


@pytest.mark.parametrize("seed", range(3))
def test_matches_a_full_sort_with_infinite_scores_and_exclusions(seed, monkeypatch):
    # Scores with ties at +inf and -inf and many items left out (some rows
    # rank fewer than 10 items), against a full sort that drops them.
    import mmtl_tf.metrics.retrieval as retrieval

    rng = np.random.default_rng(seed)
    for trial in range(60):
        nq, ng = int(rng.integers(1, 15)), int(rng.integers(2, 25))
        scores = rng.integers(0, 3, (nq, ng)).astype(np.float32)
        special = rng.random((nq, ng)) < rng.uniform(0, 0.9)
        scores[special] = rng.choice(np.array([np.inf, -np.inf, -np.inf], np.float32),
                                     special.sum())
        mask = rng.random((nq, ng)) < rng.uniform(0.05, 0.6)
        mask[np.arange(nq), rng.integers(0, ng, nq)] = True
        exclude = rng.random((nq, ng)) < rng.uniform(0, 0.9)
        for i in np.flatnonzero(~(mask & ~exclude).any(axis=1)):
            exclude[i, np.flatnonzero(mask[i])[0]] = False
        monkeypatch.setattr(retrieval, "_scores",
                            lambda q, g, metric, exact: scores[np.asarray(q)[:, 0].astype(int)])
        expected = full_sort_of_scores(scores, mask, exclude, ks=(1, 2, 5, 10))
        for batch_size in (1, 4, 1024):
            got = retrieval_metrics(np.arange(nq, dtype=np.float32)[:, None],
                                    np.ones((ng, 1), np.float32), mask, ks=(1, 2, 5, 10),
                                    batch_size=batch_size, exclude=exclude)
            for key in expected:
                assert got[key] == pytest.approx(expected[key], abs=1e-12), (key, trial)


def test_long_positive_lists_are_still_checked_index_by_index():
    q = g = np.eye(20)
    long_row = list(range(19)) + [25]
    with pytest.raises(ValueError, match=r"positives\[0\] contains 25, which is not"):
        retrieval_metrics(q, g, positives=[long_row] + [[i] for i in range(1, 20)])
    with pytest.raises(ValueError, match=r"positives\[1\] contains .*0\.5\b"):
        retrieval_metrics(q, g, positives=[np.arange(20), np.arange(20) + 0.5]
                          + [[i] for i in range(2, 20)])
    with pytest.raises(ValueError, match=r"positives\[0\] contains (np\.int64\()?-1\b"):
        retrieval_metrics(q, g, positives=[np.arange(-1, 19)] + [[i] for i in range(1, 20)])
    ok = retrieval_metrics(q, g, positives=[np.arange(20.0)] + [[i] for i in range(1, 20)])
    assert ok["R@1"] == 1.0


def duplicate_reference(keys_a, keys_b):
    n = len(keys_a if keys_a is not None else keys_b)
    same = [(lambda i, j, keys=keys: keys is not None and keys[i] == keys[j])
            for keys in (keys_a, keys_b)]
    return [[j for j in range(n) if i == j or same[0](i, j) or same[1](i, j)]
            for i in range(n)]


def _random_keys(rng):
    """Two sides' keys of 1-39 rows, with repeats: strings and bytes."""
    n = int(rng.integers(1, 40))
    keys_a = [f"c{x}" for x in rng.integers(0, rng.integers(1, 6), n)]
    keys_b = [bytes([x]) for x in rng.integers(0, rng.integers(1, 25), n)]
    return keys_a, keys_b


def paired_reference(query_keys, gallery_keys):
    """Row j is a positive of query i when some row k pairs query i's key with row j's."""
    n = len(query_keys)
    pairs = {(query_keys[k], gallery_keys[k]) for k in range(n)}
    return [[j for j in range(n) if (query_keys[i], gallery_keys[j]) in pairs] for i in range(n)]


def test_paired_positives_against_a_pairwise_reference():
    rng = np.random.default_rng(6)
    for trial in range(40):
        keys_a, keys_b = _random_keys(rng)
        n = len(keys_a)
        rows = [f"row{i}" for i in range(n)]
        for a, b in ((keys_a, keys_b), (keys_b, keys_a), (keys_a, None), (None, keys_b)):
            got = paired_positives(a, b)
            expected = paired_reference(a or rows, b or rows)
            assert [p.tolist() for p in got] == expected
            # Every positive of duplicate_positives is one here too.
            assert all(set(d.tolist()) <= set(p.tolist())
                       for d, p in zip(duplicate_positives(a, b), got))
    # Three captions per image, one caption shared by two images: an image
    # paired with the caption is correct in all of its rows.
    images = ["i0", "i0", "i0", "i1", "i1", "i1"]
    captions = ["a cat", "cat sleeping", "pet", "a dog", "dog running", "pet"]
    assert [p.tolist() for p in paired_positives(captions, images)][2] == [0, 1, 2, 3, 4, 5]
    assert [p.tolist() for p in paired_positives(captions, images)][0] == [0, 1, 2]
    assert paired_positives([], []) == [] and paired_positives([], None) == []
    # Keys of different lengths paired rows by position as far as the
    # shorter went ([[0], [0]] for 2 query keys and 1 gallery key).
    for short, long in ((["a", "b"], ["x"]), (["a"], ["x", "y", "z"])):
        for fn in (paired_positives, duplicate_positives):
            with pytest.raises(ValueError, match="one per row"):
                fn(short, long)
    # The evaluation's chunked masks and counts equal the lists, chunk by chunk.
    from mmtl_tf.metrics.retrieval import _paired_mask

    keys_a = [f"c{x}" for x in rng.integers(0, 30, 500)]
    keys_b = [f"i{x}" for x in rng.integers(0, 90, 500)]
    lists = paired_positives(keys_a, keys_b)
    mask_of, counts = _paired_mask(keys_a, keys_b)
    assert counts.tolist() == [len(p) for p in lists]
    for start in range(0, 500, 128):
        mask = mask_of(start, min(start + 128, 500))
        assert [np.flatnonzero(row).tolist() for row in mask] == \
            [p.tolist() for p in lists[start:start + 128]]


def test_duplicate_positives_against_a_pairwise_reference():
    rng = np.random.default_rng(4)
    for trial in range(40):
        keys_a, keys_b = _random_keys(rng)
        for a, b in ((keys_a, keys_b), (keys_a, None), (None, keys_b)):
            got = duplicate_positives(a, b)
            assert [p.tolist() for p in got] == duplicate_reference(a, b)
            assert all(p.dtype == np.int64 for p in got)
    # Rows are separate arrays, as before (changing one leaves the others).
    rows = duplicate_positives(["a", "a"], None)
    rows[0][0] = 9
    assert rows[1].tolist() == [0, 1]


def test_evaluate_retrieval_equals_its_definition_with_repeated_keys(monkeypatch):
    """evaluate_retrieval builds the positives per chunk from key groups and
    calls chance_recall once per distinct count; its result must equal
    retrieval_metrics(duplicate_positives(...)) with one chance_recall per query."""
    import mmtl_tf.metrics.retrieval as retrieval

    model = _identity_dual_encoder()
    rng = np.random.default_rng(5)
    n = 60
    images = rng.integers(-1, 2, (n, 3)).astype("float32")
    images[np.all(images == 0, axis=1)] = 1
    images[10:20] = images[0]                     # identical images
    texts = images + rng.integers(-1, 2, (n, 3)).astype("float32")
    texts[np.all(texts == 0, axis=1)] = 1
    captions = [f"caption {i % 7}" for i in range(n)]  # 7 distinct captions
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "text": texts}).batch(16)
    calls = []
    real_chance = retrieval.chance_recall
    monkeypatch.setattr(retrieval, "chance_recall",
                        lambda *a: calls.append(a) or real_chance(*a))
    got = evaluate_retrieval(model, ds, ks=(1, 5), match_keys={"image": "inputs",
                                                               "text": captions},
                             collapse=())
    image_keys = [images[i].tobytes() for i in range(n)]
    keys = {"image": image_keys, "text": captions}
    model_out = model.predict_on_batch({"image": images, "text": texts})
    emb = {m: np.asarray(model_out[f"{m}_embeddings"]) for m in ("image", "text")}
    chances = []
    all_counts = []
    for query, gallery in (("image", "text"), ("text", "image")):
        positives = paired_reference(keys[query], keys[gallery])
        assert [p.tolist() for p in paired_positives(keys[query], keys[gallery])] == positives
        counts = [len(p) for p in positives]
        all_counts.append(set(counts))
        expected = retrieval_metrics(emb[query], emb[gallery], positives, ks=(1, 5))
        for key, value in expected.items():
            assert got[f"{query}_to_{gallery}_{key}"] == value, key
        for k in (1, 5):
            chance = float(np.mean([real_chance(n, k, c) for c in counts]))
            assert got[f"{query}_to_{gallery}_chance_R@{k}"] == pytest.approx(chance)
            chances.append(chance)
    # once per K, direction and distinct count
    assert len(calls) == 2 * sum(len(c) for c in all_counts) < 4 * n
    for i, k in enumerate((1, 5)):
        assert got[f"chance_R@{k}"] == pytest.approx(0.5 * (chances[i] + chances[2 + i]))
    # No keys on either side is the plain evaluation (len(None) failed); a
    # modality the model does not evaluate is named (it was ignored).
    plain = evaluate_retrieval(model, ds, ks=(1,))
    assert evaluate_retrieval(model, ds, ks=(1,),
                              match_keys={"image": None, "text": None}) == plain
    with pytest.raises(ValueError, match="match_keys names 'txt', not a modality"):
        evaluate_retrieval(model, ds, ks=(1,), match_keys={"txt": captions})


def test_collapsed_rows_are_ranked_once_against_a_reference():
    """Rows of a collapsed modality with equal keys are one item: as a query
    and in the gallery (each caption twice, once per voice, counted every
    wrong caption twice, and chance was that of all the rows)."""
    model = _identity_dual_encoder("audio", "text")
    rng = np.random.default_rng(6)
    n = 40
    captions = [f"caption {i // 2}" for i in range(n)]  # each said by two voices
    texts = rng.integers(-2, 3, (n // 2, 3)).astype("float32").repeat(2, axis=0)
    texts[np.all(texts == 0, axis=1)] = 1
    clips = texts + rng.integers(-1, 2, (n, 3)).astype("float32")  # two voices differ
    clips[np.all(clips == 0, axis=1)] = 1
    items = [f"item {i // 2}" for i in range(n)]
    ds = tf.data.Dataset.from_tensor_slices({"audio": clips, "text": texts}).batch(16)
    keys = {"audio": items, "text": captions}
    got = evaluate_retrieval(model, ds, ks=(1, 5), match_keys=keys, collapse=["text"])
    model_out = model.predict_on_batch({"audio": clips, "text": texts})
    emb = {m: np.asarray(model_out[f"{m}_embeddings"]) for m in ("audio", "text")}
    rows = {"audio": list(range(n)), "text": list(range(0, n, 2))}  # first of each caption
    for query, gallery in (("audio", "text"), ("text", "audio")):
        positives = paired_reference(keys[query], keys[gallery])
        where = {j: g for g, j in enumerate(rows[gallery])}
        kept = [[where[j] for j in positives[i] if j in where] for i in rows[query]]
        expected = retrieval_metrics(emb[query][rows[query]], emb[gallery][rows[gallery]],
                                     kept, ks=(1, 5))
        for key, value in expected.items():
            assert got[f"{query}_to_{gallery}_{key}"] == pytest.approx(value), key
        size = len(rows[gallery])
        assert (got[f"{query}_to_{gallery}_num_queries"],
                got[f"{query}_to_{gallery}_num_gallery"]) == (len(rows[query]), size)
        for k in (1, 5):
            chance = np.mean([chance_recall(size, k, len(p)) for p in kept])
            assert got[f"{query}_to_{gallery}_chance_R@{k}"] == pytest.approx(chance)
    # audio -> text: one correct caption among 20 (not 2 among 40 rows).
    assert got["audio_to_text_chance_R@1"] == pytest.approx(1 / 20)
    assert got["text_to_audio_chance_R@1"] == pytest.approx(chance_recall(40, 1, 2))
    # Uncollapsed, every wrong caption above the right one counts twice.
    doubled = evaluate_retrieval(model, ds, ks=(1, 5), match_keys=keys, collapse=())
    assert doubled["audio_to_text_mean_rank"] > got["audio_to_text_mean_rank"]
    assert doubled["text_to_audio_R@5"] == got["text_to_audio_R@5"]
    # "inputs" keys collapse by default; a modality without keys cannot.
    default = evaluate_retrieval(model, ds, ks=(1,), match_keys={"text": "inputs"})
    assert default["audio_to_text_num_gallery"] == 20
    with pytest.raises(ValueError, match="collapse names 'audio', which has no match_keys"):
        evaluate_retrieval(model, ds, ks=(1,), match_keys={"text": captions}, collapse=["audio"])
    with pytest.raises(ValueError, match="collapse names 'image', not a modality"):
        evaluate_retrieval(model, ds, ks=(1,), match_keys=keys, collapse=["image"])


def test_match_keys_may_be_numpy_arrays():
    # collapse=None compared each key list with "inputs": a NumPy array of
    # keys failed with "truth value of an array is ambiguous".
    model = _identity_dual_encoder(exact=False)
    x = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    ds = tf.data.Dataset.from_tensor_slices({"image": x, "text": x}).batch(4)
    keys = ["a", "b", "c", "a"]
    as_list = evaluate_retrieval(model, ds, ks=(1,), match_keys={"text": keys})
    as_array = evaluate_retrieval(model, ds, ks=(1,), match_keys={"text": np.array(keys)})
    assert as_array == as_list


def test_embed_dataset_checks_each_batch_against_the_towers():
    # Once Keras' predict function was traced again with relaxed shapes, 12 px
    # images went into an 8 px model (its pooling took them) without a word;
    # an unbatched or empty dataset failed deep inside.
    import keras

    def tower(name, shape):
        inputs = keras.Input(shape)
        pooled = keras.layers.GlobalAveragePooling2D()(inputs) if len(shape) == 3 else inputs
        return keras.Model(inputs, pooled, name=name)

    model = mmtl_tf.models.DualEncoder({"image": tower("i", (8, 8, 3)), "text": tower("t", (3,))},
                                       projection_dim=3)

    def data(size, n=4):
        images = np.random.default_rng(0).random((n, size, size, 3)).astype("float32")
        return tf.data.Dataset.from_tensor_slices(
            {"image": images, "text": np.eye(3, dtype="float32")[np.arange(n) % 3]})

    right = evaluate_retrieval(model, data(8).batch(2), ks=(1,))
    assert right["num_pairs"] == 4
    with pytest.raises(ValueError, match=r"image inputs of shape \(2, 12, 12, 3\): the model's "
                                         r"image tower takes \(None, 8, 8, 3\) \(a dataset "
                                         r"built with another image size"):
        evaluate_retrieval(model, data(12).batch(2), ks=(1,))
    with pytest.raises(ValueError, match=r"image inputs of shape \(8, 8, 3\).*unbatched"):
        evaluate_retrieval(model, data(8), ks=(1,))
    with pytest.raises(ValueError, match="the dataset yielded no batch"):
        evaluate_retrieval(model, data(8, n=0).batch(2), ks=(1,))


def test_embedding_index_ids_are_numbers_or_strings_of_one_kind():
    # Paths and None were kept as an object array that save wrote and load
    # refused; [1, "b"] came back as the strings "1" and "b".
    import pathlib

    gallery = np.eye(3)
    for ids, bad in (([pathlib.Path("a"), pathlib.Path("b"), pathlib.Path("c")], 0),
                     ([None, "a", "b"], 0), ([1, "b", 2], 1)):
        with pytest.raises(ValueError, match=rf"ids must be numbers or strings of one kind; "
                                             rf"ids\[{bad}\]"):
            EmbeddingIndex(gallery, ids=ids)
    # Kinds that saved and loaded before stay accepted (a file saved with them
    # loads): bytes, floats, booleans, large unsigned integers.
    import tempfile

    for ids in ([b"a", b"b", b"c"], [0.5, 1.5, 2.5], [True, False, True],
                np.array([2 ** 63, 2 ** 63 + 1, 2 ** 63 + 2], np.uint64)):
        index = EmbeddingIndex(gallery, ids=ids)
        path = os.path.join(tempfile.mkdtemp(), "index.npz")
        index.save(path)
        assert EmbeddingIndex.load(path).ids.tolist() == np.asarray(ids).tolist()
    assert EmbeddingIndex(gallery, ids=np.array([4, 5, 6])).search(gallery, 1)[1].ravel() \
        .tolist() == [4, 5, 6]
    assert EmbeddingIndex(gallery, ids=["x", "y", "z"]).search(gallery, 1)[1].ravel() \
        .tolist() == ["x", "y", "z"]


def test_modalities_ks_and_chance_recall_arguments_are_named():
    # A misspelt modality failed with KeyError 'txt_embeddings', ("image",
    # "image") scored images against themselves, ks=(1.5,) failed with a
    # KeyError (retrieval_metrics reported R@1 for it), and chance_recall took
    # 2.9 as a cut-off.
    model = _identity_dual_encoder(exact=False)
    ds = tf.data.Dataset.from_tensor_slices({"image": np.eye(3, dtype="float32"),
                                             "text": np.eye(3, dtype="float32")}).batch(3)
    for modalities in (("image", "txt"), ("image", "image")):
        with pytest.raises(ValueError, match=r"give two different modalities of the model "
                                             r"\('image', 'text'\)"):
            evaluate_retrieval(model, ds, modalities=modalities)
    with pytest.raises(ValueError, match=r"ks must .*got \(1\.5,\).*cut-offs K of R@K"):
        evaluate_retrieval(model, ds, ks=(1.5,))
    with pytest.raises(ValueError, match=r"ks must"):
        retrieval_metrics(np.eye(3), np.eye(3), ks=(1.7,))
    assert set(retrieval_metrics(np.eye(3), np.eye(3), ks=2)) >= {"R@2"}
    with pytest.raises(ValueError, match=r"give two different modalities"):
        evaluate_retrieval(model, ds, modalities=("image",))
    # Whole floats work as before.
    assert evaluate_retrieval(model, ds, ks=(1.0,)) == evaluate_retrieval(model, ds, ks=(1,))
    assert chance_recall(100.0, 10) == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"chance_recall: k must be a whole number; got 2\.9"):
        chance_recall(10, 2.9)
    with pytest.raises(ValueError, match=r"num_gallery must be a whole number; got 10\.5"):
        chance_recall(10.5, 3)
    assert chance_recall(np.int64(10), np.int32(2)) == pytest.approx(0.2)
    import keras

    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="is not a DualEncoder: pass modalities="):
        evaluate_retrieval(plain, ds)


def test_small_argument_mistakes_are_named():
    # batch_size=0 failed in range(), a dict of positives was read as its
    # keys, paired_positives(None, None) failed on len(None), and the faiss
    # backend asserted on an empty gallery (the tf one returned (Q, 0)).
    q = np.eye(3)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        retrieval_metrics(q, q, batch_size=0)
    with pytest.raises(TypeError, match="got a dict"):
        retrieval_metrics(q, q, positives={0: [0], 1: [1], 2: [2]})
    with pytest.raises(ValueError, match="needs the keys of at least one side"):
        paired_positives(None, None)
    empty = EmbeddingIndex(np.zeros((0, 3)))
    scores, ids = empty.search(q, 2)
    assert scores.shape == (3, 0) and ids.shape == (3, 0)
    try:
        import faiss  # noqa: F401
    except ImportError:
        return
    scores, ids = EmbeddingIndex(np.zeros((0, 3)), backend="faiss").search(q, 2)
    assert scores.shape == (3, 0) and ids.shape == (3, 0)
