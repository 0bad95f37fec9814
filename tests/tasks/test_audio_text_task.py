"""The `audio-text` task end to end through the CLI (tiny recipe), and its
SavedModel on raw waveforms and raw strings in a fresh process."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import soundfile

import mmtl_tf
from mmtl_tf import cli
from mmtl_tf.files import foreign_entries
from mmtl_tf.tasks import common
from mmtl_tf.data import audio as A
from mmtl_tf.data.text import load_text_vectorizer
from tests.bad_runs import split_rows, train_error

FRESH_PROCESS = r"""
import json, sys
import numpy as np
import tensorflow as tf
saved, rows_file, out, tones_file = sys.argv[1:5]
rows = json.load(open(rows_file))
m = tf.saved_model.load(saved)
waves = np.zeros((len(rows), max(len(r["wave"]) for r in rows)), "float32")
for i, r in enumerate(rows):
    waves[i, :len(r["wave"])] = r["wave"]
config = m.signatures["audio_config"]()
# Tone bursts that end in exact zeros of their own, sent with their lengths,
# and without (then they end at their last non-zero sample).
tones = [np.asarray(t, "float32") for t in json.load(open(tones_file))]
ends = [len(t) for t in tones]
padded = np.zeros((len(tones), max(ends) + 500), "float32")
for i, t in enumerate(tones):
    padded[i, :len(t)] = t
with_lengths = m.signatures["encode_audio_lengths"](
    waveform=tf.constant(padded), lengths=tf.constant(ends, tf.int32))["embeddings"].numpy()
without = m.signatures["encode_audio"](waveform=tf.constant(padded))["embeddings"].numpy()
np.savez(out, signatures=np.array(sorted(m.signatures)), with_lengths=with_lengths,
         without_lengths=without,
         audio=m.signatures["encode_audio"](waveform=tf.constant(waves))["embeddings"].numpy(),
         text=m.signatures["encode_text"](text=tf.constant([r["caption"] for r in rows]))
         ["embeddings"].numpy(),
         sample_rate=config["sample_rate"].numpy(), num_samples=config["num_samples"].numpy())
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("audio_text") / "run"
    assert cli.main(["train", "audio-text", "--size", "tiny", "--out", str(run),
                     "--no-jit-compile"]) == 0
    return run


def test_train_writes_retrieval_per_voice_group(run):
    for name in ("model.keras", "history.json", "metrics.json", "curves.png", "run.json",
                 "text_vectorizer.json"):
        assert (run / name).exists(), name
    assert foreign_entries(run, common.RUN_ENTRIES) == []  # the run may be replaced
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test) == {"train", "heldout"}
    assert test["train"]["num_pairs"] == 285 and test["heldout"]["num_pairs"] == 570
    assert test["heldout"]["voices"] == ["en-gb-x-rp_f3", "en-us-nyc_m3"]
    # Chance levels from the rows, independently: a caption is one item per
    # distinct key (the tokens the run's vectorizer makes of it: the tiny
    # recipe's 24 characters make two of the 285 names one), correct for the
    # clips some row pairs it with; a clip, for the caption items paired with
    # its item (the two held-out voices say each caption). Without the
    # collapse the held-out captions were 570 rows, each twice.
    from mmtl_tf.data.text import load_text_vectorizer
    from mmtl_tf.tasks.shared_space import caption_keys

    vectorizer = load_text_vectorizer(str(run / "text_vectorizer.json"))
    for group, m in test.items():
        records = mmtl_tf.data.load_audio_text_records("default", "test", voice_group=group)
        text = caption_keys(records.captions, vectorizer)
        audio = [item or path for item, path in zip(records.items, records.paths)]
        pairs = set(zip(audio, text))
        captions = list(dict.fromkeys(text))
        for query, gallery, answers, counts in (
                # each clip: the caption items paired with its item
                ("audio", "text", len(captions),
                 [len({t for a, t in pairs if a == mine}) for mine in audio]),
                # each caption item: the clips whose item is paired with it
                ("text", "audio", len(audio),
                 [sum((a, mine) in pairs for a in audio) for mine in captions])):
            assert m[f"{query}_to_{gallery}_num_queries"] == len(counts)
            assert m[f"{query}_to_{gallery}_num_gallery"] == answers
            assert m[f"{query}_to_{gallery}_chance_R@1"] == pytest.approx(
                np.mean([c / answers for c in counts]))
    assert test["train"]["audio_to_text_num_gallery"] < 285  # two names, one item at 24
    assert test["heldout"]["text_to_audio_num_gallery"] == 570
    for group in test.values():
        for direction in ("audio_to_text", "text_to_audio"):
            for key in ("R@1", "R@5", "R@10", "mean_rank", "median_rank", "mAP@10"):
                assert f"{direction}_{key}" in group
            assert 0.0 <= group[f"{direction}_R@1"] <= group[f"{direction}_R@10"] <= 1.0
    assert metrics["sample_rate"] == 16000 and metrics["num_samples"] == 16000


