"""`mmtl-tf train fusion|dual-encoder|audio-text --on-error skip`: the saved
vocabulary is adapted on the training rows kept after their files are checked.

Before, the tasks adapted it on every valid training row before any file was
read, so rows skipped for a corrupt image or audio file still put their
words into `text_vectorizer.json` (and into the random BERT's WordPiece
vocabulary of the dual encoder's tiny pretrained recipe)."""

import json
import os
import shutil

import pytest

from mmtl_tf import cli
from mmtl_tf.data import load_audio_text_records, load_image_text_records
from tests.bad_runs import split_rows

# Only the captions of the rows with a bad file hold it (the bundled captions
# are English emoji names): a word for word vocabularies, Cyrillic letters for
# the audio-text recipe's character vocabulary.
WORD = "жираф"


def _vocabulary(run, recipe):
    if recipe == "dual_encoder_pretrained":  # a random BERT: a WordPiece vocabulary
        path = run / "text_preprocessor" / "tokenizer_assets" / "vocabulary.txt"
        return path.read_text(encoding="utf-8").splitlines()
    return json.loads((run / "text_vectorizer.json").read_text(encoding="utf-8"))["vocabulary"]


@pytest.mark.parametrize("task,recipe", [("fusion", None), ("dual-encoder", None),
                                         ("dual-encoder", "dual_encoder_pretrained"),
                                         ("audio-text", None)])
def test_rows_skipped_for_a_bad_file_do_not_shape_the_saved_vocabulary(
        task, recipe, tmp_path, capsys):
    if task == "audio-text":
        records = load_audio_text_records("default", "validation", require_label=False)
        bad_files, content = [tmp_path / f"bad{i}.wav" for i in range(2)], b"not audio"
    else:
        records = load_image_text_records("default", "validation")
        bad_files, content = [tmp_path / f"corrupt{i}.png" for i in range(2)], b"\x89PNG\r\n"
    rows = split_rows(records, {"train": 10, "validation": 4, "test": 4},
                      labels=task == "fusion")
    if task == "fusion":  # two classes, in every split
        for i, row in enumerate(rows):
            row["label"] = ("Symbols", "Flags")[i % 2]
    for row, bad in zip(rows, bad_files):  # two training rows with a bad file: skipped
        bad.write_bytes(content)
        row["path"] = str(bad)
        row["caption"] = f"{WORD} {WORD}"
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                    encoding="utf-8")
    run = tmp_path / "run"
    argv = ["train", task, "--size", "tiny", "--data", str(data), "--out", str(run),
            "--on-error", "skip", "--batch-size", "4", "--epochs", "1", "--no-jit-compile"]
    if recipe:
        argv += ["--recipe", recipe]
    assert cli.main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "skipped 2 bad" in err and all(bad.name in err for bad in bad_files), err
    vocabulary = _vocabulary(run, recipe)
    kept_token = "e" if task == "audio-text" else "flag"  # character / word vocabulary
    assert kept_token in vocabulary
    assert not [token for token in vocabulary if "ж" in token], vocabulary


def test_fusion_classes_and_baseline_come_from_the_split_of_the_recipe_s_seed(tmp_path, capsys):
    # A captions file without a split column is split by hashing with the
    # run's seed. The fusion task read its class names and the majority
    # baseline from records split with the default seed 0, so with --seed 3
    # they described other rows than those trained and tested on.
    # The images are copied beside the captions file and named relative to
    # it: the hash split keys on the path relative to the file's folder, so
    # absolute paths into the checkout made the splits (and whether the two
    # seeds' baselines differ) depend on where the checkout lives.
    records = load_image_text_records("default", "validation")
    labels = ("Symbols", "Flags", "Objects")
    rows = []
    for i, (p, c) in enumerate(zip(records.paths[:60], records.captions)):
        name = f"{i:02d}{os.path.splitext(p)[1]}"
        shutil.copyfile(p, tmp_path / name)
        rows.append({"path": name, "caption": c, "label": labels[(i * i) % 7 % 3]})
    data = tmp_path / "pairs.csv"
    data.write_text("path,caption,label\n" + "".join(
        f'{r["path"]},"{r["caption"]}",{r["label"]}\n' for r in rows), encoding="utf-8")
    seed = 3
    train = load_image_text_records(str(data), "train", seed=seed)
    test = load_image_text_records(str(data), "test", seed=seed)
    majority = max(set(train.labels), key=train.labels.count)
    expected = test.labels.count(majority) / len(test.labels)
    default_train = load_image_text_records(str(data), "train")
    default_test = load_image_text_records(str(data), "test")
    default_majority = max(set(default_train.labels), key=default_train.labels.count)
    # The seeds give different splits and baselines here (else the test proves nothing).
    assert default_test.labels.count(default_majority) / len(default_test.labels) != expected

    run = tmp_path / "run"
    argv = ["train", "fusion", "--size", "tiny", "--data", str(data), "--out", str(run),
            "--seed", str(seed), "--batch-size", "8", "--epochs", "1", "--no-jit-compile"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["baselines"]["majority_class_accuracy"] == pytest.approx(expected)
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["class_names"] == sorted(set(train.labels))
