import json
import os
import re
import warnings

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

import mmtl_tf
from mmtl_tf.data.audio_text import (DEFAULT_AUDIO_DIR, decoded_audio_dataset,
                                     load_audio_text_records, make_audio_text_dataset,
                                     speech_commands_to_audio_text)
from tests.data.test_audio import _bad_files, _word


def test_bundled_sample_holds_out_items_and_voices():
    splits = {s: load_audio_text_records("default", s) for s in ("train", "validation", "test")}
    items = {s: set(r.items) for s, r in splits.items()}
    assert not items["train"] & items["validation"] and not items["train"] & items["test"]
    assert not items["validation"] & items["test"]
    heldout = {v for r in splits.values() for v, g in zip(r.voices, r.voice_groups)
               if g == "heldout"}
    assert len(heldout) >= 2
    for s in ("train", "validation"):
        assert not heldout & set(splits[s].voices)
        assert set(splits[s].voice_groups) == {"train"}
    test = splits["test"]
    assert heldout <= set(test.voices)
    # every test item is spoken by a training voice and by every held-out voice
    for item in list(items["test"])[:20]:
        groups = [g for i, g in zip(test.items, test.voice_groups) if i == item]
        assert groups.count("train") == 1 and groups.count("heldout") == len(heldout)
    assert len(splits["train"].class_names) == 9
    new_voices = load_audio_text_records("default", "test", voice_group="heldout")
    assert set(new_voices.voice_groups) == {"heldout"}
    # bundled size budget: at most 6 MB
    size = sum(os.path.getsize(os.path.join(d, f))
               for d, _, fs in os.walk(DEFAULT_AUDIO_DIR) for f in fs)
    assert size <= 6_000_000, size


def test_default_dataset_structure():
    vec = mmtl_tf.data.make_text_vectorizer(["a b c"], vocab_size=10, sequence_length=5)
    ds = make_audio_text_dataset("default", "validation", text_vectorizer=vec,
                                 clip_seconds=1.5, batch_size=8)
    assert ds.element_spec[0]["audio"].shape.as_list() == [None, 24000]
    x, y = next(iter(ds))
    assert x["audio"].dtype == tf.float32 and x["text"].shape == (8, 5)
    assert y.dtype == tf.int32
    assert float(tf.reduce_max(tf.abs(x["audio"]))) <= 1.0
    # Unshuffled order follows the records.
    recs = load_audio_text_records("default", "validation")
    np.testing.assert_array_equal(y.numpy(), recs.label_ids()[:8])


def _captions_folder(root, with_bad=True):
    expected = _bad_files(os.path.join(root, "clips")) if with_bad else {}
    os.makedirs(os.path.join(root, "clips"), exist_ok=True)
    rows = []
    for i in range(6):
        path = f"clips/word{i}.wav"
        sf.write(os.path.join(root, path), _word() * (0.3 + 0.1 * i), 22050 if i % 2 else 16000)
        rows.append({"path": path, "caption": f"word number {i}", "label": f"c{i % 2}",
                     "split": "train", "voice": f"v{i % 3}"})
    for name in expected:
        rows.append({"path": f"clips/{name}", "caption": name, "label": "c0", "split": "train"})
    with open(os.path.join(root, "captions.jsonl"), "w") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    return expected


def test_bad_files_in_a_source_name_row_file_and_problem(tmp_path):
    expected = _captions_folder(str(tmp_path))
    with pytest.raises(mmtl_tf.DataError) as err:
        make_audio_text_dataset(str(tmp_path), "train", clip_seconds=1.0)
    message = str(err.value)
    assert f"{len(expected)} bad audio files" in message
    for name, words in expected.items():
        line = next(l for l in message.splitlines() if f"clips/{name}" in l)
        assert "captions.jsonl:" in line and words in line, line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = make_audio_text_dataset(str(tmp_path), "train", clip_seconds=1.0,
                                     on_error="skip", batch_size=64, shuffle=False)
    assert any(issubclass(w.category, mmtl_tf.DataWarning) and
               f"skipped {len(expected)} bad audio files" in str(w.message) for w in caught)
    x, y = next(iter(ds))
    assert x["audio"].shape == (6, 16000)
    recs = load_audio_text_records(str(tmp_path), "train")
    assert recs.voices[:3] == ["v0", "v1", "v2"]


