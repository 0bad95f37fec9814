"""bench/bench_photo_decode.py: it times what it says, on files it makes."""

import json

from tests.conftest import load_script


def test_the_photo_benchmark_compares_scaled_and_whole_decoding(tmp_path, capsys):
    out = tmp_path / "r.json"
    load_script("bench", "bench_photo_decode").main(
        ["--photos", "3", "--width", "640", "--height", "480", "--size", "64", "--repeats", "1",
         "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["mean_bytes"] >= 65536  # large enough to be scaled while decoding
    assert set(result["rates"]) == {"scaled", "whole", "load_img"}
    assert all(rate > 0 for rate in result["rates"].values())
    # Scaled (1/4 here) and whole decoding differ, by little once resized.
    assert 0 < result["mean_abs_difference"] < 3
    table = capsys.readouterr().out
    assert "mmtl_tf, scaled while decoding" in table and "vs whole" in table
