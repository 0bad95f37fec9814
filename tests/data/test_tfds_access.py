"""The quick offline check before a TFDS download (TFDS itself retries for
minutes before it fails), and no temporary folders of TFDS left behind."""

import os
import socket
import tempfile

import pytest
import tensorflow_datasets as tfds

import mmtl_tf
from mmtl_tf.data import tfds_access


PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY")


class _Loaded(Exception):
    """tfds.load was reached."""


@pytest.fixture
def offline(monkeypatch):
    """No name resolves, no proxy, and tfds.load only says it was reached."""
    looked_up = []

    def no_dns(host, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def reached(*args, **kwargs):
        raise _Loaded()

    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(tfds, "load", reached)
    return looked_up


def test_an_unresolvable_download_host_fails_at_once(offline, tmp_path):
    with pytest.raises(mmtl_tf.DownloadError,
                       match=r"(?s)'imdb_reviews'.*host ai\.stanford\.edu does not resolve.*"
                             r"needs internet"):
        mmtl_tf.data.load_tfds_text_classification("imdb_reviews", data_dir=str(tmp_path))
    with pytest.raises(mmtl_tf.DownloadError,
                       match=r"host download\.tensorflow\.org does not resolve") as raised:
        mmtl_tf.data.load_tfds_image_dataset("tf_flowers", data_dir=str(tmp_path))
    # The folder looked in and the one to copy into: the data_dir given (it
    # said "copy ~/tensorflow_datasets (or pass data_dir=)" with one passed).
    message = str(raised.value)
    assert f"not prepared in {tmp_path}/tf_flowers/" in message
    assert message.endswith(f"copy its ~/tensorflow_datasets/tf_flowers into {tmp_path}.")
    assert offline == ["ai.stanford.edu", "download.tensorflow.org"]


def test_cli_says_it_in_one_line(offline, capsys, tmp_path):
    from mmtl_tf import cli

    assert cli.main(["train", "text-classifier", "--size", "tiny", "--data", "tfds:imdb_reviews",
                     "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmtl-tf train: download error: could not load TFDS dataset")
    assert "does not resolve" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert offline == ["ai.stanford.edu"]


def test_no_check_behind_a_proxy_without_download_or_for_prepared_data(offline, monkeypatch,
                                                                        tmp_path):
    # The loaders reach tfds.load (which here raises _Loaded, reported as a
    # RuntimeError) without looking up the host first.
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    with pytest.raises(RuntimeError, match="_Loaded"):
        mmtl_tf.data.load_tfds_text_classification("imdb_reviews", data_dir=str(tmp_path))
    for var in ("https_proxy", "http_proxy"):
        monkeypatch.delenv(var)
    with pytest.raises(RuntimeError, match="_Loaded"):
        mmtl_tf.data.load_tfds_image_dataset("tf_flowers", data_dir=str(tmp_path),
                                             download=False)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    tfds_access.check_download_reachable("imdb_reviews", data_dir=str(tmp_path))
    monkeypatch.undo()
    assert offline == []


def test_no_check_under_tfds_mock_data(monkeypatch):
    # tfds.testing.mock_data replaces the download step: nothing to look up.
    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    looked_up = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host))
    with tfds.testing.mock_data(num_examples=3):
        records = mmtl_tf.data.load_tfds_text_classification("imdb_reviews", "test")
    assert len(records) == 3 and looked_up == []


class _NoDownload(Exception):
    """download_and_prepare was reached."""


def test_loaders_leave_no_tfds_temp_folders(monkeypatch, tmp_path):
    # TFDS makes a folder tempfile.mkdtemp("tfds") for each builder of a
    # dataset not prepared in data_dir and never removes it: every loader
    # call left one or two in /tmp. The builders here are real; the data
    # folder is empty, no name resolves and download_and_prepare only says
    # it was reached (speech_commands, whose builder is made before it).
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    data_dir = str(tmp_path / "data")
    with pytest.raises(mmtl_tf.DownloadError, match="does not resolve"):  # builder of the check
        mmtl_tf.data.load_tfds_text_classification("imdb_reviews", data_dir=data_dir)
    with pytest.raises(mmtl_tf.DownloadError, match="could not find data"):  # tfds.load
        mmtl_tf.data.load_tfds_image_dataset("tf_flowers", data_dir=data_dir, download=False)
    with pytest.raises(mmtl_tf.DownloadError, match="could not find data"):
        mmtl_tf.data.load_tfds_coco_captions("test", text_vectorizer=None, data_dir=data_dir,
                                             download=False)

    def no_download(self, *args, **kwargs):
        raise _NoDownload()

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(mmtl_tf.DownloadError, match="_NoDownload"):  # tfds.builder
        mmtl_tf.data.load_tfds_speech_commands("validation", data_dir=data_dir)
    assert sorted(os.listdir(temp)) == []
    assert tempfile.tempdir == str(temp)  # restored after the errors
