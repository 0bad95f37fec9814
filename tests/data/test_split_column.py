import json
"""The `split` column of labels, captions and text files: values in any case,
train rows repeated in validation/test, and the order of numeric labels."""

import os

import numpy as np
import pytest
from PIL import Image

import mmtl_tf
from mmtl_tf.data.image_classification import load_image_label_records
from mmtl_tf.data.sources import load_image_text_records
from mmtl_tf.data.text_classification import load_text_classification_records


def _images(folder, names):
    for i, name in enumerate(names):
        Image.fromarray(np.full((4, 4, 3), 10 * i, "uint8")).save(folder / name)


def test_split_values_in_any_case_and_with_spaces(tmp_path):
    (tmp_path / "tc.csv").write_text(
        "text,label,split\na,x,train\nb,y,Train\nc,x, TEST \nd,y,Validation\n")
    texts = {s: load_text_classification_records(str(tmp_path / "tc.csv"), s).texts
             for s in ("train", "validation", "test")}
    assert texts == {"train": ["a", "b"], "validation": ["d"], "test": ["c"]}
    _images(tmp_path, ["0.png", "1.png", "2.png"])
    (tmp_path / "labels.csv").write_text(
        "path,label,split\n0.png,x,TRAIN\n1.png,y,train\n2.png,x,Test\n")
    assert len(load_image_label_records(str(tmp_path / "labels.csv"), "test")) == 1
    (tmp_path / "captions.csv").write_text(
        "path,caption,label,split\n0.png,zero,x,TRAIN\n1.png,one,y,train\n2.png,two,x,Test\n")
    assert load_image_text_records(str(tmp_path / "captions.csv"), "test").captions == ["two"]
    # Unknown values are still a bad row naming the line.
    (tmp_path / "bad.csv").write_text("text,label,split\na,x,train\nb,y,dev\n")
    with pytest.raises(mmtl_tf.DataError, match=r"bad\.csv:3: split 'dev' is not one of"):
        load_text_classification_records(str(tmp_path / "bad.csv"), "train")


def test_integer_labels_are_ordered_numerically_everywhere(tmp_path):
    numbers = [str(i) for i in range(12)]
    (tmp_path / "tc.csv").write_text("text,label\n" + "".join(
        f"text {i} of {label},{label}\n" for label in numbers for i in range(6)))
    with mmtl_tf.data.sources.unsplit_rows_in("train"):
        records = load_text_classification_records(str(tmp_path / "tc.csv"), "train")
    assert records.class_names == numbers  # not ['0', '1', '10', '11', '2', ...]
    assert [records.class_names[i] for i in records.label_ids()] == records.labels
    # Class folders named by digits, and JSON integer labels in a captions file.
    for label in ("2", "10", "9"):
        (tmp_path / "folders" / label).mkdir(parents=True)
        _images(tmp_path / "folders" / label, ["a.png"])
    with mmtl_tf.data.sources.unsplit_rows_in("train"):
        assert load_image_label_records(str(tmp_path / "folders")).class_names == \
            ["2", "9", "10"]
    _images(tmp_path, ["0.png", "1.png", "2.png"])
    (tmp_path / "captions.jsonl").write_text(
        '{"path": "0.png", "caption": "a", "label": 10, "split": "train"}\n'
        '{"path": "1.png", "caption": "b", "label": -1, "split": "train"}\n'
        '{"path": "2.png", "caption": "c", "label": 9, "split": "test"}\n')
    assert load_image_text_records(str(tmp_path / "captions.jsonl")).class_names == \
        ["-1", "10"]
    # Any label that is not an integer keeps the string order.
    (tmp_path / "mixed.csv").write_text(
        "text,label,split\na,10,train\nb,9,train\nc,x,train\nd,9,test\n")
    assert load_text_classification_records(str(tmp_path / "mixed.csv")).class_names == \
        ["10", "9", "x"]


def _leak_messages(record):
    return [str(w.message) for w in record if issubclass(w.category, mmtl_tf.DataWarning)]


