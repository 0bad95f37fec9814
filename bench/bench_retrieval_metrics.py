"""Retrieval-metrics benchmark: ranks by counting vs a full sort of every row.

`mmtl_tf.metrics.retrieval_metrics` used to order every (query, gallery) score
row completely (`np.lexsort` on score and hit: O(G log G) per query) to find
each query's rank and its first 10 results. It now counts, per query, the
non-matching gallery items scoring at least as high as its best match (the
rank: ties count against the model), and orders only the 10 best items found
with `np.argpartition`. This script keeps the full-sort version as its
baseline (`full_sort_metrics` below, the earlier code), checks on each
gallery size that both give exactly the same metrics, then times both on the
same data in the same run:

    python bench/bench_retrieval_metrics.py [--sizes 1000 4000 8000] [--repeats 3]

The data: N random 64-d queries and gallery items, two gallery items per
caption (query i's positives are items 2⌊i/2⌋ and 2⌊i/2⌋ + 1, as lists of
gallery indices; for N = 2, where those lists would read as a 0/1 matrix, as
a boolean matrix), and a few duplicated rows so that some scores tie exactly. Machines are noisy: compare
ratios, not seconds, and rerun when in doubt.
"""

import argparse
import os
import sys
import time

from mmtl_tf.cli import positive_int  # noqa: E402 (range-checked options)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def full_sort_metrics(queries, gallery, positives, ks=(1, 5, 10), metric="cosine",
                      batch_size=1024):
    """The earlier `retrieval_metrics` (without `exclude`): a full lexsort per row."""
    import numpy as np
    from mmtl_tf.metrics.retrieval import _positive_mask, _scores

    mask_of = _positive_mask(positives, len(queries), len(gallery))
    ranks, aps = [], []
    for start in range(0, len(queries), batch_size):
        stop = min(start + batch_size, len(queries))
        scores = np.asarray(_scores(queries[start:stop], gallery, metric, exact=True))
        mask = mask_of(start, stop)
        # Sort by score (descending); among equal scores non-matches come first.
        order = np.lexsort((mask, -scores), axis=-1)
        hits = np.take_along_axis(mask, order, axis=1)
        ranks.append(np.argmax(hits, axis=1) + 1)
        top = hits[:, :10].astype(np.float64)
        precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
        aps.append((precision * top).sum(axis=1) / np.minimum(mask.sum(axis=1), 10))
    ranks = np.concatenate(ranks)
    result = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    result["mean_rank"] = float(np.mean(ranks))
    result["median_rank"] = float(np.floor(np.median(ranks - 1)) + 1)
    result["mAP@10"] = float(np.mean(np.concatenate(aps)))
    return result


def make_data(n, seed=0, dim=64):
    import numpy as np

    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(n, dim)).astype(np.float32)
    gallery = queries + rng.normal(scale=2.0, size=(n, dim)).astype(np.float32)
    gallery[1::7] = gallery[0::7][:len(gallery[1::7])]  # duplicated rows: exact ties
    positives = [[2 * (i // 2), min(2 * (i // 2) + 1, n - 1)] for i in range(n)]
    if n == 2:
        # Two indices per query and two gallery items: the lists [[0, 1], [0, 1]]
        # look like a 0/1 matrix, which retrieval_metrics refuses as ambiguous.
        # A boolean matrix says the same unambiguously; larger N keep the lists
        # (an N x N matrix would be 64 MB at N = 8,000, and the timings below
        # are for index lists).
        mask = np.zeros((n, n), dtype=bool)
        for i, items in enumerate(positives):
            mask[i, items] = True
        positives = mask
    return queries, gallery, positives


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[1000, 4000, 8000],
                        help="numbers of queries (= gallery items)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    from mmtl_tf.metrics import retrieval_metrics

    rows = []
    for n in args.sizes:
        queries, gallery, positives = make_data(n)
        old = full_sort_metrics(queries, gallery, positives)
        new = retrieval_metrics(queries, gallery, positives)
        if old != new:
            sys.exit(f"N={n}: the metrics differ:\n  full sort {old}\n  counting  {new}")
        t_old = best_time(lambda: full_sort_metrics(queries, gallery, positives), args.repeats)
        t_new = best_time(lambda: retrieval_metrics(queries, gallery, positives), args.repeats)
        rows.append((n, t_old, t_new))
        print(f"N={n}: identical metrics {new}", flush=True)
    print(f"\nretrieval_metrics, one direction, N queries x N gallery items, 64-d, "
          f"best of {args.repeats}")
    print("| N | full sort (baseline), s | counting + argpartition, s | speed-up |")
    print("|---|---|---|---|")
    for n, t_old, t_new in rows:
        print(f"| {n:,d} | {t_old:.2f} | {t_new:.2f} | {t_old / t_new:.1f}x |")


if __name__ == "__main__":
    main()
