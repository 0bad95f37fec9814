"""The metric-learning tasks (`siamese`, `triplet`, `matching`): the data
layouts they read. Tiny images and runs built in tmp_path."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import mmtl_tf
from mmtl_tf import cli
from mmtl_tf.tasks import shared_space

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
           "grey": (128, 128, 128), "yellow": (230, 220, 20), "purple": (150, 30, 160)}


def _class_folders(root, classes, per_class=20, seed=0):
    """`root/<class>/<class>_<i>.png` (8 x 8, the class colour plus noise);
    returns [(relative path, label)]."""
    rng = np.random.default_rng(seed)
    rows = []
    for name in classes:
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.asarray(COLOURS[name]) + rng.integers(-40, 40, (8, 8, 3)),
                             0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / name / f"{name}_{seed}_{i}.png")
            rows.append((f"{name}/{name}_{seed}_{i}.png", name))
    return rows


def _csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows),
                    encoding="utf-8")


def test_labelled_images_read_every_layout_head_swap_reads(tmp_path):
    # Class folders and a path,label file were refused ("no captions file",
    # "missing column(s) caption") though these tasks never use captions.
    rows = _class_folders(tmp_path, ["red", "green", "blue"], per_class=10)
    _csv(tmp_path / "labels.csv", ["path", "label"], rows)
    (tmp_path / "captions").mkdir()
    _csv(tmp_path / "captions" / "captions.csv", ["path", "caption", "label"],
         [(f"../{p}", f"a {label} square", label) for p, label in rows])
    folders = str(tmp_path)  # labels.csv is found first; then without it:
    loaded = {}
    for name, source in (("labels file", str(tmp_path / "labels.csv")),
                         ("folder with labels.csv", folders),
                         ("captions file", str(tmp_path / "captions" / "captions.csv"))):
        splits = shared_space.available_splits(source)
        loaded[name] = shared_space.load_labelled_images(source, splits, (8, 8))
    os.remove(tmp_path / "labels.csv")
    splits = shared_space.available_splits(folders)
    loaded["class folders"] = shared_space.load_labelled_images(folders, splits, (8, 8))
    first = loaded["class folders"]
    assert first["class_names"] == ["blue", "green", "red"]
    assert len(first["labels"]) == 30 and set(first["split"]) >= {"train", "test"}
    for name, data in loaded.items():
        order = np.argsort(data["paths"])
        expected = np.argsort(first["paths"])
        assert [os.path.basename(data["paths"][i]) for i in order] == \
               [os.path.basename(first["paths"][i]) for i in expected], name
        assert data["class_names"] == first["class_names"], name
        assert (data["labels"][order] == first["labels"][expected]).all(), name
        assert (data["split"][order] == first["split"][expected]).all(), name
        assert (data["images"][order] == first["images"][expected]).all(), name


def test_labelled_images_bad_rows_and_messages_follow_head_swap(tmp_path):
    rows = _class_folders(tmp_path, ["red", "green"], per_class=10)
    _csv(tmp_path / "labels.csv", ["path", "label", "split"],
         [(p, label, "train" if i % 5 else "test") for i, (p, label) in enumerate(rows)]
         + [("red/red_0_0.png", "", "train")])
    source = str(tmp_path / "labels.csv")
    with pytest.raises(mmtl_tf.DataError, match=r"labels.csv:22: empty label"):
        shared_space.load_labelled_images(source, ["train"], (8, 8))
    with pytest.warns(mmtl_tf.DataWarning, match="labels.csv:22"):
        data = shared_space.load_labelled_images(source, ["train", "test"], (8, 8),
                                                 on_error="skip")
    assert len(data["labels"]) == 20 and (data["split"] == "test").sum() == 4
    _csv(tmp_path / "other.csv", ["path", "caption"], [("red/red_0_0.png", "a")])
    with pytest.raises(mmtl_tf.DataError, match=r"missing column\(s\) label"):
        shared_space.load_labelled_images(str(tmp_path / "other.csv"), ["train"], (8, 8))


def test_siamese_and_triplet_train_on_class_folders_and_a_labels_file(tmp_path, capsys):
    data = tmp_path / "data"
    rows = _class_folders(data, ["red", "green", "blue", "grey"])
    for task, source in (("siamese", data), ("triplet", data / "labels.csv")):
        if task == "triplet":
            _csv(data / "labels.csv", ["path", "label"], rows)
        run = tmp_path / task
        assert cli.main(["train", task, "--size", "tiny", "--image-size", "8", "--data",
                         str(source), "--out", str(run), "--no-jit-compile"]) == 0, \
            capsys.readouterr().err
        info = json.loads((run / "run.json").read_text())
        assert info["class_names"] == ["blue", "green", "grey", "red"]
        assert 0 <= json.loads((run / "metrics.json").read_text())["test"]["category_R@1"] <= 1
