"""`mmtl_tf.files`: the cache root and atomic folder writes."""

import os
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from mmtl_tf.files import (SAVED_MODEL_ENTRIES, atomic_directory, atomic_file, cache_dir,
                           cache_root, check_replaceable, nested_saved_model)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_directory_gets_a_normal_folder_mode(tmp_path, umask):
    # A staging folder from tempfile.mkdtemp is mode 700 and the rename kept it,
    # so a SavedModel or a data folder was unreadable to other users.
    old = os.umask(umask)
    try:
        written = atomic_directory(tmp_path / "out", lambda d: None)
        replaced = atomic_directory(tmp_path / "out", lambda d: None)
    finally:
        os.umask(old)
    assert written == replaced == str(tmp_path / "out")
    assert _mode(written) == 0o777 & ~umask


def test_atomic_directory_replaces_only_complete_content(tmp_path):
    target = tmp_path / "out"
    atomic_directory(target, lambda d: open(os.path.join(d, "v1.txt"), "w").close())

    def broken(d):
        open(os.path.join(d, "half.txt"), "w").close()
        raise KeyboardInterrupt  # not only Exception: an interrupted write is cleaned up too

    with pytest.raises(KeyboardInterrupt):
        atomic_directory(target, broken)
    assert os.listdir(target) == ["v1.txt"]
    assert os.listdir(tmp_path) == ["out"]


def test_a_file_replaced_by_a_folder_leaves_nothing_behind(tmp_path):
    (tmp_path / "out").write_text("a file")
    atomic_directory(tmp_path / "out", lambda d: open(os.path.join(d, "new.txt"), "w").close())
    assert os.listdir(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == ["new.txt"]


def test_only_new_empty_or_marked_folders_may_be_replaced(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "file.txt").write_text("keep me")
    (tmp_path / "empty").mkdir()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "saved_model.pb").write_bytes(b"")
    for ok in ("new", "empty", "old"):
        check_replaceable(str(tmp_path / ok), "saved_model.pb", "SavedModel")
    monkeypatch.chdir(tmp_path)
    for bad, words in (("mine", "is not a SavedModel (no saved_model.pb)"),
                       ("file.txt", "is not a folder"), (".", "is not a SavedModel"),
                       ("", "empty path"), ("  ", "empty path"),
                       # was "[Errno 17] File exists" when the folder was created
                       ("file.txt/sub/sm", f"{tmp_path / 'file.txt'} is a file, not a folder")):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_replaceable(bad, "saved_model.pb", "SavedModel")


def test_cache_root_follows_the_environment_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTL_TF_CACHE", str(tmp_path / "c"))
    assert cache_root() == str(tmp_path / "c")
    assert not (tmp_path / "c").exists()
    assert cache_dir("a", "b.txt") == str(tmp_path / "c" / "a" / "b.txt")
    assert (tmp_path / "c" / "a").is_dir() and not (tmp_path / "c" / "a" / "b.txt").exists()
    monkeypatch.delenv("MMTL_TF_CACHE")
    assert cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "mmtl_tf")


def test_files_module_does_not_load_tensorflow():
    # data_prep scripts import it so that they run without TensorFlow's start-up.
    code = "import sys, mmtl_tf.files; print(sorted(m for m in sys.modules if m.startswith('tensorflow'))[:3])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"


