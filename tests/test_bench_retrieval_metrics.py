"""bench/bench_retrieval_metrics.py: the counting and the full-sort metrics agree,
also on the smallest galleries."""

import numpy as np
import pytest

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



@pytest.mark.parametrize("script,argv,words", [
    ("bench_retrieval_metrics", ["--sizes", "0"], "argument --sizes: '0' must be at least 1"),
    ("bench_retrieval_metrics", ["--repeats", "0"], "argument --repeats: '0' must be at least 1"),
    ("bench_input_pipeline", ["--batch", "-5"], "argument --batch: '-5' must be at least 1"),
    ("bench_audio_features", ["--seconds", "inf"], "must be positive and finite"),
    ("bench_fusion_pooling", ["--seeds", "-1"], "must be from 0 to 2**32 - 1"),
])
def test_benchmark_options_are_range_checked(script, argv, words, capsys):
    # `--sizes 0` said "need at least one array to concatenate", `--repeats 0`
    # "min() arg is an empty sequence", `--sizes -5` "negative dimensions".
    with pytest.raises(SystemExit) as e:
        load_script("bench", script).main(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err
