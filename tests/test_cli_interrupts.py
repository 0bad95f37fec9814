"""Ctrl-C (and SIGTERM) during `mmtl-tf train`, `export` and `quickstart`: one
line saying what was left, status 130 (143), no traceback."""

import json
import os
import signal
import subprocess
import sys

import pytest

from mmtl_tf import cli
from mmtl_tf.files import atomic_directory
from mmtl_tf.tasks import common, fusion
from tests.test_quickstart_failures import _fake_tasks, _run_record


def _earlier_run(run):
    run.mkdir()
    (run / "run.json").write_text(json.dumps(_run_record("fusion")))
    (run / "model.keras").write_text("earlier")


def _interrupted_write(path):
    """Starts writing `path` as the run and SavedModel writers do, then is
    interrupted by Ctrl-C."""
    def write(tmp):
        (open(os.path.join(tmp, "run.json"), "w")).write("{}")
        raise KeyboardInterrupt
    atomic_directory(path, write)


def _main(argv):
    """`cli.main(argv)`; a KeyboardInterrupt it lets through (which the user
    sees as a traceback) fails the test instead of stopping pytest."""
    try:
        return cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped cli.main: a traceback for the user")


def test_ctrl_c_in_train_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    # It printed a KeyboardInterrupt traceback of about 40 lines.
    monkeypatch.delenv("MMTL_TF_TRACEBACK", raising=False)
    monkeypatch.setattr(fusion, "train", common.staged_run(
        lambda config, run_dir, verbose=1: _interrupted_write(os.path.join(run_dir, "sub"))))
    run = tmp_path / "run"
    _earlier_run(run)
    assert _main(["train", "fusion", "--size", "tiny", "--out", str(run)]) == 130
    assert capsys.readouterr().err == f"mmtl-tf train: interrupted; {run} left as it was\n"
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no staging folder left
    assert sorted(os.listdir(run)) == ["model.keras", "run.json"]
    assert (run / "model.keras").read_text() == "earlier"

    new = tmp_path / "new"
    assert _main(["train", "fusion", "--size", "tiny", "--out", str(new)]) == 130
    assert capsys.readouterr().err == (
        f"mmtl-tf train: interrupted; no run folder written ({new} does not exist)\n")
    assert not new.exists()


def test_ctrl_c_in_export_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MMTL_TF_TRACEBACK", raising=False)
    monkeypatch.setattr(fusion, "export",
                        lambda run_dir, saved_model_dir: _interrupted_write(saved_model_dir))
    run = tmp_path / "run"
    _earlier_run(run)
    sm = tmp_path / "sm"
    assert _main(["export", str(run), "--saved-model", str(sm)]) == 130
    assert capsys.readouterr().err == (
        f"mmtl-tf export: interrupted; no SavedModel written ({sm} does not exist)\n")
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_ctrl_c_in_quickstart_stops_every_task(tmp_path, monkeypatch, capsys):
    # A failing task no longer stops the quickstart, but Ctrl-C still does.
    calls = _fake_tasks(monkeypatch, errors={"siamese": KeyboardInterrupt()})
    out = tmp_path / "QS"
    assert _main(["quickstart", "--out", str(out), "--tasks", "fusion,siamese,triplet",
                     "--size", "tiny"]) == 130
    assert calls == [("train", "fusion"), ("export", "fusion"), ("train", "siamese")]
    err = capsys.readouterr().err
    summary_path = out / "summary.json"
    assert err.endswith(
        f"mmtl-tf quickstart: interrupted during siamese: no run folder written "
        f"({out / 'siamese'} does not exist); {summary_path} lists the 1 task(s) finished "
        "before\n")
    assert "Traceback" not in err
    summary = json.loads(summary_path.read_text())
    assert [r["task"] for r in summary["rows"]] == ["fusion"]
    assert summary["not_run"] == ["siamese", "triplet"] and summary["finished"] is False


def test_traceback_variable_shows_the_interrupt_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTL_TF_TRACEBACK", "1")
    monkeypatch.setattr(fusion, "train", common.staged_run(
        lambda config, run_dir, verbose=1: _interrupted_write(os.path.join(run_dir, "sub"))))
    with pytest.raises(KeyboardInterrupt):
        cli.main(["train", "fusion", "--size", "tiny", "--out", str(tmp_path / "run")])


_SIGNAL_SCRIPT = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the parent ignores it
from mmtl_tf import cli
from mmtl_tf.tasks import common, fusion

@common.staged_run
def train(config, run_dir, verbose=1):
    open(os.path.join(run_dir, "run.json"), "w").write("{}")
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    time.sleep(60)

fusion.train = train
sys.exit(cli.main(["train", "fusion", "--size", "tiny", "--out", sys.argv[2]]))
"""


@pytest.mark.parametrize("signal_name, status, word", [
    ("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated (SIGTERM)")])
def test_a_real_signal_during_training_is_one_line(tmp_path, signal_name, status, word):
    run = tmp_path / "run"
    _earlier_run(run)
    env = {k: v for k, v in os.environ.items() if k != "MMTL_TF_TRACEBACK"}
    out = subprocess.run([sys.executable, "-c", _SIGNAL_SCRIPT, signal_name, str(run)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == status, out.stderr[-3000:]
    ours = [line for line in out.stderr.splitlines() if line.startswith("mmtl-tf")]
    assert ours == [f"mmtl-tf train: {word}; {run} left as it was"], out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert (run / "model.keras").read_text() == "earlier"


_STAGING_SCRIPT = """
import os, signal, sys, time
from mmtl_tf import cli
from mmtl_tf.tasks import common, fusion

@common.staged_run
def train(config, run_dir, verbose=1):
    open(os.path.join(run_dir, "best.keras"), "w").write("partial")
    print("training", flush=True)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(120)

fusion.train = train
sys.exit(cli.main(["train", "fusion", "--size", "tiny", "--out", sys.argv[2]]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_run_killed_hard_leaves_no_staging_folder_after_the_next_train(tmp_path,
                                                                         monkeypatch):
    # SIGKILL (the OOM killer) left `.run.tmp-…` (a partial run) forever: the
    # next train into that folder did not remove it. One of a training still
    # running into the same folder must stay.
    run = tmp_path / "run"
    _earlier_run(run)
    env = {k: v for k, v in os.environ.items() if k != "MMTL_TF_TRACEBACK"}
    staged, children = [], []
    for how in ("kill", "live"):
        children.append(subprocess.Popen([sys.executable, "-c", _STAGING_SCRIPT, how, str(run)],
                                         stdout=subprocess.PIPE, text=True, env=env))
        assert children[-1].stdout.readline() == "training\n"
        staged.append(next(n for n in os.listdir(tmp_path)
                           if n.startswith(".run.tmp-") and n not in staged))
    killed, live = children
    assert killed.wait(timeout=60) == -signal.SIGKILL
    killed.stdout.close()
    try:
        calls = _fake_tasks(monkeypatch)
        assert _main(["train", "fusion", "--size", "tiny", "--out", str(run)]) == 0
        assert calls == [("train", "fusion")]
        assert sorted(os.listdir(tmp_path)) == sorted(["run", staged[1]])
        assert (tmp_path / staged[1] / "best.keras").read_text() == "partial"
    finally:
        live.kill()
        live.wait()
        live.stdout.close()
    assert _main(["train", "fusion", "--size", "tiny", "--out", str(run)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert sorted(os.listdir(run)) == ["run.json"]  # the fake task's run, no lock file
