"""Retrieval evaluation: `retrieval_metrics`, `evaluate_retrieval`, `EmbeddingIndex`.

Ranks are 1-based. Ties are counted against the model (a non-matching item
with exactly the score of the best match is ranked before it), so constant
embeddings score at the bottom instead of looking perfect.
"""

import hashlib
import os

import numpy as np

from mmtl_tf.files import atomic_file

METRICS = ("cosine", "dot", "l2")
BACKENDS = ("tf", "faiss")


def _as_matrix(x, name):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a (N, D) matrix; got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"{name} has non-finite values (first in row {bad}).")
    return x


def positives_from_labels(query_labels, gallery_labels):
    """A (Q, G) boolean matrix: gallery items with the query's label count as correct.

    Args:
        query_labels: sequence of Q labels.
        gallery_labels: sequence of G labels.

    Example:
        >>> from mmtl_tf.metrics import positives_from_labels
        >>> positives_from_labels([0, 1], [1, 0, 0]).tolist()
        [[False, True, True], [True, False, False]]
    """
    q, g = np.asarray(query_labels), np.asarray(gallery_labels)
    return q.reshape(-1, 1) == g.reshape(1, -1)


def _diagonal_mask(num_gallery):
    """chunk(start, stop) → the rows start..stop-1 of the (G, G) identity."""
    def chunk(start, stop):
        mask = np.zeros((stop - start, num_gallery), dtype=bool)
        mask[np.arange(stop - start), np.arange(start, stop)] = True
        return mask

    return chunk


def _checked_indices(i, items, num_gallery):
    """Query i's gallery indices as an int64 array; a bad index raises."""
    array = None
    if isinstance(items, np.ndarray) and items.ndim == 1:
        array = items
    elif isinstance(items, (list, tuple)) and len(items) > 16:
        try:
            array = np.asarray(items)
        except ValueError:  # ragged
            array = None
    if array is not None and len(array) and array.dtype.kind in "iuf":
        # Vectorised form of the per-index check below (which also writes the error).
        whole = array.dtype.kind != "f" or bool(
            np.isfinite(array).all() and (array == np.floor(array)).all())
        if whole and array.min() >= 0 and array.max() < num_gallery:
            return array.astype(np.int64, copy=False)
    items = [items] if np.ndim(items) == 0 else list(items)
    if not items:
        raise ValueError(f"positives[{i}] is empty: query {i} has no correct gallery item.")
    for p in items:
        if not float(p).is_integer() or not 0 <= int(p) < num_gallery:
            raise ValueError(f"positives[{i}] contains {p!r}, which is not a gallery index "
                             f"in [0, {num_gallery - 1}].")
    return np.asarray(items, dtype=np.int64)


def _positive_mask(positives, num_queries, num_gallery):
    """Validates `positives` and returns a function chunk(start, stop) → bool mask."""
    if positives is None:
        if num_queries != num_gallery:
            raise ValueError(
                f"positives=None means query i matches gallery item i, which needs as many "
                f"queries as gallery items; got {num_queries} queries and {num_gallery} "
                "gallery items (mismatched numbers of images and captions?). Pass "
                "`positives`.")
        return _diagonal_mask(num_gallery)
    if isinstance(positives, dict):
        # (A dict was read as its keys, list(positives).)
        raise TypeError("positives must be a list of gallery-index lists, one per query, or a "
                        "boolean (Q, G) matrix; got a dict (pass [d[i] for i in range(Q)]).")
    try:
        array = np.asarray(positives)
    except ValueError:  # lists of different lengths
        array = None
    if array is not None and array.dtype == bool and array.ndim != 2:
        raise ValueError(f"a boolean positives matrix must have shape ({num_queries}, "
                         f"{num_gallery}); got {array.shape}.")
    if (array is not None and array.ndim == 2 and array.dtype.kind in "iuf"
            and array.shape == (num_queries, num_gallery) and num_gallery > 1
            and np.isin(array, (0, 1)).all()):
        # Read as lists of gallery indices, each row of a 0/1 matrix meant
        # "items 0 and 1" (R@1 0.5 for a perfect ranking).
        raise ValueError(
            f"positives is a ({num_queries}, {num_gallery}) array of 0s and 1s: pass a "
            "boolean matrix (np.asarray(positives, dtype=bool)) or lists of gallery "
            "indices.")
    if array is not None and array.dtype == bool:
        positives = array
        if positives.shape != (num_queries, num_gallery):
            raise ValueError(f"a boolean positives matrix must have shape ({num_queries}, "
                             f"{num_gallery}); got {positives.shape}.")
        empty = np.flatnonzero(~positives.any(axis=1))
        if len(empty):
            raise ValueError(f"query {int(empty[0])} has no positive gallery item "
                             f"({len(empty)} queries have none).")
        return lambda start, stop: positives[start:stop]
    if isinstance(positives, np.ndarray) and positives.ndim == 1:
        positives = [[p] for p in positives.tolist()]  # 3.5 is refused below, not cut to 3
    positives = list(positives)
    if len(positives) != num_queries:
        raise ValueError(f"positives has {len(positives)} entries for {num_queries} queries.")
    lists = [_checked_indices(i, items, num_gallery) for i, items in enumerate(positives)]
    lengths = np.fromiter((len(items) for items in lists), np.int64, len(lists))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate(lists)

    def chunk(start, stop):
        mask = np.zeros((stop - start, num_gallery), dtype=bool)
        rows = np.repeat(np.arange(stop - start), lengths[start:stop])
        mask[rows, flat[offsets[start]:offsets[stop]]] = True
        return mask

    return chunk


