"""The run folder a task's `train` writes (`tasks.common.staged_run`)."""

import json
import os
import re
import shutil
import threading
import warnings

import pytest

from mmtl_tf import files
from mmtl_tf.errors import KeptFilesWarning, RunReplacedWarning
from mmtl_tf.tasks import TASKS, common, settings


def _fake_train(fail=False):
    @common.staged_run
    def train(config, run_dir, verbose=1):
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "run.json"), "w") as f:
            json.dump({"task": "fake", "config": config, "mmtl_tf_version": "0"}, f)
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump({"test": config["value"]}, f)
        if fail:
            raise RuntimeError("training failed half-way")
        return {"test": config["value"], "dir": run_dir}
    return train


def _listing(folder):
    return {name: open(os.path.join(folder, name)).read() for name in sorted(os.listdir(folder))}


def test_a_finished_run_replaces_the_old_one_whole(tmp_path):
    run = tmp_path / "run"
    assert _fake_train()({"value": 1}, str(run))["test"] == 1
    (run / "saved_model").mkdir()  # exported into the run (as the quickstart does)
    (run / "saved_model" / "saved_model.pb").write_text("exported from run 1")
    metrics = _fake_train()({"value": 2}, str(run))
    # Trained in a sibling folder, then renamed into place.
    assert metrics["dir"] != str(run) and os.path.dirname(metrics["dir"]) == str(tmp_path)
    assert _listing(run) == {"metrics.json": '{"test": 2}',
                             "run.json": '{"task": "fake", "config": {"value": 2}, '
                                         '"mmtl_tf_version": "0"}'}
    assert os.listdir(tmp_path) == ["run"]


def test_a_failed_run_leaves_the_old_one_as_it_was(tmp_path):
    run = tmp_path / "run"
    _fake_train()({"value": 1}, str(run))
    before = _listing(run)
    with pytest.raises(RuntimeError, match="half-way"):
        _fake_train(fail=True)({"value": 2}, str(run))
    assert _listing(run) == before
    assert os.listdir(tmp_path) == ["run"]


def test_only_a_new_empty_or_run_folder_is_written(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a run folder"):
        _fake_train()({"value": 1}, str(tmp_path))
    with pytest.raises(ValueError, match="not a folder"):
        _fake_train()({"value": 1}, str(tmp_path / "notes.txt"))
    assert _listing(tmp_path) == {"notes.txt": "mine"}
    (tmp_path / "empty").mkdir()
    _fake_train()({"value": 3}, str(tmp_path / "empty"))
    assert json.loads((tmp_path / "empty" / "metrics.json").read_text()) == {"test": 3}


def test_a_folder_with_a_run_json_of_your_own_or_added_files_is_refused(tmp_path):
    # Any folder holding a file named run.json was replaced whole: --out F deleted
    # F/src/ and F/results.csv, and a run's notes.txt was lost on retraining.
    mine = tmp_path / "mine"
    (mine / "src").mkdir(parents=True)
    (mine / "run.json").write_text('{"name": "x"}')
    (mine / "results.csv").write_text("hi")
    with pytest.raises(ValueError, match=r"mine: exists, is not empty and is not a run folder "
                                         r"\(run.json is no mmtl_tf run record"):
        _fake_train()({"value": 1}, str(mine))
    assert sorted(os.listdir(mine)) == ["results.csv", "run.json", "src"]
    run = tmp_path / "run"
    _fake_train()({"value": 1}, str(run))
    (run / "notes.txt").write_text("mine")
    (run / "plots").mkdir()
    with pytest.raises(ValueError, match=r"run: holds notes.txt, plots, which no run folder "
                                         r"writes; .* choose another --out"):
        _fake_train()({"value": 2}, str(run))
    assert (run / "notes.txt").read_text() == "mine" and (run / "plots").is_dir()
    assert sorted(os.listdir(tmp_path)) == ["mine", "run"]


def test_exports_inside_a_run_folder_and_their_leftovers_do_not_block_retraining(tmp_path):
    # A SavedModel in numbered versions (TensorFlow Serving's serving/1) and the
    # staging folder of an export into the run folder that was killed (SIGKILL)
    # made the next `train --out run` refuse the run folder as "yours".
    run = tmp_path / "run"
    _fake_train()({"value": 1}, str(run))
    for version in ("serving/1", "serving/2"):
        (run / version / "variables").mkdir(parents=True)
        (run / version / "saved_model.pb").write_bytes(b"")
    (run / ".saved_model.tmp-0123abcd").mkdir()
    _fake_train()({"value": 2}, str(run))
    assert not (run / "serving").exists()  # replaced with the rest of the old run
    (run / "serving" / "1").mkdir(parents=True)
    (run / "serving" / "1" / "saved_model.pb").write_bytes(b"")
    (run / "serving" / "notes.txt").write_text("mine")  # not only SavedModels
    with pytest.raises(ValueError, match=r"run: holds serving, which no run folder writes"):
        _fake_train()({"value": 3}, str(run))


def _train_with_id(meanwhile=None):
    # A run as start_run writes it; `meanwhile()` runs half-way through training.
    @common.staged_run
    def train(config, run_dir, verbose=1):
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "run.json"), "w") as f:
            json.dump({"task": "fake", "config": config, "mmtl_tf_version": "0",
                       "started": f"2024-01-0{config['value']}T00:00:00+00:00",
                       "run_id": f"id{config['value']}"}, f)
        if meanwhile is not None:
            meanwhile()
        return config["value"]
    return train


