"""`mmtl_tf.files`: the cache root and atomic folder writes."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from mmtl_tf.files import (SAVED_MODEL_ENTRIES, atomic_directory, atomic_file, cache_dir,
                           cache_root, check_replaceable, foreign_entries, is_saved_model,
                           nested_saved_model)


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
    # A failed write leaves no folder it created above the target (a failed
    # `mmtl-tf train` left an empty runs/ in the current folder).
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyboardInterrupt):
        atomic_directory(tmp_path / "kept" / "runs" / "deeper" / "out", broken)
    assert os.listdir(tmp_path / "kept") == []


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
    # A link to an export is refused as a link (it said "exists and is not a folder").
    os.symlink(tmp_path / "old", tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    for bad, words in (("mine", "is not a SavedModel (no saved_model.pb)"),
                       ("link", f"link: a symbolic link (to {tmp_path / 'old'}); the SavedModel "
                                "is not written through links: give the folder itself"),
                       ("file.txt", "is not a folder"), (".", "is the current folder"),
                       ("", "empty path"), ("  ", "empty path"),
                       # was "[Errno 17] File exists" when the folder was created
                       ("file.txt/sub/sm", f"{tmp_path / 'file.txt'} is a file, not a folder")):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_replaceable(bad, "saved_model.pb", "SavedModel")


def test_a_mount_point_or_a_folder_that_cannot_be_renamed_is_named(tmp_path, monkeypatch):
    # Exporting into a mounted volume wrote the whole SavedModel and then
    # failed with "[Errno 16] Device or resource busy: '.../mp' ->
    # '.../.mp.old-efb659ea'" (an immutable empty folder: "[Errno 1]").
    mount = tmp_path / "mp"
    mount.mkdir()
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: os.fspath(p) == str(mount) or
                        real_ismount(p))
    with pytest.raises(ValueError, match=rf"mp: a mount point; writing the SavedModel replaces "
                                         rf"the folder by renaming it, .* e\.g\. "
                                         rf"{mount / '1'} \(TF Serving"):
        check_replaceable(str(mount), "saved_model.pb", "SavedModel")
    check_replaceable(str(mount / "1"), "saved_model.pb", "SavedModel")
    # A rename of the target that fails names the target, not the hidden copy.
    (tmp_path / "stuck").mkdir()
    real_replace = os.replace

    def replace(src, dst):
        if os.fspath(src) == str(tmp_path / "stuck"):
            raise OSError(1, "Operation not permitted", src, dst)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match=rf"Operation not permitted: cannot write "
                                      rf"{tmp_path / 'stuck'}: it could not be renamed aside "
                                      rf".*; {tmp_path / 'stuck'} is unchanged$"):
        atomic_directory(tmp_path / "stuck", lambda d: open(os.path.join(d, "a"), "w").close())
    assert sorted(os.listdir(tmp_path)) == ["mp", "stuck"] and not os.listdir(tmp_path / "stuck")


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
    # Named as what they are: "tokens_only/notes.txt" (it said "holds
    # tokens_only", a folder the export writes itself); a file in variables/
    # was deleted without a word.
    for extra, named in (("notes.txt", "notes.txt"),
                         ("assets.extra/tf_serving_warmup_requests", "assets.extra"),
                         ("tokens_only/notes.txt", "tokens_only/notes.txt"),
                         ("variables/README.txt", "variables/README.txt"),
                         ("tokens_only/variables/x.txt", "tokens_only/variables/x.txt")):
        (sm / extra).parent.mkdir(parents=True, exist_ok=True)
        (sm / extra).write_text("mine")
        with pytest.raises(ValueError, match=f"{sm}: holds {named}, which no SavedModel "
                                             "writes; .* move them out"):
            check_replaceable(str(sm), "saved_model.pb", "SavedModel", **own)
        assert not is_saved_model(str(sm))
        (sm / extra).unlink()
        shutil.rmtree(sm / "assets.extra", ignore_errors=True)
    (sm / "variables" / "variables.index").write_bytes(b"")
    (sm / "variables" / "variables.data-00000-of-00001").write_bytes(b"")
    assert is_saved_model(str(sm))


def test_file_manager_files_do_not_make_a_folder_yours(tmp_path):
    # .DS_Store (Finder), Thumbs.db and desktop.ini (Windows Explorer),
    # .directory (KDE) and ._NAME (Finder on other volumes) are written by file
    # managers into folders they show; names in any case (Windows).
    sm = tmp_path / "sm"
    (sm / "variables").mkdir(parents=True)
    for name in ("saved_model.pb", "variables/.DS_Store", ".DS_Store", "._saved_model.pb",
                 "THUMBS.DB", "desktop.ini", ".directory"):
        (sm / name).write_bytes(b"")
    assert is_saved_model(str(sm))
    check_replaceable(str(sm), "saved_model.pb", "SavedModel", own=SAVED_MODEL_ENTRIES,
                      nested=nested_saved_model)
    only = tmp_path / "only"
    only.mkdir()
    (only / ".DS_Store").write_bytes(b"")
    check_replaceable(str(only), "saved_model.pb", "SavedModel")  # an empty folder
    # A file manager's name on a link or a folder is not a file manager's file.
    os.symlink(tmp_path / "elsewhere", only / "Thumbs.db")
    with pytest.raises(ValueError, match="is not a SavedModel"):
        check_replaceable(str(only), "saved_model.pb", "SavedModel")
    (sm / "desktop.ini").unlink()
    (sm / "desktop.ini").mkdir()
    assert not is_saved_model(str(sm))
    assert foreign_entries(str(sm), SAVED_MODEL_ENTRIES) == ["desktop.ini"]


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

    def no_permission(path, ignore_errors=False, onerror=None, *, onexc=None):  # removes nothing
        error = PermissionError(13, "Permission denied")
        if onexc is not None:
            onexc(os.unlink, os.path.join(path, "x"), error)
        elif onerror is not None:
            onerror(os.unlink, os.path.join(path, "x"), (PermissionError, error, None))

    monkeypatch.setattr(files.shutil, "rmtree", no_permission)
    with pytest.warns(RuntimeWarning, match=r"out was replaced, but its earlier copy could "
                                            r"not be removed .*Permission denied.*left in "
                                            rf"{tmp_path}/\.out\.old-"):
        atomic_directory(tmp_path / "out", lambda d: None)


def test_rmtree_callback_adapters_report_the_same():
    # Python 3.12 hands onexc= the exception, 3.11 hands onerror= exc_info.
    from mmtl_tf import files

    error = PermissionError(13, "Permission denied")
    by_onexc, by_onerror = [], []
    files._onexc_adapter(lambda *a: by_onexc.append(a))(os.unlink, "/x/y", error)
    files._onerror_adapter(lambda *a: by_onerror.append(a))(
        os.unlink, "/x/y", (PermissionError, error, None))
    assert by_onexc == by_onerror == [("/x/y", error)]


@pytest.mark.parametrize("onexc", [True, False])
def test_an_old_copy_is_removed_without_deprecated_rmtree_arguments(tmp_path, monkeypatch,
                                                                     onexc):
    # shutil.rmtree(onerror=...) warns DeprecationWarning from Python 3.12.
    # Before 3.12, rmtree here is 3.12's: onexc=, and a warning for onerror=.
    from mmtl_tf import files

    if not onexc and sys.version_info >= (3, 12):
        pytest.skip("onerror= is the Python 3.11 branch")
    real_rmtree = shutil.rmtree
    if onexc and sys.version_info < (3, 12):
        def rmtree_3_12(path, ignore_errors=False, onerror=None, *, onexc=None):
            if onerror is not None:
                warnings.warn("onerror argument is deprecated, use onexc instead",
                              DeprecationWarning, stacklevel=2)
            if onexc is not None:
                def onerror(function, p, exc_info):
                    onexc(function, p, exc_info[1])
            return real_rmtree(path, ignore_errors, onerror)

        monkeypatch.setattr(files.shutil, "rmtree", rmtree_3_12)
    monkeypatch.setattr(files, "_RMTREE_TAKES_ONEXC", onexc, raising=False)
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):  # root may remove anything: refuse one file
        if os.path.basename(path) == "stuck":
            raise PermissionError(13, "Permission denied", path)
        return real_unlink(path, *args, **kwargs)

    def write_v1(d):
        os.mkdir(os.path.join(d, "sub"))
        for name in ("stuck", "gone"):
            open(os.path.join(d, "sub", name), "w").close()

    atomic_directory(tmp_path / "out", write_v1)
    monkeypatch.setattr(os, "unlink", unlink)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        with pytest.warns(RuntimeWarning, match=r"out was replaced, but its earlier copy could "
                                                r"not be removed \(.*/sub/stuck: Permission "
                                                rf"denied\); it is left in {tmp_path}/\.out\.old-"):
            atomic_directory(tmp_path / "out", _write("v2"))
    monkeypatch.undo()
    old, = [n for n in os.listdir(tmp_path) if n.startswith(".out.old-")]
    assert os.listdir(tmp_path / old / "sub") == ["stuck"]  # the rest went
    assert os.listdir(tmp_path / "out") == ["v2"]


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


# A child process writing `sys.argv[1]` through atomic_directory: it writes a
# file into its staging folder, says so, then is SIGKILLed ("kill") or goes on
# ("live") until it is killed.
_WRITER = """
import os, signal, sys, time
from mmtl_tf.files import atomic_directory

