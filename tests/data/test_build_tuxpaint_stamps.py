"""`data_prep/build_tuxpaint_stamps.py` on a small stamps tree shaped like the
Debian package's (the real package is 161 MB; see the README for the command)."""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

import mmtl_tf
from tests.conftest import load_script


def _script():
    return load_script("data_prep", "build_tuxpaint_stamps")


def _stamp(folder, name, caption, size=(80, 40), svg_only=False, translations=True):
    os.makedirs(folder, exist_ok=True)
    if svg_only:
        with open(os.path.join(folder, f"{name}.svg"), "w") as f:
            f.write('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    else:
        pixels = np.random.default_rng(len(name)).integers(0, 255, (*size[::-1], 4), "uint8")
        Image.fromarray(pixels, "RGBA").save(os.path.join(folder, f"{name}.png"))
    lines = [caption] if caption else []
    if translations:
        lines.append("fr.utf8=Une traduction.")
    with open(os.path.join(folder, f"{name}.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def test_builds_a_captions_folder(tmp_path, monkeypatch):
    stamps = tmp_path / "stamps"
    for i in range(12):
        _stamp(stamps / "animals" / "birds", f"bird{i}", f"A bird number {i}.")
        _stamp(stamps / "food", f"apple{i}", f"A red apple, kind {i}.", size=(300, 200))
    _stamp(stamps / "symbols" / "shapes", "star", None)                 # no English line
    _stamp(stamps / "town", "house", "A house.", svg_only=True)
    monkeypatch.setenv("PATH", "/nonexistent")                         # no rsvg-convert
    script = _script()
    out = tmp_path / "out"
    kept, skipped = script.build(str(stamps), str(out), size=64)
    assert len(kept) == 24
    assert sorted(why for _, why in skipped) == [
        "SVG only and rsvg-convert (Debian librsvg2-bin) is not installed",
        "no English caption"]
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    apple = next(r for r in rows if r["item"] == "food/apple3")
    assert apple["caption"] == "A red apple, kind 3." and apple["label"] == "food"
    assert apple["subcategory"] == "food" and apple["split"] in ("train", "validation", "test")
    assert max(Image.open(out / apple["path"]).size) == 64             # resized, aspect kept
    bird = next(r for r in rows if r["item"] == "animals/birds/bird0")
    sub = [json.loads(line) for line in (out / "subcategories.jsonl").read_text().splitlines()]
    assert {r["label"] for r in sub} == {"animals/birds", "food"}
    assert bird["split"] == script.split_of("animals/birds/bird0")
    # The folder is a source for the image-caption pipeline.
    train = mmtl_tf.data.load_image_text_records(str(out), "train")
    assert set(train.class_names) <= {"animals", "food"} and len(train) > 10
    ds = mmtl_tf.data.make_image_text_dataset(str(out), "train", image_size=(32, 32),
                                              batch_size=4, sequence_length=6)
    x, y = next(iter(ds))
    assert x["image"].shape == (4, 32, 32, 3)


def _old_build(out):
    """An earlier build (its LICENSE.md names the script): the script replaces it."""
    out.mkdir()
    (out / "LICENSE.md").write_text("built before by `data_prep/build_tuxpaint_stamps.py`")


def test_missing_or_empty_stamps_folder_keeps_the_old_build(tmp_path):
    script = _script()
    out = tmp_path / "out"
    _old_build(out)
    for stamps in (tmp_path / "nonexistent" / "stamps", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        try:
            script.main(["--stamps", str(stamps), "--out", str(out)])
        except SystemExit as e:
            line = e.code
        else:
            line = None
        assert isinstance(line, str) and "\n" not in line and str(stamps) in line, line
        assert line.startswith("build_tuxpaint_stamps.py: no stamps")
        assert (out / "LICENSE.md").read_text().startswith("built before by ")
    assert sorted(os.listdir(tmp_path)) == ["empty", "out"]            # no staging left


def test_licence_with_stamps_folder(tmp_path):
    share = tmp_path / "usr" / "share"
    stamps = share / "tuxpaint" / "stamps"
    _stamp(stamps / "food", "apple", "An apple.")
    script = _script()
    script.main(["--stamps", str(stamps), "--out", str(tmp_path / "a")])
    licence = (tmp_path / "a" / "LICENSE.md").read_text()
    assert "not found" in licence
    assert "/usr/share/doc/tuxpaint-stamps-default/copyright" in licence
    # The package's copyright file beside the stamps (an unpacked or installed package).
    doc = share / "doc" / "tuxpaint-stamps-default"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Copyright: 2002-2022 by Bill Kendrick\nLicense: GPL-2\n")
    script.main(["--stamps", str(stamps), "--out", str(tmp_path / "b")])
    licence = (tmp_path / "b" / "LICENSE.md").read_text()
    assert "Copyright: 2002-2022 by Bill Kendrick" in licence and "not found" not in licence


def test_deb_without_dpkg_deb_or_apt_get(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    deb = tmp_path / "tuxpaint-stamps-default_1_all.deb"
    deb.write_bytes(b"!<arch>\n")
    script = _script()
    lines = []
    for argv in (["--deb", str(deb)], []):
        try:
            script.main(argv + ["--out", str(tmp_path / "out")])
        except SystemExit as e:
            lines.append(e.code)
    assert lines[0].startswith("build_tuxpaint_stamps.py: dpkg-deb not found")
    assert "--stamps" in lines[0]                                      # the way around it
    assert lines[1].startswith("build_tuxpaint_stamps.py: apt-get not found")
    assert "--deb" in lines[1]
    # apt-get there but failing: its message, and what to do.
    stub = bin_dir / "apt-get"
    stub.write_text('#!/bin/sh\necho "E: Unable to locate package tuxpaint-stamps-default" >&2\n'
                    "exit 100\n")
    stub.chmod(0o755)
    try:
        script.main(["--out", str(tmp_path / "out")])
    except SystemExit as e:
        line = e.code
    assert "Unable to locate package" in line and "apt-get update" in line and "\n" not in line
    assert not (tmp_path / "out").exists()


def test_svg_rasterised_one_pixel_too_large_is_shrunk(tmp_path, monkeypatch):
    # rsvg-convert --keep-aspect-ratio -w 96 -h 96 writes some stamps 97 px wide
    # (food/loaf_of_bread.png came out 97 x 51). A stand-in that does the same:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "rsvg-convert"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\nfrom PIL import Image\n"
        "a = sys.argv\nw = int(a[a.index('-w') + 1])\n"
        "Image.new('RGBA', (w + 1, w // 2 + 3), (200, 120, 40, 255))"
        ".save(a[a.index('-o') + 1])\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    stamps = tmp_path / "stamps"
    _stamp(stamps / "food", "loaf_of_bread", "A loaf of bread.", svg_only=True)
    _stamp(stamps / "food", "apple", "An apple.", size=(300, 200))
    out = tmp_path / "out"
    kept, skipped = _script().build(str(stamps), str(out), size=96)
    assert len(kept) == 2 and not skipped
    for row in kept:
        with Image.open(out / row["path"]) as image:
            assert max(image.size) == 96, (row["item"], image.size)
    with Image.open(out / "images" / "food" / "loaf_of_bread.png") as image:
        assert image.size == (96, 50) and image.mode == "RGBA"


@pytest.mark.parametrize("writes,problem", [
    ("", "rsvg-convert exited 0 but wrote no PNG"),
    ("open(a[a.index('-o') + 1], 'wb').write(b'not a png')\n",
     "rsvg-convert wrote an unreadable PNG (UnidentifiedImageError"),
])
def test_svg_rasteriser_that_exits_0_without_a_readable_png_skips_the_stamp(
        tmp_path, monkeypatch, writes, problem):
    # A failing rsvg-convert that still exits 0 ended the build with a
    # traceback from PIL; now that stamp is skipped with the reason.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "rsvg-convert"
    fake.write_text(f"#!{sys.executable}\nimport sys\na = sys.argv\n{writes}")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    stamps = tmp_path / "stamps"
    _stamp(stamps / "food", "loaf_of_bread", "A loaf of bread.", svg_only=True)
    _stamp(stamps / "food", "apple", "An apple.", size=(300, 200))
    kept, skipped = _script().build(str(stamps), str(tmp_path / "out"), size=96)
    assert [row["item"] for row in kept] == ["food/apple"]
    assert len(skipped) == 1 and skipped[0][0] == "food/loaf_of_bread"
    assert skipped[0][1].startswith(problem), skipped


@pytest.mark.parametrize("size", ["0", "-5", "x"])
def test_data_prep_size_must_be_a_positive_integer(tmp_path, capsys, size):
    # Before: --size=0 a ZeroDivisionError, --size=-5 a ValueError traceback.
    stamps = tmp_path / "stamps"
    _stamp(stamps / "food", "apple", "An apple.")
    with pytest.raises(SystemExit) as e:
        _script().main(["--stamps", str(stamps), "--out", str(tmp_path / "out"),
                        f"--size={size}"])
    assert e.value.code == 2 and "argument --size: " in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        _script().build(str(stamps), str(tmp_path / "out"), size=0)
    assert e.value.code == "build_tuxpaint_stamps.py: --size must be at least 1 (pixels), got 0."
    assert not (tmp_path / "out").exists()