def test_a_run_finished_into_the_same_folder_meanwhile_is_named_when_replaced(tmp_path):
    # Two `train --out RUN` at once: both printed "run folder: RUN" and exited
    # 0, and the one that finished last replaced the other's complete run
    # without a word. The other training finishes while this one trains.
    run = tmp_path / "run"
    other = _train_with_id()
    with pytest.warns(RuntimeWarning) as caught:
        _train_with_id(lambda: other({"value": 1}, str(run)))({"value": 2}, str(run))
    assert [str(w.message) for w in caught] == [
        f"{run}: replaced the fake run id1, started 2024-01-01T00:00:00+00:00, which another "
        "training finished there while this one trained (the folder held no run when this "
        "one started); that run's files are gone."]
    assert json.loads((run / "run.json").read_text())["run_id"] == "id2"
    with pytest.warns(RuntimeWarning, match=r"replaced the fake run id3, started 2024-01-03.* "
                                            r"\(the folder held another run when"):
        _train_with_id(lambda: other({"value": 3}, str(run)))({"value": 4}, str(run))
    assert json.loads((run / "run.json").read_text())["run_id"] == "id4"
    assert os.listdir(tmp_path) == ["run"]
    with warnings.catch_warnings():  # the run that was there at the start: no warning
        warnings.simplefilter("error")
        _train_with_id()({"value": 5}, str(run))
        _train_with_id()({"value": 6}, str(tmp_path / "new"))
    assert json.loads((run / "run.json").read_text())["run_id"] == "id5"


def test_files_added_to_the_run_folder_while_training_are_kept(tmp_path):
    # check_run_dir refuses a run folder holding notes of your own at the
    # start, but notes put there while training ran were deleted by the swap.
    run = tmp_path / "run"
    _train_with_id()({"value": 1}, str(run))

    def add_notes():
        (run / "notes.txt").write_text("mine")
        (run / "plots").mkdir()
        (run / "plots" / "loss.png").write_bytes(b"png")

    with pytest.warns(RuntimeWarning) as caught:
        _train_with_id(add_notes)({"value": 2}, str(run))
    kept = [name for name in os.listdir(tmp_path) if name != "run"]
    assert len(kept) == 1 and re.fullmatch(r"run\.replaced-[0-9a-f]{8}", kept[0]), kept
    kept = tmp_path / kept[0]
    assert [str(w.message) for w in caught] == [
        f"{run}: held notes.txt, plots when this training finished, which no run writes; "
        f"the new run replaced it, and notes.txt, plots are kept in {kept} (remove that "
        "when you no longer need it)."]
    assert caught[0].category is KeptFilesWarning
    assert sorted(os.listdir(run)) == ["run.json"]
    assert json.loads((run / "run.json").read_text())["run_id"] == "id2"
    # Only what was added: the old run's own files went as before.
    assert sorted(os.listdir(kept)) == ["notes.txt", "plots"]
    assert (kept / "notes.txt").read_text() == "mine"
    assert (kept / "plots" / "loss.png").read_bytes() == b"png"
    # The kept folder is no leftover that a later training cleans up.
    _train_with_id()({"value": 3}, str(run))
    assert (kept / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == sorted(["run", kept.name])


def test_file_manager_files_neither_block_retraining_nor_are_kept(tmp_path):
    # Finder writes .DS_Store into every folder it shows (and ._NAME files on
    # volumes without Mac metadata), Windows Explorer Thumbs.db and
    # desktop.ini: a run folder looked at in one was refused by the next
    # `train --out` as holding files of your own, a folder made in Finder was
    # "not empty", and one looked at while training ran was kept whole in
    # RUN.replaced-… with a KeptFilesWarning.
    made = tmp_path / "made_in_finder"
    made.mkdir()
    (made / ".DS_Store").write_bytes(b"Bud1")
    assert _train_with_id()({"value": 1}, str(made)) == 1
    run = tmp_path / "run"
    _train_with_id()({"value": 1}, str(run))
    for name in (".DS_Store", "._run.json", "Thumbs.db", "desktop.ini"):
        (run / name).write_bytes(b"Bud1")
    (run / "serving" / "1").mkdir(parents=True)
    for name in ("serving/1/saved_model.pb", "serving/.DS_Store", "serving/1/.DS_Store"):
        (run / name).write_bytes(b"")

    def look_in_finder():
        (run / "serving" / "._1").write_bytes(b"Bud1")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train_with_id(look_in_finder)({"value": 2}, str(run))
    assert sorted(os.listdir(run)) == ["run.json"]
    assert sorted(os.listdir(tmp_path)) == ["made_in_finder", "run"]
    # Only files of those names: a folder called .DS_Store is yours.
    (run / ".DS_Store").mkdir()
    with pytest.raises(ValueError, match=r"run: holds \.DS_Store, which no run folder writes"):
        _train_with_id()({"value": 3}, str(run))
    # And beside a file of your own, they are not named.
    (run / ".DS_Store").rmdir()
    (run / ".DS_Store").write_bytes(b"Bud1")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"run: holds notes.txt, which no run folder writes"):
        _train_with_id()({"value": 3}, str(run))


