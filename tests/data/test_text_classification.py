import json
import os
import unicodedata

import numpy as np
import pytest

import mmtl_tf
from mmtl_tf.data import (BertPreprocessor, load_text_classification_records,
                          make_text_classification_dataset, read_text_classification_file)
from tests.tiny_bert import VOCAB


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


def test_bundled_fortunes_subset():
    splits = {s: load_text_classification_records("default", s)
              for s in ("train", "validation", "test")}
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [884, 203, 273]
    names = splits["train"].class_names
    assert names == sorted(["computers", "science", "politics", "work", "food", "sports",
                            "love", "law"])
    texts = [set(r.texts) for r in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for records in splits.values():
        assert records.class_names == names
        assert all(t.strip() and len(t) <= 300 for t in records.texts)
        # Stratified: every class occurs in every split.
        assert set(records.labels) == set(names)
    assert os.path.isfile(os.path.join(mmtl_tf.data.DEFAULT_TEXT_DIR, "LICENSE.md"))


def test_bad_rows_are_named_or_skipped(tmp_path):
    path = _write_jsonl(tmp_path / "texts.jsonl", [
        {"text": "a good film", "label": "pos", "split": "train"},
        {"text": "   ", "label": "pos", "split": "train"},
        {"text": "a bad film", "label": "", "split": "train"},
        {"text": "fine", "label": "neg", "split": "dev"},
    ])
    with open(path, "ab") as f:
        f.write(b'{"text": "caf\xe9 au lait", "label": "neg", "split": "train"}\n')
    with pytest.raises(mmtl_tf.DataError) as e:
        read_text_classification_file(path)
    message = str(e.value)
    for line, problem in ((2, "empty text"), (3, "empty label"), (4, "split 'dev'"),
                          (5, "not valid UTF-8")):
        assert f"texts.jsonl:{line}: {problem}" in message
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 4 bad rows"):
        rows = read_text_classification_file(path, on_error="skip")
    assert [r["text"] for r in rows] == ["a good film"]


def test_texts_of_only_invisible_characters_are_empty_texts(tmp_path):
    # They passed the empty-text check and became [CLS] [SEP] (or no token)
    # rows that trained with a label.
    texts = ["\u200b", "\ufeff\u200d", "\x07\x00", "\ufffd", "ok\u200b"]
    path = _write_jsonl(tmp_path / "texts.jsonl", [
        {"text": t, "label": "pos", "split": "train"} for t in texts])
    with pytest.raises(mmtl_tf.DataError) as e:
        read_text_classification_file(path)
    message = str(e.value)
    for line, codes in ((1, "U+200B"), (2, "U+FEFF, U+200D"), (3, "U+0007, U+0000"),
                        (4, "U+FFFD")):
        assert (f"texts.jsonl:{line}: empty text: it holds only invisible characters "
                f"({codes})") in message
    assert "texts.jsonl:5" not in message
    # What those texts became: [CLS] [SEP] and padding.
    ids = np.asarray(BertPreprocessor(VOCAB, sequence_length=6)(texts[:4])["token_ids"])
    assert (ids[:, 2:] == 0).all() and (ids[:, :2] != 0).all()


def test_csv_errors(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"text,label\nok,x\nbad \xff byte,y\n")
    with pytest.raises(mmtl_tf.DataError, match=r"a\.csv:3: not valid UTF-8"):
        read_text_classification_file(str(tmp_path / "a.csv"))
    (tmp_path / "b.csv").write_text("sentence,label\nhello,x\n")
    with pytest.raises(mmtl_tf.DataError, match=r"b\.csv: missing column.*text"):
        read_text_classification_file(str(tmp_path / "b.csv"))   # the file, not line 2
    # An unquoted comma shifts the columns: named, or skipped on request
    # (also through make_text_classification_dataset); integer labels and
    # labels with spaces around them name the same class as their text.
    (tmp_path / "c.CSV").write_text(
        "text,label,split\nall good,1,train\nsoup, then bread, x,train\nfine too, 1 ,train\n"
        "and again,2,train\n")
    with pytest.raises(mmtl_tf.DataError, match=r"c\.CSV:3: 4 fields but the header has 3"):
        read_text_classification_file(str(tmp_path / "c.CSV"))
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 1 bad row"):
        rows = read_text_classification_file(str(tmp_path / "c.CSV"), on_error="skip")
    assert [(r["text"], r["label"]) for r in rows] == \
        [("all good", "1"), ("fine too", "1"), ("and again", "2")]
    with pytest.warns(mmtl_tf.DataWarning):
        ds = mmtl_tf.data.make_text_classification_dataset(
            str(tmp_path / "c.CSV"), split="train", on_error="skip", batch_size=4)
    assert sorted(t.decode() for t in next(iter(ds))[0].numpy()) == [
        "all good", "and again", "fine too"]


def test_unknown_test_label_and_hash_split(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", [{"text": "t1", "label": "a"}, {"text": "t2", "label": "b"}])
    _write_jsonl(folder / "test.jsonl", [{"text": "t3", "label": "c"}])
    with pytest.raises(mmtl_tf.DataError, match="1 bad row in the test split:\n.*test.jsonl:1: "
                                                "label 'c' does not occur"):
        load_text_classification_records(str(folder), "test")
    rows = [{"text": f"text number {i}", "label": "ab"[i % 2]} for i in range(200)]
    one = _write_jsonl(tmp_path / "one.jsonl", rows)
    two = _write_jsonl(tmp_path / "two.jsonl", rows[::-1] + [{"text": "new", "label": "a"}])
    for split in ("train", "validation", "test"):
        a = set(load_text_classification_records(one, split).texts)
        b = set(load_text_classification_records(two, split).texts) - {"new"}
        assert a == b and a  # the hash split ignores order and added rows
    assert len(load_text_classification_records(one, "train")) > 120


def test_unicode_rows_long_fields_and_unbalanced_quotes(tmp_path):
    # A lone surrogate (a JSON "\ud83d": an emoji cut in half) failed in
    # tf.constant without naming the row, even with on_error="skip".
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n'
                    '{"text": "truncated tweet \\ud83d", "label": "b"}\n')
    with pytest.raises(mmtl_tf.DataError, match=r"t\.jsonl:2: text holds a lone surrogate "
                                                r"\(U\+D83D"):
        read_text_classification_file(str(path))
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 1 bad row"):
        assert [r["text"] for r in read_text_classification_file(str(path), "skip")] == ["fine"]
    # A text over the csv module's 131,072-character field limit was a
    # _csv.Error traceback.
    long_text = "word " * 40000
    (tmp_path / "long.csv").write_text(f'text,label\n"{long_text}",a\nshort,b\n')
    rows = read_text_classification_file(str(tmp_path / "long.csv"))
    assert [len(r["text"]) for r in rows] == [len(long_text.strip()), 5]
    # An unbalanced quote swallowed the following rows into one label.
    (tmp_path / "q.csv").write_text('text,label,split\nfirst text,"pos,train\n'
                                    'second row,neg,train\nthird row,pos,train\n')
    with pytest.raises(mmtl_tf.DataError, match=r"q\.csv:2: not valid CSV"):
        read_text_classification_file(str(tmp_path / "q.csv"))
    # Doubled quotes inside a quoted value are valid CSV.
    (tmp_path / "ok.csv").write_text('text,label\n"a ""quoted"" word",x\n')
    assert read_text_classification_file(str(tmp_path / "ok.csv"))[0]["text"] == \
        'a "quoted" word'


def test_one_class_is_an_error_and_labels_are_one_unicode_form(tmp_path):
    one = _write_jsonl(tmp_path / "one.jsonl",
                       [{"text": f"text {i}", "label": "x", "split": "train" if i else "test"}
                        for i in range(6)])
    with pytest.raises(mmtl_tf.DataError, match="the training split has one class \\('x'\\)"):
        load_text_classification_records(one, "train")
    # "café" as typed (NFC) and as a macOS folder name writes it (NFD).
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    two = _write_jsonl(tmp_path / "two.jsonl",
                       [{"text": f"text {i}", "label": [nfc, nfd, "tea"][i % 3], "split": "train"}
                        for i in range(6)])
    records = load_text_classification_records(two, "train")
    assert records.class_names == [nfc, "tea"] and records.label_ids().tolist() == [0, 0, 1] * 2
    again = load_text_classification_records(two, "train", class_names=[nfd, "tea"])
    assert again.label_ids().tolist() == [0, 0, 1] * 2


def test_evaluating_on_a_folder_with_only_a_test_file(tmp_path):
    # With the model's class names no training file is needed.
    folder = tmp_path / "held_out"
    folder.mkdir()
    _write_jsonl(folder / "test.jsonl",
                 [{"text": "t1", "label": "b"}, {"text": "t2", "label": "a"}])
    records = load_text_classification_records(str(folder), "test", class_names=["a", "b"])
    assert records.label_ids().tolist() == [1, 0]
    with pytest.raises(mmtl_tf.DataError,
                       match=r"\(test.jsonl\) but no train file \(.jsonl or .csv\)\.$"):
        load_text_classification_records(str(folder), "test")


def test_dataset_with_bert_inputs_vectorizer_or_raw_strings():
    records = load_text_classification_records("default", "validation")
    pre = BertPreprocessor(VOCAB, sequence_length=12)
    ds = make_text_classification_dataset(records, pre, batch_size=50)
    x, y = next(iter(ds))
    assert x["token_ids"].shape == (50, 12) and x["padding_mask"].dtype == "int32"
    np.testing.assert_array_equal(x["token_ids"], pre(records.texts[:50])["token_ids"])
    np.testing.assert_array_equal(y, records.label_ids()[:50])
    labels = np.concatenate([y for _, y in ds])
    assert len(labels) == len(records)
    vec = mmtl_tf.data.make_text_vectorizer(records.texts, vocab_size=100, sequence_length=9)
    x, _ = next(iter(make_text_classification_dataset(records, vec, batch_size=4)))
    assert x.shape == (4, 9) and x.dtype == "int32"
    raw = make_text_classification_dataset(records, None, batch_size=3, with_labels=False)
    assert [t.decode() for t in next(iter(raw)).numpy()] == records.texts[:3]
    shuffled = make_text_classification_dataset("default", pre, split="train", batch_size=884)
    _, y1 = next(iter(shuffled))
    _, y2 = next(iter(shuffled))
    assert sorted(y1.numpy()) == sorted(y2.numpy()) and list(y1.numpy()) != list(y2.numpy())


def test_fit_refuses_a_text_classifier_with_fewer_outputs_than_classes():
    # The text dataset had no class_names: a one-output model trained on the
    # 8 fortune categories without an error, and fewer softmax outputs than
    # classes failed inside the graph ("Received a label value of 7 ...").
    import keras

    from mmtl_tf import training

    records = load_text_classification_records("default", "validation")
    vec = mmtl_tf.data.make_text_vectorizer(records.texts, vocab_size=100, sequence_length=6)
    ds = make_text_classification_dataset(records, vec, batch_size=64)
    assert ds.class_names == records.class_names and len(ds.class_names) == 8
    assert ds.records is records
    for outputs, words in ((1, "has one sigmoid output"), (3, "has 3 outputs")):
        inputs = keras.Input((6,), dtype="int32")
        x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(100, 4)(inputs))
        activation = "sigmoid" if outputs == 1 else "softmax"
        model = keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(x))
        training.compile_classifier(model, outputs, jit_compile=False)
        with pytest.raises(ValueError, match=words + r", but the training data has 8 classes"):
            training.fit(model, ds, verbose=0)