def test_training_rows_repeated_in_test_or_validation_warn_once_when_loading_train(tmp_path):
    texts = [f"text number {i}" for i in range(8)]
    (tmp_path / "tc.csv").write_text("text,label,split\n" + "".join(
        f"{t},{'ab'[i % 2]},train\n" for i, t in enumerate(texts))
        + f"{texts[0]},a,test\n  {texts[1]} ,b,test\nnew,a,test\n{texts[2]},a,validation\n")
    with pytest.warns(mmtl_tf.DataWarning) as record:
        load_text_classification_records(str(tmp_path / "tc.csv"), "train")
    [message] = _leak_messages(record)
    assert "1 of 1 validation rows and 2 of 3 test rows hold the same text as a " \
           "training row" in message
    # Validation first; the test copy of texts[1] matches once spaces are stripped,
    # tc.csv:12 ("new") does not.
    lines = [line.strip() for line in message.replace(f"{tmp_path}/", "").splitlines()[1:]]
    assert lines == ["tc.csv:13: same text as training row tc.csv:4",
                     "tc.csv:10: same text as training row tc.csv:2",
                     "tc.csv:11: same text as training row tc.csv:3"]
    assert len(record[0].message.problems) == 3
    # Said once: loading the other splits does not repeat it.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", mmtl_tf.DataWarning)
        load_text_classification_records(str(tmp_path / "tc.csv"), "test")
    # Per-split files too (the other files are read to compare).
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\n" + "".join(
        f"{t},{'ab'[i % 2]}\n" for i, t in enumerate(texts)))
    (folder / "test.csv").write_text(f"text,label\n{texts[3]},b\nother,a\n")
    with pytest.warns(mmtl_tf.DataWarning, match=r"1 of 2 test rows hold the same text"):
        load_text_classification_records(str(folder), "train")


def _labels_file_leaking_row_6(folder, names, other_rows):
    """labels.csv: `names[:4]` as training rows (rows 2-5), then `other_rows`
    whose first (row 6) holds a training file; asserts the one warning
    naming it."""
    (folder / "labels.csv").write_text("path,label,split\n" + "".join(
        f"{n},{'ab'[i % 2]},train\n" for i, n in enumerate(names[:4])) + other_rows)
    with pytest.warns(mmtl_tf.DataWarning,
                      match=r"1 of 2 test rows hold the same file as a training row") as rec:
        load_image_label_records(str(folder / "labels.csv"), "train")
    assert "labels.csv:6: same file as training row " in _leak_messages(rec)[0]


def test_image_files_in_two_splits_warn_for_labels_and_captions_files(tmp_path):
    names = [f"{i}.png" for i in range(6)]
    _images(tmp_path, names)
    _labels_file_leaking_row_6(tmp_path, names,
                               "./0.png,a,test\n4.png,a,test\n5.png,b,validation\n")
    (tmp_path / "captions.csv").write_text("path,caption,label,split\n" + "".join(
        f"{n},caption {i},{'ab'[i % 2]},train\n" for i, n in enumerate(names[:4]))
        + "1.png,another caption,b,validation\n5.png,five,b,test\n")
    with pytest.warns(mmtl_tf.DataWarning,
                      match=r"1 of 1 validation rows hold the same file as a training row"):
        load_image_text_records(str(tmp_path / "captions.csv"), "train")


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_to_a_training_image_in_the_test_split_warns(tmp_path, link):
    # The overlap check compared absolute paths while the rows naming one
    # file are one row by real path: a test row through a link to a training
    # image was not named. It compares files (device, inode) now, so a hard
    # link, the same file under a second name, is named too.
    names = [f"{i}.png" for i in range(5)]
    _images(tmp_path, names)
    if link == "symbolic":
        (tmp_path / "same_as_0.png").symlink_to(tmp_path / "0.png")
    else:
        os.link(tmp_path / "0.png", tmp_path / "same_as_0.png")
    _labels_file_leaking_row_6(tmp_path, names, "same_as_0.png,a,test\n4.png,a,test\n")


