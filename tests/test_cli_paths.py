"""Command-line paths and usage errors: an empty path, the current folder, a
new folder where none may be created, an option of another task, and usage
errors found before TensorFlow is imported."""

import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

import mmtl_tf.tasks
from mmtl_tf import cli, files
from mmtl_tf.export import check_export_path
from mmtl_tf.files import check_replaceable
from mmtl_tf.tasks import common
from tests.conftest import REPO

_TINY = ["--size", "tiny", "--epochs", "1", "--no-jit-compile"]


def _usage_error(capsys, argv):
    """Runs the CLI, checks that it stopped with status 2 and one line on
    stderr, and returns that line."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


_NO_TENSORFLOW = """
import sys
from mmtl_tf import cli, files
try:
    code = cli.main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(code, sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""


def test_the_current_folder_or_one_above_it_is_refused(tmp_path, monkeypatch, capsys):
    # `--out .` in an empty folder: the folder the shell was in was renamed
    # aside, deleted and a new one made at its path (exit 0).
    here = tmp_path / "a" / "here"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    for path, words in ((".", "is the current folder"), (str(here), "is the current folder"),
                        ("..", f"holds the current folder ({here})"),
                        (str(tmp_path), f"holds the current folder ({here})")):
        with pytest.raises(ValueError, match=r"\(the shell would be left in a deleted "
                                             r"folder\), so choose another --out \(run"):
            common.check_run_dir(path)
        with pytest.raises(ValueError, match=re.escape(f"{path}: {words}")):
            check_export_path(path)
    assert cli.main(["train", "fusion", *_TINY, "--out", "."]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmtl-tf train: error: .: is the current folder; writing the run "
                          "folder replaces the whole folder"), err
    assert os.path.samefile(os.getcwd(), here) and os.listdir(here) == []
    assert os.listdir(tmp_path) == ["a"]
    # A run folder that is the current folder is refused too (a run folder
    # elsewhere, or a new folder inside the current one, is not).
    (here / "run.json").write_text('{"task": "fusion", "config": {}, "mmtl_tf_version": "0"}')
    with pytest.raises(ValueError, match="is the current folder"):
        common.check_run_dir(".")
    common.check_run_dir("new")
    common.check_run_dir(str(tmp_path / "b"))


def _unwritable_folder(tmp_path):
    """A folder in which this process cannot create folders: a read-only one,
    or for root (who may write in any folder of tmp_path whatever its mode)
    one of a special file system; else a skip."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return str(folder)
    for folder in ("/sys/kernel", "/proc"):
        probe = os.path.join(folder, "mmtl_tf-test-probe")
        try:
            os.mkdir(probe)
        except OSError:
            return folder
        os.rmdir(probe)
    pytest.skip("no folder that root cannot write")


def test_a_new_folder_where_none_may_be_created_is_refused_up_front(tmp_path):
    # Refused only when the folder existed; a new one failed after loading
    # the data and building the model: "[Errno 13] Permission denied: cannot
    # write PATH" (status 1). The check creates a folder there and removes
    # it, because os.access says yes to root.
    folder = _unwritable_folder(tmp_path)
    for path in (os.path.join(folder, "run"), os.path.join(folder, "new", "run")):
        with pytest.raises(ValueError, match=re.escape(f"{path}: cannot create folders in "
                                                       f"{folder} (") + r".+\), so the run "
                           r"folder cannot be written there; choose another --out \(run "
                           r"folder\) or make it writable\.$"):
            common.check_run_dir(path)
    with pytest.raises(ValueError, match="so the SavedModel cannot be written there"):
        check_export_path(os.path.join(folder, "sm"))
    # Where it may, the check leaves nothing behind.
    check_replaceable(str(tmp_path / "new" / "sm"), "saved_model.pb", "SavedModel")
    assert sorted(os.listdir(tmp_path)) == ([] if os.geteuid() == 0 else ["read-only"])


def test_a_read_only_file_system_is_refused_up_front(tmp_path, monkeypatch):
    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(files, "check_can_create_folders", read_only)
    with pytest.raises(ValueError, match=f"{tmp_path / 'run'}: cannot create folders in "
                                         f"{tmp_path} \\(Read-only file system\\)"):
        common.check_run_dir(str(tmp_path / "run"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0
                    or not os.path.exists("/usr/bin/setpriv"),
                    reason="needs root to run the CLI as another user")
def test_a_new_run_folder_in_a_read_only_folder_as_another_user():
    # The reviewer's case, for real: uid 65534 (nobody) may not write `ro`.
    # Not in tmp_path: pytest makes its folders private to root.
    top = tempfile.mkdtemp(prefix="mmtl_tf-ro-")
    try:
        os.chmod(top, 0o755)
        read_only, home = os.path.join(top, "ro"), os.path.join(top, "home")
        os.mkdir(read_only)
        os.chmod(read_only, 0o555)
        os.mkdir(home)
        os.chmod(home, 0o777)
        env = {**os.environ, "HOME": home, "MMTL_TF_CACHE": os.path.join(home, "cache"),
               "MPLCONFIGDIR": os.path.join(home, "mpl"), "PYTHONPATH": REPO}
        out = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                              "--clear-groups", sys.executable, "-c", _NO_TENSORFLOW, "train",
                              "fusion", "--out", os.path.join(read_only, "run"), *_TINY],
                             capture_output=True, text=True, timeout=300, cwd=home, env=env)
        if not out.stdout.strip():
            pytest.skip(f"uid 65534 cannot run the CLI here: {out.stderr[-300:]}")
        assert out.stdout.split()[0] == "2", (out.stdout, out.stderr)
        assert out.stderr.strip().splitlines()[-1] == (
            f"mmtl-tf train: error: {read_only}/run: cannot create folders in {read_only} "
            "(Permission denied), so the run folder cannot be written there; choose another "
            "--out (run folder) or make it writable.")
        assert os.listdir(read_only) == []
    finally:
        os.chmod(os.path.join(top, "ro"), 0o755)
        shutil.rmtree(top)


@pytest.mark.parametrize("argv, prog, words", [
    # `--out ''` trained into runs/fusion (`args.out or "runs/fusion"`), replacing it.
    (["train", "fusion", "--out", "", *_TINY], "mmtl-tf train fusion",
     "argument --out: empty; name a run folder, or leave --out out for runs/fusion"),
    (["train", "fusion", "--out", "  ", *_TINY], "mmtl-tf train fusion", "argument --out: empty"),
    # `--weights ''` trained from random weights without a word.
    (["train", "head-swap", "--weights", "", *_TINY], "mmtl-tf train head-swap",
     "argument --weights: empty; give imagenet|none|FILE, or leave --weights out"),
    (["train", "fusion", "--recipe", "", *_TINY], "mmtl-tf train fusion",
     "argument --recipe: empty"),
    (["quickstart", "--out", "", "--tasks", "fusion", *_TINY], "mmtl-tf quickstart",
     "argument --out: empty"),
    (["export", ".", "--saved-model", ""], "mmtl-tf export", "argument --saved-model: empty"),
])
def test_an_empty_path_is_a_usage_error(tmp_path, monkeypatch, capsys, argv, prog, words):
    monkeypatch.chdir(tmp_path)
    err = _usage_error(capsys, argv)
    assert err.startswith(f"{prog}: error: {words}"), err
    assert os.listdir(tmp_path) == []  # no runs/fusion, runs/head-swap


def test_an_option_of_other_tasks_is_named_by_the_task(capsys):
    # It said "mmtl-tf: error: unrecognized arguments: --cache memory".
    err = _usage_error(capsys, ["train", "text-classifier", "--cache", "memory"])
    assert err == ("mmtl-tf train text-classifier: error: unrecognized arguments: --cache "
                   "memory; text-classifier has no --cache (an option of fusion, head-swap, "
                   "dual-encoder, audio-text, siamese, triplet, matching) (see --help)")
    err = _usage_error(capsys, ["train", "fusion", "--bogus", "1"])
    assert err == "mmtl-tf train fusion: error: unrecognized arguments: --bogus 1 (see --help)"
    err = _usage_error(capsys, ["export", ".", "--saved-model", "x", "--split", "test"])
    assert err.startswith("mmtl-tf export: error: unrecognized arguments: --split test")


@pytest.mark.parametrize("argv", [
    ["quickstart", "--tasks", "nosuch"],
    ["quickstart", "--tasks", ","],
    ["train", "fusion", "--data", "tfds:mnist"],
    ["train", "fusion", "--out", ""],
])
def test_usage_errors_are_found_before_tensorflow_is_imported(tmp_path, argv):
    # They imported TensorFlow first: about 9 s and its start-up log lines.
    out = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW, *argv], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert out.stdout.strip() == "2 []", (out.stdout, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


class _FakeTask:
    def train(self, config, run_dir, verbose=1):
        return {"value": 0.5}

    def summary(self, metrics):
        return [{"model": "fusion model", "metric": "accuracy", "value": metrics["value"]}]


def test_the_train_table_has_no_empty_saved_model_column(tmp_path, monkeypatch, capsys):
    # `train` exports nothing: its table always had an empty "SavedModel" column.
    monkeypatch.setattr(mmtl_tf.tasks, "get_task", lambda name: _FakeTask())
    assert cli.main(["train", "fusion", "--size", "tiny", "--out", str(tmp_path / "r")]) == 0
    header = capsys.readouterr().out.split("run folder: ")[1].splitlines()[1]
    assert header.split() == ["model", "metric", "value", "baseline", "baseline", "value",
                              "params", "train", "s"]


def _home(tmp_path, monkeypatch):
    """A home folder in `tmp_path` (what `~` names) and a working folder
    beside it, made current: a literal `~` folder would appear there."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home, work


def test_a_quoted_tilde_is_the_home_folder_in_every_path_option(tmp_path, monkeypatch):
    # `--out "~/runs/a"` (quoted, so the shell left the ~) trained into a
    # folder named "~" in the current folder; `--data "~/photos"` was
    # "neither 'default' nor an existing folder".
    home, _ = _home(tmp_path, monkeypatch)
    (home / "photos").mkdir()
    (home / "runs" / "a").mkdir(parents=True)
    parser = cli.build_parser()
    args = parser.parse_args(["train", "fusion", "--data", "~/photos", "--out", "~/runs/b",
                              "--recipe", "~/my.json", "--cache", "~/cache"])
    assert (args.data, args.out, args.recipe, args.cache) == (
        str(home / "photos"), str(home / "runs" / "b"), str(home / "my.json"),
        str(home / "cache"))
    args = parser.parse_args(["quickstart", "--out", "~/qs"])
    assert args.out == str(home / "qs")
    args = parser.parse_args(["export", "~/runs/a", "--saved-model", "~/sm"])
    assert (args.run_dir, args.saved_model) == (str(home / "runs" / "a"), str(home / "sm"))
    args = parser.parse_args(["evaluate", "~/runs/a", "--data", "~/photos"])
    assert (args.run_dir, args.data) == (str(home / "runs" / "a"), str(home / "photos"))
    # A "~" inside a name, "default" and TFDS names are as given.
    args = parser.parse_args(["train", "fusion", "--data", "default", "--out", "a~b"])
    assert (args.data, args.out) == ("default", "a~b")
    assert parser.parse_args(["train", "fusion", "--data", "tfds:~x"]).data == "tfds:~x"


def test_tilde_paths_in_recipes_and_the_python_api(tmp_path, monkeypatch):
    import mmtl_tf
    from mmtl_tf.files import user_path
    from mmtl_tf.tasks.common import absolute_source, check_cache

    home, work = _home(tmp_path, monkeypatch)
    assert user_path("~") == str(home) and user_path(os.path.join("~", "x")) == str(home / "x")
    assert check_cache("~/c") == str(home / "c") and check_cache("memory") == "memory"
    shutil.copytree(mmtl_tf.data.DEFAULT_SAMPLE_DIR, home / "emoji")
    assert absolute_source("~/emoji") == str(home / "emoji")
    got = mmtl_tf.data.load_image_text_records("~/emoji", "test")
    want = mmtl_tf.data.load_image_text_records(str(home / "emoji"), "test")
    assert got.paths == want.paths and got.captions == want.captions
    got = mmtl_tf.data.load_image_label_records("~/emoji", "test")
    assert got.paths == mmtl_tf.data.load_image_label_records(str(home / "emoji"), "test").paths
    (home / "texts.csv").write_text("text,label\n" + "".join(
        f"text {i},{'ab'[i % 2]}\n" for i in range(40)), encoding="utf-8")
    got = mmtl_tf.data.load_text_classification_records("~/texts.csv", "train")
    assert len(got) == len(mmtl_tf.data.load_text_classification_records(
        str(home / "texts.csv"), "train")) > 0
    assert os.listdir(work) == []


def test_an_export_to_a_tilde_path_is_written_in_the_home_folder(tmp_path, monkeypatch):
    import tensorflow as tf

    from mmtl_tf.export import write_archive

    home, work = _home(tmp_path, monkeypatch)
    double = tf.function(lambda x: {"y": 2.0 * x},
                         input_signature=[tf.TensorSpec([None], tf.float32)])
    written = write_archive("~/sm", {"serving_default": double})
    assert os.path.realpath(written) == os.path.realpath(home / "sm")
    loaded = tf.saved_model.load(str(home / "sm"))
    assert loaded.signatures["serving_default"](x=tf.constant([1.5]))["y"].numpy() == [3.0]
    assert os.listdir(work) == []


def test_weights_and_encoder_folders_may_be_tilde_paths(tmp_path, monkeypatch):
    # Named in the home folder (missing here), not in a folder named "~".
    from mmtl_tf.encoders import AudioEncoder, make_application_backbone
    from mmtl_tf.encoders.bert_encoder import load_bert_backbone

    home, _ = _home(tmp_path, monkeypatch)
    for name in ("mobilenet_v3_small", "efficientnet_lite0"):
        with pytest.raises(FileNotFoundError, match=re.escape(str(home / "w.weights.h5"))):
            make_application_backbone(name, (96, 96, 3), weights="~/w.weights.h5")
    with pytest.raises(FileNotFoundError, match=re.escape(str(home / "a.keras"))):
        AudioEncoder().load_pretrained("~/a.keras")
    with pytest.raises(FileNotFoundError, match=re.escape(str(home / "enc"))):
        load_bert_backbone("~/enc")


def test_models_and_vectorizers_load_from_tilde_paths(tmp_path, monkeypatch):
    import keras
    import numpy as np

    import mmtl_tf
    from mmtl_tf.data.text import (load_text_vectorizer, make_text_vectorizer,
                                   save_text_vectorizer)

    home, work = _home(tmp_path, monkeypatch)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.save(home / "m.keras")
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(mmtl_tf.load_model("~/m.keras")(x), model(x))
    layer = make_text_vectorizer(["a cat", "a dog"], vocab_size=10, sequence_length=4)
    save_text_vectorizer(layer, "~/v.json")
    assert (home / "v.json").is_file()
    assert load_text_vectorizer("~/v.json").get_vocabulary() == layer.get_vocabulary()
    assert os.listdir(work) == []