def test_a_run_folder_made_or_replaced_while_training_is_kept(tmp_path):
    # A folder of your own made at RUN_DIR (absent at the start), or a file
    # put in its place, is not deleted either; an empty folder and exports
    # into the run (the quickstart's saved_model/) are replaced as before.
    run = tmp_path / "run"

    def make_mine():
        run.mkdir()
        (run / "data.csv").write_text("a,b")

    with pytest.warns(KeptFilesWarning, match=r"run: held data.csv when this training "
                                              r"finished, which no run writes; .* data.csv is "
                                              r"kept in"):
        _train_with_id(make_mine)({"value": 1}, str(run))
    (mine,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert (mine / "data.csv").read_text() == "a,b"

    def replace_with_a_file():
        shutil.rmtree(run)
        run.write_text("mine")

    with pytest.warns(KeptFilesWarning, match=r"run: was a file, not a folder, when this "
                                              r"training finished; .* what it held is kept in"):
        _train_with_id(replace_with_a_file)({"value": 2}, str(run))
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-") and p != mine]
    assert kept.read_text() == "mine" and (run / "run.json").is_file()

    def export_into_it():
        (run / "saved_model" / "variables").mkdir(parents=True)
        (run / "saved_model" / "saved_model.pb").write_bytes(b"")

    before = set(os.listdir(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train_with_id(export_into_it)({"value": 3}, str(run))
    assert set(os.listdir(tmp_path)) == before and os.listdir(run) == ["run.json"]


def test_another_run_finished_meanwhile_with_added_files(tmp_path):
    # Both warnings: the other run is named (its files are gone), the notes
    # are kept.
    run = tmp_path / "run"
    other = _train_with_id()

    def other_run_and_notes():
        other({"value": 1}, str(run))
        (run / "notes.txt").write_text("mine")

    with pytest.warns(RuntimeWarning) as caught:
        _train_with_id(other_run_and_notes)({"value": 2}, str(run))
    (kept,) = [p for p in tmp_path.iterdir() if p.name != "run"]
    assert [w.category for w in caught] == [RunReplacedWarning, KeptFilesWarning]
    assert str(caught[0].message).endswith("that run's files are gone.")
    assert "held notes.txt when this training finished" in str(caught[1].message)
    assert os.listdir(kept) == ["notes.txt"]


def _evaluated_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"task": "fake", "config": {"seed": 0},
                                              "mmtl_tf_version": "0", "run_id": "a"}))
    (run / "metrics.json").write_text('{"test": {"accuracy": 0.25}}')
    return run


def test_a_run_replaced_while_evaluating_keeps_its_own_figures(tmp_path):
    # evaluate RUN while `train --out RUN` replaced it wrote the old model's
    # figures into the new run's metrics.json.
    run = _evaluated_run(tmp_path)

    @common.evaluation
    def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
        # train --out run_dir finishes here: a new run in its place
        info = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**info, "run_id": "b"}))
        (run / "metrics.json").write_text('{"test": {"accuracy": 0.75}}')
        return common.write_metrics(run_dir, {"test": {"accuracy": 0.5}})

    with pytest.raises(common.RunReplacedError, match=r"run was replaced while evaluating .* "
                                                      r'not written: {"test": {"accuracy": 0.5}}'):
        evaluate(str(run))
    assert json.loads((run / "metrics.json").read_text()) == {"test": {"accuracy": 0.75}}
    # Not replaced: written as before (and outside an evaluation, e.g. in training).
    (run / "metrics.json").unlink()
    assert common.evaluation(lambda run_dir, **k: common.write_metrics(
        run_dir, {"test": {"accuracy": 0.5}}))(str(run))["test"] == {"accuracy": 0.5}