def _scores(queries, gallery, metric="cosine", exact=False):
    """(Q, G) float32 scores, higher is closer.

    `"l2"` centres both sides on the gallery's mean first: distances do not
    change, but `|x|² + |y|² − 2 x·y` in float32 lost all precision for
    embeddings far from the origin (at 1e4, distances 0.5 and 3 came out 0).
    With `exact`, the scores are computed in float64 and rounded to float32,
    so that identical gallery rows get identical scores (a float32 matmul
    rounds some columns differently, which broke ties in the model's favour).
    """
    import tensorflow as tf

    dtype = tf.float64 if exact else tf.float32
    queries, gallery = tf.cast(queries, dtype), tf.cast(gallery, dtype)
    if metric == "cosine":
        queries = tf.math.l2_normalize(queries, axis=1)
        gallery = tf.math.l2_normalize(gallery, axis=1)
    if metric == "l2":
        center = tf.reduce_mean(gallery, axis=0, keepdims=True)
        queries, gallery = queries - center, gallery - center
    scores = tf.matmul(queries, gallery, transpose_b=True)
    if metric == "l2":
        scores = (2.0 * scores - tf.reduce_sum(tf.square(queries), 1, keepdims=True)
                  - tf.transpose(tf.reduce_sum(tf.square(gallery), 1, keepdims=True)))
    return tf.cast(scores, tf.float32)


def retrieval_metrics(query_embeddings, gallery_embeddings, positives=None, ks=(1, 5, 10),
                      metric="cosine", batch_size=1024, exclude=None):
    """Recall@K, mean/median rank and mAP@10 of ranking a gallery for each query.

    Each query ranks every gallery item by similarity. Its rank is the 1-based
    position of its best-placed correct item (ties counted against the model);
    `R@K` is the fraction of queries whose rank is ≤ K; `mAP@10` is the mean
    over queries of the average precision of the first 10 results,
    normalised by min(number of correct items, 10).

    Args:
        query_embeddings: (Q, D) array.
        gallery_embeddings: (G, D) array.
        positives: None (query i matches gallery item i; needs Q == G), an int
            array (Q,) of one gallery index per query, a list of Q lists of
            gallery indices (several captions per image), or a boolean (Q, G)
            matrix (e.g. `positives_from_labels`). Indices out of range and
            queries without any correct item raise `ValueError`.
        ks: tuple of int. The K of each `R@K`.
        metric: str. `"cosine"`, `"dot"` or `"l2"` (negative squared distance).
        batch_size: int. Queries scored at once.
        exclude: None or a boolean (Q, G) matrix of gallery items a query does
            not rank at all (leave-one-out, where the queries are the gallery:
            `np.eye(N, dtype=bool)`, so no query retrieves itself). An
            excluded item is neither a hit nor ranked before one.

    Returns:
        dict with `R@K` for each K, `mean_rank`, `median_rank`, `mAP@10`
        (floats).

    Example:
        >>> import numpy as np
        >>> from mmtl_tf.metrics import retrieval_metrics
        >>> m = retrieval_metrics(np.eye(3), np.eye(3), ks=(1,))
        >>> m["R@1"], m["mean_rank"]
        (1.0, 1.0)

    References:
        OpenCLIP `get_clip_metrics` (R@K, mean/median rank); Manning, Raghavan
        and Schütze 2008, "Introduction to Information Retrieval", ch. 8 (mAP).
    """
    queries, gallery, ks = _checked_inputs(query_embeddings, gallery_embeddings, ks, metric,
                                           batch_size)
    mask_of = _positive_mask(positives, len(queries), len(gallery))
    exclude_of = None
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.dtype != bool or exclude.shape != (len(queries), len(gallery)):
            raise ValueError(f"exclude must be a boolean ({len(queries)}, {len(gallery)}) "
                             f"matrix; got {exclude.dtype} {exclude.shape}.")

        def exclude_of(start, stop):
            return exclude[start:stop]
    return _ranking_metrics(queries, gallery, mask_of, ks, metric, batch_size, exclude_of)


def retrieval_metrics_by_chunk(query_embeddings, gallery_embeddings, positives_of, ks=(1, 5, 10),
                               metric="cosine", batch_size=1024, exclude_of=None):
    """`retrieval_metrics` with the positives (and the items left out) given
    per chunk of queries, for callers that can build them from labels or
    groups without holding a (Q, G) matrix.

    Args:
        positives_of: function (start, stop) → (stop − start, G) bool: the
            positives of queries start..stop−1; every row needs one.
        exclude_of: None or a function like `positives_of` (see `exclude`).
        Other arguments as `retrieval_metrics`.
    """
    queries, gallery, ks = _checked_inputs(query_embeddings, gallery_embeddings, ks, metric,
                                           batch_size)
    return _ranking_metrics(queries, gallery, positives_of, ks, metric, batch_size, exclude_of)


