import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mmtl_tf import cli
from mmtl_tf.files import LOCK_FILE, foreign_entries
from mmtl_tf.tasks import TASKS, common
from tests.bad_runs import split_rows, train_error


def test_help_names_every_command_and_task(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("quickstart", "train", "evaluate", "export", "bench"):
        assert command in out
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for task in TASKS:
        assert task in out


def _parsers(parser, name="mmtl-tf"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_option_and_argument_has_help():
    parsers = dict(_parsers(cli.build_parser()))
    assert {"mmtl-tf evaluate", "mmtl-tf export", "mmtl-tf train fusion",
            "mmtl-tf train head-swap"} <= set(parsers)
    missing = [f"{name}: {action.dest}" for name, parser in parsers.items()
               for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert not missing
    epilog = cli.build_parser().epilog
    assert "MMTL_TF_CACHE" in epilog and "MMTL_TF_TRACEBACK" in epilog


@pytest.mark.parametrize("argv", [
    ["train", "fusion", "--epochs", "0"],
    ["train", "fusion", "--precision", "float8"],
    ["train", "nosuchtask"],
    ["train", "fusion", "--data", "/no/such/folder"],
    ["train", "fusion", "--dropout", "1.5"],
    ["train", "fusion", "--vocab-size", "2"],  # failed after TensorFlow loaded
    ["train", "fusion", "--image-size", "0"],
    ["train", "triplet", "--margin", "-1"],
    ["train", "head-swap", "--fine-tune-epochs", "-1"],
    ["train", "fusion", "--learning-rate", "inf"],  # trained to NaN, exit 0
    ["train", "audio-text", "--clip-seconds", "inf"],  # an OverflowError traceback
    ["train", "fusion", "--seed", "-1"],  # failed inside NumPy
    ["train", "head-swap", "--unfreeze-layers", "0"],  # failed after phase 1
    ["train", "text-classifier", "--sequence-length", "2"],  # after TensorFlow loaded
    ["evaluate", "/no/such/run"],
    ["export", "."],  # --saved-model missing
    ["frobnicate"],
])
def test_bad_arguments_give_one_line_and_status_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err


@pytest.mark.parametrize("argv,prog,required", [
    (["--bogus"], "mmtl-tf", "COMMAND"), (["train", "--bogus"], "mmtl-tf train", "TASK")])
def test_an_unknown_option_before_the_command_is_named(argv, prog, required, capsys):
    # It said only "the following arguments are required: COMMAND".
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert capsys.readouterr().err.strip() == (
        f"{prog}: error: unrecognized arguments: --bogus; the following arguments are "
        f"required: {required} (see --help)")


def test_sequence_length_ranges_are_the_tasks_own(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "text-classifier", "--sequence-length", "2"])
    assert "'2' must be at least 3 ([CLS], one WordPiece and [SEP])" in capsys.readouterr().err
    parsed = cli.build_parser().parse_args(["train", "fusion", "--sequence-length", "2"])
    assert parsed.sequence_length == 2
    with pytest.raises(SystemExit):
        cli.main(["train", "text-classifier", "--data", "/no/such.csv"])
    assert "neither 'default' nor an existing folder or data file" in capsys.readouterr().err


def test_unknown_benchmark_lists_the_ones_there(capsys):
    assert cli.main(["bench", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no benchmark 'bogus'" in err
    assert "benchmarks here: " in err and "input_pipeline" in err and "/../" not in err
    # Without a name, only NAME is missing (argparse also listed the optional ARGS).
    with pytest.raises(SystemExit):
        cli.main(["bench"])
    assert "required: NAME (see --help)" in capsys.readouterr().err
    # Arguments after the name go to the benchmark, options included.
    assert cli.build_parser().parse_args(["bench", "x", "--images", "5"]).args == [
        "--images", "5"]


def test_quickstart_without_tasks_is_a_usage_error(capsys):
    assert cli.main(["quickstart", "--tasks", " , "]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tasks names no task" in err


@pytest.mark.parametrize("run_json, model, words", [
    ('{"task": "fusion",', None, "run.json: not a valid run file"),
    ("[]", None, "run.json: not a valid run file"),
    ('{"task": "fusion", "config": {}, "class_names": ["a"]}', b"not a zip",
     "model.keras: damaged (not a .keras zip archive)"),
])
def test_damaged_run_folders_are_named_in_one_line(tmp_path, capsys, run_json, model, words):
    (tmp_path / "run.json").write_text(run_json)
    if model is not None:
        (tmp_path / "model.keras").write_bytes(model)
    for argv in (["evaluate", str(tmp_path)],
                 ["export", str(tmp_path), "--saved-model", str(tmp_path / "sm")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err


def test_deterministic_jit_compile_records_that_xla_was_not_used(tmp_path, capsys):
    # Under op determinism Keras compiles every model without XLA, but
    # run.json said "jit_compile": true and nothing else.
    from mmtl_tf import runtime

    assert not runtime.is_deterministic()  # conftest switches it off after each test
    for asked, used in ((True, True), (False, False)):
        info = common.start_run(str(tmp_path / f"plain-{asked}"), "fusion",
                                {"jit_compile": asked, "seed": 0})
        assert info["jit_compile_used"] is used
    run = tmp_path / "run"
    capsys.readouterr()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["train", "fusion", "--size", "tiny", "--epochs", "1",
                         "--deterministic", "--jit-compile", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    # Said once: the library's RuntimeWarning on the model followed the note.
    assert not [str(w.message) for w in caught if "Keras turned jit_compile off" in str(w.message)]
    notes = [line for line in err.splitlines() if ": note: " in line]
    assert notes == ["mmtl-tf train: note: --deterministic trains without XLA (Keras compiles "
                     "without it under op determinism), so --jit-compile is not used; run.json "
                     "records \"jit_compile_used\": false."]
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["jit_compile"] is True and info["config"]["deterministic"] is True
    assert info["jit_compile_used"] is False


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "mmtl_tf", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "mmtl_tf" in out.stdout


def test_train_evaluate_export_a_tiny_fusion_run(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert cli.main(["train", "fusion", "--size", "tiny", "--epochs", "2", "--out", str(run),
                     "--no-jit-compile"]) == 0
    for name in ("model.keras", "history.json", "metrics.json", "curves.png", "run.json",
                 "text_vectorizer.json"):
        assert (run / name).exists(), name
    # Everything a run writes is in common.RUN_ENTRIES, so the run may be replaced.
    assert foreign_entries(run, common.RUN_ENTRIES) == []
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 2 and "val_accuracy" in history
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    capsys.readouterr()
    assert cli.main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"test (285 rows): accuracy={metrics['test']['accuracy']:.4f}" in out
    assert metrics["test"]["rows"] == 285
    # The best any constant answer scores on these rows, beside the figures.
    from mmtl_tf.data import load_image_text_records

    test_labels = load_image_text_records("default", "test").labels
    share = max(test_labels.count(c) for c in set(test_labels)) / len(test_labels)
    assert f"baseline: always the most common class of these rows: accuracy={share:.4f}" in out
    assert cli.main(["export", str(run), "--saved-model", str(tmp_path / "sm")]) == 0
    assert (tmp_path / "sm" / "saved_model.pb").exists()
    # Evaluating on other data (two classes of the test split, no training
    # split) maps labels to the run's classes and keeps the run's own figures.
    test = load_image_text_records("default", "test")
    keep = [i for i, label in enumerate(test.labels) if label in test.class_names[-2:]]
    # The images are copied beside the data file and named relative to it:
    # the hash split keys on the path relative to the file's folder, so with
    # absolute paths into the checkout the rows that a hash split of the
    # unsplit file below (the defect it guards against) would evaluate, and
    # so whether this test caught it, depended on where the checkout lives.
    other = tmp_path / "other.jsonl"
    images = tmp_path / "other_images"
    images.mkdir()
    for i in keep:
        shutil.copyfile(test.paths[i], images / os.path.basename(test.paths[i]))
    other.write_text("".join(json.dumps({"path": f"{images.name}/{os.path.basename(test.paths[i])}",
                                         "caption": test.captions[i], "label": test.labels[i],
                                         "split": "test"}) + "\n"
                             for i in keep))
    assert cli.main(["evaluate", str(run), "--data", str(other)]) == 0
    out = capsys.readouterr().out
    assert f"test of {other} ({len(keep)} rows): accuracy=" in out
    kept = [test.labels[i] for i in keep]
    share = max(kept.count(c) for c in set(kept)) / len(kept)
    assert f"always the most common class of these rows: accuracy={share:.4f}" in out
    stored = json.loads((run / "metrics.json").read_text())
    assert stored["test"] == metrics["test"]
    # Independent reference: the exported SavedModel's class names for those rows.
    import tensorflow as tf

    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    out = serve(image_bytes=tf.constant([open(test.paths[i], "rb").read() for i in keep]),
                caption=tf.constant([test.captions[i] for i in keep]))
    served = [name.decode() for name in out["class_name"].numpy()]
    expected = np.mean([served[k] == test.labels[i] for k, i in enumerate(keep)])
    assert stored["other_data"][str(other)]["test"]["accuracy"] == pytest.approx(expected)
    # Without a split column, every row of other data is evaluated (the 80/10/10
    # hash split gave "test" about a tenth of them); relative paths are kept
    # absolute. The run's own source given as --data is the run's test split.
    unsplit = tmp_path / "unsplit.jsonl"
    unsplit.write_text(other.read_text().replace(', "split": "test"', ""))
    assert '"split"' not in unsplit.read_text()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", str(run), "--data", "unsplit.jsonl"]) == 0
    capsys.readouterr()
    stored = json.loads((run / "metrics.json").read_text())
    assert stored["other_data"][str(unsplit)]["test"]["accuracy"] == pytest.approx(expected)
    # Another split of the same data keeps the first one's figures (the
    # entry was replaced whole).
    assert cli.main(["evaluate", str(run), "--data", "unsplit.jsonl", "--split",
                     "validation"]) == 0
    capsys.readouterr()
    figures = json.loads((run / "metrics.json").read_text())["other_data"][str(unsplit)]
    assert {"test", "validation"} <= set(figures)
    assert figures["test"]["accuracy"] == pytest.approx(expected)
    assert cli.main(["evaluate", str(run), "--data", "default"]) == 0
    assert f"test of default (285 rows): accuracy={metrics['test']['accuracy']:.4f}" in \
        capsys.readouterr().out
    stored = json.loads((run / "metrics.json").read_text())
    assert "default" not in stored["other_data"] and stored["test"] == metrics["test"]
    unsplit.unlink()
    # A corrupt image in that data: the error names it and the CLI's option to
    # skip it; with --on-error skip the evaluation runs on the other rows and
    # the warning names the skipped file, without Python's warning location.
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with other.open("a") as f:
        f.write(json.dumps({"path": str(broken), "caption": "a broken face",
                            "label": test.labels[keep[0]], "split": "test"}) + "\n")
    # ... before the model is run on the other rows (it ran a whole
    # evaluation first, and threw its figures away).
    import keras

    evaluated = []
    original_evaluate = keras.Model.evaluate
    monkeypatch.setattr(keras.Model, "evaluate",
                        lambda self, *a, **k: evaluated.append(1) or original_evaluate(self, *a, **k))
    assert cli.main(["evaluate", str(run), "--data", str(other)]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "--on-error skip" in err and "on_error=" not in err
    assert evaluated == []
    assert cli.main(["evaluate", str(run), "--data", str(other), "--on-error", "skip"]) == 0
    err = capsys.readouterr().err
    assert "mmtl-tf evaluate: warning: skipped 1 bad image file in the test split (--on-error skip):" in err
    assert "broken.png" in err and "DataWarning" not in err
    stored = json.loads((run / "metrics.json").read_text())
    assert stored["other_data"][str(other)]["test"]["accuracy"] == pytest.approx(expected)
    assert json.loads((run / "run.json").read_text())["config"].get("on_error", "raise") == "raise"
    other.unlink()
    broken.unlink()
    shutil.rmtree(images)
    # Evaluating a folder that is not a run is a usage error.
    assert cli.main(["evaluate", str(tmp_path / "sm")]) == 2
    # Training again into the run folder with bad data fails before the old
    # run is touched: every file as it was, no staging folder left behind.
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "captions.csv").write_text("path,caption,label\nmissing.png,a cat,x\n")
    assert cli.main(["train", "fusion", "--size", "tiny", "--data", str(bad),
                     "--out", str(run)]) == 1
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["bad", "run", "sm"]
    # An export must not replace a folder that is not a SavedModel (here the
    # run folder itself) or the current folder ("" is the current folder; the
    # parser refuses it).
    for target, words in ((str(run), "is not a SavedModel"), (".", "is the current folder")):
        assert cli.main(["export", str(run), "--saved-model", target]) == 2
        assert words in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["export", str(run), "--saved-model", ""])
    assert e.value.code == 2 and "argument --saved-model: empty" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # Damaged files of a run are named in one line (they were KeyError tracebacks).
    damaged = tmp_path / "damaged"
    for name, text, words in (
            ("text_vectorizer.json", '{"x": 1}', "text_vectorizer.json: not a text vectorizer"),
            ("text_vectorizer.json", "garbage", "text_vectorizer.json: not a text vectorizer"),
            ("run.json", None, "run.json: no 'class_names'")):
        shutil.copytree(run, damaged)
        if name == "run.json":
            info = json.loads((run / "run.json").read_text())
            del info["class_names"]
            text = json.dumps(info)
        (damaged / name).write_text(text)
        for argv in (["evaluate", str(damaged)],
                     ["export", str(damaged), "--saved-model", str(tmp_path / "sm2")]):
            assert cli.main(argv) == 2, (name, argv)
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and words in err, err
        shutil.rmtree(damaged)
    # Files copied from another run, or edited: named, not Keras' messages
    # ("Missing data for input 'audio'", "expected shape=(None, 8), found
    # shape=(None, 24)"), and no export with an ambiguous class_name.
    import keras

    import mmtl_tf
    from mmtl_tf.data.text import save_text_vectorizer

    def with_class_names(names):
        def write(folder):
            info = json.loads((folder / "run.json").read_text())
            info["class_names"] = names(info["class_names"])
            (folder / "run.json").write_text(json.dumps(info))
        return write

    def other_vectorizer(folder):
        save_text_vectorizer(mmtl_tf.data.make_text_vectorizer(
            ["a b c"], vocab_size=20, sequence_length=24), str(folder / "text_vectorizer.json"))

    def other_model(folder):
        inputs = {"audio": keras.Input((10,), name="audio"),
                  "text": keras.Input((4,), name="text", dtype="int32")}
        outputs = keras.layers.Dense(2)(keras.layers.Concatenate()(
            [inputs["audio"], keras.ops.cast(inputs["text"], "float32")]))
        keras.Model(inputs, outputs, name="other_model").save(folder / "model.keras")

    def unrecorded(write):
        def without_record(folder):  # a run trained before run.json recorded it
            write(folder)
            info = json.loads((folder / "run.json").read_text())
            del info[common.MODEL_ARCHITECTURE]
            (folder / "run.json").write_text(json.dumps(info))
        return without_record

    def dual_encoder_model(folder):
        # Inputs image and text, as the fusion model's: evaluate failed in
        # Keras ("DualEncoder computes its own contrastive loss") and export
        # with a TypeError traceback (exit 1).
        mmtl_tf.models.build_dual_encoder(
            mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(16, 16, 3),
                                          conv_filters=4),
            mmtl_tf.encoders.TextEncoder(vocab_size=20, sequence_length=4, embedding_dim=4,
                                         lstm_units=4),
            projection_dim=4).save(folder / "model.keras")

    another = "whose architecture is not the one this run trained (run.json records another)"
    for write, words in (
            (with_class_names(lambda names: [names[0]] + names[:-1]),
             "run.json: class_names names"),
            (with_class_names(lambda names: names[:-1]), "class_names for a model with"),
            (other_vectorizer, "text_vectorizer.json: makes 24 tokens per text, where"),
            (unrecorded(other_model), "model.keras: a model with inputs audio, text, where "
                                      "this run's task takes image, text"),
            (other_model, f"model.keras: holds a model ('other_model', a Functional) {another}"),
            (dual_encoder_model, f"model.keras: holds a model ('dual_encoder', a DualEncoder) "
                                 f"{another}")):
        shutil.copytree(run, damaged)
        write(damaged)
        for argv in (["evaluate", str(damaged)],
                     ["export", str(damaged), "--saved-model", str(tmp_path / "sm2")]):
            assert cli.main(argv) == 2, (words, argv)
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and words in err, err
        shutil.rmtree(damaged)
    assert not (tmp_path / "sm2").exists()


def test_data_errors_exit_1_and_name_the_file(tmp_path, capsys):
    (tmp_path / "captions.csv").write_text(
        "path,caption,label,split\nmissing.png,a cat,x,train\nmissing2.png,a cow,y,train\n"
        "other.png,a dog,x,test\n")
    code = cli.main(["train", "fusion", "--size", "tiny", "--data", str(tmp_path),
                     "--out", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert "captions.csv:2" in err and "missing.png): file not found" in err


def test_a_clip_shorter_than_one_fft_window_is_a_usage_error(tmp_path, capsys):
    # It was reported as 1,334 bad audio files ("too short"), one per clip.
    run = tmp_path / "run"
    assert cli.main(["train", "audio-text", "--size", "tiny", "--sample-rate", "100",
                     "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "100 Hz = 100 samples" in err and "n_fft = 512" in err and "--sample-rate" in err
    assert not run.exists()


def test_bad_rows_and_files_of_every_split_are_reported_together_before_training(
        tmp_path, capsys):
    from mmtl_tf.data import load_image_text_records

    source = load_image_text_records("default", "validation")
    rows = split_rows(source, {"train": 12, "validation": 4, "test": 4}, labels=True)
    rows[3]["caption"] = " "  # a bad row of the training split
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n")
    rows[17]["path"] = str(tmp_path / "corrupt.png")  # a bad file of the test split
    rows[18]["path"] = "missing.png"
    err = train_error(capsys, tmp_path / "captions.jsonl", rows, "fusion",
                      "--out", str(tmp_path / "run"))
    assert "1 bad row:\n" in err and "captions.jsonl:4: empty caption" in err
    assert "2 bad image files in the test split:\n" in err
    assert "captions.jsonl:18 (" in err and "corrupt.png): cannot decode image" in err
    assert "captions.jsonl:19 (" in err and "missing.png): file not found" in err
    assert err.count("--on-error skip") == 1
    assert sorted(os.listdir(tmp_path)) == ["captions.jsonl", "corrupt.png"]


def _raise_in_json(args):
    json.loads("{")  # a ValueError raised outside mmtl_tf


def _raise_in_mmtl_tf(args):
    from mmtl_tf.errors import check_count

    check_count("num_classes", 0)


@pytest.mark.parametrize("raiser, foreign", [(_raise_in_json, True),
                                             (_raise_in_mmtl_tf, False)])
def test_errors_name_their_origin_outside_mmtl_tf_and_show_a_traceback_on_request(
        raiser, foreign, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_export", raiser)
    monkeypatch.delenv("MMTL_TF_TRACEBACK", raising=False)
    assert cli.main(["export", str(tmp_path), "--saved-model", str(tmp_path / "sm")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmtl-tf export: error: ") and "\n" not in err
    assert ("MMTL_TF_TRACEBACK=1" in err) == foreign
    assert (os.path.join("json", "decoder.py") in err) == foreign
    monkeypatch.setenv("MMTL_TF_TRACEBACK", "1")
    with pytest.raises(ValueError):
        cli.main(["export", str(tmp_path), "--saved-model", str(tmp_path / "sm")])


def test_a_run_replaced_by_training_into_the_same_folder_is_a_one_line_warning(
        monkeypatch, tmp_path, capsys):
    # Two `train --out RUN` at once: the one finishing last replaced the
    # other's run without a word. Here the other run finishes half-way.
    run = tmp_path / "run"

    @common.staged_run
    def fake_train(config, run_dir, verbose=1):
        with open(os.path.join(run_dir, "run.json"), "w") as f:
            json.dump({"task": "fusion", "config": config, "mmtl_tf_version": "0",
                       "started": "2024-01-01T00:00:00+00:00", "run_id": config["id"]}, f)
        if config["id"] == "mine":
            fake_train({"id": "theirs"}, str(run))

    monkeypatch.setattr(cli, "_train", lambda args: fake_train({"id": "mine"}, args.out) or 0)
    assert cli.main(["train", "fusion", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert err == (f"mmtl-tf train: warning: {run}: replaced the fusion run theirs, started "
                   "2024-01-01T00:00:00+00:00, which another training finished there while "
                   "this one trained (the folder held no run when this one started); that "
                   "run's files are gone.\n")
    assert json.loads((run / "run.json").read_text())["run_id"] == "mine"


def test_a_failed_write_is_one_line_with_status_1(monkeypatch, tmp_path, capsys):
    def no_permission(args):  # as os.makedirs in a folder the user may not write to
        raise PermissionError(13, "Permission denied", "/srv/shared/.sm.tmp-1")

    monkeypatch.setattr(cli, "_export", no_permission)
    monkeypatch.delenv("MMTL_TF_TRACEBACK", raising=False)
    assert cli.main(["export", str(tmp_path), "--saved-model", str(tmp_path / "sm")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "mmtl-tf export: error: [Errno 13] Permission denied: '/srv/shared/.sm.tmp-1'"


def test_quickstart_prints_one_table(tmp_path, capsys):
    assert cli.main(["quickstart", "--size", "tiny", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "majority class" in out and "test accuracy" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {r["model"].split()[0] for r in summary["rows"]} >= {"fusion"}
    assert os.path.exists(tmp_path / "fusion" / "saved_model" / "saved_model.pb")


_RETRACING_SCRIPT = """
import sys
import numpy as np
if sys.argv[1] == "filtered":
    from mmtl_tf import cli
    cli._quiet_tensorflow()
import keras
import tensorflow as tf
for _ in range(6):  # six models, each traced for two batch sizes, as in a quickstart
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.predict_on_batch(np.ones((4, 3), "float32"))
    model.predict_on_batch(np.ones((3, 3), "float32"))
@tf.function
def user_function(x):  # retraced for every new shape: a real problem, still reported
    return x + 1
for n in range(1, 8):
    user_function(tf.ones((n, n)))
"""


@pytest.mark.parametrize("mode", ["plain", "filtered"])
def test_cli_drops_only_the_new_model_predict_retracing_warning(mode):
    out = subprocess.run([sys.executable, "-c", _RETRACING_SCRIPT, mode], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if "triggered tf.function retracing" in line]
    predict = [line for line in lines if "make_predict_function" in line]
    user = [line for line in lines if "user_function" in line]
    assert user, out.stderr[-2000:]
    assert bool(predict) == (mode == "plain"), lines


def test_a_tensorflow_runtime_error_is_one_line(tmp_path, capsys, monkeypatch):
    # A full disk during export raised TensorFlow's ResourceExhaustedError, which
    # is no OSError: the CLI printed 14 traceback frames.
    import tensorflow as tf

    from mmtl_tf.tasks import fusion

    def full_disk(run_dir, saved_model_dir):
        raise tf.errors.ResourceExhaustedError(
            None, None, "/x/variables/variables.data-00000-of-00001.tempstate123; No space "
                        "left on device\n\t [[{{node SaveV2}}]]")

    monkeypatch.setattr(fusion, "export", full_disk)
    (tmp_path / "run.json").write_text('{"task": "fusion", "config": {}}')
    assert cli.main(["export", str(tmp_path), "--saved-model", str(tmp_path / "sm")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mmtl-tf export: error: ResourceExhaustedError: ") and \
        "No space left on device" in err and "SaveV2" not in err


def test_sigterm_removes_the_staging_folder_as_ctrl_c_does(tmp_path):
    # `timeout` or a container stop sends SIGTERM: the `.NAME.tmp-…` folder of
    # the interrupted write stayed behind.
    code = (
        "import os, signal, sys, time\n"
        "from mmtl_tf import cli\n"
        "from mmtl_tf.files import atomic_directory\n"
        "def write(tmp):\n"
        "    open(os.path.join(tmp, 'part'), 'w').write('x')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "with cli._terminate_as_exit():\n"
        f"    atomic_directory({str(tmp_path / 'out')!r}, write)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 128 + 15, out.stderr
    assert os.listdir(tmp_path) == []


def test_a_tensorflow_error_shows_its_telling_line():
    # Every graph-mode error starts with "Graph execution error:", which was all
    # the CLI printed.
    message = ("Graph execution error:\n\nDetected at node MatMul defined at (most recent "
               "call last):\n<stack traces unavailable>\nOOM when allocating tensor with "
               "shape[4000,4000,4000] and type float\n\t [[{{node MatMul}}]] [Op:x]")
    assert cli._op_error_line(message).startswith("OOM when allocating tensor with shape[")
    assert cli._op_error_line("No space left on device") == "No space left on device"
    # A failed assertion of mmtl_tf's: its text and data, not the iterator's path.
    message = ("{{function_node __wrapped__IteratorGetNext}} Error in user-defined function "
               "passed to MapDataset:12 transformation with iterator: Iterator::Root::Filter::"
               "ParallelMapV2: assertion failed: [one of the image files failed to load in a "
               "later epoch (...):] [/data/2.png] [Op:IteratorGetNext]")
    assert cli._op_error_line(message) == ("one of the image files failed to load in a later "
                                           "epoch (...): /data/2.png")
    message = "assertion failed: [x: positions of the batch:] [1 2] [more data]"
    assert cli._op_error_line(message) == "x: positions of the batch: 1 2 more data"


@pytest.mark.parametrize("task", ["head-swap", "siamese", "triplet", "matching", "fusion",
                                  "dual-encoder", "audio-text"])
def test_tfds_data_for_a_task_that_reads_none_is_a_usage_error(task, capsys, tmp_path):
    # head-swap and the metric-learning tasks said "no such folder or labels
    # file" (after loading TensorFlow); now one usage line before anything runs.
    out = tmp_path / "run"
    assert cli.main(["train", task, "--data", "tfds:tf_flowers", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mmtl-tf train {task}: error: --data tfds:tf_flowers: the {task} task "
                   "reads no TFDS dataset from the command line (only text-classifier "
                   "does); from Python, the mmtl_tf.data.load_tfds_* functions load TFDS "
                   "datasets (README 'Data')")
    assert not out.exists()


@pytest.mark.parametrize("extra", [[], ["--mining", "batch_hard", "--examples-per-class", "2"]])
def test_batch_size_with_in_batch_triplet_mining_is_a_usage_error(extra, capsys, tmp_path):
    # It was recorded in run.json and ignored: the batches are P x K images.
    out = tmp_path / "run"
    argv = ["train", "triplet", "--size", "tiny", "--batch-size", "48", "--out", str(out)]
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err.strip()
    k = 2 if extra else 4
    mining = "batch_hard" if extra else "semi_hard"
    assert err == (f"mmtl-tf train: error: batch_size=48: with mining='{mining}' a batch is "
                   f"classes_per_batch x examples_per_class images (here 4 x {k} = {4 * k}); "
                   "set those two instead (--classes-per-batch, --examples-per-class); "
                   "batch_size is the batch of mining='explicit'.")
    assert not out.exists()


def test_batch_size_for_matching_is_refused_from_the_cli_the_quickstart_and_a_recipe(
        capsys, tmp_path):
    # Training reads episodes_per_batch; --batch-size 2 gave the same history.
    out = tmp_path / "run"
    assert cli.main(["train", "matching", "--size", "tiny", "--batch-size", "2",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmtl-tf train: error: batch_size=2: the matching network trains on "
                          "episodes, not batches of images; set episodes_per_batch (now 4)")
    assert not out.exists()
    recipe = tmp_path / "mine.json"
    recipe.write_text('{"tiny": {"batch_size": 8}}')
    assert cli.main(["train", "matching", "--size", "tiny", "--recipe", str(recipe),
                     "--out", str(out)]) == 2
    assert "batch_size=8: the matching network trains on episodes" in capsys.readouterr().err
    assert cli.main(["quickstart", "--tasks", "matching", "--size", "tiny", "--batch-size", "2",
                     "--out", str(tmp_path / "qs")]) == 1
    assert "matching failed (train): batch_size=2: the matching network" in \
        capsys.readouterr().err


def test_an_error_after_a_progress_bar_starts_on_a_new_line(monkeypatch, capsys, tmp_path):
    # A full disk mid-epoch printed "...loss: 2.1396mmtl-tf train: error: [Errno 28] ...".
    def full_disk(args):
        sys.stdout.write("\r 3/12 ━━━━━━━━━━━━━━━━━━━━ 1s 91ms/step - loss: 2.1396")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "_export", full_disk)
    monkeypatch.delenv("MMTL_TF_TRACEBACK", raising=False)
    assert cli.main(["export", str(tmp_path), "--saved-model", "sm"]) == 1
    out, err = capsys.readouterr()
    assert out.endswith("loss: 2.1396\n")
    assert err == "mmtl-tf export: error: [Errno 28] No space left on device\n"
    assert not type(sys.stdout).__name__ == "Noting"  # the stream is given back

    def fine(args):
        print("SavedModel written to sm")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "_export", fine)
    assert cli.main(["export", str(tmp_path), "--saved-model", "sm"]) == 1
    assert capsys.readouterr().out == "SavedModel written to sm\n"  # no empty line added


def test_training_on_long_captions_warns_that_they_are_truncated(tmp_path, capsys):
    from mmtl_tf.data import load_image_text_records

    rows = split_rows(load_image_text_records("default", "train"),
                      {"train": 24, "validation": 8, "test": 8})
    words = "red green blue cat dog sun moon star tree house".split()
    for i, row in enumerate(rows):
        row["caption"] = " ".join(words[(i + k) % 10] for k in range(40))  # 40 words
        row["label"] = "odd" if i % 2 else "even"
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["train", "fusion", "--size", "tiny", "--epochs", "1", "--data",
                     str(tmp_path / "captions.jsonl"), "--out", str(tmp_path / "run"),
                     "--no-jit-compile"]) == 0
    err = capsys.readouterr().err
    assert ("mmtl-tf train: warning: 100% of the training texts (24 of 24) have more than "
            "8 tokens and are truncated to sequence_length=8") in err
    assert "--sequence-length" in err


def test_cache_option_parses_and_bad_values_are_usage_errors(tmp_path, capsys):
    parser = cli.build_parser()
    for task in ("fusion", "head-swap", "dual-encoder", "audio-text", "siamese", "triplet",
                 "matching"):
        assert parser.parse_args(["train", task, "--cache", "none"]).cache == "none"
    assert parser.parse_args(["quickstart", "--cache", "memory"]).cache == "memory"
    assert parser.parse_args(["evaluate", str(tmp_path), "--cache", "none"]).cache == "none"
    folder = parser.parse_args(["train", "fusion", "--cache", str(tmp_path / "new")]).cache
    assert folder == str(tmp_path / "new")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for argv in (["train", "fusion", "--cache", str(a_file)],
                 ["train", "fusion", "--cache", ""],
                 ["train", "fusion", "--cache", str(tmp_path / "no" / "such" / "dir")],
                 ["train", "text-classifier", "--cache", "none"]):  # decodes no files
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error:" in err and "--cache" in err, err
    # "MEMORY" made a cache folder of that name in the current folder, silently.
    for value in ("MEMORY", "None"):
        with pytest.raises(SystemExit) as e:
            cli.main(["train", "fusion", "--cache", value])
        assert e.value.code == 2
        assert f"write {value.lower()} (lower case) for that choice, or ./{value} for a " \
               "folder" in capsys.readouterr().err
    assert parser.parse_args(["train", "fusion", "--cache", "./MEMORY"]).cache.endswith("MEMORY")
    with pytest.raises(ValueError, match=r"cache = 'Memory': write 'memory' \(lower case\)"):
        common.check_cache("Memory")  # a recipe's "cache"


def test_cache_recipe_key_is_a_setting_of_file_decoding_tasks(tmp_path):
    from mmtl_tf.tasks import settings

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"tiny": {"cache": "none"}}))
    config = common.resolve_config(str(recipe), "tiny", base="fusion",
                                   settings=settings("fusion"))
    assert config["cache"] == "none"
    assert "cache" not in settings("text-classifier")
    recipe.write_text(json.dumps({"tiny": {"cache": 5}}))
    with pytest.raises(ValueError, match="cache"):
        common.resolve_config(str(recipe), "tiny", base="fusion", settings=settings("fusion"))


def test_recipe_cache_in_a_missing_folder_is_refused_like_the_option(tmp_path, capsys,
                                                                      monkeypatch):
    # `--cache DIR` takes a new folder only in an existing one; the recipe's
    # "cache" had the missing folders above DIR created (a mistyped one too).
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.json"
    for value in (str(tmp_path / "no" / "such" / "dir"), os.path.join("no", "dir")):
        with pytest.raises(SystemExit) as e:
            cli.main(["train", "fusion", "--cache", value])
        assert e.value.code == 2
        assert "does not exist" in capsys.readouterr().err
        recipe.write_text(json.dumps({"tiny": {"cache": value}}))
        assert cli.main(["train", "fusion", "--size", "tiny", "--recipe", str(recipe),
                         "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        parent = os.path.dirname(os.path.abspath(value))
        assert f"recipe {recipe}: tiny.cache = {value!r}: is neither 'memory' nor 'none' nor a " \
               f"folder or a new folder in an existing one ({parent} does not exist)" in err, err
    assert sorted(os.listdir(tmp_path)) == ["r.json"]  # nothing created
    recipe.write_text(json.dumps({"tiny": {"cache": "new"}}))  # in an existing folder: as before
    from mmtl_tf.tasks import settings

    config = common.resolve_config(str(recipe), "tiny", base="fusion",
                                   settings=settings("fusion"))
    assert config["cache"] == str(tmp_path / "new") and not (tmp_path / "new").exists()


def test_cache_dir_fills_cache_files_per_split_and_matches_memory(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    argv = ["train", "fusion", "--size", "tiny", "--epochs", "2", "--deterministic"]
    assert cli.main([*argv, "--out", str(tmp_path / "memory")]) == 0
    removed, rmtree = [], common.shutil.rmtree

    def keep_cache(path, **kwargs):  # shutil is shared: other folders still go
        if str(path).startswith(str(cache)):
            removed.append(str(path))
        else:
            rmtree(path, **kwargs)

    monkeypatch.setattr(common.shutil, "rmtree", keep_cache)
    assert cli.main([*argv, "--cache", str(cache), "--out", str(tmp_path / "files")]) == 0
    (folder,) = removed  # this run's folder of cache files, removed at the end
    assert os.path.dirname(folder) == str(cache)
    names = sorted(os.listdir(folder))
    for split in ("train", "validation", "test"):  # one finished cache file set per split
        assert any(n.startswith(f"{split}-") and n.endswith(".index") for n in names), names
        data = [n for n in names if n.startswith(f"{split}-") and ".data-" in n
                and "tempstate" not in n]
        assert data and os.path.getsize(os.path.join(folder, data[0])) > 0, names
    rmtree(folder)
    metrics = [json.loads((tmp_path / r / "metrics.json").read_text())["test"]
               for r in ("memory", "files")]
    assert metrics[0] == metrics[1]
    assert json.loads((tmp_path / "files" / "run.json").read_text())["config"]["cache"] == \
        str(cache)
    # Without the patch the folder goes at the end of the call (evaluate too).
    monkeypatch.setattr(common.shutil, "rmtree", rmtree)
    assert cli.main(["evaluate", str(tmp_path / "files")]) == 0
    assert os.listdir(cache) == []


def test_cache_none_trains_and_still_reports_bad_files_up_front(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "fusion", "--size", "tiny", "--epochs", "1", "--cache", "none",
                     "--out", str(run)]) == 0
    assert json.loads((run / "run.json").read_text())["config"]["cache"] == "none"
    assert cli.main(["evaluate", str(run), "--cache", "none"]) == 0
    (tmp_path / "captions.csv").write_text(
        "path,caption,label,split\nmissing.png,a cat,x,train\nmissing2.png,a cow,y,train\n"
        "other.png,a dog,x,test\n")
    assert cli.main(["train", "fusion", "--size", "tiny", "--data", str(tmp_path),
                     "--cache", "none", "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "captions.csv:2" in err and "missing.png): file not found" in err


def test_cache_dir_removes_the_folders_of_killed_runs(tmp_path):
    # A killed run leaves its folder, with tf.data's lock files; the next run
    # on the host removes it (its process is gone) and uses a folder of its own.
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f"{common.CACHE_PREFIX}{common._host()}-{done.stdout.strip()}-abcd"
    dead.mkdir()
    (dead / "train-1_0.lockfile").write_text("")
    other = tmp_path / f"{common.CACHE_PREFIX}otherhost-1-abcd"
    other.mkdir()
    with common.cache_scope():
        prefix = common.dataset_cache({"cache": str(tmp_path)}, "train")
        assert common.dataset_cache({"cache": str(tmp_path)}, "train") != prefix
        assert os.path.isdir(os.path.dirname(prefix))
        assert not dead.exists() and other.exists()
    assert sorted(os.listdir(tmp_path)) == [other.name]
    assert common.dataset_cache({"cache": "memory"}, "train") is True
    assert common.dataset_cache({}, "train") is True
    assert common.dataset_cache({"cache": "none"}, "train") is False


def test_recipe_cache_folder_is_made_absolute_like_the_command_line_s(tmp_path, monkeypatch):
    # run.json kept "relcache" as written: `evaluate` from another folder
    # created and used another cache folder there.
    from mmtl_tf.tasks import settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.json").write_text(json.dumps({"tiny": {"cache": "relcache"}}))
    config = common.resolve_config("r.json", "tiny", base="fusion", settings=settings("fusion"))
    assert config["cache"] == str(tmp_path / "relcache")
    for value in ("memory", "none"):
        (tmp_path / "r.json").write_text(json.dumps({"tiny": {"cache": value}}))
        assert common.resolve_config("r.json", "tiny", base="fusion",
                                     settings=settings("fusion"))["cache"] == value
    info = common.start_run(str(tmp_path / "run"), "fusion", {"cache": "rel2", "seed": 0})
    assert info["config"]["cache"] == str(tmp_path / "rel2")
    assert not (tmp_path / "relcache").exists() and not (tmp_path / "rel2").exists()


def test_cache_dir_that_the_call_created_is_removed_when_left_empty(tmp_path):
    new = tmp_path / "new" / "deeper"
    with common.cache_scope():
        common.dataset_cache({"cache": str(new)}, "train")
        assert new.is_dir()
    assert sorted(os.listdir(tmp_path)) == []  # both folders it created
    with common.cache_scope():  # an existing DIR stays
        common.dataset_cache({"cache": str(tmp_path)}, "train")
    assert tmp_path.is_dir() and os.listdir(tmp_path) == []
    with common.cache_scope():  # one that is not empty at the end stays
        common.dataset_cache({"cache": str(new)}, "train")
        (new / "notes.txt").write_text("mine")
    assert os.listdir(new) == ["notes.txt"]


def test_cache_dir_in_the_run_folder_is_refused_up_front(tmp_path, capsys):
    # A run killed with its cache files in its own run folder (--cache = --out,
    # or inside it) left mmtl_tf-cache-... there, and the next `train --out`
    # stopped with "holds mmtl_tf-cache-..., which no run folder writes".
    run = tmp_path / "run"
    train = ["train", "fusion", "--size", "tiny", "--epochs", "1", "--out", str(run)]
    run.mkdir()
    for cache in (run, run / "cache"):
        assert cli.main([*train, "--cache", str(cache)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"mmtl-tf train: error: --cache {cache} is ") and \
            f"the run folder {run}, which training replaces" in err and \
            len(err.splitlines()) == 1, err
        assert os.listdir(run) == []
    (tmp_path / "q").mkdir()
    quick = ["quickstart", "--tasks", "fusion,text-classifier", "--size", "tiny", "--epochs",
             "1", "--out", str(tmp_path / "q")]
    assert cli.main([*quick, "--cache", str(tmp_path / "q" / "fusion")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"is the run folder {tmp_path / 'q' / 'fusion'}" in err and \
        len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path / "q") == []
    # evaluate: its --cache, or the run's setting (from a version that took
    # it), inside the run folder; the run's setting not writable now.
    info = {"task": "fusion", "config": {"cache": str(run)}, "mmtl_tf_version": "0"}
    (run / "run.json").write_text(json.dumps(info))
    assert cli.main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mmtl-tf evaluate: error: cache folder {run} is the run folder "
                          f"{run} being evaluated") and "give --cache memory" in err, err
    assert cli.main(["evaluate", str(run), "--cache", str(run / "c")]) == 2
    assert "is inside the run folder" in capsys.readouterr().err
    with common.cache_scope("none"):  # what `--cache none` gives
        common._check_evaluation_cache(info, str(run))
    info["config"]["cache"] = _unwritable_folder(tmp_path)
    (run / "run.json").write_text(json.dumps(info))
    assert cli.main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmtl-tf evaluate: error: run.json's cache (evaluate --cache gives "
                          "another) = ") and "cannot create cache folders there" in err, err


def _unwritable_folder(tmp_path):
    """A folder in which this process cannot create folders (root may write
    in any folder of tmp_path whatever its mode: a special file system), or
    a skip."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return str(folder)
    for folder in ("/sys/kernel", "/proc"):
        try:
            os.rmdir(os.path.join(folder, "mmtl_tf-test-probe"))
        except FileNotFoundError:
            pass
        try:
            os.mkdir(os.path.join(folder, "mmtl_tf-test-probe"))
        except OSError:
            return folder
        os.rmdir(os.path.join(folder, "mmtl_tf-test-probe"))
    pytest.skip("no folder that root cannot write")


def test_cache_dir_that_cannot_be_written_is_refused_up_front(tmp_path, capsys):
    # It was a bare "[Errno 1] Operation not permitted: '/sys/kernel/mmtl_tf-
    # cache-...'" once TensorFlow had loaded and the first dataset was built.
    from mmtl_tf.tasks import settings

    folder = _unwritable_folder(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["train", "fusion", "--cache", folder])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "argument --cache" in err, err
    assert f"{folder!r}: cannot create cache folders there" in err, err
    recipe = tmp_path / "r.json"
    for value in (folder, os.path.join(folder, "new")):
        recipe.write_text(json.dumps({"tiny": {"cache": value}}))
        with pytest.raises(ValueError, match=r"r\.json: tiny\.cache = .*: cannot create cache "
                                             r"folders there"):
            common.resolve_config(str(recipe), "tiny", base="fusion",
                                  settings=settings("fusion"))
    with pytest.raises(OSError, match="cache folder .*: cannot create this call's folder"):
        with common.cache_scope():  # a run's setting, not checked up front (evaluate)
            common.dataset_cache({"cache": folder}, "train")
    # The probe leaves nothing behind, in a folder or for a new one.
    recipe.write_text(json.dumps({"tiny": {"cache": str(tmp_path / "new")}}))
    parsed = cli.build_parser().parse_args(["train", "fusion", "--cache", str(tmp_path)])
    assert parsed.cache == str(tmp_path)
    config = common.resolve_config(str(recipe), "tiny", base="fusion",
                                   settings=settings("fusion"))
    assert config["cache"] == str(tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == ["r.json"] + (["read-only"] if os.geteuid() else [])


def _dead_pid():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_cache_dir_keeps_the_folders_of_live_runs_by_their_lock(tmp_path):
    # A run in another PID namespace (a container sharing the host name and
    # DIR) has a PID that is no process here: its folder stays while its lock
    # file is locked, and goes once the lock is free (the run killed).
    live = tmp_path / f"{common.CACHE_PREFIX}{common._host()}-{_dead_pid()}-live"
    live.mkdir()
    (live / "train-1_0.lockfile").write_text("")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(120)",
         str(live / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with common.cache_scope():
            prefix = common.dataset_cache({"cache": str(tmp_path)}, "train")
            mine = os.path.dirname(prefix)
            assert live.exists()
            # This call's own folder holds its lock from the start: another
            # process cannot take it.
            took = subprocess.run(
                [sys.executable, "-c", "import fcntl, os, sys\n"
                 "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
                 "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                 "except BlockingIOError:\n    sys.exit(3)",
                 os.path.join(mine, LOCK_FILE)])
            assert took.returncode == 3
            common._remove_dead_folders(str(tmp_path))  # another run's clean-up
            assert os.path.isdir(mine) and live.exists()
    finally:
        holder.kill()
        holder.wait()
    assert not os.path.exists(mine)
    common._remove_dead_folders(str(tmp_path))
    assert not live.exists()
    # A folder with a free lock goes, whatever its PID; one without a lock
    # file (an earlier version's) goes by the PID rule: not while it runs.
    free = tmp_path / f"{common.CACHE_PREFIX}{common._host()}-{os.getpid()}-free"
    free.mkdir()
    (free / LOCK_FILE).write_text("")
    old_live = tmp_path / f"{common.CACHE_PREFIX}{common._host()}-{os.getppid()}-old"
    old_live.mkdir()
    common._remove_dead_folders(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [old_live.name]


def test_library_messages_name_only_options_the_running_task_has(monkeypatch):
    # A siamese run was told to "use --target multilabel", which only
    # head-swap has.
    message = ("a.csv:2: 2 labels ['a', 'b'] (multiclass needs one; use task='multilabel'); "
               "or on_error='skip'")
    monkeypatch.setattr(cli, "_TASK_OPTIONS", {"--backbone", "--target"})
    assert cli._in_cli_words(message).endswith("use --target multilabel); or --on-error skip")
    localization = ("task='localization' needs crop=False and augment=False: the boxes are "
                    "given for the whole, unaugmented image.")
    assert cli._in_cli_words(localization) == (
        "--target localization does not take --augment: the boxes are given for the whole, "
        "unaugmented image.")
    # Without --target (siamese, triplet, matching; and evaluate, which
    # cannot change a run's target) the advice named a Python argument the
    # command does not have.
    monkeypatch.setattr(cli, "_TASK_OPTIONS", set())
    assert cli._in_cli_words(message) == ("a.csv:2: 2 labels ['a', 'b'] (the task takes one "
                                          "label per image); or --on-error skip")
    same = ("image a.png is class(es) ['a'] here but ['b'] at b.csv:3 (one image, one class: "
            "fix the rows, or use task='multilabel' to give an image several classes)")
    assert cli._in_cli_words(same).endswith("(one image, one class: fix the rows)")
    assert "task=" not in cli._in_cli_words(same)


def test_python_messages_name_arguments_and_the_cli_its_options(tmp_path, monkeypatch):
    # export_image_text_classifier said "choose another --saved-model folder"
    # and make_image_text_dataset "raise it with --sequence-length" to Python
    # callers, who have neither option.
    import warnings

    import mmtl_tf
    from mmtl_tf.export import check_export_path

    (tmp_path / "mine.txt").write_text("mine")
    with pytest.raises(ValueError) as refused:
        check_export_path(str(tmp_path))
    assert "choose another export folder" in str(refused.value)
    assert "--saved-model" not in str(refused.value)
    assert "choose another --saved-model folder" in cli._in_cli_words(str(refused.value))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mmtl_tf.data.make_text_vectorizer(["one two three four", "five six seven eight"], 50, 2)
    (message,) = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert message.endswith("raise sequence_length to use more of them.")
    monkeypatch.setattr(cli, "_TASK_OPTIONS", {"--sequence-length"})
    assert cli._in_cli_words(message).endswith(
        "raise it with --sequence-length or the recipe's sequence_length to use more of them.")


def test_help_lists_the_bundled_recipes_and_the_benchmarks(capsys):
    # --recipe's help named only the default recipe (the _pretrained ones were
    # in errors and the README), and bench --help no benchmark.
    for task, recipes in (("dual-encoder", "dual_encoder, dual_encoder_pretrained"),
                          ("matching", "matching, matching_pretrained"),
                          ("fusion", "(fusion)")):
        with pytest.raises(SystemExit):
            cli.main(["train", task, "--help"])
        assert recipes in " ".join(capsys.readouterr().out.split()), task
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "here: audio_features, fusion_pooling, head_swap_cache, input_pipeline" in out


def test_an_unusable_mmtl_tf_cache_is_named_before_training(tmp_path, monkeypatch, capsys):
    # A file there was "[Errno 17] File exists" (exit 1), a folder that could
    # not be made "[Errno 2] No such file or directory" (exit 2), after the
    # data was read; neither named MMTL_TF_CACHE.
    from mmtl_tf.files import cache_dir

    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("MMTL_TF_CACHE", str(afile))
    for argv in (["train", "fusion", "--out", str(tmp_path / "run")],
                 ["quickstart", "--out", str(tmp_path / "qs")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith(f"error: {afile}: cannot be the mmtl_tf cache (MMTL_TF_CACHE): a "
                            "file, not a folder; set MMTL_TF_CACHE to a folder you can write, "
                            "or unset it for ~/.cache/mmtl_tf."), err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "qs").exists()
    with pytest.raises(ValueError, match="cannot be the mmtl_tf cache"):
        cache_dir("weights", "x.h5")
    # Inside a file: "Not a directory", named the same way.
    monkeypatch.setenv("MMTL_TF_CACHE", str(afile / "cache"))
    assert cli.main(["train", "fusion", "--out", str(tmp_path / "run")]) == 2
    assert f"{afile / 'cache'}: cannot be the mmtl_tf cache (MMTL_TF_CACHE): " in \
        capsys.readouterr().err
    monkeypatch.setenv("MMTL_TF_CACHE", str(tmp_path / "new" / "cache"))
    assert cache_dir("weights", "x.h5") == str(tmp_path / "new" / "cache" / "weights" / "x.h5")
    # An existing folder passes without a probe written into it (a shared,
    # read-only cache filled with the weights is only read; found in review).
    from mmtl_tf.files import check_cache_root

    calls = []
    monkeypatch.setattr("mmtl_tf.files.check_can_create_folders", calls.append)
    check_cache_root()
    assert calls == []


def test_negative_numbers_in_scientific_notation_reach_the_range_check(capsys):
    # argparse took "-1e-3" for an option: "expected one argument".
    for option, value, words in (("--learning-rate", "-1e-3", "must be positive and finite"),
                                 ("--dropout", "-1e-1", "must be at least 0 and below 1")):
        with pytest.raises(SystemExit) as e:
            cli.main(["train", "fusion", option, value])
        assert e.value.code == 2
        assert f"argument {option}: '{value}' {words}" in capsys.readouterr().err