def _write_new_run(folder, run_id="b"):  # what `train --out RUN` puts in place of a run
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"task": "fake", "config": {"seed": 0}, "mmtl_tf_version": "0",
                   "run_id": run_id}, f)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"test": {"accuracy": 0.75}, "train_seconds": 3.0, "epochs": 2}, f)


@pytest.mark.parametrize("via_link", [False, True])
def test_a_swap_between_the_check_and_the_write_does_not_get_the_old_figures(
        tmp_path, monkeypatch, via_link):
    # write_metrics checked that run.json was the one loaded, then read and
    # rewrote metrics.json by path: a `train --out RUN` that swapped RUN in
    # between got the old model's test figures merged into its metrics.json
    # (with its own train_seconds and epochs), and evaluate exited 0. The
    # swap runs in a thread started right after the check; the test goes on
    # once the swap is done (the old code) or waits for the lock that the
    # check and the write hold (the new code). `via_link`: the run is read
    # and replaced through a link in another folder (`links/latest -> run`);
    # the write locked only the folder holding the link's target, and the
    # swap of the link locks the folder holding the link.
    run = _evaluated_run(tmp_path)
    if via_link:
        (tmp_path / "links").mkdir()
        (tmp_path / "links" / "latest").symlink_to(run, target_is_directory=True)
        run = tmp_path / "links" / "latest"
    at_swap, errors = threading.Event(), []
    lock_swaps = getattr(files, "_lock_swaps", None)

    def waiting_lock(parent):
        at_swap.set()
        return lock_swaps(parent)

    monkeypatch.setattr(files, "_lock_swaps", waiting_lock, raising=False)

    def train_into_run():
        try:
            files.atomic_directory(str(run), _write_new_run)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            at_swap.set()

    check = common._check_still_loaded
    swapper = threading.Thread(target=train_into_run)

    def check_then_swap(run_dir, metrics):
        check(run_dir, metrics)
        swapper.start()
        assert at_swap.wait(timeout=60)
        # A swap that the write's lock does not hold back is done by then
        # (renames); one that it holds back waits for the write.
        swapper.join(timeout=1)

    monkeypatch.setattr(common, "_check_still_loaded", check_then_swap)
    write = common.evaluation(lambda run_dir, **k: common.write_metrics(
        run_dir, {"test": {"accuracy": 0.5}}))
    try:
        write(str(run))  # written into the run loaded, before it was replaced
    finally:
        swapper.join(timeout=60)
    assert not swapper.is_alive() and not errors
    assert json.loads((run / "run.json").read_text())["run_id"] == "b"
    assert json.loads((run / "metrics.json").read_text()) == {
        "test": {"accuracy": 0.75}, "train_seconds": 3.0, "epochs": 2}
    # The swap done before the check: the figures are refused, not merged.
    monkeypatch.setattr(common, "_check_still_loaded", check)

    @common.evaluation
    def replaced(run_dir, split="test", verbose=1, data=None, on_error=None):
        files.atomic_directory(run_dir, lambda tmp: _write_new_run(tmp, run_id="c"))
        return common.write_metrics(run_dir, {"test": {"accuracy": 0.5}})

    with pytest.raises(common.RunReplacedError,
                       match=r'not written: {"test": {"accuracy": 0.5}}'):
        replaced(str(run))
    assert json.loads((run / "metrics.json").read_text())["test"] == {"accuracy": 0.75}


@pytest.mark.parametrize("text, words", [
    ('{"test": {"accuracy": 0.2', "damaged, not valid JSON"),
    ("[1, 2]", "holds a JSON list, not the run's figures"),
    ('{"other_data": []}', 'its "other_data" is not a JSON object')])
def test_a_damaged_metrics_json_is_named_before_evaluating(tmp_path, text, words):
    # It was evaluated fully, then failed with json's bare message (no file named)
    # or an AttributeError traceback for a list.
    run = _evaluated_run(tmp_path)
    (run / "metrics.json").write_text(text)
    called = []

    @common.evaluation
    def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
        called.append(run_dir)
        return common.write_metrics(run_dir, {"test": {"accuracy": 0.5}})

    with pytest.raises(ValueError, match=f"{run / 'metrics.json'}: {words}.*move it away"):
        evaluate(str(run))
    assert called == [] and (run / "metrics.json").read_text() == text


