import json

import numpy as np
import pytest
from PIL import Image

import mmtl_tf
from mmtl_tf.data.text import load_text_vectorizer, save_text_vectorizer


def _folder(tmp_path, n=12, corrupt=None, missing=None):
    rows = []
    for i in range(n):
        name = f"img{i}.png"
        if i == corrupt:
            (tmp_path / name).write_bytes(b"not an image at all")
        elif i != missing:
            Image.fromarray(np.full((10, 14, 3), 20 * i, "uint8")).save(tmp_path / name)
        rows.append({"path": name, "caption": f"a {'red' if i % 2 else 'blue'} thing {i}",
                     "label": "red" if i % 2 else "blue",
                     "split": "train" if i < 8 else "test"})
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_default_sample_batches_have_the_documented_structure():
    ds = mmtl_tf.data.make_image_text_dataset(
        "default", "validation", image_size=(32, 32), batch_size=8, sequence_length=12)
    x, y = next(iter(ds))
    assert x["image"].shape == (8, 32, 32, 3) and x["image"].dtype == "uint8"
    assert x["text"].shape == (8, 12) and x["text"].dtype == "int32"
    assert y.shape == (8,) and y.dtype == "int32"
    assert int(np.max(y)) < 9


def test_folder_source_and_shared_vectorizer(tmp_path):
    folder = _folder(tmp_path)
    vec = mmtl_tf.data.make_text_vectorizer(["a red thing", "a blue thing"],
                                            vocab_size=20, sequence_length=5)
    ds = mmtl_tf.data.make_image_text_dataset(str(folder), "test", text_vectorizer=vec,
                                              image_size=(8, 8), batch_size=16)
    x, y = next(iter(ds))
    assert x["image"].shape == (4, 8, 8, 3)
    red, blue = vec.get_vocabulary().index("red"), vec.get_vocabulary().index("blue")
    # labels are sorted training labels: blue=0, red=1; the colour word is token 2.
    assert ds.class_names == ["blue", "red"]
    expected = np.where(y.numpy() == 1, red, blue)
    np.testing.assert_array_equal(x["text"].numpy()[:, 1], expected)
    # Given class names (a trained model's) are the ones the labels index.
    ds = mmtl_tf.data.make_image_text_dataset(str(folder), "test", text_vectorizer=vec,
                                              image_size=(8, 8), batch_size=16,
                                              class_names=["red", "blue", "green"])
    x, y2 = next(iter(ds))
    assert ds.class_names == ["red", "blue", "green"]
    colour_in_caption = ["red" if t == red else "blue" for t in x["text"].numpy()[:, 1]]
    assert [ds.class_names[i] for i in y2.numpy()] == colour_in_caption


def test_deterministic_option_repeats_order_and_augmentation(tmp_path):
    folder = _folder(tmp_path)
    kwargs = dict(image_size=(8, 8), batch_size=3, deterministic=True, augment=True, seed=3)
    a = [x["image"].numpy() for x, _ in mmtl_tf.data.make_image_text_dataset(str(folder), **kwargs)]
    b = [x["image"].numpy() for x, _ in mmtl_tf.data.make_image_text_dataset(str(folder), **kwargs)]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_augment_changes_only_the_training_split(tmp_path):
    folder = _folder(tmp_path)
    kwargs = dict(image_size=(8, 8), batch_size=16, shuffle=False, seed=3)
    train = [mmtl_tf.data.make_image_text_dataset(str(folder), "train", augment=a, **kwargs)
             for a in (False, True)]
    plain, augmented = (next(iter(ds))[0]["image"].numpy() for ds in train)
    assert not np.array_equal(plain, augmented)
    plain = next(iter(mmtl_tf.data.make_image_text_dataset(str(folder), "test", **kwargs)))
    with pytest.warns(UserWarning, match="augment=True is ignored for the 'test' split"):
        ds = mmtl_tf.data.make_image_text_dataset(str(folder), "test", augment=True, **kwargs)
    np.testing.assert_array_equal(next(iter(ds))[0]["image"].numpy(), plain[0]["image"].numpy())


