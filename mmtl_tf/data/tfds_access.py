"""A quick check before TFDS downloads a dataset: offline, TFDS retries for
minutes (3 min 24 s measured here for `imdb_reviews`) before it fails; and
the temporary folder that TFDS leaves behind for each builder it makes."""

import contextlib
import socket
import tempfile
import urllib.parse
import urllib.request


@contextlib.contextmanager
def tfds_temp_folder():
    """Points `tempfile`'s folder at a new temporary folder (in the usual
    one) for the duration of the `with` block, and removes that folder, with
    what TFDS put there, afterwards, also when the block raises.

    Use it around `tfds.builder(...)` and `tfds.load(...)` (and a builder's
    `download_and_prepare()`): for a dataset that is not prepared in
    `data_dir`, `DatasetInfo.initialize_from_bucket` makes a folder
    `tempfile.mkdtemp("tfds")` per builder (for the info files it fetches;
    empty offline) and never removes it, so every call of a loader left
    `tmpXXXXXXXXtfds` folders in /tmp (hundreds per CI run).
    The folder setting is process-wide: a temporary file that another thread
    makes meanwhile lands in the folder removed at the end.
    """
    with tempfile.TemporaryDirectory(prefix="mmtl_tf-tfds-") as folder:
        saved = tempfile.tempdir
        tempfile.tempdir = folder
        try:
            yield folder
        finally:
            tempfile.tempdir = saved


def check_download_reachable(name, data_dir=None, download=True):
    """Raises `ConnectionError` at once when TFDS would have to download
    dataset `name` and the download host's name cannot be resolved (no
    network); does nothing when the data is already prepared, `download` is
    False, a proxy is configured (the proxy resolves names), TFDS' download
    step is replaced (e.g. by `tfds.testing.mock_data`, which needs no
    network) or the check itself cannot be made (TFDS then tries as usual).

    Example:
        >>> from mmtl_tf.data.tfds_access import check_download_reachable
        >>> check_download_reachable("imdb_reviews")  # doctest: +SKIP
        Traceback (most recent call last):
        ConnectionError: cannot download TFDS dataset 'imdb_reviews': the name of its host ai.stanford.edu does not resolve (Name or service not known); is this machine offline?
    """  # noqa: E501
    if not download or urllib.request.getproxies():
        return
    try:
        import tensorflow_datasets as tfds

        prepare = tfds.core.DatasetBuilder.download_and_prepare
        if getattr(prepare, "__module__", None) != "tensorflow_datasets.core.dataset_builder":
            return  # mocked: no download will happen
        with tfds_temp_folder():
            builder = tfds.builder(name, data_dir=data_dir)
        if builder.is_prepared():
            return
        urls = list(builder.url_infos or {})
        host = urllib.parse.urlsplit(urls[0]).hostname if urls else None
        where = str(builder.data_dir)
    except Exception:  # noqa: BLE001 - no check possible: leave it to TFDS
        return
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as e:
        # The folder looked in is named: a wrong TFDS_DATA_DIR or data_dir=
        # looks the same as no network otherwise.
        raise ConnectionError(
            f"cannot download TFDS dataset {name!r} (not prepared in {where}): the name of "
            f"its host {host} does not resolve ({e.strerror}); is this machine offline?") from e
