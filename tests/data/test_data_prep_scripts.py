"""The data_prep builders fail in one line (a missing or failing npm / apt-get /
dpkg-deb, a wrong path, an unknown option value, an empty result) and never
replace a built folder by an empty one. The external programs are small stubs
on PATH: no network, no Debian tools needed."""

import io
import json
import os
import sys
import tarfile

import pytest

from tests.conftest import REPO, load_script

DATA_PREP = os.path.join(REPO, "data_prep")


def _script(name):
    if DATA_PREP not in sys.path:
        sys.path.insert(0, DATA_PREP)
    return load_script("data_prep", name)


def _stub(bin_dir, name, body):
    """An executable `name` in `bin_dir` running the shell `body`."""
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)


def _only_stubs_on_path(monkeypatch, bin_dir):
    os.makedirs(bin_dir, exist_ok=True)
    monkeypatch.setenv("PATH", str(bin_dir))


def _dpkg_deb_unpacking(bin_dir, tree):
    """A `dpkg-deb -x DEB TARGET` stub that copies `tree` into TARGET."""
    _stub(bin_dir, "dpkg-deb", f'mkdir -p "$3" && cp -R "{tree}/." "$3/"')


def _exit_line(excinfo):
    message = excinfo.value.code
    assert isinstance(message, str) and "\n" not in message.strip(), message
    return message


def _old_build(out):
    os.makedirs(out)
    with open(os.path.join(out, "marker.txt"), "w") as f:
        f.write("built before")


def _untouched(out):
    with open(os.path.join(out, "marker.txt")) as f:
        return f.read() == "built before"


# build_default_sample.py ---------------------------------------------------------------

def test_default_sample_without_npm_says_how_to_pass_the_tarball(tmp_path, monkeypatch):
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    script = _script("build_default_sample")
    with pytest.raises(SystemExit) as e:
        script.main(["--out", str(tmp_path / "out")])
    line = _exit_line(e)
    assert line.startswith("build_default_sample.py: npm not found")
    assert "--tarball" in line and "emoji-datasource-google-16.0.0.tgz" in line


def test_default_sample_npm_failure_shows_npm_stderr(tmp_path, monkeypatch):
    _stub(tmp_path / "bin", "npm", 'echo "npm error code E404" >&2\n'
                                   'echo "npm error 404 Not Found" >&2\nexit 1')
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    script = _script("build_default_sample")
    with pytest.raises(SystemExit) as e:
        script.main(["--out", str(tmp_path / "out")])
    line = _exit_line(e)
    assert "npm pack emoji-datasource-google@16.0.0" in line
    assert "npm error code E404 npm error 404 Not Found" in line and "--tarball" in line


def test_default_sample_wrong_tarball_path(tmp_path):
    script = _script("build_default_sample")
    with pytest.raises(SystemExit) as e:
        script.main(["--tarball", str(tmp_path / "nope.tgz"), "--out", str(tmp_path / "out")])
    line = _exit_line(e)
    assert "nope.tgz" in line and "not found" in line and "--tarball" in line


def test_default_sample_without_images_keeps_the_old_build(tmp_path):
    tarball = tmp_path / "emoji.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in (("package/emoji.json", b"[]"), ("package/LICENSE", b"MIT")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    _old_build(out)
    script = _script("build_default_sample")
    with pytest.raises(SystemExit) as e:
        script.main(["--tarball", str(tarball), "--out", str(out)])
    assert "no 64 px Google emoji images" in _exit_line(e)
    assert _untouched(out) and sorted(os.listdir(tmp_path)) == ["emoji.tgz", "out"]


# build_fortunes.py ---------------------------------------------------------------------

def _fortunes_tree(root):
    folder = root / "usr" / "share" / "games" / "fortunes"
    folder.mkdir(parents=True)
    for category in ("love", "law"):
        quotes = [f"A {category} quote number {i}, long enough to be kept." for i in range(20)]
        (folder / category).write_text("\n%\n".join(quotes) + "\n%\n")
    doc = root / "usr" / "share" / "doc" / "fortunes"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("BSD\n")