def test_the_training_vocabulary_leaves_out_rows_whose_clip_is_skipped(tmp_path):
    # As for images: the vocabulary used to be adapted on every training
    # caption before the files were checked, so the skipped rows' "zebra" took
    # the one word slot and every kept caption ("cat") came out [UNK] (id 1).
    rows = []
    for i in range(6):
        path = str(tmp_path / f"clip{i}.wav")
        if i < 2:
            open(path, "wb").write(b"not audio")
        else:
            sf.write(path, _word(), 16000)
        rows.append({"path": f"clip{i}.wav", "caption": "zebra zebra zebra" if i < 2 else "cat",
                     "label": "xy"[i % 2], "split": "train"})
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kw = dict(clip_seconds=0.5, batch_size=8, vocab_size=3, sequence_length=2, shuffle=False)
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad audio files"):
        ds = make_audio_text_dataset(str(tmp_path), "train", on_error="skip", **kw)
    x, _ = next(iter(ds))
    assert ds.records.captions == ["cat"] * 4
    assert x["text"].numpy().tolist() == [[2, 0]] * 4
    # The vectorizer it adapted (to save, and to pass to the other splits);
    # text_split="character" adapts one of characters.
    assert ds.text_vectorizer.get_vocabulary() == ["", "[UNK]", "cat"]
    kw.update(vocab_size=10, sequence_length=4)
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad audio files"):
        ds = make_audio_text_dataset(str(tmp_path), "train", on_error="skip",
                                     text_split="character", **kw)
    assert sorted(ds.text_vectorizer.get_vocabulary()[2:]) == ["a", "c", "t"]
    x, _ = next(iter(ds))
    assert x["text"].numpy().tolist() == [ds.text_vectorizer(["cat"]).numpy()[0].tolist()] * 4


QUIET_CHECK = """
import sys, warnings
import mmtl_tf
try:
    mmtl_tf.data.make_audio_text_dataset(sys.argv[1], "train", clip_seconds=1.0)
except mmtl_tf.DataError as e:
    print("DataError", len(e.problems))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mmtl_tf.data.make_audio_text_dataset(sys.argv[1], "train", clip_seconds=1.0,
                                         on_error="skip")
print("skipped", sum("bad audio files" in str(w.message) for w in caught))
"""