def test_figures_that_cannot_be_written_are_in_the_error(tmp_path, monkeypatch):
    # A read-only run folder: "Permission denied: .../.metrics.json.tmp-9aaedcfb",
    # and the figures evaluated were lost.
    from mmtl_tf import files

    run = _evaluated_run(tmp_path)

    def denied(obj, path):
        def write(tmp):
            raise PermissionError(13, "Permission denied", tmp)
        files.atomic_file(path, write)

    monkeypatch.setattr(common, "atomic_write_json", denied)
    with pytest.raises(PermissionError) as e:
        common.evaluation(lambda run_dir, **k: common.write_metrics(
            run_dir, {"test": {"accuracy": 0.5}}))(str(run))
    path = run / "metrics.json"
    assert str(e.value) == (f"[Errno 13] Permission denied: cannot write {path}; {path} is "
                            'unchanged; the figures, not written: {"test": {"accuracy": 0.5}}')


def test_deterministic_flag_reaches_the_run_and_enables_determinism(tmp_path, monkeypatch):
    from mmtl_tf import cli, runtime

    args = cli.build_parser().parse_args(["train", "fusion", "--deterministic"])
    assert cli._overrides(args, TASKS["fusion"])["deterministic"] is True
    plain = cli.build_parser().parse_args(["train", "fusion"])
    assert "deterministic" not in cli._overrides(plain, TASKS["fusion"])
    calls = []  # not for real here: it would stay on for the rest of the test process
    monkeypatch.setattr(runtime, "enable_determinism", lambda: calls.append(True))
    common.start_run(str(tmp_path / "a"), "fusion", {"seed": 0})
    assert calls == []
    info = common.start_run(str(tmp_path / "b"), "fusion", {"seed": 0, "deterministic": True})
    assert calls == [True] and info["config"]["deterministic"] is True


def test_task_runs_write_no_backup_they_could_never_resume_from(tmp_path, monkeypatch):
    # The staging folder is removed when a run is interrupted, so a
    # BackupAndRestore folder in it would only cost a save every epoch.
    import keras
    import tensorflow as tf

    from mmtl_tf import cli, training

    made = []
    real = keras.callbacks.BackupAndRestore
    monkeypatch.setattr(keras.callbacks, "BackupAndRestore",
                        lambda *a, **k: made.append(a) or real(*a, **k))
    assert cli.main(["train", "fusion", "--size", "tiny", "--epochs", "1",
                     "--out", str(tmp_path / "run")]) == 0
    assert made == []
    # Called directly with a run folder, training.fit still keeps one.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    data = tf.data.Dataset.from_tensor_slices((tf.ones((4, 2)), tf.ones((4, 1)))).batch(2)
    training.fit(model, data, epochs=1, run_dir=str(tmp_path / "own"), verbose=0)
    assert len(made) == 1 and str(tmp_path / "own") in made[0][0]


def test_a_recipe_file_of_your_own_overrides_the_tasks_recipe(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"_about": "fewer epochs",
                                "base": {"epochs": 3, "dropout": 0, "image_size": [48, 64]},
                                "tiny": {"epochs": 1, "hidden_units": 8}}))
    bundled = common.resolve_config("fusion", "base")
    config = common.resolve_config(str(mine), "base", {"seed": 5}, base="fusion")
    assert config == {**bundled, "epochs": 3, "dropout": 0, "image_size": [48, 64], "seed": 5}
    tiny = common.resolve_config(str(mine), "tiny", base="fusion")
    assert tiny == {**common.resolve_config("fusion", "tiny"), "epochs": 1, "hidden_units": 8}
    # Without a base (the Python API as before) the file is the whole config.
    assert common.resolve_config(str(mine), "base") == {"epochs": 3, "dropout": 0,
                                                        "image_size": [48, 64]}