def test_fetch_pypi_package_from_a_corrupt_wheel_leaves_nothing(tmp_path, monkeypatch):
    from mmtl_tf.data.assets import fetch_pypi_package

    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("no download expected"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "demo_pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(zipfile.BadZipFile):
        fetch_pypi_package("demo-pkg", "1.0", cache=str(tmp_path))
    assert sorted(os.listdir(tmp_path / "pypi")) == ["demo-pkg-1.0.lock"]
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("demo_pkg/data.txt", "hello")
    folder = fetch_pypi_package("demo-pkg", "1.0", cache=str(tmp_path))
    assert open(os.path.join(folder, "demo_pkg", "data.txt")).read() == "hello"
    assert os.path.isfile(os.path.join(folder, ".complete"))
    assert sorted(os.listdir(tmp_path / "pypi")) == ["demo-pkg-1.0", "demo-pkg-1.0.lock"]


def test_atomic_file_mode_suffix_and_failure(tmp_path):
    from mmtl_tf.files import atomic_file

    target = tmp_path / "x.bin"
    seen = []

    def write(tmp):
        seen.append(tmp)
        with open(tmp, "wb") as f:  # reopening keeps the mode the file was created with
            f.write(b"v1")

    old = os.umask(0o022)
    try:
        assert atomic_file(target, write, suffix=".bin") == str(target)
    finally:
        os.umask(old)
    assert seen[0].endswith(".bin") and os.path.dirname(seen[0]) == str(tmp_path)
    assert target.read_bytes() == b"v1" and _mode(target) == 0o644

    def broken(tmp):
        open(tmp, "wb").write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_file(target, broken)
    assert target.read_bytes() == b"v1" and os.listdir(tmp_path) == ["x.bin"]


def test_run_files_are_readable_like_any_new_file(tmp_path):
    # model.keras and the JSON files of a run were mode 600 (tempfile.mkstemp).
    import keras

    from mmtl_tf.training import atomic_write_json, save_model_atomic

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    old = os.umask(0o022)
    try:
        save_model_atomic(model, tmp_path / "model.keras")
        atomic_write_json({"a": 1}, tmp_path / "metrics.json")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "model.keras") == _mode(tmp_path / "metrics.json") == 0o644
    assert sorted(os.listdir(tmp_path)) == ["metrics.json", "model.keras"]
    x = np.ones((1, 3), "float32")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "model.keras")(x), model(x))


def test_saved_model_with_an_unused_optimizer_loads_without_a_warning(tmp_path):
    # A head-swap run trains its head through another model, so the saved
    # model's optimizer had never been built and loading warned about it.
    import warnings

    import keras

    from mmtl_tf.training import save_model_atomic

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="adam", loss="mse")
    save_model_atomic(model, tmp_path / "model.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert len(loaded.optimizer.variables) == 2 + 2 * len(model.trainable_variables)
    loaded.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0)


def test_a_saved_model_with_files_of_your_own_is_refused(tmp_path):
    # Any folder holding saved_model.pb was replaced whole, files of your own in it too.
    sm = tmp_path / "sm"
    (sm / "variables").mkdir(parents=True)
    (sm / "tokens_only" / "variables").mkdir(parents=True)
    for name in ("saved_model.pb", "fingerprint.pb", "tokens_only/saved_model.pb",
                 ".saved_model.pb.tmp-0123abcd"):  # a killed write's leftover is ours
        (sm / name).write_bytes(b"")
    own = dict(own=SAVED_MODEL_ENTRIES, nested=nested_saved_model)
    check_replaceable(str(sm), "saved_model.pb", "SavedModel", **own)
    for extra in ("notes.txt", "assets.extra/tf_serving_warmup_requests",
                  "tokens_only/notes.txt"):
        (sm / extra).parent.mkdir(parents=True, exist_ok=True)
        (sm / extra).write_text("mine")
        with pytest.raises(ValueError, match=f"{sm}: holds .*(notes.txt|assets.extra).*, "
                                             "which no SavedModel writes; .* move them out"):
            check_replaceable(str(sm), "saved_model.pb", "SavedModel", **own)
        (sm / extra).unlink()


def test_a_folder_that_may_not_be_changed_is_refused_up_front(tmp_path, monkeypatch):
    # Running as root, chmod does not stop this process: os.access stands in.
    # Before, the read-only folder was renamed away, the new one put in place and
    # the old copy left behind, hidden, as .sm.old-XXXXXXXX.
    (tmp_path / "sm" / "variables").mkdir(parents=True)
    (tmp_path / "sm" / "variables" / "variables.index").write_bytes(b"")
    (tmp_path / "sm" / "assets").mkdir()  # empty: removing it needs only sm's permission
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    locked = {str(tmp_path / "sm" / "variables"), str(tmp_path / "sm" / "assets")}
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: (
        False if os.fspath(p) in locked else real(p, mode, **k)))
    with pytest.raises(ValueError, match=f"{tmp_path / 'sm' / 'variables'} may not be changed"):
        check_replaceable(str(tmp_path / "sm"), "saved_model.pb", "SavedModel",
                          own=SAVED_MODEL_ENTRIES)
    locked = {str(tmp_path / "sm")}
    with pytest.raises(ValueError, match="this SavedModel may not be changed"):
        check_replaceable(str(tmp_path / "sm"), "saved_model.pb", "SavedModel",
                          own=SAVED_MODEL_ENTRIES)
    # An empty folder that may not be changed is removed through its parent's
    # permission; the parent, in which the replacement renames, must be writable.
    locked = {str(tmp_path / "sm" / "assets")}
    (tmp_path / "sm" / "variables" / "variables.index").unlink()
    locked = {str(tmp_path / "sm" / "variables"), str(tmp_path / "sm" / "assets")}
    check_replaceable(str(tmp_path / "sm"), "saved_model.pb", "SavedModel",
                      own=SAVED_MODEL_ENTRIES)
    locked = {str(tmp_path)}
    with pytest.raises(ValueError, match=f"{tmp_path} may not be changed"):
        check_replaceable(str(tmp_path / "sm"), "saved_model.pb", "SavedModel",
                          own=SAVED_MODEL_ENTRIES)


