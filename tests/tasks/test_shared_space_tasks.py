"""The `dual-encoder`, `siamese`, `triplet` and `matching` tasks end to end
through the CLI (tiny recipes)."""

import json

import numpy as np
import pytest

from mmtl_tf import DataError, cli
from mmtl_tf.files import foreign_entries
from mmtl_tf.data.image import decoded_image_dataset
from mmtl_tf.data.sources import load_image_text_records
from mmtl_tf.tasks import common, matching
from tests.bad_runs import split_rows, train_error


def test_dual_encoder_train_evaluate_export(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert cli.main(["train", "dual-encoder", "--size", "tiny", "--out", str(run),
                     "--no-jit-compile"]) == 0
    for name in ("model.keras", "history.json", "metrics.json", "curves.png", "run.json",
                 "text_vectorizer.json"):
        assert (run / name).exists(), name
    assert foreign_entries(run, common.RUN_ENTRIES) == []  # the run may be replaced
    assert json.loads((run / "metrics.json").read_text())["loss"] == "clip"
    assert "dual encoder (CLIP loss)" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert metrics["num_pairs"] == 285
    # Chance of a random ranking: identical captions and identical images (at
    # the tiny recipe's 32 px) are one item each, and an item is correct for
    # every item some row pairs it with.
    records = load_image_text_records("default", "test", require_label=False)
    images, _ = decoded_image_dataset(records.paths, (32, 32))
    pixels = {int(i): np.asarray(im).tobytes() for i, im in images}
    keys = {"image": [pixels[i] for i in range(285)],
            "text": [c.strip().lower() for c in records.captions]}
    pairs = set(zip(keys["image"], keys["text"]))
    for query, gallery, side in (("image", "text", 0), ("text", "image", 1)):
        items, answers = set(keys[query]), set(keys[gallery])
        expected = np.mean([sum((pair[side] == q) for pair in pairs) / len(answers)
                            for q in items])
        assert metrics[f"{query}_to_{gallery}_num_queries"] == len(items)
        assert metrics[f"{query}_to_{gallery}_num_gallery"] == len(answers)
        assert metrics[f"{query}_to_{gallery}_chance_R@1"] == pytest.approx(expected)
    for direction in ("image_to_text", "text_to_image"):
        for key in ("R@1", "R@5", "R@10", "mean_rank", "median_rank", "mAP@10"):
            assert f"{direction}_{key}" in metrics
        assert 1 <= metrics[f"{direction}_mean_rank"] <= 285
    capsys.readouterr()
    assert cli.main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "retrieval among 285 image-caption pairs" in out
    assert "image_to_text" in out and "text_to_image" in out and "chance R@1" in out
    assert f"{metrics['image_to_text_R@1']:.3f}" in out
    # Other data with a corrupt image: an error naming it, or, with
    # --on-error skip, retrieval among the other pairs (the run keeps "raise").
    other = tmp_path / "other.jsonl"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but cut short")
    rows = [{"path": p, "caption": c} for p, c in zip(records.paths[:40], records.captions)]
    rows.append({"path": str(broken), "caption": "a broken picture"})
    other.write_text("".join(json.dumps({**r, "split": "test"}) + "\n" for r in rows))
    # Named before any image or caption is encoded (retrieval ran first).
    from mmtl_tf.tasks import dual_encoder

    scored = []
    original_retrieval = dual_encoder.evaluate_retrieval
    monkeypatch.setattr(dual_encoder, "evaluate_retrieval",
                        lambda *a, **k: scored.append(1) or original_retrieval(*a, **k))
    assert cli.main(["evaluate", str(run), "--data", str(other)]) == 1
    assert "broken.png" in capsys.readouterr().err
    assert scored == []
    assert cli.main(["evaluate", str(run), "--data", str(other), "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "retrieval among 40 image-caption pairs" in captured.out
    assert "warning: skipped 1 bad image file in the test split (--on-error skip)" in captured.err
    assert "broken.png" in captured.err
    assert cli.main(["evaluate", str(run)]) == 0
    assert "retrieval among 285 image-caption pairs" in capsys.readouterr().out
    assert cli.main(["export", str(run), "--saved-model", str(tmp_path / "sm")]) == 0
    assert (tmp_path / "sm" / "saved_model.pb").exists()


def test_summary_rows_name_the_loss_the_run_trained_with():
    # A SigLIP run's row said "dual encoder (CLIP loss)".
    from mmtl_tf.tasks import audio_text, dual_encoder

    image = {"num_pairs": 5, "mean_R@1": 0.2, "mean_R@10": 1.0, "chance_R@1": 0.2,
             "chance_R@10": 1.0}
    audio = {"num_pairs": 5, "chance_R@10": 1.0, "audio_to_text_R@10": 1.0,
             "text_to_audio_R@10": 1.0}
    for loss, name in (("siglip", "SigLIP loss"), ("clip", "CLIP loss"), (None, "CLIP loss")):
        extra = {} if loss is None else {"loss": loss}
        rows = dual_encoder.summary({"test": image, "params": 1, "train_seconds": 1, **extra})
        rows += audio_text.summary({"test": {"train": audio}, "params": 1, "train_seconds": 1,
                                    **extra})
        assert {r["model"] for r in rows} == {f"dual encoder ({name})",
                                              f"audio-text dual encoder ({name})"}


def test_dual_encoder_checks_the_test_files_before_training(tmp_path, capsys):
    records = load_image_text_records("default", "validation", require_label=False)
    rows = split_rows(records, {"train": 40, "validation": 8, "test": 8})
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n")
    rows[-1]["path"] = str(tmp_path / "corrupt.png")
    err = train_error(capsys, tmp_path / "pairs.jsonl", rows, "dual-encoder",
                      "--out", str(tmp_path / "run"))
    assert "pairs.jsonl:56 (" in err and "corrupt.png): cannot decode image" in err


@pytest.mark.slow
@pytest.mark.parametrize("task,extra", [
    ("siamese", []), ("triplet", ["--mining", "batch_hard"]), ("triplet", ["--mining", "explicit"]),
    ("matching", [])])
def test_metric_learning_tasks(task, extra, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", task, "--size", "tiny", "--out", str(run), "--no-jit-compile",
                     *extra]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    # Another global seed, as in a fresh process: evaluate drew other pairs and
    # episodes than training had and overwrote the run's test figures.
    import tensorflow as tf

    tf.random.set_seed(12345)
    assert cli.main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    again = json.loads((run / "metrics.json").read_text())
    for key, value in metrics["test"].items():
        assert again["test"][key] == pytest.approx(value, abs=1e-6), key
    if task == "matching":
        assert "5-way 1-shot" in out and "5-way 5-shot" in out
        assert 0.0 <= metrics["test"]["5way_1shot_accuracy"] <= 1.0
        assert metrics["baselines"]["chance"] == 0.2
        assert not set(metrics["test_classes"]) & set(metrics["train_classes"])
        # The training classes (4 of the 9) in episodes of as many: it asked
        # for 5 classes and always failed.
        assert cli.main(["evaluate", str(run), "--split", "validation"]) == 0
        out = capsys.readouterr().out
        way = len(metrics["train_classes"])
        assert f"{way}-way 1-shot" in out and f"{1 / way:.3f}" in out
    else:
        assert "1-NN category accuracy" in out
        assert 0.0 <= metrics["test"]["category_R@1"] <= 1.0
    assert cli.main(["export", str(run), "--saved-model", str(tmp_path / "sm")]) == 0
    assert (tmp_path / "sm" / "saved_model.pb").exists()


def test_the_matching_summary_sets_each_accuracy_against_raw_pixels():
    # It showed chance only, so a run below raw pixels read as a success.
    metrics = {"test": {"5way_1shot_accuracy": 0.484, "5way_1shot_pixels": 0.572,
                        "5way_1shot_ci95": 0.01, "5way_5shot_accuracy": 0.604,
                        "5way_5shot_pixels": 0.684, "5way_5shot_ci95": 0.01},
               "baselines": {"chance": 0.2}, "params": 10, "train_seconds": 1.0}
    rows = matching.summary(metrics)
    assert [(r["value"], r["baseline"], r["baseline_value"]) for r in rows] == [
        (0.484, "raw-pixel matching", 0.572), (0.604, "raw-pixel matching", 0.684)]
    assert rows[0]["metric"] == "5-way 1-shot accuracy, held-out classes (chance 0.200)"


def test_matching_class_split():
    names = [f"c{i}" for i in range(9)]
    labels = np.repeat(np.arange(9), [30, 30, 30, 30, 30, 30, 30, 30, 3])
    config = {"eval_shots": [1, 5], "eval_queries": 10, "eval_way": 2, "seed": 0,
              "num_test_classes": 5, "data": "x"}
    train, test = matching.split_classes(names, labels, config)
    assert len(test) == 5 and 8 not in test          # class 8 is too small to test on
    assert not set(train) & set(test) and set(train) | set(test) == set(range(9))
    fixed, held = matching.split_classes(names, labels, {**config, "test_classes": ["c1", "c2"]})
    assert held == [1, 2]
    with pytest.raises(ValueError, match=r"test_classes \['nope'\]"):
        matching.split_classes(names, labels, {**config, "test_classes": ["nope"]})
    with pytest.raises(DataError, match="6 held-out classes with at least 15 examples"):
        matching.split_classes(names, labels[:150], {**config, "num_test_classes": 6})


def test_matching_checks_the_test_episodes_before_training():
    # Fewer held-out classes than eval_way, or held-out classes too small for
    # the largest test episode, failed only after training, in label indices.
    names = ["red", "green", "blue", "cyan", "pink", "gold"]
    labels = np.repeat(np.arange(6), [30, 30, 30, 3, 30, 4])
    config = {"eval_shots": [1, 5], "eval_queries": 10, "eval_way": 5, "seed": 0,
              "num_test_classes": 3, "data": "x"}
    with pytest.raises(ValueError, match=r"num_test_classes=3 \(--num-test-classes\) is "
                                         r"fewer than eval_way=5"):
        matching.split_classes(names, labels, config)
    with pytest.raises(ValueError, match="test_classes names 2 classes.*eval_way=5"):
        matching.split_classes(names, labels, {**config, "test_classes": ["red", "blue"]})
    small = {**config, "eval_way": 3, "test_classes": ["red", "cyan", "gold"]}
    with pytest.raises(DataError) as e:
        matching.split_classes(names, labels, small)
    message = str(e.value)
    assert "x: 3-way test episodes of up to 5 shots and 10 queries" in message
    assert "eval_way=3, eval_shots=[1, 5], eval_queries=10" in message
    assert "need 3 held-out classes with at least 15 examples; of test_classes only 1" in message
    assert "'red': 30, 'cyan': 3, 'gold': 4" in message
    with pytest.raises(DataError, match="'cyan': 3"):
        matching.split_classes(names, labels, {**config, "num_test_classes": 5})
    assert matching.split_classes(names, labels, {**small, "test_classes": ["red", "green",
                                                                            "blue"]})


def test_matching_num_test_classes_below_eval_way_stops_before_training(tmp_path, capsys):
    code = cli.main(["train", "matching", "--size", "tiny", "--num-test-classes", "3",
                     "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 2 and "loss" not in out
    assert "num_test_classes=3 (--num-test-classes) is fewer than eval_way=5" in err
    assert not (tmp_path / "run").exists()


def test_bad_task_options_exit_2(capsys):
    for argv in (["train", "triplet", "--mining", "hardest"],
                 ["train", "dual-encoder", "--loss", "infonce"],
                 ["train", "siamese", "--distance", "manhattan"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_retrieval_table_prints_ranks_alike_whatever_their_size():
    # Ranks of 100 or more were printed as integers beside others with three
    # decimals ("143" next to "95.456", median rank "82.000").
    from mmtl_tf.tasks.shared_space import format_retrieval_table

    metrics = {"num_pairs": 300, "chance_R@1": 0.0033}
    for direction, mean, median in (("a_to_b", 143.0, 82.0), ("b_to_a", 95.456, 6.0)):
        metrics.update({f"{direction}_R@1": 0.25, f"{direction}_mean_rank": mean,
                        f"{direction}_median_rank": median, f"{direction}_mAP@10": 0.5})
    table = format_retrieval_table(metrics, ("a_to_b", "b_to_a"), ks=(1,))
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows["a_to_b"] == ["0.250", "143.0", "82.0", "0.500", "0.003"]
    assert rows["b_to_a"] == ["0.250", "95.5", "6.0", "0.500", "0.003"]


def test_dual_encoder_retrieval_after_a_skipped_image_keeps_the_caption_rules(tmp_path):
    # The caption keys were built from every row: with one image file skipped
    # their length was wrong and a silent fallback scored without them.
    import mmtl_tf
    from mmtl_tf.data.text import make_text_vectorizer
    from mmtl_tf.tasks import common, dual_encoder

    records = load_image_text_records("default", "test", require_label=False)
    captions = ["a red thing", "a red thing", "a blue thing", "a blue thing", "green", "green"]
    rows = [{"path": p, "caption": c, "split": "test"}
            for p, c in zip(records.paths[:6], captions)]
    (tmp_path / "bad.png").write_text("not an image")
    rows[-1]["path"] = str(tmp_path / "bad.png")
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {**common.resolve_config("dual_encoder", "tiny"),
              "data": str(tmp_path / "pairs.jsonl"), "on_error": "skip", "batch_size": 4}
    vectorizer = make_text_vectorizer(captions, vocab_size=20,
                                      sequence_length=int(config["sequence_length"]))
    model = dual_encoder.build_model(config)
    with pytest.warns(mmtl_tf.DataWarning, match="bad.png"):
        got = dual_encoder.retrieval(model, config, vectorizer, "test")
    assert got["num_pairs"] == 5
    with pytest.warns(mmtl_tf.DataWarning, match="bad.png"):
        ds = dual_encoder._dataset(config, vectorizer, "test")
    expected = mmtl_tf.metrics.evaluate_retrieval(
        model, ds, match_keys={"image": "inputs", "text": captions[:5]},
        collapse=["image", "text"])
    # Three distinct captions, two of them with two correct images among 5:
    # caption -> image chance R@1 (2+2+1)/3/5; image -> caption 1/3.
    assert got["text_to_image_chance_R@1"] == pytest.approx(5 / 15)
    assert got["image_to_text_chance_R@1"] == pytest.approx(1 / 3)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200),
           "cyan": (30, 200, 200), "gold": (220, 180, 40)}


def _labelled_rows(tmp_path, counts):
    """Rows (path, caption, label, split) of small coloured PNGs:
    `counts={split: {class: n}}`."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for split, per_class in counts.items():
        for label, n in per_class.items():
            for i in range(n):
                path = tmp_path / f"{split}_{label}_{i}.png"
                pixels = np.clip(np.array(COLOURS[label]) + rng.integers(-20, 20, (8, 8, 3)),
                                 0, 255).astype("uint8")
                Image.fromarray(pixels).save(path)
                rows.append({"path": str(path), "caption": f"a {label} square", "label": label,
                             "split": split})
    return rows


FOUR = {"red": 6, "green": 6, "blue": 6, "cyan": 6}


@pytest.mark.parametrize("task", ["siamese", "triplet"])
def test_metric_learning_checks_the_test_split_before_training(task, tmp_path, capsys):
    # No test rows: triplet trained, then a raw UnboundLocalError from
    # model.predict on no images; siamese "pairs need at least 2 classes; got 0".
    data = tmp_path / "data.jsonl"
    rows = _labelled_rows(tmp_path, {"train": FOUR, "validation": {"red": 2, "blue": 2}})
    err = train_error(capsys, data, rows, task, "--out", str(tmp_path / "run"))
    assert f"{data}: the 'test' split has no rows (rows per split: train 24, validation 4, " \
           "test 0)." in err
    assert f"{task.capitalize()} evaluates " in err and "give some rows the split 'test'" in err
    # Test images only of a class that training never saw: nothing to retrieve.
    rows += _labelled_rows(tmp_path, {"test": {"gold": 3}})
    err = train_error(capsys, data, rows, task, "--out", str(tmp_path / "run"))
    assert "none of the 3 test images is of a class that the training split has " \
           "(test: 'gold': 3; train: 'blue': 6, 'cyan': 6, 'green': 6, 'red': 6)" in err
    assert not (tmp_path / "run").exists()


def test_siamese_checks_the_test_pairs_before_training(tmp_path, capsys):
    # One test class: "pairs need at least 2 classes; got 1." after training.
    rows = _labelled_rows(tmp_path, {"train": FOUR, "validation": {"red": 2, "blue": 2},
                                     "test": {"cyan": 4}})
    err = train_error(capsys, tmp_path / "data.jsonl", rows, "siamese")
    assert "data.jsonl: pairs need at least 2 classes, one of them with 2 or more images, in " \
           "the 'test' split; it has 1 class ('cyan': 4); siamese evaluates pair accuracy" in err


def test_siamese_threshold_sits_in_the_gap_it_separates():
    from mmtl_tf.tasks.siamese import best_threshold

    # One same-class pair (repeated) and different pairs farther away: the
    # threshold was the repeated pair's own distance, 0.01.
    distances = np.array([0.01] * 5 + [0.3, 0.5, 0.7])
    same = np.array([True] * 5 + [False] * 3)
    assert best_threshold(distances, same) == pytest.approx(0.155)
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 12))
        d = np.round(rng.random(n), 1)  # ties
        s = rng.random(n) < 0.5
        t = best_threshold(d, s)
        best = max(np.mean((d <= c) == s) for c in np.concatenate([[-1.0], d]))
        assert np.mean((d <= t) == s) == best  # the best accuracy on these pairs
        assert not np.any(np.isclose(d, t))  # never on an observed distance
    assert best_threshold([0.2, 0.4], [False, False]) < 0.2
    assert best_threshold([0.2, 0.4], [True, True]) > 0.4
    # Empty input failed with an IndexError; NaN distances (a diverged model)
    # gave a threshold as if they were the largest.
    with pytest.raises(ValueError, match="at least one; got"):
        best_threshold([], [])
    with pytest.raises(ValueError, match="1 of 3 distances are not finite"):
        best_threshold([0.1, np.nan, 0.3], [True, False, False])


def test_siamese_without_validation_pairs_picks_the_threshold_on_training_pairs(tmp_path,
                                                                                  capsys,
                                                                                  monkeypatch):
    # One validation image per class: "pairs need a class with at least 2
    # examples; every class has one." (no split, no data named, no reason).
    data = tmp_path / "data.jsonl"
    rows = _labelled_rows(tmp_path, {"train": FOUR, "validation": {"red": 1, "blue": 1},
                                     "test": {"red": 2, "blue": 2, "cyan": 2}})
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = tmp_path / "run"
    assert cli.main(["train", "siamese", "--size", "tiny", "--data", str(data), "--out",
                     str(run), "--no-jit-compile"]) == 0
    err = capsys.readouterr().err
    assert (f"warning: {data}: pairs need at least 2 classes, one of them with 2 or more "
            "images, in the 'validation' split; it has 2 classes ('blue': 1, 'red': 1); "
            "Siamese picks its distance threshold") in err
    assert "picked on training pairs instead" in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threshold_split"] == "train"
    assert json.loads((run / "run.json").read_text())["threshold_split"] == "train"
    assert cli.main(["evaluate", str(run)]) == 0
    assert "pair accuracy (threshold from training pairs)" in capsys.readouterr().out
    assert cli.main(["evaluate", str(run), "--split", "validation"]) == 1
    err = capsys.readouterr().err
    assert "in the 'validation' split; it has 2 classes" in err
    assert "`mmtl-tf evaluate --split validation` of a siamese run measures pair" in err
    # The training images query each other, none itself: chance 5 of the 23
    # others (each of 4 classes has 6 training images), not 6 of 24.
    assert cli.main(["evaluate", str(run), "--split", "train"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["baselines"]["category_R@1_chance"] == pytest.approx(5 / 23)
    assert metrics["train"]["category_num_queries"] == 24
    # A corrupt test image is named before any pair is scored (evaluate
    # scored them all first and then reported it).
    from mmtl_tf.tasks import siamese

    scored = []
    original = siamese._pair_accuracy
    monkeypatch.setattr(siamese, "_pair_accuracy",
                        lambda *a, **k: scored.append(1) or original(*a, **k))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with data.open("a") as f:
        f.write(json.dumps({"path": str(broken), "caption": "a red square", "label": "red",
                            "split": "test"}) + "\n")
    assert cli.main(["evaluate", str(run)]) == 1
    assert "broken.png" in capsys.readouterr().err
    assert scored == []


def test_triplet_without_validation_rows_trains_and_says_so(tmp_path, capsys):
    # Explicit triplets stopped on "triplets need at least 2 classes; got 0"
    # (no split named); mined batches went on without validation silently.
    data = tmp_path / "data.jsonl"
    rows = _labelled_rows(tmp_path, {"train": FOUR, "test": {"red": 2, "blue": 2}})
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert cli.main(["train", "triplet", "--size", "tiny", "--mining", "explicit", "--data",
                     str(data), "--out", str(tmp_path / "run"), "--no-jit-compile"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {data}: the 'validation' split has no rows (rows per split: train 24, " \
           "validation 0, test 4); no validation loss: the best epoch is the one with the " \
           "lowest training loss." in err


def test_retrieval_of_the_training_images_leaves_each_query_out():
    # evaluate --split train: every image found itself, R@1 = 1.000 for the
    # model and the pixel baseline alike.
    import keras

    from mmtl_tf.tasks import metric_learning

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [5, 4, 3, 1]).astype(np.int32)
    images = rng.integers(0, 256, (len(labels), 4, 4, 3)).astype(np.uint8)
    flat = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten()])
    split = {"images": images, "labels": labels}
    retrieval, baselines = metric_learning.retrieval_report(
        flat, {"train": split, "test": split}, leave_one_out=True)

    def nearest_other(x):  # cosine, the query itself left out
        x = x.reshape(len(x), -1).astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        scores = x @ x.T
        np.fill_diagonal(scores, -np.inf)
        return labels[scores.argmax(axis=1)]

    answerable = labels != 3                       # class 3 has no other image
    pixels = images.reshape(len(images), -1).astype(np.float32)
    pixels -= pixels.mean(axis=1, keepdims=True)
    assert retrieval["category_num_queries"] == 12
    assert retrieval["category_R@1"] == pytest.approx(
        np.mean((nearest_other(images) == labels)[answerable]))
    assert retrieval["category_R@1"] < 1
    assert baselines["category_R@1_pixels"] == pytest.approx(
        np.mean((nearest_other(pixels) == labels)[answerable]))
    # Chance: the share of the 12 other images that have the query's label.
    sizes = np.array([5, 4, 3, 1])[labels][answerable]
    assert baselines["category_R@1_chance"] == pytest.approx(np.mean((sizes - 1) / 12))
    # Majority class among the other images: class 0 (5), but class 0's own
    # images see 4 of class 0 and 4 of class 1 (ties: the first, class 0);
    # over the 12 queries R@1 scores (class 3's image, left out, was counted
    # as wrong: 5 / 13).
    assert baselines["majority_class_accuracy"] == pytest.approx(5 / 12)


def test_retrieval_never_finds_the_querys_own_file():
    # A file that two rows name (an image with two captions; another label on
    # a second row): leave-one-out left out the query row alone, so every
    # image found its other row, R@1 1.000 for the model and the raw pixels.
    import keras

    from mmtl_tf.metrics import retrieval_metrics
    from mmtl_tf.tasks import metric_learning

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [5, 4, 3, 2]).astype(np.int32)
    images = rng.integers(0, 256, (len(labels), 4, 4, 3)).astype(np.uint8)
    paths = np.array([f"/data/img/{i}.png" for i in range(len(labels))])
    # Rows 14-27 repeat rows 0-13; row 28 names file 0 with label 3 (so class
    # 3 has 2 files, and file 0 two labels); row 29 is "./"-spelled file 1.
    labels = np.concatenate([labels, labels, [3, labels[1]]]).astype(np.int32)
    images = np.concatenate([images, images, images[:2]])
    paths = np.concatenate([paths, paths, ["/data/img/0.png", "/data/./img/1.png"]])
    file_of = np.array([int(p.rsplit("/", 1)[1][:-4]) for p in paths])
    split = {"images": images, "labels": labels, "paths": paths}
    flat = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten()])
    retrieval, baselines = metric_learning.retrieval_report(
        flat, {"train": split, "test": split}, leave_one_out=True)

    own = file_of[:, None] == file_of[None, :]
    positives = (labels[:, None] == labels[None, :]) & ~own
    answerable = positives.any(axis=1)
    pixels = images.reshape(len(images), -1).astype(np.float32)
    pixels -= pixels.mean(axis=1, keepdims=True)
    for x, got in ((images.reshape(len(images), -1), retrieval["category_R@1"]),
                   (pixels, baselines["category_R@1_pixels"])):
        expected = retrieval_metrics(x[answerable], x, positives[answerable], ks=(1,),
                                     exclude=own[answerable])
        assert got == pytest.approx(expected["R@1"])
        assert got < 1
    assert retrieval["category_num_queries"] == int(answerable.sum()) == 30
    assert baselines["category_R@1_chance"] == pytest.approx(
        np.mean(positives.sum(axis=1) / (~own).sum(axis=1)))
    # Majority class among the other files' rows.
    votes = np.stack([np.bincount(labels[~own[i]], minlength=4) for i in range(30)])
    assert baselines["majority_class_accuracy"] == pytest.approx(
        np.mean(votes.argmax(axis=1) == labels))
    # Test images query the training images: a test row naming a training
    # file does not find it (the same file in both splits).
    test = {"images": images[:3], "labels": labels[:3],
            "paths": np.array(["/data/img/0.png", "/data/img/other.png", "/data/img/2.png"])}
    got, _ = metric_learning.retrieval_report(flat, {"train": split, "test": test})
    own = np.array([file_of == 0, np.zeros(30, bool), file_of == 2])
    x = images.reshape(len(images), -1)
    expected = retrieval_metrics(x[:3], x, (labels[:3, None] == labels[None, :]) & ~own,
                                 exclude=own)
    assert {k: got[f"category_{k}"] for k in expected} == pytest.approx(expected)


@pytest.mark.parametrize("split,words", [
    ("test", "test: 18 distinct test images query the training images"),
    ("validation", "validation: 18 distinct validation images query the training images"),
    ("train", "train: 18 distinct training images query the other training images")])
def test_siamese_table_columns_line_up(split, words):
    # "pair accuracy (threshold from validation)" overflowed the names'
    # column and shifted its value; other splits were called "test images".
    from mmtl_tf.tasks import siamese

    baselines = {"category_R@1_chance": 0.125, "category_R@1_pixels": 0.375,
                 "category_mAP@10_pixels": 0.0625, "pair_majority": 0.5}
    metrics = {split: {"category_R@1": 0.5, "category_R@5": 0.75, "category_mAP@10": 0.25,
                       "category_num_queries": 18, "pair_accuracy": 0.625}}
    # As common.write_metrics stores them: the test split's baselines at the
    # top level, another split's beside its figures.
    if split == "test":
        metrics["baselines"] = baselines
    else:
        metrics[split]["baselines"] = baselines
    lines = siamese.format_metrics(metrics, split).splitlines()
    assert lines[0].startswith(words)
    value_end = lines[1].index("value") + len("value")
    for line, value in zip(lines[2:], ("0.500", "0.750", "0.250", "0.625")):
        assert line.index(value) + len(value) == value_end, line
    assert lines[-1].startswith("pair accuracy (threshold from validation)")
    assert lines[-1].split()[-2:] == ["0.625", "0.500"]


@pytest.mark.parametrize("with_files", [False, True])
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_category_retrieval_per_chunk_equals_the_matrix_path(monkeypatch, leave_one_out,
                                                             with_files):
    # Integer and string labels build positives and the leave-one-out mask
    # (and, with files, the mask of the query's own file) one chunk of
    # queries at a time (never positives_from_labels' (Q, G) matrix); the
    # metrics must be those of the matrix path, which float labels still take.
    from mmtl_tf.tasks import shared_space

    rng = np.random.default_rng(7)
    n = 70
    gallery = rng.integers(-1, 2, (n, 3)).astype(np.float32)
    gallery[np.all(gallery == 0, axis=1)] = 1
    gallery[1::4] = gallery[0::4][:len(gallery[1::4])]  # exact ties
    labels = rng.integers(0, 6, n).astype(np.int32)
    labels[-1] = 9  # a class with one image: no other item when left out
    if leave_one_out:
        query, query_labels = gallery, labels
    else:
        query = rng.integers(-1, 2, (25, 3)).astype(np.float32)
        query[np.all(query == 0, axis=1)] = 1
        query_labels = rng.integers(0, 8, 25).astype(np.int32)  # 6, 7: not in the gallery
    files = {}
    if with_files:  # files named by several rows, some in both query and gallery
        gallery_files = [f"f{i}.png" for i in rng.integers(0, 40, n)]
        files = {"query_files": gallery_files if leave_one_out else
                 [f"f{i}.png" for i in rng.integers(30, 60, len(query))],
                 "gallery_files": gallery_files}
    codes = shared_space._file_codes(files.get("query_files"), files.get("gallery_files"),
                                     len(query), n, leave_one_out)
    expected = shared_space._category_retrieval_matrix(query, query_labels, gallery, labels,
                                                       (1, 5, 10), leave_one_out, codes)
    if not with_files:  # as before files were given
        assert expected == shared_space._category_retrieval_matrix(
            query, query_labels, gallery, labels, (1, 5, 10), leave_one_out)
    calls = []
    real = shared_space.positives_from_labels
    monkeypatch.setattr(shared_space, "positives_from_labels",
                        lambda *a: calls.append(a) or real(*a))
    for q_labels, g_labels in ((query_labels, labels),
                               (query_labels.astype(str), labels.astype(str))):
        got = shared_space.category_retrieval(query, q_labels, gallery, g_labels,
                                              leave_one_out=leave_one_out, **files)
        assert got == expected
    assert calls == []
    if not with_files:
        assert expected["num_queries"] == (n - 1 if leave_one_out else
                                           int(np.isin(query_labels, labels).sum()))
    floats = shared_space.category_retrieval(query, query_labels.astype(float), gallery,
                                             labels.astype(float), leave_one_out=leave_one_out,
                                             **files)
    assert floats == expected and len(calls) == 1


def test_matching_with_too_few_classes_left_to_train_on_says_what_it_counted():
    # It said "fewer than 2 classes left for training after holding out 5",
    # also for `mmtl-tf evaluate RUN --data OTHER`, naming no setting.
    from mmtl_tf.errors import DataError
    from mmtl_tf.tasks.matching import split_classes

    class_names = [f"c{i}" for i in range(6)]
    labels = np.repeat(np.arange(6), 12)
    config = {"data": "other", "eval_way": 5, "eval_queries": 5, "eval_shots": [1, 5],
              "num_test_classes": 5, "seed": 0}
    with pytest.raises(DataError) as raised:
        split_classes(class_names, labels, config)
    message = str(raised.value)
    assert message.startswith("other: 6 classes; 5 are held out for the test episodes, which "
                              "leaves 1 with at least 2 examples to train on (examples per "
                              "class: 'c")
    assert ("and training (or evaluating the training classes) needs 2 or more: hold out "
            "fewer (num_test_classes=5, --num-test-classes; at least eval_way=5), or use data "
            "with more classes.") in message
    train, test = split_classes(class_names + ["c6"], np.repeat(np.arange(7), 12), config)
    assert len(test) == 5 and len(train) == 2
    # Evaluating the held-out classes of other data needs no training classes.
    train, test = split_classes(class_names, labels, config, need_train=False)
    assert len(test) == 5 and len(train) == 1


@pytest.mark.parametrize("recipe", ["dual_encoder_pretrained", "matching_pretrained"])
def test_the_small_cnn_with_a_pretrained_recipe_is_refused(recipe, capsys):
    # --image-backbone small_cnn with a pretrained recipe built a frozen small
    # CNN (its weights="imagenet" ignored) and trained to chance, silently.
    import mmtl_tf
    from mmtl_tf.tasks import shared_space

    config = common.resolve_config(recipe, "base", {"image_backbone": "small_cnn"})
    assert config["image_weights"] == "imagenet" and config["image_trainable"] == "frozen"
    with pytest.raises(ValueError, match=r"image_backbone 'small_cnn' has no pretrained "
                                         r"weights, but the recipe sets image_weights="
                                         r"'imagenet' \(with image_trainable='frozen'\)"):
        shared_space.build_image_tower(config)
    with pytest.raises(ValueError, match=r"the small CNN has no pretrained weights \(weights="
                                         r"'imagenet'; .*pass weights=None\.$"):
        mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 3), weights="imagenet")
    # The recipe's tiny size trains the small CNN from scratch: built as before.
    tiny = common.resolve_config(recipe, "tiny", {})
    tower = shared_space.build_image_tower(tiny)
    assert tower.trainable_weights
    cli._TASK_OPTIONS.update({"--image-backbone"})
    try:
        message = cli._in_cli_words("image_backbone 'small_cnn' has no pretrained weights")
    finally:
        cli._TASK_OPTIONS.clear()
    assert message == "--image-backbone small_cnn has no pretrained weights"
    # head-swap --backbone small_cnn with its recipe's weights: the option to
    # change is named (review finding: it said "pass weights=None").
    with pytest.raises(ValueError) as refused:
        mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 3), weights="imagenet")
    cli._TASK_OPTIONS.update({"--weights"})
    try:
        message = cli._in_cli_words(str(refused.value))
    finally:
        cli._TASK_OPTIONS.clear()
    assert message.endswith("--weights is for keras.applications backbones; pass --weights none.")


def test_the_majority_baseline_counts_the_queries_r_at_1_counts():
    # A test image whose class has no (other) training image is left out of
    # R@1; the majority baseline beside it counted it as wrong (0.2 against
    # 1.0 over the one scored query; 0.429 against 0.6 with leave-one-out).
    import keras

    from mmtl_tf.tasks import metric_learning

    rng = np.random.default_rng(6)
    flat = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten()])

    def split(labels, prefix):
        return {"images": rng.integers(0, 256, (len(labels), 4, 4, 3)).astype(np.uint8),
                "labels": np.asarray(labels), "paths": np.asarray(
                    [f"{prefix}{i}.png" for i in range(len(labels))])}

    train, test = split([0, 0, 0, 1, 1, 2], "t"), split([0, 3, 3, 3, 3], "q")
    retrieval, baselines = metric_learning.retrieval_report(flat, {"train": train, "test": test})
    assert retrieval["category_num_queries"] == 1
    assert baselines["majority_class_accuracy"] == 1.0
    train = split([0, 0, 0, 1, 1, 2, 3], "t")
    retrieval, baselines = metric_learning.retrieval_report(
        flat, {"train": train, "test": train}, leave_one_out=True)
    assert retrieval["category_num_queries"] == 5
    # Classes 2 and 3 have one image: left out; each other query's guess is
    # the most frequent label among the other images.
    expected = []
    for i, label in enumerate(train["labels"]):
        others = np.delete(train["labels"], i)
        if label in others:
            values, counts = np.unique(others, return_counts=True)
            expected.append(values[np.argmax(counts)] == label)
    assert baselines["majority_class_accuracy"] == pytest.approx(np.mean(expected)) == 0.6


def test_captions_that_differ_only_in_case_punctuation_or_spaces_are_one_item(tmp_path):
    # Keyed by strip().lower(), "A red circle." and "a red circle" (the same
    # token ids) were two items, and the exact tie counted as a miss.
    from mmtl_tf.data.text import make_text_vectorizer
    from mmtl_tf.tasks import common, dual_encoder
    from mmtl_tf.tasks.shared_space import caption_keys

    # The key is what the vectorizer makes of a caption: equal keys, equal
    # token ids; two different out-of-vocabulary words stay apart.
    words = make_text_vectorizer(["a red circle", "a green square"], vocab_size=20,
                                 sequence_length=6)
    texts = ["  A red\tcircle. ", "a red circle", "Café!", "CAFE\u0301", "cafe",
             "a red zebra", "a red yak", "a red circle and more words"]
    keys = caption_keys(texts, words)
    ids = [tuple(row) for row in words(texts).numpy().tolist()]
    assert keys[0] == keys[1] and keys[2] != keys[3] and keys[5] != keys[6]
    assert ids[5] == ids[6]  # both "a red [UNK]" to the model, yet two captions
    for i in range(len(texts)):
        for j in range(len(texts)):
            if keys[i] == keys[j]:
                assert ids[i] == ids[j], (texts[i], texts[j])
    chars = make_text_vectorizer(["ab"], vocab_size=20, sequence_length=3, split="character")
    assert caption_keys(["A b.", "ab", "abcd", "abc"], chars)[2:] == [b"a\x1fb\x1fc"] * 2
    assert caption_keys(["x"], object()) == "inputs"
    records = load_image_text_records("default", "test", require_label=False)
    captions = ["A red circle.", "a red circle", "a green   square", "a green square"]
    rows = [{"path": p, "caption": c, "split": "test"} for p, c in zip(records.paths, captions)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {**common.resolve_config("dual_encoder", "tiny"),
              "data": str(tmp_path / "pairs.jsonl"), "batch_size": 4}
    vectorizer = make_text_vectorizer(captions, vocab_size=20,
                                      sequence_length=int(config["sequence_length"]))
    got = dual_encoder.retrieval(dual_encoder.build_model(config), config, vectorizer, "test")
    assert (got["image_to_text_num_queries"], got["image_to_text_num_gallery"]) == (4, 2)
    # Each image has one correct caption among the two distinct ones.
    assert got["image_to_text_chance_R@1"] == pytest.approx(1 / 2)


def test_category_retrieval_with_no_answerable_query_says_why():
    # It said "need at least one query and one gallery item" although both
    # were given.
    from mmtl_tf.tasks.shared_space import category_retrieval

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"none of the 3 queries can be answered: no gallery "
                                         r"item shares a query's label"):
        category_retrieval(rng.random((3, 4)), ["a", "a", "b"], rng.random((5, 4)),
                           ["c"] * 5)
    got = category_retrieval(rng.random((3, 4)), ["a", "a", "c"], rng.random((5, 4)),
                             ["c"] * 5)
    assert got["num_queries"] == 1 and got["chance_R@1"] == 1.0
