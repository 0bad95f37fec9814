import json

import numpy as np
import pytest
from PIL import Image

import mmtl_tf
from mmtl_tf.data.sources import load_image_text_records, read_captions_file


def _image(path, value=0):
    Image.fromarray(np.full((8, 8, 3), value, "uint8")).save(path)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_csv_and_jsonl_give_the_same_rows(tmp_path):
    rows = [{"path": f"img{i}.png", "caption": f"caption {i}", "label": "ab"[i % 2]}
            for i in range(4)]
    _write_jsonl(tmp_path / "c.jsonl", rows)
    (tmp_path / "c.csv").write_text(
        "path,caption,label\n" + "".join(f"{r['path']},{r['caption']},{r['label']}\n"
                                         for r in rows), encoding="utf-8")
    a = read_captions_file(str(tmp_path / "c.jsonl"))
    b = read_captions_file(str(tmp_path / "c.csv"))
    assert [(r["path"], r["caption"], r["label"]) for r in a] == \
           [(r["path"], r["caption"], r["label"]) for r in b]
    assert a[0]["path"] == str(tmp_path / "img0.png")
    assert b[2]["row"].endswith("c.csv:4")


def test_missing_column_is_named(tmp_path):
    (tmp_path / "captions.csv").write_text("path,label\nx.png,a\n", encoding="utf-8")
    with pytest.raises(mmtl_tf.DataError, match=r"captions.csv: missing column\(s\) caption"):
        read_captions_file(str(tmp_path / "captions.csv"))


def test_empty_caption_names_the_row_and_skip_reports_it(tmp_path):
    rows = [{"path": "a.png", "caption": "a cat", "label": "x"},
            {"path": "b.png", "caption": "   ", "label": "x"}]
    _write_jsonl(tmp_path / "captions.jsonl", rows)
    with pytest.raises(mmtl_tf.DataError, match=r"captions.jsonl:2: empty caption"):
        read_captions_file(str(tmp_path / "captions.jsonl"))
    with pytest.warns(mmtl_tf.DataWarning, match=r"(?s)skipped 1 bad rows.*captions.jsonl:2"):
        kept = read_captions_file(str(tmp_path / "captions.jsonl"), on_error="skip")
    assert [r["caption"] for r in kept] == ["a cat"]


def test_non_utf8_file_is_named_with_line(tmp_path):
    (tmp_path / "captions.csv").write_bytes(b"path,caption,label\na.png,caf\xe9,x\n")
    with pytest.raises(mmtl_tf.DataError, match=r"captions.csv:2: not valid UTF-8"):
        read_captions_file(str(tmp_path / "captions.csv"))


def test_hash_split_is_stable_and_uses_split_column(tmp_path):
    rows = [{"path": f"{i}.png", "caption": f"c{i}", "label": "ab"[i % 2]} for i in range(200)]
    _write_jsonl(tmp_path / "captions.jsonl", rows)
    sizes = {s: len(load_image_text_records(str(tmp_path), s)) for s in
             ("train", "validation", "test")}
    assert sum(sizes.values()) == 200 and 130 < sizes["train"] < 190
    # Reordering rows does not move any row to another split.
    _write_jsonl(tmp_path / "captions.jsonl", rows[::-1])
    again = load_image_text_records(str(tmp_path), "test")
    first = set(load_image_text_records(str(tmp_path), "test").paths)
    assert set(again.paths) == first
    rows = [dict(r, split="train" if i < 150 else "test") for i, r in enumerate(rows)]
    _write_jsonl(tmp_path / "captions.jsonl", rows)
    assert len(load_image_text_records(str(tmp_path), "test")) == 50


def test_unknown_label_in_test_split_is_reported(tmp_path):
    _write_jsonl(tmp_path / "captions.jsonl", [
        {"path": "a.png", "caption": "a", "label": "x", "split": "train"},
        {"path": "b.png", "caption": "b", "label": "y", "split": "test"}])
    with pytest.raises(mmtl_tf.DataError, match="label 'y' does not occur in the training split"):
        load_image_text_records(str(tmp_path), "test")


def test_default_sample_is_the_bundled_emoji_set():
    train = load_image_text_records("default", "train")
    test = load_image_text_records("default", "test")
    assert len(train.class_names) == 9 and "Flags" in train.class_names
    assert len(train) > 1000 and len(test) > 200
    assert not set(train.paths) & set(test.paths)
    assert all(c.strip() for c in train.captions)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(mmtl_tf.DataError, match="no such folder"):
        load_image_text_records(str(tmp_path / "nope"), "train")
    with pytest.raises(mmtl_tf.DataError, match="no captions file"):
        load_image_text_records(str(tmp_path), "train")


def test_fetch_pypi_package_reuses_a_local_wheel(tmp_path, monkeypatch):
    import zipfile

    from mmtl_tf.data.assets import fetch_pypi_package

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "demo_pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("demo_pkg/data.txt", "hello")
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("no download expected"))
    folder = fetch_pypi_package("demo-pkg", "1.0", cache=str(tmp_path))
    assert open(f"{folder}/demo_pkg/data.txt").read() == "hello"
    assert fetch_pypi_package("demo-pkg", "1.0", cache=str(tmp_path)) == folder
