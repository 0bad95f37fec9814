"""External programs (npm, apt-get, dpkg-deb) and one-line failures, shared by
the data_prep builders.

A builder that cannot go on (a program missing or failing, a wrong path, an
empty result) exits with one line `script.py: what went wrong; what to do`
and a non-zero status, instead of a traceback.
"""

import glob
import os
import shlex
import subprocess
import sys


def fail(script, message):
    """Exits with `script: message` on stderr (status 1)."""
    sys.exit(f"{script}: {message}")


def one_line(text, limit=500):
    """`text` with its whitespace collapsed, its end kept if it is too long."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else "..." + text[-limit:]


def run_tool(script, argv, missing, failed, cwd=None, binary=False):
    """Runs `argv` with its output captured and returns its stdout (text, or
    bytes with `binary`: e.g. a WAV file).

    If the program cannot be started, exits with `script: PROGRAM not found;
    <missing>`; if it fails, with `script: \\`COMMAND\\` failed (its stderr);
    <failed>`. The exit is a `SystemExit` raised in the calling thread: in a
    worker thread of a `concurrent.futures` pool it reaches the main thread
    with the pool's results.
    """
    text = {} if binary else {"text": True, "errors": "replace"}
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, **text)
    except FileNotFoundError:
        fail(script, f"{argv[0]} not found; {missing}")
    except OSError as e:
        fail(script, f"cannot run {argv[0]} ({e.strerror or e}); {missing}")
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace") if binary else result.stderr
        detail = (one_line(stderr) or ("" if binary else one_line(result.stdout))
                  or f"exit status {result.returncode}")
        fail(script, f"`{shlex.join(argv)}` failed ({detail}); {failed}")
    return result.stdout


def require_file(script, path, what, option):
    """Exits unless `path` is a file: `script: no WHAT at PATH; check OPTION`."""
    if not os.path.isfile(path):
        kind = "a folder, not a file" if os.path.isdir(path) else "not found"
        fail(script, f"{what} {path} is {kind}; check the path given with {option}.")


def apt_download(script, spec, pattern, workdir):
    """`apt-get download SPEC` into `workdir` (no root, nothing installed);
    returns the path of the .deb matching `pattern` (e.g. "fortunes_*.deb")."""
    run_tool(script, ["apt-get", "download", spec],
             missing=f"download the Debian package {spec} elsewhere and pass the "
                     ".deb with --deb.",
             failed="if apt says it cannot locate the package, run `apt-get update` "
                    "first; or pass a downloaded .deb with --deb.",
             cwd=workdir)
    debs = sorted(glob.glob(os.path.join(workdir, pattern)))
    if not debs:
        fail(script, f"`apt-get download {spec}` wrote no {pattern}; pass a downloaded "
                     ".deb with --deb.")
    return debs[0]


def unpack_deb(script, deb, target, alternative=""):
    """`dpkg-deb -x DEB TARGET` (needs no root); returns `target`.
    `alternative`: what else the user can do (e.g. "or unpack it yourself and
    pass --stamps DIR")."""
    require_file(script, deb, "the .deb", "--deb")
    run_tool(script, ["dpkg-deb", "-x", deb, target],
             missing="install dpkg (Debian/Ubuntu: apt-get install dpkg; Fedora: dnf "
                     "install dpkg)" + (f", {alternative}" if alternative else "") + ".",
             failed="is the file a complete Debian package (.deb)?")
    return target