def _checked_inputs(query_embeddings, gallery_embeddings, ks, metric, batch_size=1):
    from mmtl_tf.errors import check_count

    check_count("batch_size", batch_size)  # (0 failed with "range() arg 3 must not be zero")
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; use one of "
                         f"{', '.join(map(repr, METRICS))}.")
    queries = _as_matrix(query_embeddings, "query_embeddings")
    gallery = _as_matrix(gallery_embeddings, "gallery_embeddings")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"query and gallery embeddings differ in width: "
                         f"{queries.shape[1]} vs {gallery.shape[1]}.")
    if len(queries) == 0 or len(gallery) == 0:
        raise ValueError("need at least one query and one gallery item.")
    return queries, gallery, _whole_ks(ks)


def _first_hit_ranks(scores, mask, left_out=None):
    """1-based rank of each row's best-placed hit: 1 + the non-hits scoring at
    least as high as the row's best hit (ties count against the model).

    `left_out`: None or the (rows, G) bool of the items `exclude` leaves out,
    which score -inf (and are no hits): they are not counted, even where the
    best hit scores -inf too (then `scores >= best` holds for them)."""
    best = np.where(mask, scores, -np.inf).max(axis=1, keepdims=True)
    ranks = np.count_nonzero(~mask & (scores >= best), axis=1) + 1
    if left_out is not None:
        # Only rows whose best hit scores -inf counted them (rare: scores
        # that overflowed float32); every left-out item, then.
        rows = np.flatnonzero(np.isneginf(best[:, 0]))
        if len(rows):
            ranks[rows] -= np.count_nonzero(left_out[rows], axis=1)
    return ranks


def _top_hits(scores, mask, k, left_out=None):
    """(rows, k) bool: whether the item at each of the first k places is a hit,
    in the order of a full sort by score (descending) with non-hits first
    among equal scores.

    Only the k best are ordered: `argpartition` picks k items with the k
    highest scores. Every item scoring above the k-th highest score t is among
    them; the places left go to items scoring exactly t, non-hits first, so
    the picked items at t are relabelled: the first of them non-hits (as many
    as there are non-hits at t), the rest hits.

    `left_out`: None or the (rows, G) bool of the items `exclude` leaves out,
    which score -inf (and are no hits). They come last: they are picked only
    where t is -inf, and there the places at t go to the ranked non-hits at
    -inf, then the ranked hits at -inf, and those left (taken by left-out
    items) are no hits, after them.
    """
    picked = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, picked, axis=1)
    top_mask = np.take_along_axis(mask, picked, axis=1)
    threshold = top_scores.min(axis=1, keepdims=True)  # the k-th highest score
    misses_at = np.count_nonzero(~mask & (scores == threshold), axis=1)[:, None]
    hits_at = np.full_like(misses_at, k)  # without left-out items at t: the rest are hits
    if left_out is not None:
        rows = np.flatnonzero(np.isneginf(threshold[:, 0]))
        if len(rows):
            at_t = np.isneginf(scores[rows])
            misses_at[rows, 0] = np.count_nonzero(~mask[rows] & ~left_out[rows] & at_t, axis=1)
            hits_at[rows, 0] = np.count_nonzero(mask[rows] & at_t, axis=1)
    at = top_scores == threshold
    place = np.cumsum(at, axis=1)  # 1, 2, ... among the picked items at t
    # Among equal scores: 0 non-hit, 1 hit, 2 a left-out item's place.
    kind = np.where(at, (place > misses_at).astype(np.int8) + (place > misses_at + hits_at),
                    top_mask)
    order = np.lexsort((kind, -top_scores), axis=-1)
    return np.take_along_axis(kind, order, axis=1) == 1


def _ranking_metrics(queries, gallery, mask_of, ks, metric="cosine", batch_size=1024,
                     exclude_of=None):
    """`retrieval_metrics` on checked arrays, with the positives (and the
    items left out) given per chunk of queries: mask_of(start, stop) and
    exclude_of(start, stop) → (stop − start, G) bool."""
    ranks, aps = [], []
    for start in range(0, len(queries), batch_size):
        stop = min(start + batch_size, len(queries))
        scores = np.asarray(_scores(queries[start:stop], gallery, metric, exact=True))
        mask = mask_of(start, stop)
        left_out = None
        if exclude_of is not None:
            left_out = exclude_of(start, stop)
            # Ranked last, and no hit: they cannot come before a correct item
            # (the rankings below skip them where ranked items score -inf too).
            scores = np.where(left_out, np.float32(-np.inf), scores)
            mask = mask & ~left_out
            empty = np.flatnonzero(~mask.any(axis=1))
            if len(empty):
                raise ValueError(f"query {start + int(empty[0])} has no positive gallery "
                                 "item left once `exclude` is applied.")
        ranks.append(_first_hit_ranks(scores, mask, left_out))
        top = _top_hits(scores, mask, min(10, scores.shape[1]), left_out).astype(np.float64)
        precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
        denominator = np.minimum(mask.sum(axis=1), 10)
        aps.append((precision * top).sum(axis=1) / denominator)
    ranks = np.concatenate(ranks)
    result = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    result["mean_rank"] = float(np.mean(ranks))
    # OpenCLIP: floor of the median 0-based rank, plus one.
    result["median_rank"] = float(np.floor(np.median(ranks - 1)) + 1)
    result["mAP@10"] = float(np.mean(np.concatenate(aps)))
    return result