def test_evaluate_prints_both_voice_groups(run, capsys):
    capsys.readouterr()
    assert cli.main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "test, training voices" in out and "test, held-out voices" in out
    assert "retrieval among 285 clip-caption pairs" in out
    assert "retrieval among 570 clip-caption pairs, " in out and " distinct captions" in out
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert f"{metrics['heldout']['text_to_audio_R@10']:.3f}" in out


def test_export_serves_raw_waveforms_and_strings_in_a_fresh_process(run, tmp_path):
    saved = tmp_path / "sm"
    assert cli.main(["export", str(run), "--saved-model", str(saved)]) == 0
    model = keras.saving.load_model(str(run / "model.keras"))
    vectorizer = load_text_vectorizer(str(run / "text_vectorizer.json"))
    records = mmtl_tf.data.load_audio_text_records("default", "test", voice_group="heldout")
    n = 6
    # Keras side: the evaluation pipeline (librosa trim, centre crop to 1 s).
    ds = mmtl_tf.data.make_audio_text_dataset(
        "default", "test", text_vectorizer=vectorizer, clip_seconds=1.0, batch_size=n,
        voice_group="heldout", with_labels=False, shuffle=False)
    x = next(iter(ds))
    expected_audio = np.asarray(model.encode_audio(x["audio"]))
    expected_text = np.asarray(model.encode_text(x["text"]))
    # SavedModel side: the untrimmed clips as read from disk, of different
    # lengths, zero-padded into one batch; raw caption strings.
    rows = [{"wave": A.read_audio(p, 16000)[0].tolist(), "caption": c}
            for p, c in zip(records.paths[:n], records.captions[:n])]
    assert len({len(r["wave"]) for r in rows}) > 1
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    rate = 16000
    tones = [np.concatenate([0.5 * np.sin(2 * np.pi * f * np.arange(int(s * rate)) / rate),
                             np.zeros(z)]).astype("float32")
             for f, s, z in ((440, 0.6, 700), (700, 0.8, 900), (300, 1.3, 1500))]
    (tmp_path / "tones.json").write_text(json.dumps([t.tolist() for t in tones]))
    out = tmp_path / "out.npz"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(saved), str(tmp_path / "rows.json"),
                    str(out), str(tmp_path / "tones.json")], check=True, env=env, timeout=300)
    got = np.load(out)
    assert set(got["signatures"]) == {"serving_default", "encode_audio", "encode_text",
                                      "audio_config", "encode_audio_lengths"}
    assert int(got["sample_rate"]) == 16000 and int(got["num_samples"]) == 16000
    np.testing.assert_allclose(got["audio"], expected_audio, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["text"], expected_text, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got["audio"], axis=1), 1.0, rtol=1e-5)
    # Clips that end in exact zeros of their own, trimmed by librosa as in
    # training: `encode_audio` takes them to end at their last non-zero
    # sample (a helper's such clips came out up to 0.031 away from Keras');
    # `encode_audio_lengths` is told where they end.
    batch = np.stack([A.crop_or_pad(A.trim_silence_array(t), rate).numpy() for t in tones])
    expected_tones = np.asarray(model.encode_audio(batch))
    np.testing.assert_allclose(got["with_lengths"], expected_tones, atol=1e-5, rtol=0)
    assert np.abs(got["without_lengths"] - expected_tones).max() > 1e-4