def test_tfds_loaders_with_mocked_data(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        news = mmtl_tf.data.load_tfds_text_classification("ag_news_subset", "validation")
        imdb = load_text_classification_records("tfds:imdb_reviews", "test", max_examples=4)
    assert news.class_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert len(news) > 0
    assert set(news.labels) <= set(news.class_names)
    assert imdb.class_names == ["neg", "pos"] and len(imdb) == 4

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(mmtl_tf.DownloadError, match="needs internet"):
        mmtl_tf.data.load_tfds_text_classification("imdb_reviews", "train")
    with pytest.raises(ValueError, match="'imdb_reviews', 'ag_news_subset'"):
        mmtl_tf.data.load_tfds_text_classification("yelp", "train")


def test_label_ids_feed_keras_fit_beside_numpy_features():
    # The README's head.fit(features, records.label_ids()): Keras 3 refuses a
    # Python list of labels beside a NumPy array of inputs.
    import keras

    records = load_text_classification_records("default", "validation")
    ids = records.label_ids()
    assert ids.dtype == np.int32 and ids.shape == (len(records),)
    assert [records.class_names[i] for i in ids] == records.labels
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    features = np.random.default_rng(0).normal(size=(len(records), 4)).astype("float32")
    history = model.fit(features, ids, epochs=1, batch_size=64, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_class_names_of_a_trained_model_fix_the_label_ids_of_other_data(tmp_path):
    path = _write_jsonl(tmp_path / "texts.jsonl", [
        {"text": "to the moon", "label": "science", "split": "test"},
        {"text": "pass the salt", "label": "food", "split": "test"},
        {"text": "a new thing", "label": "fashion", "split": "test"}])
    classes = ["food", "law", "science"]
    with pytest.raises(mmtl_tf.DataError, match="texts.jsonl:3: label 'fashion' is not one of "
                                                "the model's classes"):
        load_text_classification_records(path, "test", class_names=classes)
    with pytest.warns(mmtl_tf.DataWarning):
        records = load_text_classification_records(path, "test", class_names=classes,
                                                   on_error="skip")
    assert list(records.label_ids()) == [2, 0] and records.class_names == classes


def test_copies_differing_in_unicode_form_case_or_spaces_share_a_split(tmp_path):
    # Keyed on the raw strings, an NFD copy, a doubled space or an
    # upper-cased line (the same token ids for an uncased encoder) was
    # hashed into another split and never flagged as leakage.
    rows = []
    for i in range(40):
        nfc = f"caf\u00e9 example number {i} \u00e9"
        for text in (nfc, unicodedata.normalize("NFD", nfc), nfc.replace(" ", "  "),
                     nfc.upper()):
            rows.append({"text": text, "label": "ab"[i % 2]})
    path = _write_jsonl(tmp_path / "texts.jsonl", rows)
    where = {}
    for split in ("train", "validation", "test"):
        for text in load_text_classification_records(path, split).texts:
            key = " ".join(unicodedata.normalize("NFC", text).casefold().split())
            where.setdefault(key, set()).add(split)
    assert len(where) == 40 and all(len(s) == 1 for s in where.values())
    # Put in other splits by a split column: warned about as leakage.
    for row, split in zip(rows, ["train", "test", "validation", "test"] * 40):
        row["split"] = split
    path = _write_jsonl(tmp_path / "split.jsonl", rows)
    with pytest.warns(mmtl_tf.DataWarning, match="40 of 40 validation rows and 80 of 80 "
                                                  "test rows hold the same text"):
        load_text_classification_records(path, "train")


def test_a_folder_of_one_text_file_per_document_is_named_as_such(tmp_path):
    # It said "no text-classification file", or advised renaming one .txt
    # file to texts.csv.
    for label in ("neg", "pos"):
        (tmp_path / "classes" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "classes" / label / f"{i}.txt").write_text(f"a {label} review")
    with pytest.raises(mmtl_tf.DataError, match=r"it holds 2 folder\(s\) of \.txt files "
                                                 r"\(neg, pos\), one file per document"):
        load_text_classification_records(str(tmp_path / "classes"), "train")
    (tmp_path / "flat").mkdir()
    for i in range(5):
        (tmp_path / "flat" / f"{i}.txt").write_text("a review")
    with pytest.raises(mmtl_tf.DataError) as e:
        load_text_classification_records(str(tmp_path / "flat"), "train")
    assert "it holds 5 .txt files, one per document?" in str(e.value)
    assert "rename" not in str(e.value)


def test_a_class_whose_training_rows_are_all_skipped_is_named(tmp_path):
    # Every training row of 'food' had an empty text: with on_error="skip"
    # the class left the model without a word (a helper's run).
    rows = []
    for i in range(12):
        for label in ("sports", "tech", "food"):
            split = "train" if i < 8 else "test"
            text = "" if label == "food" and split == "train" else f"{label} text {i}"
            rows.append({"text": text, "label": label, "split": split})
    data = _write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        records = load_text_classification_records(data, "train", on_error="skip")
    assert records.class_names == ["sports", "tech"]
    assert [w for w in warned if "class(es) 'food' had rows skipped as bad and no training "
            "row of theirs is left" in str(w.message)]
    # Per-split files: the training file's bad rows are the ones that count.
    (tmp_path / "split").mkdir()
    for split in ("train", "test"):
        _write_jsonl(tmp_path / "split" / f"{split}.jsonl",
                     [r for r in rows if r["split"] == split])
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        records = load_text_classification_records(str(tmp_path / "split"), "train",
                                                   on_error="skip")
    assert records.class_names == ["sports", "tech"]
    assert [w for w in warned if "class(es) 'food' had rows skipped" in str(w.message)]
    # A class that keeps a training row is not named.
    rows.append({"text": "food text", "label": "food", "split": "train"})
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        records = load_text_classification_records(
            _write_jsonl(tmp_path / "t.jsonl", rows), "train", on_error="skip")
    assert records.class_names == ["food", "sports", "tech"]
    assert not [w for w in warned if "no training row of theirs" in str(w.message)]