def _whole_ks(ks):
    """`ks` as a tuple of ints >= 1; a `ValueError` naming `ks` for anything
    else (1.7 was scored as R@1 under the name R@1.7, or failed with a
    KeyError; a bare 5 failed with "'int' object is not iterable")."""
    import numbers

    values = [ks] if isinstance(ks, numbers.Number) else list(ks)
    if not values or any(isinstance(k, bool) or not isinstance(k, numbers.Real)
                         or not float(k).is_integer() or k < 1 for k in values):
        raise ValueError(f"ks must be whole numbers >= 1, got {ks!r} (the cut-offs K of R@K, "
                         "e.g. ks=(1, 5, 10)).")
    return tuple(int(k) for k in values)


def chance_recall(num_gallery, k, num_positives=1):
    """Probability that a random ranking puts one of `num_positives` items in the top k.

    Args:
        num_gallery: int. Gallery size G.
        k: int. Cut-off.
        num_positives: int. Correct items in the gallery.

    Returns:
        float: 1 − C(G − P, k) / C(G, k).

    Example:
        >>> from mmtl_tf.metrics import chance_recall
        >>> round(chance_recall(100, 10), 3)
        0.1

    Raises:
        ValueError: a gallery or k below 1, or positives outside [0, G]
            (an empty gallery and more positives than items gave 1.0; k 0
            and negative positives gave 0.0).
    """
    import numbers

    for name, value in (("num_gallery", num_gallery), ("k", k),
                        ("num_positives", num_positives)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                not float(value).is_integer():
            # (10.5 and 2.9 were used as floats: chance_recall(10, 2.9) = 0.29.)
            raise ValueError(f"chance_recall: {name} must be a whole number; got {value!r}.")
    num_gallery, k, num_positives = int(num_gallery), int(k), int(num_positives)
    if int(num_gallery) < 1 or int(k) < 1:
        raise ValueError(f"chance_recall: num_gallery and k must be at least 1; got "
                         f"num_gallery={num_gallery}, k={k}.")
    if not 0 <= int(num_positives) <= int(num_gallery):
        raise ValueError(f"chance_recall: num_positives must be between 0 and num_gallery="
                         f"{num_gallery}; got {num_positives}.")
    if num_positives == 0:
        return 0.0
    if k >= num_gallery:
        return 1.0
    miss = 1.0
    for i in range(num_positives):
        miss *= (num_gallery - k - i) / (num_gallery - i) if num_gallery - k - i > 0 else 0.0
    return float(1.0 - miss)


def _row_keys(structure):
    """One key per row of a (nested) batch of arrays, for duplicate detection:
    the 16-byte BLAKE2b digest of the row's bytes (the bytes themselves, kept
    for every row, took 147 KB per 224 × 224 image)."""
    import tensorflow as tf

    arrays = [np.asarray(t) for t in tf.nest.flatten(structure)]
    return [hashlib.blake2b(b"".join(a[i].tobytes() for a in arrays), digest_size=16).digest()
            for i in range(len(arrays[0]))]


def _groups(keys):
    ids, index = [], {}
    for key in keys:
        ids.append(index.setdefault(key, len(index)))
    return np.asarray(ids)


def embed_dataset(model, dataset, modalities=None):
    """Runs a dual encoder over a dataset; returns embeddings and row keys.

    Args:
        model: `mmtl_tf.models.DualEncoder`.
        dataset: `tf.data.Dataset` of inputs dicts or `(inputs, labels)` pairs.
        modalities: sequence of str or None (the model's two modalities).

    Returns:
        (dict modality → (N, D) float32 array, dict modality → list of keys
        of the raw inputs (16-byte digests: equal inputs, equal keys), labels
        array or None).

    Example:
        >>> emb, keys, _ = mmtl_tf.metrics.embed_dataset(model, test_ds)  # doctest: +SKIP
        >>> emb["image"].shape  # doctest: +SKIP
        (285, 128)
    """
    modalities = list(modalities or model.modalities)
    embeddings = {m: [] for m in modalities}
    keys = {m: [] for m in modalities}
    labels = []
    for batch in dataset:
        x, y = (batch[0], batch[1]) if isinstance(batch, tuple) else (batch, None)
        _check_tower_inputs(model, x, modalities)
        out = model.predict_on_batch(x)
        for m in modalities:
            embeddings[m].append(np.asarray(out[f"{m}_embeddings"], np.float32))
            keys[m].extend(_row_keys(x[m]))
        if y is not None:
            labels.append(np.asarray(y))
    if not any(embeddings.values()):
        raise ValueError("the dataset yielded no batch: nothing to embed (an empty split?).")
    embeddings = {m: np.concatenate(v) for m, v in embeddings.items()}
    return embeddings, keys, (np.concatenate(labels) if labels else None)


def _check_tower_inputs(model, x, modalities):
    """A `ValueError` when a batch of one modality does not have the shape
    its tower takes (an unbatched dataset, images of another size, captions
    of another length). Keras checks this on the first call only: once its
    predict function was traced again with relaxed shapes, 40 px images went
    into a 32 px model's small CNN, whose global pooling took them, without
    a word."""
    import keras

    tower_of = getattr(model, "tower", None)
    for m in modalities:
        value = x.get(m) if isinstance(x, dict) else None
        if tower_of is None or value is None or isinstance(value, dict):
            continue
        specs = keras.tree.flatten(tower_of(m).inputs)
        if len(specs) != 1:
            continue
        want, got = tuple(specs[0].shape), tuple(getattr(value, "shape", ()))
        if len(got) != len(want) or any(w is not None and g is not None and w != g
                                         for w, g in zip(want[1:], got[1:])):
            hint = (" (an unbatched dataset, or images without their channel axis?)"
                    if len(got) == len(want) - 1 else
                    " (a dataset built with another image size or sequence length than "
                    "the model's?)")
            raise ValueError(f"{m} inputs of shape {got}: the model's {m} tower takes "
                             f"{want}{hint}.")


def duplicate_positives(keys_a, keys_b):
    """Positives of pair i: every pair j whose key in either modality equals pair i's.

    Two images with identical pixels, two identical captions, or several
    captions of one image (a repeated image) are equally correct answers;
    counting only row i would punish the model for ties it cannot break.

    Args:
        keys_a: sequence of N hashable keys (or None: each row unique).
        keys_b: sequence of N hashable keys (or None).

    Returns:
        list of N int arrays of gallery indices.

    Example:
        >>> from mmtl_tf.metrics import duplicate_positives
        >>> [p.tolist() for p in duplicate_positives(["a frog", "a cat", "a frog"], None)]
        [[0, 2], [1], [0, 2]]
    """
    groups = _key_groups(keys_a, keys_b)
    members = []
    for ids in groups:  # members[g]: the rows of group g, ascending
        order = np.argsort(ids, kind="stable")
        bounds = np.flatnonzero(np.diff(ids[order])) + 1
        members.append(np.split(order, bounds))
    unions, result = {}, []
    for a, b in zip(groups[0].tolist(), groups[1].tolist()):
        if (a, b) not in unions:
            first, second = members[0][a], members[1][b]
            # Row i is in both of its groups: a group of one is in the other.
            unions[a, b] = (second if len(first) == 1 else first if len(second) == 1
                            else np.union1d(first, second))
        result.append(unions[a, b].copy())
    return result


def _key_groups(keys_a, keys_b):
    """Group ids 0, 1, … (in order of first appearance) of each side's keys;
    a side without keys: one group per row. Key lists of different lengths
    are a ValueError (rows were paired by position as far as the shorter
    went, or NumPy failed to broadcast)."""
    if keys_a is not None and keys_b is not None and len(keys_a) != len(keys_b):
        raise ValueError(f"the two sides' keys must be one per row (N each); got "
                         f"{len(keys_a)} and {len(keys_b)} keys.")
    n = len(keys_a if keys_a is not None else keys_b)
    return [_groups(keys) if keys is not None else np.arange(n) for keys in (keys_a, keys_b)]


def paired_positives(query_keys, gallery_keys):
    """Positives of query i: every row j whose gallery-side key is paired, in
    some row, with query i's key (`evaluate_retrieval` with `match_keys`).

    For text → image with several captions per image (COCO) and repeated
    captions: an image is correct for a caption when any row pairs that
    image with that caption text, and then in all of its rows, which score
    alike. `duplicate_positives` marks only the rows that repeat a key, so
    the same image's other rows counted as wrong at the same score, and ties
    count against the model (60 images with three captions each: caption →
    image R@1 0.078 that way, 0.344 with these positives, for one model).
    Every positive of `duplicate_positives` is one here too.

    Args:
        query_keys: sequence of N hashable keys of the query side (or None:
            each row unique).
        gallery_keys: the same for the gallery side.

    Returns:
        list of N int arrays of gallery indices.

    Example:
        >>> from mmtl_tf.metrics import paired_positives
        >>> images, captions = ["i0", "i0", "i1"], ["a cat", "a pet", "a pet"]
        >>> [p.tolist() for p in paired_positives(captions, images)]  # caption → image
        [[0, 1], [0, 1, 2], [0, 1, 2]]
    """
    if query_keys is None and gallery_keys is None:
        # (It failed with "object of type 'NoneType' has no len()".)
        raise ValueError("paired_positives needs the keys of at least one side (None "
                         "for a side means one key per row; the row count comes from the "
                         "other).")
    group_q, group_g, pair_q, pair_g = _key_pairs(query_keys, gallery_keys)
    if not len(group_q):
        return []
    # The rows of each gallery group, then per query group the rows of the
    # gallery groups it is paired with (memory in N, not N x N).
    order = np.argsort(group_g, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(group_g[order])) + 1)
    starts = np.flatnonzero(np.r_[True, np.diff(pair_q) != 0])
    rows_of = {int(pair_q[a]): np.sort(np.concatenate([members[g] for g in pair_g[a:b]]))
               for a, b in zip(starts, np.r_[starts[1:], len(pair_q)])}
    return [rows_of[int(g)].astype(np.int64) for g in group_q]