def test_no_overlap_warning_without_a_split_column_or_on_the_bundled_data(tmp_path):
    import warnings

    rows = [f"text {i % 50},{'ab'[i % 2]}\n" for i in range(200)]  # each text 4 times
    (tmp_path / "texts.csv").write_text("text,label\n" + "".join(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error", mmtl_tf.DataWarning)
        load_text_classification_records(str(tmp_path / "texts.csv"), "train")
        load_text_classification_records("default", "train")
        load_image_label_records("default", "train")
        load_image_text_records("default", "train")


def test_a_copy_labelled_otherwise_in_another_split_says_both_labels(tmp_path):
    # Only "same file as training row" was said; the conflicting label, which
    # makes the test row wrong as well as not held out, was not.
    names = [f"{i}.png" for i in range(6)]
    _images(tmp_path, names)
    (tmp_path / "labels.csv").write_text("path,label,split\n" + "".join(
        f"{n},{'ab'[i % 2]},train\n" for i, n in enumerate(names[:4]))
        + "0.png,b,test\n1.png,b,test\n5.png,a,test\n")
    with pytest.warns(mmtl_tf.DataWarning) as rec:
        load_image_label_records(str(tmp_path / "labels.csv"), "train")
    message = _leak_messages(rec)[0]
    assert "labels.csv:6: same file as training row " in message
    assert "labels.csv:2, labelled a there and b here" in message
    assert "labels.csv:3, labelled" not in message          # 1.png is b in both
    (tmp_path / "tc.csv").write_text("text,label,split\nsome text,a,train\nother,b,train\n"
                                     "Some  TEXT,b,test\nnew,a,test\n")
    with pytest.warns(mmtl_tf.DataWarning) as rec:
        load_text_classification_records(str(tmp_path / "tc.csv"), "train")
    assert "tc.csv:4: same text as training row " in _leak_messages(rec)[0]
    assert "tc.csv:2, labelled a there and b here" in _leak_messages(rec)[0]


def test_a_split_column_inside_a_per_split_file_that_disagrees_is_warned_about(tmp_path):
    # 24 test.jsonl rows saying "train" loaded as test rows without a word.
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text("".join(
        json.dumps({"text": f"other {i}", "label": "ab"[i % 2], "split": s}) + "\n"
        for i, s in enumerate(["train", "train", "test"])))
    with pytest.warns(mmtl_tf.DataWarning, match=r"test\.jsonl: 2 of 3 rows name split "
                                                  r"'train' in their split column") as rec:
        records = load_text_classification_records(str(tmp_path), "test")
    assert len(records) == 3                      # the file decides
    assert "every row belongs to the file's split (test)" in _leak_messages(rec)[0]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", mmtl_tf.DataWarning)
        load_text_classification_records(str(tmp_path), "train")


def test_rows_without_a_split_value_among_rows_with_one_warn(tmp_path):
    # `"split": null`, the key left out and "" went to the hash split, most
    # of them into training, silently (a helper's three test rows trained).
    import warnings

    _images(tmp_path, [f"{i}.png" for i in range(6)])
    splits = ["train", "train", "test", None, "", "validation"]
    lines = []
    for i, split in enumerate(splits):
        row = {"path": f"{i}.png", "caption": f"caption {i}", "text": f"text {i}",
               "label": "xy"[i % 2]}
        if split is not None or i != 3:
            row["split"] = split
        lines.append(json.dumps(row))
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(lines) + "\n")
    for load in (load_text_classification_records, load_image_text_records,
                 load_image_label_records):
        with pytest.warns(mmtl_tf.DataWarning) as caught:
            load(str(data), "train")
        (message,) = [w.message for w in caught if "name no split" in str(w.message)]
        assert str(message).startswith(f"{data}: 2 of 6 rows name no split (an empty or "
                                       "missing split value: line(s) 4, 5) while the "
                                       "others do; they are split 80/10/10 by the hash rule")
        assert [p for p, _ in message.problems] == [f"{data}:4", f"{data}:5"]
    # A file without split values, or with one on every row: nothing said.
    for rows in ([{**json.loads(line), "split": None} for line in lines],
                 [{**json.loads(line), "split": "train"} for line in lines]):
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with warnings.catch_warnings():
            warnings.simplefilter("error", mmtl_tf.DataWarning)
            load_text_classification_records(str(data), "train")
            load_image_label_records(str(data), "train")


def test_a_csv_row_with_an_empty_split_value_among_split_rows_warns(tmp_path):
    _images(tmp_path, ["0.png", "1.png", "2.png"])
    data = tmp_path / "labels.csv"
    data.write_text("path,label,split\n0.png,x,train\n1.png,y,\n2.png,x,test\n")
    with pytest.warns(mmtl_tf.DataWarning, match=r"1 of 3 rows name no split \(an empty or "
                                                 r"missing split value: line\(s\) 3\)"):
        load_image_label_records(str(data), "train")


def test_no_split_warning_where_rows_without_one_are_not_hashed(tmp_path):
    # A per-split file's rows are its split's, and under unsplit_rows_in (an
    # evaluation on other data) they go to the split evaluated: the warning
    # said "split 80/10/10 by the hash rule" there too (found in review).
    import warnings

    from mmtl_tf.data.sources import unsplit_rows_in

    folder = tmp_path / "persplit"
    folder.mkdir()
    for name in ("train", "validation", "test"):
        names = [f"{name}{i}.png" for i in range(6)]
        _images(folder, names)
        (folder / f"{name}.jsonl").write_text("".join(
            json.dumps({"path": p, "caption": f"{name} {i}", "text": f"{name} text {i}",
                        "label": "xy"[i % 2], **({"split": name} if i % 2 else {})}) + "\n"
            for i, p in enumerate(names)))
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(
        json.dumps({"path": str(folder / f"test{i}.png"), "caption": f"c {i}",
                    "text": f"text {i}", "label": "xy"[i % 2],
                    **({"split": "test"} if i % 2 else {})}) + "\n" for i in range(6)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", mmtl_tf.DataWarning)
        for load in (load_text_classification_records, load_image_text_records,
                     load_image_label_records):
            assert len(load(str(folder), "train")) == 6
            with unsplit_rows_in("test"):  # with a run's classes, as evaluate does
                assert len(load(str(mixed), "test", class_names=["x", "y"])) == 6
    # Outside it, the same file warns (three of its six rows are hashed).
    with pytest.warns(mmtl_tf.DataWarning, match="3 of 6 rows name no split"):
        load_image_label_records(str(mixed), "test", class_names=["x", "y"])
