"""bench/bench_retrieval_metrics.py: the counting and the full-sort metrics agree,
also on the smallest galleries."""

import numpy as np

from tests.conftest import load_script


def _bench():
    return load_script("bench", "bench_retrieval_metrics")


def test_small_sizes_run(capsys):
    # N = 2: the index lists [[0, 1], [0, 1]] looked like a 0/1 matrix and
    # retrieval_metrics refused them.
    bench = _bench()
    bench.main(["--sizes", "1", "2", "3", "5", "--repeats", "1"])
    out = capsys.readouterr().out
    for n in (1, 2, 3, 5):
        assert f"N={n}: identical metrics" in out
    from mmtl_tf.metrics import retrieval_metrics

    queries, gallery, positives = bench.make_data(2)
    assert retrieval_metrics(queries, gallery, positives)["R@1"] == 1.0  # both items match


def test_large_sizes_keep_index_lists():
    # No N x N matrix for the default sizes (64 MB at N = 8,000).
    _, _, positives = _bench().make_data(4000)
    assert isinstance(positives, list) and len(positives) == 4000
    assert positives[3] == [2, 3] and not isinstance(positives[3], np.ndarray)