def test_fortunes_bundle_refuses_custom_options(tmp_path, monkeypatch, capsys):
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    (tmp_path / "f.deb").write_bytes(b"!<arch>\n")
    script = _script("build_fortunes")
    with pytest.raises(SystemExit) as e:
        script.main(["--bundle", "--check", "--deb", str(tmp_path / "f.deb"),
                     "--per-class", "5", "--categories", "love,law", "--max-chars", "50"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--bundle" in err and "--per-class" in err and "--categories" in err


def test_fortunes_without_dpkg_deb(tmp_path, monkeypatch):
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    (tmp_path / "f.deb").write_bytes(b"!<arch>\n")
    script = _script("build_fortunes")
    with pytest.raises(SystemExit) as e:
        script.main(["--deb", str(tmp_path / "f.deb"), "--out", str(tmp_path / "out")])
    assert _exit_line(e).startswith("build_fortunes.py: dpkg-deb not found")


def test_fortunes_empty_selection_keeps_the_old_build(tmp_path, monkeypatch):
    _fortunes_tree(tmp_path / "tree")
    _dpkg_deb_unpacking(tmp_path / "bin", tmp_path / "tree")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "f.deb").write_bytes(b"!<arch>\n")
    out = tmp_path / "out"
    _old_build(out)
    script = _script("build_fortunes")
    with pytest.raises(SystemExit) as e:
        script.main(["--deb", str(tmp_path / "f.deb"), "--out", str(out),
                     "--categories", "love,law", "--min-chars", "1000", "--max-chars", "2000"])
    assert "no quotes of 1000-2000 characters" in _exit_line(e)
    assert _untouched(out)
    # The same stubs build a folder with the default options.
    script.main(["--deb", str(tmp_path / "f.deb"), "--out", str(out),
                 "--categories", "love,law"])
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert {r["label"] for r in rows} == {"love", "law"}


# build_tuxpaint_speech.py --------------------------------------------------------------

def _speech_tree(root):
    folder = root / "usr" / "share" / "tuxpaint" / "stamps" / "animals" / "marsupials"
    folder.mkdir(parents=True)
    (folder / "koala.txt").write_text("A koala.\nfr.utf8=Un koala.\n", encoding="utf-8")
    for name in ("koala_desc.ogg", "koala_desc_fr.ogg", "koala_desc_lt.ogg"):
        (folder / name).write_bytes(b"OggS fake")


def _speech_setup(tmp_path, monkeypatch):
    _speech_tree(tmp_path / "tree")
    _dpkg_deb_unpacking(tmp_path / "bin", tmp_path / "tree")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    deb = tmp_path / "tuxpaint-stamps-default_1_all.deb"
    deb.write_bytes(b"!<arch>\n")
    return str(deb), _script("build_tuxpaint_speech")


def test_speech_unknown_language_lists_the_tags_and_writes_nothing(tmp_path, monkeypatch):
    deb, script = _speech_setup(tmp_path, monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        script.main(["--deb", deb, "--languages", "EN", "--out", str(out)])
    line = _exit_line(e)
    assert "EN" in line and "available" in line and line.endswith(": en, fr")  # lt: no caption
    assert not out.exists()


def test_speech_if_missing_does_not_accept_an_empty_build(tmp_path, monkeypatch, capsys):
    deb, script = _speech_setup(tmp_path, monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    (out / "captions.jsonl").write_text("")
    assert script.main(["--deb", deb, "--languages", "en", "--if-missing",
                        "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert [(r["language"], r["caption"]) for r in rows] == [("en", "A koala.")]
    # Built now: --if-missing keeps it, also with a .deb that is not there ...
    capsys.readouterr()
    assert script.main(["--deb", "/nonexistent.deb", "--languages", "en", "--if-missing",
                        "--out", str(out)]) == 0
    assert "already built" in capsys.readouterr().out
    # ... but not for a language the build lacks.
    script.main(["--deb", deb, "--languages", "en,fr", "--if-missing", "--out", str(out)])
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert sorted(r["language"] for r in rows) == ["en", "fr"]


def test_speech_apt_get_failure_is_one_line_and_non_zero(tmp_path, monkeypatch):
    _stub(tmp_path / "bin", "apt-get",
          'echo "E: Unable to locate package tuxpaint-stamps-default" >&2\nexit 100')
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    script = _script("build_tuxpaint_speech")
    with pytest.raises(SystemExit) as e:
        script.main(["--languages", "en", "--out", str(tmp_path / "out")])
    line = _exit_line(e)     # a non-zero exit: .ci/run then runs apt-get update and retries
    assert line.startswith("build_tuxpaint_speech.py: `apt-get download tuxpaint-stamps")
    assert "Unable to locate package" in line and "apt-get update" in line


def test_speech_without_apt_get(tmp_path, monkeypatch):
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    script = _script("build_tuxpaint_speech")
    with pytest.raises(SystemExit) as e:
        script.main(["--out", str(tmp_path / "out")])
    line = _exit_line(e)
    assert line.startswith("build_tuxpaint_speech.py: apt-get not found") and "--deb" in line


# build_spoken_emoji.py -----------------------------------------------------------------

def _broken_espeak(bin_dir):
    """An espeak-ng that tells its version but cannot speak (exit status 3)."""
    _stub(bin_dir, "espeak-ng",
          'if [ "$1" = "--version" ]; then\n'
          '  echo "eSpeak NG text-to-speech: 1.51  Data at: /nowhere"; exit 0\nfi\n'
          'echo "espeak-ng: no such voice data" >&2\nexit 3')


def test_spoken_emoji_without_espeak_ng(tmp_path, monkeypatch, capsys):
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    script = _script("build_spoken_emoji")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        script.main(["--out", str(out), "--limit", "1"])
    line = _exit_line(e)
    assert line.startswith("build_spoken_emoji.py: espeak-ng not found; ")
    assert "apt-get install -y espeak-ng" in line
    assert not out.exists() and capsys.readouterr().err == ""


def test_spoken_emoji_failing_espeak_ng_is_one_line_and_keeps_the_old_build(
        tmp_path, monkeypatch, capsys):
    _broken_espeak(tmp_path / "bin")
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    script = _script("build_spoken_emoji")
    out = tmp_path / "out"
    for existed in (False, True):
        if existed:
            _old_build(out)
        with pytest.raises(SystemExit) as e:   # raised in a worker thread (--workers 2)
            script.main(["--out", str(out), "--limit", "2", "--workers", "2"])
        line = _exit_line(e)
        assert line.startswith("build_spoken_emoji.py: `espeak-ng -v ")
        assert "--stdout '" in line                                  # the text spoken
        assert "no such voice data" in line and "apt-get install" in line
        assert _untouched(out) if existed else not out.exists()
        assert sorted(os.listdir(tmp_path)) == ["bin"] + (["out"] if existed else [])
        assert capsys.readouterr().err == ""                         # no thread traceback
    # espeak-ng failing on `--version` too: main says so before any work.
    _stub(tmp_path / "bin", "espeak-ng", 'echo "broken install" >&2\nexit 3')
    with pytest.raises(SystemExit) as e:
        script.main(["--out", str(out)])
    line = _exit_line(e)
    assert line.startswith("build_spoken_emoji.py: `espeak-ng --version` failed "
                           "(broken install); ") and _untouched(out)


def _speaking_espeak(bin_dir, speech):
    """An espeak-ng that tells its version and prints `speech` (bytes written by
    a Python snippet to stdout) for any text, with exit status 0."""
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, "espeak-ng")
    with open(path, "w") as f:
        f.write(f"#!{sys.executable}\nimport io, sys\n"
                "if sys.argv[1:] == ['--version']:\n"
                "    print('eSpeak NG text-to-speech: 1.51  Data at: /nowhere'); sys.exit(0)\n"
                f"{speech}\n")
    os.chmod(path, 0o755)


SILENT_WAV = ("import numpy as np, soundfile as sf\nb = io.BytesIO()\n"
              "sf.write(b, np.zeros(8000, 'float32'), 22050, format='WAV')\n"
              "sys.stdout.buffer.write(b.getvalue())")


@pytest.mark.parametrize("speech,problem", [
    ("sys.stdout.buffer.write(b'garbage, not RIFF')", "exited 0 but printed no readable WAV "
                                                       "(17 bytes; "),
    ("pass", "exited 0 but printed no readable WAV (0 bytes; "),
    (SILENT_WAV, "produced only silence; "),
])
def test_spoken_emoji_espeak_ng_exiting_0_without_speech_is_one_line(
        tmp_path, monkeypatch, capsys, speech, problem):
    # Before, a non-WAV output ended in a soundfile traceback and a silent one
    # was written as a training clip.
    _speaking_espeak(tmp_path / "bin", speech)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    script = _script("build_spoken_emoji")
    out = tmp_path / "out"
    _old_build(out)
    with pytest.raises(SystemExit) as e:
        script.main(["--out", str(out), "--limit", "2", "--workers", "2"])
    line = _exit_line(e)
    assert line.startswith("build_spoken_emoji.py: `espeak-ng -v "), line
    assert problem in line, line
    assert line.lower().endswith("the output folder is left as it was."), line
    assert _untouched(out) and sorted(os.listdir(tmp_path)) == ["bin", "out"]
    assert capsys.readouterr().err == ""


def test_spoken_emoji_failure_is_one_stderr_line_from_the_script(tmp_path):
    """Run as a program with worker threads: one stderr line, status 1."""
    import subprocess

    _broken_espeak(tmp_path / "bin")
    env = {**os.environ, "PATH": str(tmp_path / "bin"), "PYTHONPATH": REPO}
    result = subprocess.run(
        [sys.executable, os.path.join(DATA_PREP, "build_spoken_emoji.py"), "--out",
         str(tmp_path / "out"), "--limit", "3", "--workers", "3"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build_spoken_emoji.py: `espeak-ng -v "), \
        result.stderr
    assert not (tmp_path / "out").exists()


def test_default_sample_ships_the_apache_licence_text():
    """The Noto images are Apache-2.0: the full text is in the repository (LICENSE)
    and beside the images, named by LICENSE.md and listed in setup.cfg's
    package_data so that wheels carry it."""
    import configparser
    import fnmatch

    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as f:
        apache = f.read()
    assert apache.lstrip().startswith("Apache License\n")
    assert "END OF TERMS AND CONDITIONS" in apache and "APPENDIX: How to apply" in apache
    sample = os.path.join(REPO, "mmtl_tf", "data", "default_sample")
    with open(os.path.join(sample, "LICENSE-APACHE-2.0.txt"), encoding="utf-8") as f:
        assert f.read() == apache
    with open(os.path.join(sample, "LICENSE.md"), encoding="utf-8") as f:
        assert "`LICENSE-APACHE-2.0.txt` in\n  this folder" in f.read()
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    patterns = cfg["options.package_data"]["mmtl_tf"].split()
    assert any(fnmatch.fnmatch("data/default_sample/LICENSE-APACHE-2.0.txt", p)
               for p in patterns)
    assert cfg["metadata"]["license_files"].strip() == "LICENSE"