def test_bad_options_exit_2(capsys):
    for argv in (["train", "audio-text", "--text-split", "syllable"],
                 ["train", "audio-text", "--loss", "infonce"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2


def test_audio_tower_starts_from_a_trained_audio_classifier(tmp_path):
    from mmtl_tf.tasks import audio_text, common

    config = common.resolve_config("audio_text", "tiny")
    classifier = mmtl_tf.models.build_audio_classifier(
        num_samples=audio_text.num_samples(config), num_classes=3, n_mels=config["n_mels"],
        conv_filters=tuple(config["conv_filters"]), pooling=config["audio_pooling"])
    path = str(tmp_path / "audio_classifier.keras")
    classifier.save(path)
    model = audio_text.build_model({**config, "audio_weights": path})
    source = next(layer for layer in classifier.layers
                  if isinstance(layer, mmtl_tf.encoders.AudioEncoder))
    for a, b in zip(source.get_weights(), model.tower("audio").get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="another configuration"):
        audio_text.build_model({**config, "audio_weights": path, "conv_filters": [8]})


def test_bad_test_clips_stop_the_run_before_training(tmp_path, capsys):
    records = mmtl_tf.data.load_audio_text_records("default", "validation",
                                                   require_label=False)
    rows = split_rows(records, {"train": 40, "validation": 8, "test": 8})
    soundfile.write(str(tmp_path / "silent.wav"), np.zeros(16000, "float32"), 16000)
    rows[-1]["path"] = str(tmp_path / "silent.wav")
    err = train_error(capsys, tmp_path / "clips.jsonl", rows, "audio-text", "--batch-size", "16",
                      "--out", str(tmp_path / "run"))
    assert "clips.jsonl:56 (" in err and "silent.wav" in err
    assert "1 bad audio file in the test split:" in err


def test_a_skipped_clip_leaves_the_scoring_rules_of_the_other_pairs_unchanged(tmp_path):
    from mmtl_tf.data.text import make_text_vectorizer
    from mmtl_tf.tasks import audio_text, common

    # Three items, each said by the two held-out voices; one file is not audio.
    records = mmtl_tf.data.load_audio_text_records("default", "test", voice_group="heldout")
    first = {}
    for i, (item, voice) in enumerate(zip(records.items, records.voices)):
        first.setdefault(item, {}).setdefault(voice, i)
    chosen = [i for voices in list(first.values())[:3] for i in voices.values()]
    assert len(chosen) == 6
    rows = [{"path": records.paths[i], "caption": records.captions[i], "split": "test",
             "voice": records.voices[i], "voice_group": "heldout", "item": records.items[i]}
            for i in chosen]
    (tmp_path / "bad.wav").write_text("not audio")
    rows[-1]["path"] = str(tmp_path / "bad.wav")
    (tmp_path / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {**common.resolve_config("audio_text", "tiny"),
              "data": str(tmp_path / "clips.jsonl"), "on_error": "skip", "batch_size": 4}
    vectorizer = make_text_vectorizer([r["caption"] for r in rows], vocab_size=50,
                                      sequence_length=int(config["sequence_length"]))
    model = audio_text.build_model(config)
    with pytest.warns(mmtl_tf.DataWarning, match="bad.wav"):
        got = audio_text.retrieval(model, config, vectorizer, "test")["heldout"]
    kept = rows[:-1]
    assert got["num_pairs"] == 5
    # The kept clips are still matched by item and caption: two of the three
    # captions have two correct clips among 5 (chance R@1 (2+2+1)/3/5), and
    # each clip one correct caption among the 3 distinct ones (1/3).
    assert got["text_to_audio_chance_R@1"] == pytest.approx(5 / 15)
    assert got["audio_to_text_chance_R@1"] == pytest.approx(1 / 3)
    with pytest.warns(mmtl_tf.DataWarning, match="bad.wav"):
        ds = audio_text._dataset(config, vectorizer, "test", voice_group="heldout")
    expected = mmtl_tf.metrics.evaluate_retrieval(
        model, ds, match_keys={"text": [r["caption"].strip().lower() for r in kept],
                               "audio": [r["item"] for r in kept]}, collapse=["text"])
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_skipped_files_that_leave_less_than_one_batch_stop_the_run(tmp_path, capsys):
    records = mmtl_tf.data.load_audio_text_records("default", "validation",
                                                   require_label=False)
    rows = split_rows(records, {"train": 10, "validation": 4, "test": 4})
    (tmp_path / "bad.wav").write_text("not audio")
    for row in rows[:3]:
        row["path"] = str(tmp_path / "bad.wav")
    # 10 rows pass the first count (batch 8); 7 clips are left after skipping.
    err = train_error(capsys, tmp_path / "clips.jsonl", rows, "audio-text", "--batch-size", "8",
                      "--on-error", "skip", "--out", str(tmp_path / "run"))
    assert "the training split has 7 clips (3 bad audio file(s) skipped), fewer than one " \
           "batch (batch_size=8)" in err
    assert "Traceback" not in err


def test_the_recipes_n_fft_is_the_models(tmp_path):
    # build_model never passed n_fft: run.json said 1024, the model used 512.
    from mmtl_tf.tasks import audio_text, common

    config = {**common.resolve_config("audio_text", "tiny"), "n_fft": 1024}
    model = audio_text.build_model(config)
    encoder = model.get_layer("audio_encoder")
    assert encoder.get_layer("log_mel").n_fft == 1024
    assert encoder._config["n_fft"] == 1024


def test_too_few_mel_bands_for_the_conv_blocks_is_named_before_reading(tmp_path, capsys):
    # --n-mels 2 failed with Keras' "Computed output size would be zero or
    # negative" after every clip was read.
    code = cli.main(["train", "audio-text", "--size", "tiny", "--n-mels", "2",
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "n_mels = 2: the audio CNN's 2 pooling blocks (conv_filters [8, 16]) halve the " \
           "mel bands 2 times and need at least 4" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