@pytest.mark.parametrize("text, words", [
    ('{"base": {"epochs": 2', "not valid UTF-8 JSON (Expecting"),
    ('[1, 2]', "a JSON object with one object per size"),
    ('{"base": 3}', "size 'base' must be a JSON object of settings, not int"),
    ('{"tiny": {}}', "has no size 'base'; sizes: tiny"),
    ('{"base": {"epochs": "two"}}', 'base.epochs = "two" should be a whole number like '
                                    "fusion's 15"),
    ('{"base": {"augment": 1}}', "base.augment = 1 should be true or false like fusion's false"),
    ('{"base": {"epochs": 0}}', "base.epochs = 0; train at least 1 epoch"),  # best.keras missing
    # As --dropout and --vocab-size: Keras' "Invalid value received for argument rate"
    # once the model was built, and an error naming no setting after TensorFlow loaded.
    ('{"base": {"dropout": 2.0}}', "base.dropout = 2.0: must be at least 0 and below 1"),
    ('{"base": {"vocab_size": 2}}', "base.vocab_size = 2: must be at least 3"),
    # Misspelt or foreign settings were ignored: the run trained with the defaults.
    ('{"base": {"epoch": 5}}', "base.epoch is not a setting of this task (did you mean "
                               "'epochs'?"),
    ('{"base": {"margin": 0.5}}', "base.margin is not a setting of this task (the task's "
                                  "bundled recipe 'fusion' lists its settings"),
    # A traceback from the task (int() of a list), an int() message naming no
    # setting, a size cut to 32, determinism turned on by "false", and
    # gradient ascent or a batch of 0 trained or failed later.
    ('{"base": {"image_size": [[32]]}}', "base.image_size = [[32]] should be a list of whole "
                                         "numbers like fusion's [64, 64]"),
    ('{"base": {"image_size": ["a", "b"]}}', 'base.image_size = ["a", "b"] should be'),
    ('{"base": {"image_size": [32.7, 32]}}', "base.image_size = [32.7, 32] should be"),
    ('{"base": {"image_size": [32.5]}}', "base.image_size = [32.5] should be"),
    ('{"base": {"deterministic": "false"}}', 'base.deterministic = "false" should be true or '
                                             "false."),
    ('{"base": {"learning_rate": -0.01}}', "base.learning_rate = -0.01: must be positive"),
    ('{"base": {"learning_rate": 0}}', "base.learning_rate = 0: must be positive"),
    ('{"base": {"batch_size": 0}}', "base.batch_size = 0: must be at least 1"),
    ('{"base": {"seed": -1}}', "base.seed = -1: must be from 0 to 2**32 - 1"),
    # A list passed the number checks, and failed in the task's float().
    ('{"base": {"learning_rate": [-0.01]}}', "base.learning_rate = [-0.01] should be a "
                                             "number, not a list."),
    ('{"base": {"epochs": [0]}}', "base.epochs = [0] should be a whole number, not a list."),
    ('{"base": {"dropout": [1.5]}}', "base.dropout = [1.5] should be a number, not a list."),
    # null for a number or a list ended in a traceback ("int() argument must
    # be ... not 'NoneType'"), or was taken as "no dropout" (found by a helper).
    ('{"base": {"seed": null}}', "base.seed = null should be a whole number"),
    ('{"base": {"epochs": null}}', "base.epochs = null should be a whole number"),
    ('{"base": {"learning_rate": null}}', "base.learning_rate = null should be a number"),
    ('{"base": {"image_size": null}}', "base.image_size = null should be a list of whole"),
    ('{"base": {"dropout": null}}', "base.dropout = null should be a number"),
])
def test_bad_recipe_files_are_named(tmp_path, capsys, text, words):
    from mmtl_tf import cli

    bad = tmp_path / "bad.json"
    bad.write_text(text)
    assert cli.main(["train", "fusion", "--recipe", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert words in err and "bad.json" in err and "MMTL_TF_TRACEBACK" not in err


def test_another_tasks_bundled_recipe_is_refused(capsys, tmp_path):
    # It ended in a traceback ("KeyError: 'batch_size'", "'vocab_size'").
    from mmtl_tf import cli

    for recipe in ("triplet", "head_swap", "dual_encoder"):
        assert cli.main(["train", "fusion", "--recipe", recipe, "--out", str(tmp_path / "r")]) \
            == 2
        assert capsys.readouterr().err.strip() == (
            f"mmtl-tf train: error: --recipe {recipe}: a recipe of another task; this task's "
            "bundled recipes: fusion (or a JSON file of your own).")
    assert common.resolve_config("dual_encoder_pretrained", "tiny", base="dual_encoder")
    # notebook 03's recipe is not the audio-text task's (it lacks projection_dim).
    with pytest.raises(ValueError, match="a recipe of another task; this task's bundled "
                                         "recipes: audio_text "):
        common.resolve_config("audio_text_fusion", "base", base="audio_text")
    # A mistyped name is an unknown recipe, not another task's.
    with pytest.raises(ValueError, match="unknown recipe 'dual-encoder'; bundled recipes"):
        common.resolve_config("dual-encoder", "base", base="dual_encoder")
    # A file of your own that is not there says so (it was "unknown recipe").
    missing = str(tmp_path / "mine.json")
    with pytest.raises(ValueError, match=r"recipe file .*mine.json: does not exist \(a recipe "
                                         r"is a bundled name"):
        common.resolve_config(missing, "base", base="dual_encoder")
    os.mkdir(missing)
    with pytest.raises(ValueError, match=r"mine.json: is a folder, not a file"):
        common.resolve_config(missing, "base", base="dual_encoder")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "fusion", "--seed", str(2 ** 32)])