def _key_pairs(query_keys, gallery_keys):
    """Group ids of each side's keys (`_key_groups`) and the (query group,
    gallery group) pairs that some row holds, sorted by query group."""
    group_q, group_g = (ids.astype(np.int64) for ids in _key_groups(query_keys, gallery_keys))
    if not len(group_q):
        empty = np.zeros(0, np.int64)
        return group_q, group_g, empty, empty
    width = int(group_g.max()) + 1
    pairs = np.unique(group_q * width + group_g)
    return group_q, group_g, pairs // width, pairs % width


def _paired_mask(query_keys, gallery_keys, query_rows=None, gallery_rows=None):
    """`paired_positives` as chunk(start, stop) → bool mask, and the number
    of positives of each query. A chunk is read from a table of its query
    groups × gallery groups (bool), so it costs (chunk × N) bools, not
    int64 codes. `query_rows` / `gallery_rows`: None, or the rows that are
    the queries / the gallery (`_collapsed_items`); the pairs are those of
    every row."""
    group_q, group_g, pair_q, pair_g = _key_pairs(query_keys, gallery_keys)
    width = int(group_g.max()) + 1 if len(group_g) else 0
    if query_rows is not None:
        group_q = group_q[query_rows]
    if gallery_rows is not None:
        group_g = group_g[gallery_rows]

    def chunk(start, stop):
        present, inverse = np.unique(group_q[start:stop], return_inverse=True)
        table = np.zeros((len(present), width), bool)
        at = np.minimum(np.searchsorted(present, pair_q), max(len(present) - 1, 0))
        hit = present[at] == pair_q if len(present) else np.zeros(len(pair_q), bool)
        table[at[hit], pair_g[hit]] = True
        return table[inverse.reshape(-1)][:, group_g]

    per_query_group = np.zeros(int(group_q.max()) + 1 if len(group_q) else 0, np.int64)
    np.add.at(per_query_group, pair_q, np.bincount(group_g, minlength=width)[pair_g])
    return chunk, per_query_group[group_q]


