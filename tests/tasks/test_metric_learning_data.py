"""The metric-learning tasks (`siamese`, `triplet`, `matching`): the data
layouts they read, evaluation on other data and the baselines in
metrics.json. Tiny images and runs built in tmp_path."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import mmtl_tf
from mmtl_tf import cli
from mmtl_tf.tasks import common, matching, shared_space

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


def _quiet(capsys):
    capsys.readouterr()


def test_labelled_images_read_every_layout_head_swap_reads(tmp_path):
    # Class folders and a path,label file were refused ("no captions file",
    # "missing column(s) caption") though these tasks never use captions.
    rows = _class_folders(tmp_path, ["red", "green", "blue"], per_class=10)
    _csv(tmp_path / "labels.csv", ["path", "label"], rows)
    # (A name the folder look-up does not pick, beside the class folders: the
    # hash split keys on the path relative to the file.)
    _csv(tmp_path / "my_captions.csv", ["path", "caption", "label"],
         [(p, f"a {label} square", label) for p, label in rows])
    folders = str(tmp_path)  # labels.csv is found first; then without it:
    loaded = {}
    for name, source in (("labels file", str(tmp_path / "labels.csv")),
                         ("folder with labels.csv", folders),
                         ("captions file", str(tmp_path / "my_captions.csv"))):
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


def test_a_file_that_several_rows_name_is_loaded_once(tmp_path):
    # A captions file names an image once per caption: every image was loaded
    # once per row, so that leave-one-out retrieval found the image's other
    # row (R@1 1.000 for the model and the raw pixels alike), and a matching
    # episode could hold one image as both a support and a query.
    rows = _class_folders(tmp_path, ["red", "green", "blue", "grey"], per_class=10)
    once = [(p, "a square", label) for p, label in rows]
    _csv(tmp_path / "once.csv", ["path", "caption", "label"], once)
    _csv(tmp_path / "twice.csv", ["path", "caption", "label"],
         [row for p, c, label in once for row in ((p, c, label), (f"./{p}", "again", label))])
    # The same file with another label is another row.
    _csv(tmp_path / "relabelled.csv", ["path", "caption", "label"],
         [*once, (rows[0][0], "also green", "green")])
    loaded = {name: shared_space.load_labelled_images(
        str(tmp_path / name), shared_space.available_splits(str(tmp_path / name)), (8, 8))
        for name in ("once.csv", "twice.csv", "relabelled.csv")}
    first, second = loaded["once.csv"], loaded["twice.csv"]
    assert len(first["labels"]) == len(second["labels"]) == 40
    assert second["paths"] == first["paths"]
    for key in ("labels", "split", "images"):
        assert (second[key] == first[key]).all(), key
    relabelled = loaded["relabelled.csv"]
    assert len(relabelled["labels"]) == 41
    assert [relabelled["class_names"][c] for c, p in zip(relabelled["labels"],
                                                         relabelled["paths"])
            if p == str(tmp_path / rows[0][0])] == ["red", "green"]
    # Matching's pools take rows of several splits: each file once there too.
    config = {**common.resolve_config("matching", "tiny"), "image_size": [8, 8],
              "num_test_classes": 2, "eval_way": 2, "eval_shots": [1], "eval_queries": 2}
    pools = {name: matching._pools({**config, "data": str(tmp_path / name)})
             for name in ("once.csv", "twice.csv")}
    assert pools["twice.csv"][1:] == pools["once.csv"][1:]  # the same classes
    for pool in ("train", "validation", "test"):
        for got, expected in zip(pools["twice.csv"][0][pool], pools["once.csv"][0][pool]):
            assert (got == expected).all(), pool
    # The held-out classes' pool takes every split: a file that a split
    # column puts in two splits is in it once.
    _csv(tmp_path / "two_splits.csv", ["path", "label", "split"],
         [(p, label, split) for p, label in rows for split in ("train", "test")])
    with pytest.warns(mmtl_tf.DataWarning, match="40 of 40 test rows hold the same file"):
        pools, _, held_out = matching._pools({**config,
                                              "data": str(tmp_path / "two_splits.csv")})
    images, labels = pools["test"]
    assert len(labels) == 20 == len(np.unique(images.reshape(20, -1), axis=0))
    assert sorted(held_out) == sorted(pools["class_names"][c] for c in np.unique(labels))


def test_siamese_and_triplet_train_on_class_folders_and_a_labels_file(tmp_path, capsys):
    data = tmp_path / "data"
    rows = _class_folders(data, ["red", "green", "blue", "grey"])
    for task, source in (("siamese", data), ("triplet", data / "labels.csv")):
        options = []
        if task == "triplet":  # with a bad row, skipped (it failed the run: the
            # look-up of the splits that have rows did not pass --on-error on)
            _csv(data / "labels.csv", ["path", "label"], [*rows, ("red/red_0_0.png", "")])
            options = ["--on-error", "skip"]
        run = tmp_path / task
        assert cli.main(["train", task, "--size", "tiny", "--image-size", "8", "--data",
                         str(source), "--out", str(run), "--no-jit-compile", *options]) == 0, \
            capsys.readouterr().err
        if options:
            assert "labels.csv:82: empty label" in capsys.readouterr().err
        info = json.loads((run / "run.json").read_text())
        assert info["class_names"] == ["blue", "green", "grey", "red"]
        assert 0 <= json.loads((run / "metrics.json").read_text())["test"]["category_R@1"] <= 1


@pytest.fixture(scope="module")
def siamese_run(tmp_path_factory):
    """A tiny Siamese run on a captions file (a layout read before and after),
    and other data: a captions file without a split column, other classes."""
    tmp = tmp_path_factory.mktemp("siamese_data")
    rows = _class_folders(tmp / "data", ["red", "green", "blue", "grey"])
    _csv(tmp / "data" / "captions.csv", ["path", "caption", "label"],
         [(p, f"a {label} square", label) for p, label in rows])
    other = _class_folders(tmp / "other", ["yellow", "purple", "red"], per_class=30, seed=1)
    _csv(tmp / "other" / "captions.csv", ["path", "caption", "label"],
         [(p, f"a {label} square", label) for p, label in other])
    run = tmp / "run"
    assert cli.main(["train", "siamese", "--size", "tiny", "--image-size", "8", "--data",
                     str(tmp / "data" / "captions.csv"), "--out", str(run),
                     "--no-jit-compile"]) == 0
    return tmp, run


def test_evaluate_on_other_data_without_a_split_column(siamese_run, capsys):
    # Every unsplit row went to the test split: no training rows for the
    # gallery, and "with this few rows, assign them yourself" for 90 rows.
    tmp, run = siamese_run
    before = json.loads((run / "metrics.json").read_text())
    _quiet(capsys)
    other = tmp / "other" / "captions.csv"
    assert cli.main(["evaluate", str(run), "--data", str(other)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "split 80/10/10 by the hash rule of training (seed 0)" in out
    metrics = json.loads((run / "metrics.json").read_text())
    entry = metrics["other_data"][str(other)]
    counts = entry["evaluated_on"]["images_per_split"]
    assert sum(counts.values()) == 90 and counts["train"] > counts["test"] > 0
    assert entry["test"]["category_num_queries"] == counts["test"]
    assert f"its {counts['train']} training images are the gallery" in out
    assert {k: v for k, v in metrics.items() if k != "other_data"} == before


def test_evaluate_keeps_each_splits_baselines(siamese_run, capsys):
    # evaluate --split validation replaced the test baselines with its own,
    # and every evaluation dropped baselines.pair_majority.
    _, run = siamese_run
    trained = json.loads((run / "metrics.json").read_text())
    assert "pair_majority" in trained["baselines"]
    _quiet(capsys)
    assert cli.main(["evaluate", str(run), "--split", "validation"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["baselines"] == trained["baselines"]
    assert metrics["test"] == trained["test"]
    own = metrics["validation"]["baselines"]
    assert set(own) == set(trained["baselines"])
    row = next(line for line in out.splitlines() if line.startswith("1-NN"))
    assert f"{own['category_R@1_pixels']:.3f}" in row.split()
    assert cli.main(["evaluate", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["baselines"] == pytest.approx(trained["baselines"])
    assert metrics["validation"]["baselines"] == own
    assert common.split_baselines(metrics, "test") == metrics["baselines"]


def test_write_metrics_baselines_per_split(tmp_path):
    common.write_metrics(tmp_path, {"test": {"a": 1.0}, "baselines": {"x": 0.1, "y": 0.2},
                                    "params": 3})
    got = common.write_metrics(tmp_path, {"validation": {"a": 0.5}, "baselines": {"x": 0.3}})
    assert got["baselines"] == {"x": 0.1, "y": 0.2}
    assert got["validation"] == {"a": 0.5, "baselines": {"x": 0.3}}
    assert common.split_baselines(got, "validation") == {"x": 0.3}
    got = common.write_metrics(tmp_path, {"test": {"a": 0.9}, "baselines": {"x": 0.4}})
    assert got["baselines"] == {"x": 0.4, "y": 0.2} and got["params"] == 3
    other = common.write_metrics(tmp_path, {"test": {"a": 0.7}, "baselines": {"x": 0.5}},
                                 data="/elsewhere")
    assert other["baselines"] == {"x": 0.5}  # printed: the other data's own
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["baselines"] == {"x": 0.4, "y": 0.2}
    assert stored["other_data"]["/elsewhere"]["baselines"] == {"x": 0.5}


def test_matching_on_other_data_prints_and_records_its_own_classes(tmp_path, capsys):
    # It printed the run's held-out classes (read from the run's metrics),
    # which the other data does not have; nor did it record the classes drawn.
    rows = _class_folders(tmp_path / "data", ["red", "green", "blue", "grey", "yellow"],
                          per_class=12)
    _csv(tmp_path / "data" / "captions.csv", ["path", "caption", "label"],
         [(p, "x", label) for p, label in rows])
    other_names = ["purple", "yellow", "red", "blue"]
    other = _class_folders(tmp_path / "other", other_names, per_class=12, seed=1)
    # With a split column (so that it is not the rows without one that fail).
    _csv(tmp_path / "other" / "captions.csv", ["path", "caption", "label", "split"],
         [(p, "x", label, "test" if i % 4 == 0 else "train")
          for i, (p, label) in enumerate(other)])
    config = {**common.resolve_config("matching", "tiny"),
              "data": str(tmp_path / "data" / "captions.csv"), "image_size": [8, 8],
              "num_test_classes": 2, "train_way": 2, "eval_way": 2, "eval_shots": [1],
              "eval_queries": 2, "eval_episodes": 2, "episodes_per_epoch": 4,
              "jit_compile": False}
    run = tmp_path / "run"
    trained = matching.train(config, str(run), verbose=0)
    _quiet(capsys)
    source = str(tmp_path / "other" / "captions.csv")
    assert cli.main(["evaluate", str(run), "--data", source]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    entry = json.loads((run / "metrics.json").read_text())["other_data"][source]
    drawn = entry["test_classes"]
    assert len(drawn) == 2 and set(drawn) <= set(other_names)
    assert set(entry["train_classes"]) == set(other_names) - set(drawn)
    assert f"held-out classes {', '.join(drawn)}" in out
    assert json.loads((run / "metrics.json").read_text())["test_classes"] == \
        trained["test_classes"]