def test_an_old_copy_that_cannot_be_removed_is_named(tmp_path, monkeypatch):
    # Was shutil.rmtree(old, ignore_errors=True): the old copy stayed, hidden, unsaid.
    from mmtl_tf import files

    atomic_directory(tmp_path / "out", lambda d: None)

    def no_permission(path, ignore_errors=False, onerror=None):  # removes nothing
        if onerror is not None:
            error = PermissionError(13, "Permission denied")
            onerror(os.unlink, os.path.join(path, "x"), (PermissionError, error, None))

    monkeypatch.setattr(files.shutil, "rmtree", no_permission)
    with pytest.warns(RuntimeWarning, match=r"out was replaced, but its earlier copy could "
                                            r"not be removed .*Permission denied.*left in "
                                            rf"{tmp_path}/\.out\.old-"):
        atomic_directory(tmp_path / "out", lambda d: None)


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError(18, "Invalid cross-device link")])
def test_an_interrupted_swap_puts_the_old_folder_back(tmp_path, monkeypatch, error):
    # The swap renames path -> .old, then staging -> path; an error or Ctrl-C
    # between the two removed the new content and never restored the old one.
    from mmtl_tf import files

    atomic_directory(tmp_path / "out", lambda d: open(os.path.join(d, "v1"), "w").close())
    real, calls = os.replace, []

    def flaky(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # the second rename: staging -> out
            raise error
        return real(a, b)

    monkeypatch.setattr(files.os, "replace", flaky)
    with pytest.raises(KeyboardInterrupt if error is KeyboardInterrupt else OSError):
        atomic_directory(tmp_path / "out", lambda d: open(os.path.join(d, "v2"), "w").close())
    monkeypatch.undo()
    assert len(calls) == 3  # and the third puts the old folder back
    assert os.listdir(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == ["v1"]


def test_write_errors_name_the_target_not_the_temporary_file(tmp_path):
    # "Permission denied: .../.metrics.json.tmp-9aaedcfb" named a file that no
    # longer existed; the target and whether its earlier content is kept were unsaid.
    target = tmp_path / "metrics.json"
    target.write_text("{}")

    def denied(tmp):
        raise PermissionError(13, "Permission denied", tmp)

    with pytest.raises(PermissionError) as e:
        atomic_file(target, denied)
    assert str(e.value) == f"[Errno 13] Permission denied: cannot write {target}; {target} " \
                           "is unchanged"
    assert os.listdir(tmp_path) == ["metrics.json"] and target.read_text() == "{}"

    def full_disk(tmp):  # a write() that fails names no file
        atomic_file(os.path.join(tmp, "model.keras"), lambda t: (_ for _ in ()).throw(
            OSError(28, "No space left on device")))

    with pytest.raises(OSError) as e:
        atomic_directory(tmp_path / "run", full_disk)
    assert str(e.value) == ("[Errno 28] No space left on device: cannot write "
                            f"{tmp_path / 'run' / 'model.keras'}")
    (tmp_path / "run").mkdir()
    with pytest.raises(OSError, match=rf"model.keras; {tmp_path / 'run'} is unchanged$"):
        atomic_directory(tmp_path / "run", full_disk)
    with pytest.raises(FileNotFoundError, match="no-such-data"):  # another file: kept as is
        atomic_directory(tmp_path / "run", lambda tmp: open(tmp_path / "no-such-data"))
