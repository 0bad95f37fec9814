"""`mmtl-tf quickstart` when a task fails: the other tasks still run, the
failure is a row of the table and of summary.json, and the exit status is 1."""

import json
import os

import pytest

import mmtl_tf
import mmtl_tf.tasks
from mmtl_tf import cli
from mmtl_tf.errors import DataError
from mmtl_tf.tasks import common


def _run_record(task, config=None):
    """run.json as `common.start_run` writes it."""
    return {"task": task, "config": config or {}, "mmtl_tf_version": mmtl_tf.__version__}


class _FakeTask:
    """A task module without TensorFlow work: `train` writes a run folder
    through the real staging (`common.staged_run`), `export` a folder."""

    def __init__(self, name, calls, error=None, export_error=None):
        self.name, self.calls, self.error, self.export_error = name, calls, error, export_error

        @common.staged_run
        def train(config, run_dir, verbose=1):
            self.calls.append(("train", self.name))
            if self.error is not None:
                raise self.error
            with open(os.path.join(run_dir, common.RUN_FILE), "w") as f:
                json.dump(_run_record(self.name, config), f)
            return {"value": 0.5}

        self.train = train

    def export(self, run_dir, saved_model_dir):
        self.calls.append(("export", self.name))
        if self.export_error is not None:
            raise self.export_error
        os.makedirs(saved_model_dir)
        open(os.path.join(saved_model_dir, "saved_model.pb"), "wb").close()
        return os.path.abspath(saved_model_dir)

    def summary(self, metrics):
        return [{"model": f"{self.name} model", "metric": "accuracy", "value": metrics["value"]}]


def _fake_tasks(monkeypatch, errors=(), export_errors=()):
    """Replaces every task by a `_FakeTask`; returns the list of their calls."""
    calls = []
    fakes = {name: _FakeTask(name, calls, dict(errors).get(name),
                             dict(export_errors).get(name)) for name in mmtl_tf.tasks.TASKS}
    monkeypatch.setattr(mmtl_tf.tasks, "get_task", fakes.__getitem__)
    monkeypatch.delenv("MMTL_TF_TRACEBACK", raising=False)
    return calls


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