def test_a_training_split_of_one_class_is_refused_unless_the_classes_are_given(tmp_path):
    folder = _folder(tmp_path)
    rows = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()]
    (folder / "captions.jsonl").write_text("".join(
        json.dumps({**r, "label": "red"}) + "\n" for r in rows))
    # It trained and scored 0.143 against a "majority class" of 1.000.
    with pytest.raises(mmtl_tf.DataError, match=r"_c0: the training split has one class "
                                                r"\('red'\); a classifier, or a Siamese, "
                                                r"triplet or matching network, needs two"):
        mmtl_tf.data.make_image_text_dataset(str(folder), image_size=(8, 8))
    # Evaluating a trained model's classes on data of one of them is fine.
    ds = mmtl_tf.data.make_image_text_dataset(str(folder), "test", image_size=(8, 8),
                                              class_names=["blue", "red"], batch_size=16)
    assert next(iter(ds))[1].numpy().tolist() == [1, 1, 1, 1]
    # A dual encoder's pairs need no labels.
    ds = mmtl_tf.data.make_image_text_dataset(str(folder), image_size=(8, 8), with_labels=False)
    assert set(next(iter(ds))) == {"image", "text"}


def test_corrupt_and_missing_images_are_named(tmp_path):
    folder = _folder(tmp_path, corrupt=1, missing=2)
    with pytest.raises(mmtl_tf.DataError) as err:
        mmtl_tf.data.make_image_text_dataset(str(folder), image_size=(8, 8))
    message = str(err.value)
    assert "captions.jsonl:2" in message and "img1.png" in message and "cannot decode" in message
    assert "captions.jsonl:3" in message and "img2.png" in message and "file not found" in message
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad image files"):
        ds = mmtl_tf.data.make_image_text_dataset(str(folder), image_size=(8, 8),
                                                  batch_size=32, on_error="skip")
    x, y = next(iter(ds))
    assert len(y) == 6  # 8 training rows minus the 2 bad ones
    # The size is known after the checking pass (Keras shows "1/1", no
    # "ran out of data" warning), and it is the number of kept files.
    vec = mmtl_tf.data.make_text_vectorizer([f"a red blue thing {i}" for i in range(12)],
                                            vocab_size=30, sequence_length=4)
    vocab = vec.get_vocabulary()
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad image files"):
        ds = mmtl_tf.data.make_image_text_dataset(str(folder), image_size=(8, 8), batch_size=4,
                                                  text_vectorizer=vec, on_error="skip")
    assert int(ds.cardinality()) == 2 == len(list(ds))
    # Each kept image still comes with its own row's caption and label (image i
    # is filled with 20 * i, its caption ends in "i"; odd rows are "red" = 1).
    seen = []
    for x, y in ds.unbatch():
        i = int(x["image"].numpy()[0, 0, 0]) // 20
        seen.append(i)
        assert int(y) == i % 2
        assert vocab[int(x["text"].numpy()[3])] == str(i)
    assert sorted(seen) == [0, 3, 4, 5, 6, 7]


def test_the_training_vocabulary_leaves_out_rows_whose_image_is_skipped(tmp_path):
    # The vocabulary used to be adapted on every training caption before the
    # images were checked: the two skipped rows' "zebra" took the one word slot
    # and every kept caption ("cat") came out [UNK] (id 1).
    for i in range(6):
        if i < 2:
            (tmp_path / f"img{i}.png").write_bytes(b"not an image at all")
        else:
            Image.fromarray(np.full((10, 14, 3), 20 * i, "uint8")).save(tmp_path / f"img{i}.png")
    (tmp_path / "captions.jsonl").write_text("".join(
        json.dumps({"path": f"img{i}.png", "caption": "zebra zebra zebra" if i < 2 else "cat",
                    "label": "xy"[i % 2], "split": "train"}) + "\n" for i in range(6)))
    kw = dict(image_size=(8, 8), batch_size=8, vocab_size=3, sequence_length=2, shuffle=False)
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad image files"):
        ds = mmtl_tf.data.make_image_text_dataset(str(tmp_path), "train", on_error="skip", **kw)
    x, _ = next(iter(ds))
    assert ds.records.captions == ["cat"] * 4
    assert x["text"].numpy().tolist() == [[2, 0]] * 4
    # The vectorizer it adapted (to save, and to pass to the other splits).
    assert ds.text_vectorizer.get_vocabulary() == ["", "[UNK]", "cat"]
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 2 bad image files"):
        other = mmtl_tf.data.make_image_text_dataset(
            str(tmp_path), "train", on_error="skip", text_vectorizer=ds.text_vectorizer, **kw)
    assert other.text_vectorizer is ds.text_vectorizer
    # Without skipped rows the vocabulary is the one of all training captions, as before.
    (tmp_path / "good").mkdir()
    folder = _folder(tmp_path / "good")
    kw.update(vocab_size=20, sequence_length=5)
    x, _ = next(iter(mmtl_tf.data.make_image_text_dataset(str(folder), "train", **kw)))
    vec = mmtl_tf.data.make_text_vectorizer(
        mmtl_tf.data.load_image_text_records(str(folder), "train").captions,
        vocab_size=20, sequence_length=5)
    np.testing.assert_array_equal(x["text"].numpy(), vec([f"a {'red' if i % 2 else 'blue'} "
                                                          f"thing {i}" for i in range(8)]))


