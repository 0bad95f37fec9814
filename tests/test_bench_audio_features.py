"""bench/bench_audio_features.py: every variant computes the same features."""

import pytest

from tests.conftest import load_script


def _bench():
    return load_script("bench", "bench_audio_features")


def test_table_has_both_librosa_baselines(tmp_path, capsys):
    import json

    bench = _bench()
    out = tmp_path / "r.json"
    bench.main(["--clips", "6", "--seconds", "0.5", "--batch", "4", "--repeats", "1",
                "--json", str(out)])
    names = [name for name, _ in json.loads(out.read_text())["results"]]
    assert names[:2] == ["librosa, Python loop (baseline)", "librosa, one call per batch of 4"]
    assert len(names) == 8
    table = capsys.readouterr().out
    assert "vs librosa loop" in table and "vs librosa batched" in table
    assert json.loads(out.read_text())["relative_difference"] < 1e-3


def test_a_variant_with_other_features_stops_the_run(monkeypatch):
    import mmtl_tf.layers

    class Louder(mmtl_tf.layers.LogMelSpectrogram):
        def call(self, waveforms):
            return super().call(waveforms) + 1.0

    monkeypatch.setattr(mmtl_tf.layers, "LogMelSpectrogram", Louder)
    with pytest.raises(SystemExit, match="LogMelSpectrogram per clip in tf.data, "
                                         "sequential: features differ from librosa's"):
        _bench().run(4, 0.5, 2, 1)