@pytest.mark.parametrize("task, key", [("head-swap", "weights"), ("dual-encoder", "image_weights"),
                                       ("fusion", "data")])
def test_empty_recipe_settings_are_refused_like_empty_options(tmp_path, capsys, task, key):
    # "weights": "" trained head-swap from a random initialisation (and
    # "image_weights": "" looked for a weights file ''), where `--weights ''`
    # is a usage error (exit 2).
    from mmtl_tf import cli

    bad = tmp_path / "bad.json"
    for value in ("", "  "):
        bad.write_text(json.dumps({"tiny": {key: value}}))
        assert cli.main(["train", task, "--size", "tiny", "--recipe", str(bad),
                         "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert f"recipe {bad}: tiny.{key} = {json.dumps(value)} is empty; give a value" in err
        assert len(err.strip().splitlines()) == 1 and not os.path.exists(tmp_path / "r")
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["train", "head-swap", "--weights", ""])
    assert e.value.code == 2
    bad.write_text(json.dumps({"tiny": {"weights": None}}))  # null: no weights, as before
    config = common.resolve_config(str(bad), "tiny", base="head_swap",
                                   settings=settings("head-swap"))
    assert config["weights"] is None


def test_a_recipe_file_may_set_every_setting_its_task_reads(tmp_path):
    # Every `config["k"]` / `config.get("k")` of a task's module is a setting
    # of that task (else a file setting it would be refused), and every
    # bundled recipe of the task, as a file of your own, is accepted.
    import importlib.util
    import re

    from mmtl_tf import tasks
    from mmtl_tf.recipes import HERE

    pattern = re.compile(r'\bconfig(?:\.get\(|\[)"([a-z_0-9]+)"')
    for name, spec in TASKS.items():
        known = tasks.settings(name)
        with open(importlib.util.find_spec(spec.module).origin, encoding="utf-8") as f:
            read = set(pattern.findall(f.read()))
        assert read and read <= known, (name, sorted(read - known))
        for file in (f"{r}.json" for r in tasks.task_recipes(spec.recipe)):
            with open(os.path.join(HERE, file), encoding="utf-8") as f:
                recipe = json.load(f)
            mine = tmp_path / file
            mine.write_text(json.dumps({"_about": "a copy", **recipe}))
            for size in ("tiny", "base"):
                config = common.resolve_config(str(mine), size, base=spec.recipe,
                                               settings=known)
                assert config == {**common.resolve_config(spec.recipe, size),
                                  **recipe[size]}
    shared = set()
    for module in ("common", "shared_space", "metric_learning"):
        origin = importlib.util.find_spec(f"mmtl_tf.tasks.{module}").origin
        with open(origin, encoding="utf-8") as f:
            shared |= set(pattern.findall(f.read()))
    assert shared <= set().union(*(tasks.settings(n) for n in TASKS))


def test_run_json_keeps_the_data_source_absolute(tmp_path, monkeypatch):
    # `mmtl-tf evaluate RUN` from another folder must find a relative --data.
    (tmp_path / "mydata").mkdir()
    monkeypatch.chdir(tmp_path)
    for data, kept in (("mydata", str(tmp_path / "mydata")), ("default", "default"),
                       ("tfds:imdb_reviews", "tfds:imdb_reviews")):
        common.start_run(str(tmp_path / "run"), "fusion", {"data": data, "seed": 0})
        info = json.loads((tmp_path / "run" / "run.json").read_text())
        assert info["config"]["data"] == kept


def test_a_mixed_precision_run_loads_under_its_precision(tmp_path):
    # The encoders rebuild their layers under the global policy: evaluate and
    # export of a mixed_float16 run computed in float32 (other figures).
    import keras

    import mmtl_tf

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = mmtl_tf.models.build_fusion_classifier(image_shape=(16, 16, 3), vocab_size=30,
                                                       sequence_length=5, num_classes=3)
    finally:
        keras.config.set_dtype_policy(previous)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "run.json").write_text(json.dumps(
        {"task": "fusion", "config": {"precision": "mixed_float16"}, "class_names": list("abc")}))
    _, loaded = common.load_run_model(str(run), "fusion")
    conv = loaded.get_layer("image_encoder").get_layer("conv")
    assert conv.dtype_policy.name == "mixed_float16"
    assert keras.config.dtype_policy().name == previous.name  # the global policy is kept