def test_vectorizer_round_trip_with_stop_words(tmp_path):
    texts = ["the cat sat on the mat", "a dog and the cat"]
    vec = mmtl_tf.data.make_text_vectorizer(texts, vocab_size=50, sequence_length=6,
                                            remove_stopwords=True)
    assert "the" not in vec.get_vocabulary() and "cat" in vec.get_vocabulary()
    save_text_vectorizer(vec, str(tmp_path / "v.json"))
    again = load_text_vectorizer(str(tmp_path / "v.json"))
    np.testing.assert_array_equal(vec(texts).numpy(), again(texts).numpy())
    long = " ".join(["cat"] * 20)
    assert again([long]).shape == (1, 6)  # truncated to sequence_length


def test_skipped_rows_are_reported_once_when_the_vocabulary_is_adapted_too(tmp_path):
    folder = _folder(tmp_path)
    with open(folder / "captions.jsonl", "a") as f:
        f.write(json.dumps({"path": "img0.png", "caption": " ", "label": "red",
                            "split": "test"}) + "\n")
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        # No vectorizer given: the training split is read again to adapt one.
        ds = mmtl_tf.data.make_image_text_dataset(str(folder), "test", image_size=(8, 8),
                                                  batch_size=8, on_error="skip")
    assert [str(w.message).splitlines()[0] for w in warned] == \
        ["skipped 1 bad row (on_error='skip'):"]
    assert int(next(iter(ds))[1].shape[0]) == 4


def test_rows_sharing_an_image_decode_it_once_and_keep_their_order(tmp_path):
    # COCO-style: several captions per image, rows of one image not adjacent.
    for i in range(3):
        Image.fromarray(np.full((10, 14, 3), 40 * i, "uint8")).save(tmp_path / f"img{i}.png")
    rows = [(0, "zero a"), (1, "one a"), (0, "zero b"), (2, "two a"), (0, "zero c"),
            (1, "one b")]
    (tmp_path / "captions.jsonl").write_text("".join(
        json.dumps({"path": f"img{i}.png", "caption": c, "split": "test"}) + "\n"
        for i, c in rows))
    ds = mmtl_tf.data.make_image_text_dataset(str(tmp_path), "test", image_size=(8, 8),
                                              batch_size=4, with_labels=False,
                                              text_vectorizer=mmtl_tf.data.make_text_vectorizer(
                                                  [c for _, c in rows], sequence_length=2))
    assert ds.records.captions == [c for _, c in rows]
    assert int(ds.cardinality()) == 2
    images = np.concatenate([x["image"].numpy() for x in ds])
    assert images[:, 0, 0, 0].tolist() == [40 * i for i, _ in rows]
    # One decoded image per file, not per row.
    store = [d for d in _upstream(ds) if hasattr(d, "_mmtl_file_store")]
    assert len(store) == 1 and store[0]._mmtl_file_store.shape[0] == 3
    # Within a strategy's scope (where a variable would be mirrored) the rows
    # load their files one by one, with the same result.
    import tensorflow as tf

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        ds = mmtl_tf.data.make_image_text_dataset(
            str(tmp_path), "test", image_size=(8, 8), batch_size=4, with_labels=False,
            text_vectorizer=mmtl_tf.data.make_text_vectorizer([c for _, c in rows],
                                                              sequence_length=2))
    images = np.concatenate([x["image"].numpy() for x in ds])
    assert images[:, 0, 0, 0].tolist() == [40 * i for i, _ in rows]
    assert not [d for d in _upstream(ds) if hasattr(d, "_mmtl_file_store")]


def _upstream(ds):
    """`ds` and the datasets it is built on."""
    found, todo = [], [ds]
    while todo:
        d = todo.pop()
        found.append(d)
        todo += [x for x in getattr(d, "_inputs", lambda: [])()]
    return found