def write(tmp):
    open(os.path.join(tmp, "half.bin"), "wb").write(b"x" * 1000)
    print("writing", flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(120)

atomic_directory(sys.argv[1], write)
"""


def _writer(path, how):
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), how],
                            stdout=subprocess.PIPE, text=True)


def _killed_write(path):
    child = _writer(path, "kill")
    assert child.stdout.readline() == "writing\n"
    assert child.wait(timeout=60) == -signal.SIGKILL
    child.stdout.close()


def _staged(folder, name):
    return sorted(n for n in os.listdir(folder) if n.startswith(f".{name}.tmp-"))


def _write(name):
    return lambda d: open(os.path.join(d, name), "w").close()


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_killed_write_is_removed_by_the_next_one_a_live_one_is_not(tmp_path):
    # A write killed hard (SIGKILL, the OOM killer) left its staging folder
    # `.out.tmp-…` (a partial run: hundreds of MB for a large model) forever.
    out = tmp_path / "out"
    atomic_directory(out, _write("v1"))
    _killed_write(out)
    dead = _staged(tmp_path, "out")
    assert len(dead) == 1 and os.listdir(tmp_path / dead[0]) != []
    _killed_write(tmp_path / "other")  # another name's: not this write's business
    other = _staged(tmp_path, "other")
    live = _writer(out, "live")  # a second write into the same path, still running
    try:
        assert live.stdout.readline() == "writing\n"
        running = [n for n in _staged(tmp_path, "out") if n not in dead]
        atomic_directory(out, _write("v2"))
        assert sorted(os.listdir(tmp_path)) == sorted(["out", *running, *other])
        assert "half.bin" in os.listdir(tmp_path / running[0])
        assert os.listdir(out) == ["v2"]
    finally:
        live.kill()
        live.wait()
        live.stdout.close()
    atomic_directory(out, _write("v3"))  # its writer is gone now
    assert sorted(os.listdir(tmp_path)) == sorted(["out", *other])
    assert os.listdir(out) == ["v3"]


def test_leftovers_without_a_lock_file_are_kept(tmp_path):
    # A staging folder of an earlier version (which may still be writing) and
    # an earlier copy moved aside by a swap killed before the new content was
    # in place (the only copy of it) have no lock file: they stay.
    earlier = tmp_path / ".out.tmp-0123abcd"
    earlier.mkdir()
    (earlier / "run.json").write_text("{}")
    aside = tmp_path / ".out.old-89abcdef"
    aside.mkdir()
    (aside / "model.keras").write_text("the only copy")
    alike = tmp_path / ".out2.tmp-0123abcd"  # another name, with a free lock
    alike.mkdir()
    (alike / "mmtl_tf.lock").write_text("")
    atomic_directory(tmp_path / "out", _write("v1"))
    assert sorted(os.listdir(tmp_path)) == sorted(["out", earlier.name, aside.name, alike.name])
    assert os.listdir(earlier) == ["run.json"] and os.listdir(aside) == ["model.keras"]


_SWAP_KILLED = """
import os, shutil, signal, sys
from mmtl_tf import files

out = sys.argv[1]
files.atomic_directory(out, lambda d: (os.mkdir(os.path.join(d, "sub")),
                                       open(os.path.join(d, "sub", "v1"), "w").close()))
real_replace, real_rmtree, calls = os.replace, shutil.rmtree, []

def replace(a, b):
    calls.append(a)
    if sys.argv[2] == "between-renames" and len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # out is now at .out.old-…, the new copy staged
    return real_replace(a, b)

def rmtree(path, *args, **kwargs):
    if sys.argv[2] == "removing-old-copy":
        os.kill(os.getpid(), signal.SIGKILL)  # the new copy is in place
    return real_rmtree(path, *args, **kwargs)

files.os.replace, files.shutil.rmtree = replace, rmtree
files.atomic_directory(out, lambda d: open(os.path.join(d, "v2"), "w").close())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_swap_killed_keeps_the_old_copy_until_the_new_one_is_in_place(tmp_path):
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", _SWAP_KILLED, str(out), "between-renames"])
    assert killed.returncode == -signal.SIGKILL
    aside = [n for n in os.listdir(tmp_path) if n.startswith(".out.old-")]
    staged = _staged(tmp_path, "out")
    assert not out.exists() and len(aside) == len(staged) == 1
    assert os.listdir(tmp_path / aside[0] / "sub") == ["v1"]
    assert os.listdir(tmp_path / staged[0]) == ["v2"]  # complete, without its lock file
    atomic_directory(out, _write("v3"))  # both kept: rename either back to out
    assert sorted(os.listdir(tmp_path)) == sorted(["out", *aside, *staged])

    # Killed while removing the old copy (the new one in place): removed later.
    for name in os.listdir(tmp_path):
        shutil.rmtree(tmp_path / name)
    killed = subprocess.run([sys.executable, "-c", _SWAP_KILLED, str(out), "removing-old-copy"])
    assert killed.returncode == -signal.SIGKILL
    assert os.listdir(out) == ["v2"]
    assert len([n for n in os.listdir(tmp_path) if n.startswith(".out.old-")]) == 1
    atomic_directory(out, _write("v3"))
    assert os.listdir(tmp_path) == ["out"] and os.listdir(out) == ["v3"]


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_staging_folder_removed_before_its_lock_is_taken_is_made_again(tmp_path,
                                                                        monkeypatch):
    # Another run's clean-up may take the lock of a new staging folder before
    # its writer does, and remove it: the writer then makes another.
    from mmtl_tf import files

    made, real_flock = [], files.fcntl.flock

    def new_sibling(parent, prefix, *args, **kwargs):
        made.append(real_new_sibling(parent, prefix, *args, **kwargs))
        return made[-1]

    def flock(fd, operation):
        if len(made) == 1:  # the first staging folder: another process removes it first
            done = subprocess.run(
                [sys.executable, "-c", "import sys; from mmtl_tf.files import remove_if_dead\n"
                 "print(remove_if_dead(sys.argv[1]))", made[0]],
                capture_output=True, text=True, check=True)
            assert done.stdout == "True\n" and not os.path.exists(made[0])
        return real_flock(fd, operation)

    real_new_sibling = files._new_sibling
    monkeypatch.setattr(files, "_new_sibling", new_sibling)
    monkeypatch.setattr(files.fcntl, "flock", flock)
    seen = []
    atomic_directory(tmp_path / "out", lambda d: (seen.append(d), _write("v1")(d)))
    assert len(made) == 2 and seen == made[1:]
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


def _writing(text):
    def write(folder):
        with open(os.path.join(folder, "out.txt"), "w") as f:
            f.write(text)
    return write


def test_keep_replaced_sees_the_old_content_after_the_swap_and_keeps_what_it_lists(tmp_path):
    import re

    out = tmp_path / "out"
    calls = []
    atomic_directory(out, _writing("v1"), keep_replaced=calls.append)
    assert calls == []  # nothing was replaced
    (out / "notes.txt").write_text("mine")
    (out / "plots").mkdir()
    (out / "plots" / "a.png").write_bytes(b"png")
    announced = []

    def keep(old):
        # Called with the new content in place and the old one moved aside.
        assert (out / "out.txt").read_text() == "v2" and os.path.isdir(old)
        assert sorted(os.listdir(old)) == ["notes.txt", "out.txt", "plots"]
        return ["notes.txt", "plots"], announced.append

    atomic_directory(out, _writing("v2"), keep_replaced=keep)
    (kept,) = [p for p in tmp_path.iterdir() if p.name != "out"]
    assert re.fullmatch(r"out\.replaced-[0-9a-f]{8}", kept.name)
    assert announced == [str(kept)]
    assert sorted(os.listdir(kept)) == ["notes.txt", "plots"]  # out.txt of v1 removed
    assert (kept / "plots" / "a.png").read_bytes() == b"png"
    # None: removed as without keep_replaced; keep=None: kept whole.
    atomic_directory(out, _writing("v3"), keep_replaced=lambda old: None)
    atomic_directory(out, _writing("v4"), keep_replaced=lambda old: (None, announced.append))
    (whole,) = [p for p in tmp_path.iterdir() if p.name not in ("out", kept.name)]
    assert os.listdir(whole) == ["out.txt"] and (whole / "out.txt").read_text() == "v3"
    assert announced == [str(kept), str(whole)]
    assert (out / "out.txt").read_text() == "v4"


def test_a_kept_copy_that_cannot_be_renamed_stays_hidden_and_is_not_cleaned_up(
        tmp_path, monkeypatch):
    out = tmp_path / "out"
    atomic_directory(out, _writing("v1"))
    (out / "notes.txt").write_text("mine")
    real = os.replace

    def no_visible_name(src, dst):
        if ".replaced-" in os.path.basename(dst):
            raise PermissionError(13, "Permission denied", dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", no_visible_name)
    announced = []
    atomic_directory(out, _writing("v2"), keep_replaced=lambda old: (["notes.txt"],
                                                                   announced.append))
    monkeypatch.undo()
    (hidden,) = [p for p in tmp_path.iterdir() if p.name != "out"]
    assert hidden.name.startswith(".out.old-") and announced == [str(hidden)]
    assert os.listdir(hidden) == ["notes.txt"]
    atomic_directory(out, _writing("v3"))  # removes dead leftovers: not this one
    assert (hidden / "notes.txt").read_text() == "mine"


def test_added_meanwhile_names_foreign_entries_and_keeps_what_it_cannot_list(tmp_path,
                                                                             monkeypatch):
    from mmtl_tf import files

    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "own.txt").write_text("")
    assert files.added_meanwhile(str(folder), ("own.txt",), None, "run", "it ran") is None
    (folder / "b.txt").write_text("")
    (folder / "a").mkdir()
    assert files.added_meanwhile(str(folder), ("own.txt",), None, "run", "it ended") == (
        "held a, b.txt when it ended, which no run writes", ["a", "b.txt"])
    (tmp_path / "file").write_text("")
    assert files.added_meanwhile(str(tmp_path / "file"), (), None, "run", "it ended") == (
        "was a file, not a folder, when it ended", None)

    def unreadable(*args):
        raise PermissionError(13, "Permission denied", str(folder / "a"))

    monkeypatch.setattr(files, "foreign_entries", unreadable)
    assert files.added_meanwhile(str(folder), ("own.txt",), None, "run", "it ended") == (
        f"could not be read when it ended ({folder / 'a'}: Permission denied)", None)
    monkeypatch.undo()
    warning = files.kept_files_warning("/x/run", "held a when it ended, which no run writes",
                                       ["a"], "/x/run.replaced-1", "run")
    assert str(warning) == ("/x/run: held a when it ended, which no run writes; the new run "
                            "replaced it, and a is kept in /x/run.replaced-1 (remove that "
                            "when you no longer need it).")


def test_a_failing_keep_replaced_keeps_everything_and_says_so(tmp_path):
    out = tmp_path / "out"
    atomic_directory(out, _writing("v1"))
    (out / "notes.txt").write_text("mine")

    def broken(old):
        raise RuntimeError("cannot decide")

    with pytest.warns(RuntimeWarning, match=r"out was replaced; what it held before is kept "
                                            r"in .*out\.replaced-[0-9a-f]{8}, since checking "
                                            r"it for files to keep failed \(RuntimeError: "
                                            r"cannot decide\)"):
        assert atomic_directory(out, _writing("v2"), keep_replaced=broken) == str(out)
    (kept,) = [p for p in tmp_path.iterdir() if p.name != "out"]
    assert sorted(os.listdir(kept)) == ["notes.txt", "out.txt"]
    assert (out / "out.txt").read_text() == "v2"