def test_a_failing_task_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    # The reviewer's case: a broken line in the bundled text data stopped the
    # quickstart at text-classifier with no table (not even fusion's, which
    # had trained), siamese never ran, and summary.json was an earlier run's.
    from mmtl_tf.tasks import text_classifier

    def bad_data(config, run_dir, verbose=1):
        raise DataError("1 bad row:\n  /pkg/default_text/test.jsonl:5: invalid JSON\n"
                        "Fix or remove them, or pass on_error='skip' to skip them.")

    monkeypatch.setattr(text_classifier, "train", bad_data)
    monkeypatch.delenv("MMTL_TF_TRACEBACK", raising=False)
    out = tmp_path / "QS"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(  # an earlier quickstart's
        {"rows": [{"model": "fusion (CNN + LSTM)", "metric": "test accuracy", "value": 0.987,
                   "saved_model": "QS/fusion/saved_model"}], "seconds": 300.0}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # summary.json's paths must not depend on the cwd

    code = cli.main(["quickstart", "--out", str(out), "--tasks", "fusion,text-classifier,siamese",
                     "--size", "tiny", "--epochs", "1", "--no-jit-compile"])
    stdout, stderr = capsys.readouterr()
    assert code == 1
    table = stdout[stdout.index("model "):]
    assert "fusion (CNN + LSTM)" in table and "siamese network" in table
    assert "text-classifier" in table and "FAILED (train)" in table
    reason = ("data error: 1 bad row:\n  /pkg/default_text/test.jsonl:5: invalid JSON\n"
              "Fix or remove them, or pass --on-error skip to skip them.")
    assert f"text-classifier failed (train): {reason}" in stderr
    assert stderr.endswith(
        "1 of 3 task(s) failed:\n  text-classifier (train): data error: 1 bad row:\n"
        "      /pkg/default_text/test.jsonl:5: invalid JSON\n"
        "    Fix or remove them, or pass --on-error skip to skip them.\n")

    summary = _summary(out)
    assert [r["task"] for r in summary["rows"]][:2] == ["fusion", "text-classifier"]
    assert {r["task"] for r in summary["rows"]} == {"fusion", "text-classifier", "siamese"}
    assert summary["failed"] == ["text-classifier"] and summary["finished"] is True
    assert 0.987 not in [r.get("value") for r in summary["rows"]]  # the earlier run's rows
    failure = next(r for r in summary["rows"] if r["task"] == "text-classifier")
    assert failure["error"] == reason and failure["stage"] == "train"
    for row in summary["rows"]:
        if row["task"] != "text-classifier":  # relative to summary.json's folder
            assert row["saved_model"] == os.path.join(row["task"], "saved_model")
            assert os.path.isfile(out / row["saved_model"] / "saved_model.pb")
    assert not (out / "text-classifier").exists()


def test_an_unexpected_error_shows_its_traceback_and_the_rest_still_run(
        tmp_path, monkeypatch, capsys):
    calls = _fake_tasks(monkeypatch, errors={"fusion": RuntimeError("a bug")},
                        export_errors={"triplet": PermissionError(13, "Permission denied",
                                                                  "/ro/saved_model")})
    out = tmp_path / "QS"
    code = cli.main(["quickstart", "--out", str(out), "--tasks", "fusion,siamese,triplet",
                     "--size", "tiny"])
    stdout, stderr = capsys.readouterr()
    assert code == 1
    assert calls == [("train", "fusion"), ("train", "siamese"), ("export", "siamese"),
                     ("train", "triplet"), ("export", "triplet")]
    assert "Traceback (most recent call last)" in stderr and "RuntimeError: a bug" in stderr
    assert "siamese model" in stdout and "FAILED (train)" in stdout and "FAILED (export)" in stdout
    # Not "triplet failed (export): error: [Errno 13] ..." (nor in summary.json).
    assert ("mmtl-tf quickstart: triplet failed (export): [Errno 13] Permission denied: "
            "'/ro/saved_model'\n") in stderr
    assert "  triplet (export): [Errno 13] Permission denied" in stderr
    summary = _summary(out)
    assert summary["failed"] == ["fusion", "triplet"]
    errors = {r["task"]: r.get("error") for r in summary["rows"]}
    assert errors == {"fusion": "RuntimeError: a bug (traceback above)", "siamese": None,
                      "triplet": "[Errno 13] Permission denied: '/ro/saved_model'"}
    # The export failed after training: the new run is there, without a SavedModel.
    assert (out / "triplet" / "run.json").exists()
    assert not (out / "triplet" / "saved_model").exists()


def test_traceback_variable_shows_each_failure_with_its_traceback(tmp_path, monkeypatch, capsys):
    calls = _fake_tasks(monkeypatch, errors={"fusion": DataError("1 bad row: x")})
    monkeypatch.setenv("MMTL_TF_TRACEBACK", "1")
    assert cli.main(["quickstart", "--out", str(tmp_path / "QS"), "--tasks", "fusion,siamese",
                     "--size", "tiny"]) == 1
    assert ("export", "siamese") in calls
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "DataError: 1 bad row: x" in err


def test_every_task_succeeding_exits_0(tmp_path, monkeypatch, capsys):
    _fake_tasks(monkeypatch)
    out = tmp_path / "QS"
    assert cli.main(["quickstart", "--out", str(out), "--tasks", "fusion,siamese",
                     "--size", "tiny"]) == 0
    summary = _summary(out)
    assert summary["failed"] == [] and summary["not_run"] == [] and summary["finished"]
    assert [r["saved_model"] for r in summary["rows"]] == [
        os.path.join("fusion", "saved_model"), os.path.join("siamese", "saved_model")]
    assert "failed" not in capsys.readouterr().err




def _earlier_quickstart(out):
    """`out` as an earlier quickstart (before summary.json had more than
    "rows" and "seconds") left it: its summary and a fusion run folder."""
    (out / "fusion").mkdir(parents=True)
    (out / "fusion" / "run.json").write_text(json.dumps(_run_record("fusion")))
    (out / "summary.json").write_text(json.dumps(
        {"rows": [{"model": "fusion (CNN + LSTM)", "value": 0.5}], "seconds": 9.0}))


def _refused(capsys, calls, out, tasks="fusion,siamese"):
    """Runs the quickstart into `out`, checks that it stopped with one usage
    line before any task trained, and returns that line."""
    assert cli.main(["quickstart", "--out", str(out), "--tasks", tasks, "--size", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mmtl-tf quickstart: error: "), err
    assert calls == []
    return err


def test_a_summary_json_of_your_own_is_refused(tmp_path, monkeypatch, capsys):
    # It was replaced by the quickstart's without a question.
    calls = _fake_tasks(monkeypatch)
    own = '{"my": "own summary"}'
    (tmp_path / "summary.json").write_text(own)
    err = _refused(capsys, calls, tmp_path)
    assert f"{tmp_path / 'summary.json'}: exists and is not a quickstart summary" in err
    assert (tmp_path / "summary.json").read_text() == own
    assert sorted(os.listdir(tmp_path)) == ["summary.json"]


def test_a_blocked_run_folder_of_a_later_task_is_refused_before_training(
        tmp_path, monkeypatch, capsys):
    # The folder of the last task was refused only after the others had trained.
    calls = _fake_tasks(monkeypatch)
    _earlier_quickstart(tmp_path)
    (tmp_path / "siamese").mkdir()
    (tmp_path / "siamese" / "notes.txt").write_text("mine")
    err = _refused(capsys, calls, tmp_path)
    assert f"{tmp_path / 'siamese'}: exists, is not empty and is not a run folder" in err
    # --out is the folder of the run folders, not a run folder (it said
    # "choose another --out (run folder)").
    assert ("so choose another --out (the folder the quickstart writes its run folders "
            "into) or an empty one") in err and "(run folder)" not in err
    assert (tmp_path / "siamese" / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "summary.json").read_text())["seconds"] == 9.0


@pytest.mark.parametrize("own", ["a folder", "a file"])
def test_a_folder_or_file_of_your_own_is_refused(tmp_path, monkeypatch, capsys, own):
    # As `train --out` and `export --saved-model` refuse them: a mistyped
    # --out (".", your home) would have received the run folders and summary.json.
    calls = _fake_tasks(monkeypatch)
    out = tmp_path / "mine"
    if own == "a folder":
        out.mkdir()
        (out / "thesis.tex").write_text("mine")
        words = "exists, is not empty and is not a quickstart folder"
    else:
        out.write_text("mine")
        words = "exists and is not a folder"
    assert f"{out}: {words}" in _refused(capsys, calls, out)
    assert (sorted(os.listdir(out)) == ["thesis.tex"]) if own == "a folder" else out.is_file()


@pytest.mark.parametrize("leftover", ["earlier quickstart", "interrupted", "empty", "new",
                                      "made in Finder"])
def test_a_quickstart_folder_new_or_empty_is_accepted(tmp_path, monkeypatch, leftover):
    out = tmp_path / "QS"
    if leftover == "earlier quickstart":
        _earlier_quickstart(out)
    elif leftover == "interrupted":  # Ctrl-C in the first task of a quickstart into a new OUT
        _fake_tasks(monkeypatch, errors={"fusion": KeyboardInterrupt()})
        assert cli.main(["quickstart", "--out", str(out), "--tasks", "fusion,siamese",
                         "--size", "tiny"]) == 130
        assert _summary(out)["not_run"] == ["fusion", "siamese"]  # written before the first
    elif leftover == "empty":
        out.mkdir()
    elif leftover == "made in Finder":  # was "exists, is not empty and is not a quickstart folder"
        out.mkdir()
        (out / ".DS_Store").write_bytes(b"Bud1")
    calls = _fake_tasks(monkeypatch)
    assert cli.main(["quickstart", "--out", str(out), "--tasks", "fusion,siamese",
                     "--size", "tiny"]) == 0
    assert calls == [("train", "fusion"), ("export", "fusion"), ("train", "siamese"),
                     ("export", "siamese")]
    assert [r["value"] for r in _summary(out)["rows"]] == [0.5, 0.5]


@pytest.mark.parametrize("summary", [None, "of your own"])
def test_run_folders_the_quickstart_did_not_write_are_refused(tmp_path, monkeypatch, capsys,
                                                              summary):
    # The reviewer's case: `mmtl-tf train fusion` wrote runs/fusion, then
    # `mmtl-tf quickstart --out runs --tasks fusion` replaced it without a
    # word (any OUT/TASK/run.json made OUT a "quickstart folder").
    calls = _fake_tasks(monkeypatch)
    runs = tmp_path / "runs"
    (runs / "fusion").mkdir(parents=True)
    (runs / "fusion" / "run.json").write_text(json.dumps(_run_record("fusion")))
    (runs / "NOTES.txt").write_text("mine")
    if summary:
        (runs / "summary.json").write_text('{"my": "own summary"}')
    before = {str(p): p.read_bytes() for p in runs.rglob("*") if p.is_file()}
    err = _refused(capsys, calls, runs, tasks="fusion,siamese")
    if summary:
        assert f"{runs / 'summary.json'}: exists and is not a quickstart summary" in err
    else:
        assert err == (
            f"mmtl-tf quickstart: error: {runs}: is not a quickstart folder (no summary.json "
            f"of a quickstart), and the quickstart would replace {runs / 'fusion'}, which it "
            "did not write (e.g. a run of `mmtl-tf train`); choose another --out (the folder "
            "the quickstart writes its run folders into), a new or empty one.")
    assert {str(p): p.read_bytes() for p in runs.rglob("*") if p.is_file()} == before