def _collapsed_items(modalities, chosen, match_keys, collapse, n):
    """modality → the row indices that are its items: one row per distinct
    key of a `collapse` modality (its first), every row of the others."""
    if collapse is None:
        # (isinstance: keys may be a NumPy array, whose == is elementwise)
        collapse = [m for m in modalities
                    if isinstance((match_keys or {}).get(m), str) and match_keys[m] == "inputs"]
    elif isinstance(collapse, str):
        collapse = [collapse]
    unknown = sorted(set(collapse) - set(modalities))
    if unknown:
        raise ValueError(f"collapse names {', '.join(map(repr, unknown))}, not a modality "
                         f"evaluated here ({modalities[0]!r}, {modalities[1]!r}).")
    items = {}
    for modality, keys in zip(modalities, chosen):
        if modality in collapse and keys is None:
            raise ValueError(f"collapse names {modality!r}, which has no match_keys: rows "
                             "are one item when their keys are equal.")
        if modality in collapse:
            first_rows = {}
            for i, key in enumerate(keys):
                first_rows.setdefault(key, i)
            items[modality] = np.array(sorted(first_rows.values()), np.int64)
        else:
            items[modality] = np.arange(n)
    return items


def evaluate_retrieval(model, dataset, ks=(1, 5, 10), modalities=None, match_keys=None,
                       collapse=None):
    """Both retrieval directions of a dual encoder on a dataset of matched pairs.

    Every row of `dataset` is a matched pair; each side's embeddings are the
    queries for the other side's gallery. Names follow OpenCLIP:
    `image_to_text_R@1`, …, `image_to_text_mean_rank`,
    `image_to_text_median_rank`, `image_to_text_mAP@10`, and the same for
    `text_to_image`; `mean_R@K` averages the two directions.

    By default only row i is correct for query i. `match_keys` gives, per
    modality, a list of keys (e.g. the raw caption strings: two stamps both
    described as "A frog." are interchangeable) or `"inputs"` (identical model
    inputs: identical pixels; for text, beware that tokenisation can merge
    captions that differ only in out-of-vocabulary words); then a gallery
    row is correct when some row pairs its key with the query's key
    (`paired_positives`, per direction: all rows of an image that any row
    pairs with the query caption, in every row of it). Chance levels are
    given per direction (`image_to_text_chance_R@1`, ...) and their mean
    (`chance_R@1`).

    Rows of a `collapse` modality with equal keys are one item, ranked once
    as a gallery item and asked once as a query (the first such row stands
    for them): with 2 voices per spoken caption, each caption was twice in
    the text gallery, so every wrong caption above the right one counted
    twice (R@10 was R@5 among the distinct captions) and the chance level
    was that of 570 rows, not of 285 captions. By default the modalities
    whose match key is `"inputs"` collapse (identical inputs are the same
    item: an image repeated once per caption, as COCO's 5 captions give);
    give caption keys' modality too where equal keys mean the same text.
    `{query}_to_{gallery}_num_queries` and `..._num_gallery` count the items
    of each direction.

    Args:
        model: `mmtl_tf.models.DualEncoder` (any two modalities).
        dataset: `tf.data.Dataset` of `inputs` or `(inputs, labels)`, not shuffled.
        ks: tuple of int.
        modalities: (query modality, gallery modality) or None for the model's
            order (e.g. image, text).
        match_keys: None or dict modality → `"inputs"` or a sequence of N keys.
        collapse: None (the modalities keyed by `"inputs"`) or a sequence of
            modalities with match keys whose rows of equal keys are one item.

    Returns:
        dict of floats, plus `num_pairs` and the chance level `chance_R@K`
        of a random ranking (one correct item among the pairs, or, with
        `match_keys`, each query's number of correct items among the
        gallery's items: rows, or distinct keys of a `collapse` modality).

    Example:
        >>> metrics = mmtl_tf.metrics.evaluate_retrieval(model, test_ds)  # doctest: +SKIP
        >>> metrics["image_to_text_R@1"], metrics["text_to_image_R@1"]  # doctest: +SKIP

    References:
        OpenCLIP `get_clip_metrics`.
    """
    if modalities is None and not hasattr(model, "modalities"):
        raise ValueError(f"{getattr(model, 'name', model)!r} is not a DualEncoder: pass "
                         "modalities=(query, gallery), the two inputs whose "
                         "'<modality>_embeddings' outputs are compared.")
    pair = list(modalities or model.modalities)
    known = getattr(model, "modalities", None)
    if len(pair) < 2 or pair[0] == pair[1] or (
            known is not None and not set(pair[:2]) <= set(known)):
        # ("txt" failed with KeyError 'txt_embeddings'; ("image", "image")
        # scored an image against itself; ("image",) failed to unpack.)
        of = f" ({', '.join(map(repr, known))})" if known else ""
        raise ValueError(f"modalities={modalities!r}: give two different modalities of the "
                         f"model{of}.")
    first, second = pair[:2]
    ks = _whole_ks(ks)
    embeddings, keys, _ = embed_dataset(model, dataset, (first, second))
    n = len(embeddings[first])
    if len(embeddings[second]) != n:
        raise ValueError(f"{n} {first} embeddings but {len(embeddings[second])} {second} "
                         "embeddings: each row must be one matched pair.")
    mask_of, counts = _diagonal_mask(n), np.ones(n, np.int64)
    chosen = [None, None]
    unknown = sorted(set(match_keys or {}) - {first, second})
    if unknown:  # (a misspelt modality was ignored)
        raise ValueError(f"match_keys names {', '.join(map(repr, unknown))}, not a modality "
                         f"evaluated here ({first!r}, {second!r}).")
    if match_keys and any(match_keys.get(m) is not None for m in (first, second)):
        chosen = []
        for modality in (first, second):
            given = match_keys.get(modality)
            if isinstance(given, str):
                if given != "inputs":
                    raise ValueError(f"match_keys[{modality!r}]={given!r}: use 'inputs' or a "
                                     "list of keys.")
                given = keys[modality]
            if given is not None and len(given) != n:
                raise ValueError(f"match_keys[{modality!r}] has {len(given)} keys for {n} pairs.")
            chosen.append(given)
    items = _collapsed_items((first, second), chosen, match_keys, collapse, n)
    result = {"num_pairs": n}
    for (query, gallery), (query_keys, gallery_keys) in (
            ((first, second), tuple(chosen)), ((second, first), tuple(chosen[::-1]))):
        # The masks of `paired_positives`, built per chunk of queries from
        # the key groups (lists of N indices per row were quadratic when
        # captions repeat).
        if any(keys is not None for keys in chosen):
            mask_of, counts = _paired_mask(query_keys, gallery_keys, items[query],
                                           items[gallery])
        metrics = retrieval_metrics_by_chunk(embeddings[query][items[query]],
                                             embeddings[gallery][items[gallery]], mask_of, ks)
        result.update({f"{query}_to_{gallery}_{k}": v for k, v in metrics.items()})
        size = len(items[gallery])
        result[f"{query}_to_{gallery}_num_queries"] = len(items[query])
        result[f"{query}_to_{gallery}_num_gallery"] = size
        # A random ranking, given each query's number of correct answers (one
        # chance_recall per distinct number).
        distinct, inverse = np.unique(counts, return_inverse=True)
        for k in ks:
            chance = np.array([chance_recall(size, k, int(c)) for c in distinct])
            result[f"{query}_to_{gallery}_chance_R@{k}"] = float(
                np.mean(chance[inverse.reshape(-1)]))
    for k in ks:
        result[f"mean_R@{k}"] = 0.5 * (result[f"{first}_to_{second}_R@{k}"]
                                       + result[f"{second}_to_{first}_R@{k}"])
        result[f"chance_R@{k}"] = 0.5 * (result[f"{first}_to_{second}_chance_R@{k}"]
                                         + result[f"{second}_to_{first}_chance_R@{k}"])
    return result