LOAD_ALONE = """
import sys
from mmtl_tf.tasks import common
_, model = common.load_run_model(sys.argv[1], "dual-encoder")
print(type(model).__name__)
"""


def test_a_run_model_loads_in_a_process_that_imported_only_the_tasks(tmp_path):
    # load_run_model used keras.saving.load_model without importing
    # mmtl_tf.models: "Could not locate class 'DualEncoder'", which it then
    # reported as a damaged file to train again (found by a helper).
    import subprocess
    import sys

    import mmtl_tf

    model = mmtl_tf.models.build_dual_encoder(
        mmtl_tf.encoders.ImageEncoder("small_cnn", input_shape=(8, 8, 3), conv_filters=4),
        mmtl_tf.encoders.TextEncoder(vocab_size=20, sequence_length=4, embedding_dim=4,
                                     lstm_units=4), projection_dim=4)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "run.json").write_text(json.dumps({"task": "dual-encoder", "config": {}}))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", LOAD_ALONE, str(run)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "DualEncoder"


def test_run_parts_check_skips_a_bert_towers_dict_of_token_ids(tmp_path):
    # A dual encoder with a BERT-family text tower takes {"token_ids",
    # "padding_mask"}: the check failed with "'dict' object has no attribute
    # 'shape'", breaking evaluate and export of such runs.
    import keras

    from mmtl_tf.tasks import common

    text = {"token_ids": keras.Input((6,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input((6,), dtype="bool", name="padding_mask")}
    image = keras.Input((4,), name="image")
    joined = keras.layers.Concatenate()([image, keras.ops.cast(text["token_ids"], "float32")])
    model = keras.Model({"image": image, "text": text}, keras.layers.Dense(2)(joined))

    class Preprocessor:  # a BertPreprocessor has no _output_sequence_length
        pass

    common.check_run_parts(str(tmp_path), model, ("image", "text"), Preprocessor())
    with pytest.raises(ValueError, match="a model with inputs image, text, where this run's "
                                         "task takes audio, text"):
        common.check_run_parts(str(tmp_path), model, ("audio", "text"), Preprocessor())


def test_range_checks_cover_the_tasks_prefixed_settings():
    # text-classifier's lstm_vocab_size and the audio-text classifier's
    # fusion_dropout failed late, like vocab_size and dropout did.
    with pytest.raises(ValueError, match=r"--lstm-vocab-size = 2: must be at least 3"):
        common.resolve_config("text_classifier", "tiny", overrides={"lstm_vocab_size": 2})
    with pytest.raises(ValueError, match=r"--fusion-dropout = 1.0: must be at least 0 and "
                                         r"below 1"):
        common.resolve_config("audio_text_fusion", "tiny", overrides={"fusion_dropout": 1.0})
    assert common.resolve_config("audio_text_fusion", "tiny")["fusion_dropout"] == 0.0


def test_a_task_run_puts_the_callers_runtime_settings_back(tmp_path):
    # start_run applies the run's precision and XLA setting, and a Python
    # caller of a task's train() kept them: a model built after a
    # mixed_float16 run came out mixed (found by a helper, in the code).
    import keras

    from mmtl_tf import runtime

    @common.staged_run
    def train(config, run_dir, verbose=1):
        common.start_run(run_dir, "fusion", config)
        seen.append((keras.config.dtype_policy().name, runtime.current().jit_compile))
        return {}

    seen, before = [], runtime.current()
    train({"precision": "mixed_bfloat16", "jit_compile": True, "seed": 0},
          str(tmp_path / "run"))
    assert seen == [("mixed_bfloat16", True)]  # the run had its own settings
    assert runtime.current() == before
    assert keras.config.dtype_policy().name == before.precision
    assert (tmp_path / "run" / "run.json").exists()


def test_evaluating_a_run_whose_data_moved_says_so(tmp_path, capsys):
    # It said "no such folder or captions file", not that the folder was the
    # run's own training data, nor how to evaluate it where it is now.
    from mmtl_tf import cli

    run = tmp_path / "run"
    run.mkdir()
    gone = str(tmp_path / "moved_away")
    (run / "run.json").write_text(json.dumps({"task": "fusion", "config": {"data": gone}}))
    assert cli.main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err
    assert (f"{gone}: the run's data (recorded in {run / 'run.json'}) is not there any more "
            "(moved or deleted?); give its new place with --data") in err, err