def test_bad_clips_are_reported_without_tensorflow_logging_tracebacks(tmp_path):
    # Each clip that failed to load raised its DataError inside
    # tf.numpy_function, and TensorFlow logged it on stderr with its Python
    # traceback (a helper's 12 bad clips: 14 tracebacks, 347 lines) before the
    # one DataError that names them all; the CLI hid it with its log level.
    import subprocess
    import sys

    expected = _captions_folder(str(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", QUIET_CHECK, str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["DataError", str(len(expected)), "skipped", "1"], \
        done.stdout
    assert "Traceback" not in done.stderr and "DataError" not in done.stderr, done.stderr
    # The TensorFlow-level functions called eagerly raise the DataError
    # itself, as before; inside Dataset.map a bad file fails the element with
    # TensorFlow's error naming it and its problem.
    missing = str(tmp_path / "clips" / "café no.wav")
    with pytest.raises(mmtl_tf.DataError, match="café no.wav: file not found"):
        mmtl_tf.data.load_audio(tf.constant(missing))
    with pytest.raises(mmtl_tf.DataError, match="all silent"):
        mmtl_tf.data.trim_silence(tf.zeros([4000]))
    mapped = tf.data.Dataset.from_tensor_slices([missing]).map(mmtl_tf.data.load_audio)
    with pytest.raises(tf.errors.InvalidArgumentError, match="no.wav: file not found"):
        next(iter(mapped))


def test_a_class_whose_clips_are_all_skipped_is_warned_about(tmp_path):
    # The image-caption datasets warned; the audio one kept the class's output
    # and said only how many files it skipped (found by a helper).
    rows = []
    for i in range(6):
        path = str(tmp_path / f"clip{i}.wav")
        label = "xyz"[i % 3]
        if label == "z":
            open(path, "wb").write(b"not audio")
        else:
            sf.write(path, _word(), 16000)
        rows.append({"path": f"clip{i}.wav", "caption": f"word {label}", "label": label,
                     "split": "train"})
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kw = dict(clip_seconds=0.5, batch_size=8, on_error="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = make_audio_text_dataset(str(tmp_path), "train", **kw)
    messages = [str(w.message) for w in caught if issubclass(w.category, mmtl_tf.DataWarning)]
    assert any("skipped 2 bad audio files" in m for m in messages), messages
    assert any("no training row of class(es) 'z' is left after skipping" in m
               for m in messages), messages
    assert ds.class_names == ["x", "y", "z"]
    # Classes the caller gave (a trained model's) may be missing from the data.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_audio_text_dataset(str(tmp_path), "train", class_names=["x", "y", "z"], **kw)
    assert not any("no training row" in str(w.message) for w in caught)


def test_steps_and_log_mel_features(tmp_path):
    _captions_folder(str(tmp_path), with_bad=False)
    kw = dict(clip_seconds=0.6, batch_size=6, shuffle=False, crop="center")
    plain = next(iter(make_audio_text_dataset(str(tmp_path), "train", **kw)))[0]["audio"]
    # Trimmed (0.5 s of sound) and centred in 0.6 s: silence at both ends.
    assert np.all(np.abs(plain.numpy()[:, :400]) < 1e-3)
    assert np.all(np.abs(plain.numpy()[:, -400:]) < 1e-3)
    mu = next(iter(make_audio_text_dataset(str(tmp_path), "train", compression="mu_law",
                                           pre_emphasis=0.97, **kw)))[0]["audio"]
    ref = mmtl_tf.data.mu_law_compress(
        [mmtl_tf.data.crop_or_pad(mmtl_tf.data.pre_emphasis(
            mmtl_tf.data.trim_silence(mmtl_tf.data.load_audio(p))), 9600)
         for p in load_audio_text_records(str(tmp_path), "train").paths])
    np.testing.assert_allclose(mu, ref, atol=1e-5)
    layer = mmtl_tf.layers.LogMelSpectrogram(sample_rate=16000, n_mels=32)
    mel = make_audio_text_dataset(str(tmp_path), "train", front_end=layer, **kw)
    x, _ = next(iter(mel))
    assert x["audio"].shape == (6, 1 + 9600 // 160, 32)
    np.testing.assert_allclose(x["audio"], layer(plain), atol=1e-3)
    with pytest.raises(TypeError, match="front_end"):
        make_audio_text_dataset(str(tmp_path), "train", front_end="log_mel")


def test_speech_commands_mapping_feeds_the_same_structure():
    recs = load_audio_text_records("default", "validation")
    waves = [(mmtl_tf.data.read_audio(p)[0] * 32767).astype("int16") for p in recs.paths[:4]]
    fake = tf.data.Dataset.from_generator(
        lambda: ((w, np.int64(i % 2)) for i, w in enumerate(waves)),
        output_signature=(tf.TensorSpec([None], tf.int16), tf.TensorSpec([], tf.int64)))
    names = ["_silence_", "yes"]
    vec = mmtl_tf.data.make_text_vectorizer(["silence", "yes"], vocab_size=6, sequence_length=2)
    ds = speech_commands_to_audio_text(fake, names, text_vectorizer=vec, batch_size=4)
    x, y = next(iter(ds))
    assert x["audio"].shape == (4, 16000) and x["audio"].dtype == tf.float32
    assert y.numpy().tolist() == [0, 1, 0, 1]
    assert x["text"].numpy()[1].tolist() == vec(["yes"]).numpy()[0].tolist()
    np.testing.assert_allclose(
        x["audio"][0], mmtl_tf.data.crop_or_pad(waves[0].astype("float32") / 32768, 16000),
        atol=1e-6)
    # Checked before the map is traced, as by make_audio_text_dataset.
    for kwargs, words in ((dict(pre_emphasis=2.0), "pre_emphasis must be None or a "
                                                   "coefficient"),
                          (dict(band=(9000, 100)), "need 0 <= low_hz < high_hz")):
        with pytest.raises(ValueError, match=words):
            speech_commands_to_audio_text(fake, names, text_vectorizer=vec, **kwargs)


def test_unshuffled_dataset_keeps_the_records_order():
    vec = mmtl_tf.data.make_text_vectorizer(["a"], vocab_size=10, sequence_length=2)
    ds = make_audio_text_dataset("default", "test", text_vectorizer=vec, clip_seconds=0.5,
                                 batch_size=100, voice_group="heldout")
    recs = load_audio_text_records("default", "test", voice_group="heldout")
    labels = np.concatenate([y.numpy() for _, y in ds])
    np.testing.assert_array_equal(labels, recs.label_ids())
    first = next(iter(ds))[0]["audio"].numpy()[:3]
    for i in range(3):
        y = mmtl_tf.data.trim_silence(mmtl_tf.data.load_audio(recs.paths[i]))
        np.testing.assert_allclose(first[i], mmtl_tf.data.crop_or_pad(y, 8000), atol=1e-6)


def test_voice_groups_other_than_train_or_heldout_are_bad_rows(tmp_path):
    # Retrieval is measured per voice group: rows of another or no group were
    # left out of the evaluation without a word.
    _captions_folder(str(tmp_path), with_bad=False)
    path = tmp_path / "captions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row, group in zip(rows, ["train", "Heldout", " TRAIN ", "held-out", "", "train"]):
        row["voice_group"] = group
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(mmtl_tf.DataError) as err:
        load_audio_text_records(str(tmp_path), "train")
    message = str(err.value)
    assert "2 bad rows" in message
    assert "captions.jsonl:4: voice_group 'held-out' is not one of train, heldout" in message
    assert "captions.jsonl:5: no voice_group, while 5 other row(s)" in message
    with pytest.warns(mmtl_tf.DataWarning):
        records = load_audio_text_records(str(tmp_path), "train", on_error="skip")
    assert records.voice_groups == ["train", "heldout", "train", "train"]


def test_class_names_of_a_trained_model_fix_the_label_ids_of_other_audio(tmp_path):
    # A labelled file with test rows only: its labels "did not occur in the
    # training split", and there was no class_names= to give the model's.
    rows = [json.loads(line) for line in
            open(os.path.join(DEFAULT_AUDIO_DIR, "test.jsonl"), encoding="utf-8")][:6]
    for row in rows:
        row["path"] = os.path.join(DEFAULT_AUDIO_DIR, row["path"])
        row["split"] = "test"
    path = tmp_path / "other.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model_classes = load_audio_text_records("default", "train").class_names
    vectorizer = mmtl_tf.data.make_text_vectorizer(["a b c"], sequence_length=4)
    ds = make_audio_text_dataset(str(path), "test", text_vectorizer=vectorizer,
                                 class_names=model_classes, clip_seconds=0.5, batch_size=6,
                                 shuffle=False)
    assert ds.class_names == model_classes
    _, y = next(iter(ds))
    assert y.numpy().tolist() == [model_classes.index(r["label"]) for r in rows]


@pytest.mark.parametrize("sample_rate", [0, -16000, 16000.5, "16000", True])
def test_a_bad_sample_rate_is_named(sample_rate):
    # sample_rate=0 used to blame clip_seconds ("clip_seconds=1.0 gives no samples"),
    # 16000.5 was accepted and True loaded every clip at 1 Hz.
    with pytest.raises(ValueError, match=rf"sample_rate must be an integer >= 1, got "
                                         rf"{sample_rate!r}".replace(".", r"\.")):
        make_audio_text_dataset("default", "validation", sample_rate=sample_rate,
                                clip_seconds=1.0)
    fake = tf.data.Dataset.from_tensors((tf.zeros([10], tf.int16), tf.constant(0, tf.int64)))
    vec = mmtl_tf.data.make_text_vectorizer(["yes"], vocab_size=4, sequence_length=1)
    with pytest.raises(ValueError, match=r"sample_rate must be an integer >= 1"):
        speech_commands_to_audio_text(fake, ["yes"], text_vectorizer=vec,
                                      sample_rate=sample_rate)


@pytest.mark.parametrize("sample_rate", [0, -16000, 16000.5, "16000", True])
def test_decoded_audio_dataset_names_a_bad_sample_rate_before_reading_a_file(tmp_path,
                                                                             sample_rate):
    # It used to go straight to the files: 0 kept each file's own rate without a
    # word, -16000 failed in soxr and True (1 Hz) made every clip "all silent",
    # once per file. The files here do not exist: the argument is checked first.
    paths = [str(tmp_path / f"missing{i}.wav") for i in range(3)]
    for on_error in ("raise", "skip"):
        with pytest.raises(ValueError, match=rf"^sample_rate must be an integer >= 1, got "
                                             rf"{sample_rate!r}".replace(".", r"\.")):
            decoded_audio_dataset(paths, sample_rate=sample_rate, on_error=on_error)


@pytest.mark.parametrize("clip_seconds", [0, -1.0, "2", float("inf"), float("nan")])
def test_a_bad_clip_length_is_named(clip_seconds):
    with pytest.raises(ValueError, match=rf"clip_seconds must be a finite number of seconds > 0, got "
                                         rf"{clip_seconds!r}"):
        make_audio_text_dataset("default", "validation", clip_seconds=clip_seconds)
    with pytest.raises(ValueError, match=r"clip_seconds=1e-05 at sample_rate=16000 gives no "
                                         r"samples"):
        make_audio_text_dataset("default", "validation", clip_seconds=1e-5)


def test_a_bad_band_or_top_db_is_named_before_any_file_is_read():
    # A band came wrapped in autograph's "in user code:" frames from the
    # pipeline's map; a negative top_db made every clip an "all silent" bad file.
    with pytest.raises(ValueError) as raised:
        make_audio_text_dataset("default", "validation", band=(8000, 100))
    assert str(raised.value) == ("need 0 <= low_hz < high_hz <= sample_rate / 2 = 8000; got "
                                 "low_hz=8000, high_hz=100.")
    for top_db in (-5, 0, "40", None):
        with pytest.raises(ValueError, match=rf"top_db must be a positive number of decibels "
                                             rf".*got {re.escape(repr(top_db))}"):
            make_audio_text_dataset("default", "validation", top_db=top_db)
    # min_samples=-1 and pre_emphasis=2.0 were accepted.
    for kwargs, words in ((dict(min_samples=-1), "min_samples must be an integer >= 0, got -1"),
                          (dict(min_samples=1.5), "got 1.5"),
                          (dict(pre_emphasis=2.0), "pre_emphasis must be None or a coefficient "
                                                   "between 0 and 1 .*got 2.0"),
                          (dict(pre_emphasis=-0.5), "got -0.5")):
        with pytest.raises(ValueError, match=words):
            make_audio_text_dataset("default", "validation", **kwargs)
    with pytest.raises(ValueError, match="min_samples must be"):
        mmtl_tf.data.audio_text.decoded_audio_dataset(["x.wav"], min_samples=-1)
    with pytest.raises(ValueError, match="pre_emphasis must be"):
        mmtl_tf.data.pre_emphasis([1.0, 1.0], 2.0)
    np.testing.assert_allclose(mmtl_tf.data.pre_emphasis([1.0, 1.0], 1).numpy(), [1.0, 0.0])
    # Tensor and NumPy coefficients still work (a random one drawn in tf.data).
    for c in (tf.constant(0.5), np.array(0.5), np.float32(0.5)):
        np.testing.assert_allclose(mmtl_tf.data.pre_emphasis([1.0, 1.0], c).numpy(), [1.0, 0.5])
    mapped = tf.data.Dataset.from_tensor_slices(([[1.0, 1.0]], [0.25])).map(
        lambda w, c: mmtl_tf.data.pre_emphasis(w, c))
    np.testing.assert_allclose(next(iter(mapped)).numpy(), [1.0, 0.75])
    with pytest.raises(ValueError, match="needs a coefficient"):
        mmtl_tf.data.pre_emphasis([1.0, 1.0], None)


def test_a_short_csv_row_is_warned_about_once_by_the_audio_records(tmp_path):
    # The audio records read the captions file twice (voices and groups from
    # the second read), so the short-row warning came twice.
    for i in range(4):
        sf.write(str(tmp_path / f"c{i}.wav"), _word(), 16000)
    lines = ["path,caption,label,split"] + [f"c{i}.wav,word {i},{'xy'[i % 2]},train"
                                            for i in range(3)] + ["c3.wav,word 3,y"]
    (tmp_path / "captions.csv").write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_audio_text_records(str(tmp_path), "train")
    short = [w for w in caught if "fewer fields than the header" in str(w.message)]
    assert len(short) == 1, [str(w.message) for w in caught]
    assert "captions.csv: 1 row(s) hold fewer fields than the header's 4 (line(s) 5)" in \
        str(short[0].message)