class EmbeddingIndex:
    """A gallery of embeddings with batched brute-force top-k search.

    The default backend scores queries against the whole gallery with one
    matrix product per batch of queries and `tf.math.top_k`: exact, and fast
    enough for galleries of up to a few hundred thousand items on a CPU. With
    `backend="faiss"` (needs the `faiss-cpu` package) the search runs in a
    faiss flat index instead (also exact).

    Args:
        embeddings: (G, D) array.
        ids: sequence of G ids (int or str) or None for 0..G-1.
        metric: str. `"cosine"` (rows normalised), `"dot"` or `"l2"`
            (scores are negative squared distances: higher is closer).
        backend: str. `"tf"` or `"faiss"`.
        batch_size: int. Queries per matrix product.

    Example:
        >>> import numpy as np
        >>> from mmtl_tf.metrics import EmbeddingIndex
        >>> index = EmbeddingIndex(np.eye(3), ids=["a", "b", "c"])
        >>> scores, ids = index.search(np.array([[0.0, 1.0, 0.1]]), k=2)
        >>> ids.tolist()
        [['b', 'c']]

    References:
        Johnson, Douze and Jégou 2019, "Billion-scale similarity search with
        GPUs" (faiss).
    """

    def __init__(self, embeddings, ids=None, metric="cosine", backend="tf", batch_size=1024):
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r} is not allowed; use one of "
                             f"{', '.join(map(repr, METRICS))}.")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not allowed; use one of "
                             f"{', '.join(map(repr, BACKENDS))}.")
        self.embeddings = _as_matrix(embeddings, "embeddings")
        if ids is None:
            ids = np.arange(len(self.embeddings))
        array = np.asarray(ids)
        kinds = {type(v) for v in (ids if isinstance(ids, (list, tuple)) else ())}
        if array.dtype == object or ({int, str} <= kinds):
            # A Path or None made an object array that `save` wrote and `load`
            # refused; [1, "b"] came back as the strings "1" and "b".
            listed = list(ids)
            bad = next((i for i, v in enumerate(listed)
                        if not isinstance(v, (int, np.integer, str, np.str_, bytes))
                        or type(v) is not type(listed[0])), 0)
            raise ValueError(f"ids must be numbers or strings of one kind; ids[{bad}] is "
                             f"{listed[bad]!r} ({type(listed[bad]).__name__}): pass str(...) "
                             "of each, e.g. file paths as strings.")
        ids = array
        if len(ids) != len(self.embeddings):
            raise ValueError(f"{len(ids)} ids for {len(self.embeddings)} embeddings.")
        self.ids = ids
        self.metric, self.backend, self.batch_size = metric, backend, int(batch_size)
        self._faiss = None
        if backend == "faiss":
            self._faiss = self._build_faiss()

    def __len__(self):
        return len(self.embeddings)

    def _build_faiss(self):
        try:
            import faiss
        except ImportError as e:
            raise ImportError("backend='faiss' needs the faiss-cpu package "
                              "(pip install faiss-cpu), or use backend='tf'.") from e
        data = self._prepare(self.embeddings)
        index = (faiss.IndexFlatL2 if self.metric == "l2" else faiss.IndexFlatIP)(data.shape[1])
        index.add(data)
        return index

    def _prepare(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def search(self, queries, k=10):
        """Top-k gallery items per query.

        Args:
            queries: (Q, D) array.
            k: int. Results per query (at most the gallery size).

        Returns:
            (scores float32 (Q, k), ids (Q, k)), best first.
        """
        import tensorflow as tf

        queries = _as_matrix(queries, "queries")
        if queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"queries have width {queries.shape[1]}, the index "
                             f"{self.embeddings.shape[1]}.")
        k = int(k)
        if not 1 <= k:
            raise ValueError(f"k must be >= 1, got {k}.")
        k = min(k, len(self))
        if len(queries) == 0 or k == 0:  # no queries or an empty gallery: no results
            return (np.zeros((len(queries), k), np.float32),
                    self.ids[np.zeros((len(queries), k), np.int64)])
        if self._faiss is not None:
            scores, idx = self._faiss.search(self._prepare(queries), k)
            if self.metric == "l2":
                scores = -scores
            return scores.astype(np.float32), self.ids[idx]
        gallery = tf.constant(self.embeddings)
        all_scores, all_idx = [], []
        for start in range(0, len(queries), self.batch_size):
            scores = _scores(tf.constant(queries[start:start + self.batch_size]), gallery,
                             self.metric)
            top = tf.math.top_k(scores, k=k)
            all_scores.append(top.values.numpy())
            all_idx.append(top.indices.numpy())
        return np.concatenate(all_scores), self.ids[np.concatenate(all_idx)]

    def save(self, path):
        """Writes the index as one `.npz` file (atomically)."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"index files end in .npz; got {path!r}.")
        atomic_file(path, lambda tmp: np.savez(tmp, embeddings=self.embeddings, ids=self.ids,
                                               metric=np.array(self.metric)),
                    suffix=".npz")
        return path

    @classmethod
    def load(cls, path, backend="tf", batch_size=1024):
        """Reads an index written by `save`."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such index file.")
        with np.load(path, allow_pickle=False) as data:
            return cls(data["embeddings"], data["ids"], metric=str(data["metric"]),
                       backend=backend, batch_size=batch_size)