def test_truncating_most_captions_warns_and_the_bundled_ones_do_not():
    import warnings

    long = [" ".join(f"w{k}" for k in range(i, i + 40)) for i in range(6)]
    with pytest.warns(mmtl_tf.DataWarning, match=r"100% of the training texts \(6 of 6\) "
                                                 r"have more than 16 tokens .*sequence_length=16"
                                                 r".*raise sequence_length to use more"):
        mmtl_tf.data.make_text_vectorizer(long, sequence_length=16)
    captions = mmtl_tf.data.load_image_text_records("default", "train").captions
    with warnings.catch_warnings():
        warnings.simplefilter("error", mmtl_tf.DataWarning)
        mmtl_tf.data.make_text_vectorizer(long[:2] + ["short"] * 4, sequence_length=16)
        mmtl_tf.data.make_text_vectorizer(captions, sequence_length=8)  # the tiny recipes'


def test_a_class_whose_every_training_image_is_skipped_is_warned_about(tmp_path):
    # Class ids are fixed when the captions file is read; a class whose only
    # training rows name bad files kept its output, untrained, in silence.
    for i in range(6):
        if i >= 4:
            (tmp_path / f"img{i}.png").write_bytes(b"not an image at all")
        else:
            Image.fromarray(np.full((10, 14, 3), 20 * i, "uint8")).save(tmp_path / f"img{i}.png")
    labels = ["red", "blue", "red", "blue", "green", "green"]
    (tmp_path / "captions.jsonl").write_text("".join(
        json.dumps({"path": f"img{i}.png", "caption": f"thing {i}", "label": labels[i],
                    "split": "train"}) + "\n" for i in range(6)))
    kw = dict(image_size=(8, 8), batch_size=8, on_error="skip")
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        ds = mmtl_tf.data.make_image_text_dataset(str(tmp_path), "train", **kw)
    assert ds.class_names == ["blue", "green", "red"]
    messages = [str(w.message) for w in warned]
    assert messages[0].startswith("skipped 2 bad image files")
    assert messages[1].startswith("no training row of class(es) 'green' is left after "
                                  "skipping the bad files; the model still has an output for it")
    # With a model's own class names (data for it may lack classes): only
    # the skip warning.
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        mmtl_tf.data.make_image_text_dataset(str(tmp_path), "train",
                                             class_names=["blue", "green", "red"], **kw)
    assert [str(w.message).startswith("skipped 2 bad") for w in warned] == [True]
    # One bad file of a class that keeps another: only the skip warning.
    Image.fromarray(np.zeros((10, 14, 3), "uint8")).save(tmp_path / "img5.png")
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        mmtl_tf.data.make_image_text_dataset(str(tmp_path), "train", **kw)
    assert [str(w.message).startswith("skipped 1 bad") for w in warned] == [True]


def test_bad_files_are_reported_with_their_split(tmp_path):
    # A run loads each split in turn: the bad files of the three splits were
    # one list (or three warnings) that did not say which split was which,
    # with the rows of the splits mixed.
    from mmtl_tf.errors import collect_problems

    folder = _folder(tmp_path, corrupt=9, missing=2)
    with pytest.warns(mmtl_tf.DataWarning) as seen:
        mmtl_tf.data.make_image_text_dataset(str(folder), "test", image_size=(8, 8),
                                             on_error="skip")
    assert [str(w.message).split(":\n")[0] for w in seen
            if issubclass(w.category, mmtl_tf.DataWarning)] == [
        "skipped 1 bad image file in the test split (on_error='skip')"]
    with pytest.raises(mmtl_tf.DataError) as err:
        with collect_problems():
            for split in ("train", "test"):
                mmtl_tf.data.make_image_text_dataset(str(folder), split, image_size=(8, 8))
    lines = str(err.value).splitlines()
    assert lines[0] == "1 bad image file in the train split:"
    assert lines[1].startswith(f"  {folder / 'captions.jsonl'}:3 (") and "img2.png" in lines[1]
    assert lines[2] == "1 bad image file in the test split:"
    assert lines[3].startswith(f"  {folder / 'captions.jsonl'}:10 (") and "img9.png" in lines[3]
    # Outside the dataset builders (no split): as before.
    with pytest.raises(mmtl_tf.DataError, match=r"^1 bad image file:\n"):
        mmtl_tf.data.decoded_image_dataset([str(folder / "img9.png")], (8, 8))
