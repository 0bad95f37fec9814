"""The `split` column of labels, captions and text files: values in any case,
train rows repeated in validation/test, and the order of numeric labels."""

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
