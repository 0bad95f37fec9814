"""External programs (npm, apt-get, dpkg-deb), one-line failures and the
output folder, shared by the data_prep builders.

A builder that cannot go on (a program missing or failing, a wrong path, an
empty result, an --out it must not replace) exits with one line
`script.py: what went wrong; what to do` and a non-zero status, instead of a
traceback.

A builder writes its whole output folder through `replace_folder`: an earlier
build of the same script there is replaced, anything else is refused
(`check_out`), so that `--out .` or `--out ~/project` never deletes a user's
files.
"""

import argparse
import filecmp
import glob
import os
import shlex
import subprocess
import sys
import tempfile


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


def int_at_least(minimum, maximum=None):
    """An argparse `type`: an integer in [minimum, maximum] (no upper bound when
    `maximum` is None), else argparse's usage error (exit status 2)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            wanted = (f"from {minimum} to {maximum}" if maximum is not None
                      else f"at least {minimum}")
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value
    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def _listing(names, limit=3):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _nearest_existing(path):
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def is_earlier_build(script, out, names, marker="LICENSE.md"):
    """True when the folder `out` was written by `script` (its `marker` file
    names `data_prep/SCRIPT`) and holds nothing but the entries `names` that the
    script writes."""
    return _foreign_entries(script, out, names, marker) == ([], True)


def _foreign_entries(script, out, names, marker):
    """(entries of `out` not in `names`, whether `marker` names the script)."""
    entries = os.listdir(out)
    try:
        with open(os.path.join(out, marker), encoding="utf-8", errors="replace") as f:
            marked = f"data_prep/{script}" in f.read(65536)
    except OSError:
        marked = False
    return sorted(set(entries) - set(names)), marked


def check_out(script, out, names, marker="LICENSE.md", option="--out"):
    """Exits with one line unless `out` may be written as a whole by `script`:
    it must not exist, be an empty folder, or be an earlier build of `script`
    (see `is_earlier_build`); and the folder that will hold it must be
    writable. `names`: the top-level entries the script writes. An empty
    `out` is refused (it was taken for the current folder)."""
    if not str(out).strip():
        fail(script, f"{option} is empty; name the output folder.")
    out = os.path.abspath(out)
    if os.path.lexists(out) and not os.path.isdir(out):
        kind = "a broken link" if not os.path.exists(out) else "a file, not a folder"
        fail(script, f"{option} {out} is {kind}; give a new or empty folder (the output "
                     "is a folder, and it replaces an earlier build there as a whole).")
    if os.path.isdir(out):
        try:
            extra, marked = _foreign_entries(script, out, names, marker)
        except OSError as e:
            fail(script, f"cannot read {option} {out} ({e.strerror or e}); give a new or "
                         "empty folder.")
        if os.listdir(out) and not marked:
            fail(script, f"{option} {out} is a folder holding other files "
                         f"({_listing(os.listdir(out))}), not an earlier build of {script} (one "
                         f"holds a {marker} naming data_prep/{script}); it would be replaced "
                         "as a whole: give a new or empty folder, or remove this one first.")
        if extra:
            fail(script, f"{option} {out} is an earlier build of {script} but also holds "
                         f"files it does not write ({_listing(extra)}); they would be "
                         "deleted with it: move them elsewhere or give another folder.")
    holder = _nearest_existing(os.path.dirname(out))
    if not os.path.isdir(holder):
        fail(script, f"cannot write {option} {out}: {holder} is a file, not a folder; "
                     f"check {option}.")
    try:  # also finds what os.access does not (root on /proc, an immutable folder)
        os.rmdir(tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.probe-", dir=holder))
    except OSError as e:
        fail(script, f"cannot write {option} {out}: cannot create a folder in {holder} "
                     f"({e.strerror or e}); give a writable folder with {option}.")
    return out


def replace_folder(script, out, write_fn, names, marker="LICENSE.md", option="--out"):
    """`mmtl_tf.files.atomic_directory(out, write_fn)` after `check_out`: an
    earlier build is replaced only once the new content is complete, a foreign
    folder or file is refused with one line, and an `OSError` of the write ends
    in one line naming `out`."""
    from mmtl_tf.files import atomic_directory

    out = check_out(script, out, names, marker, option)
    try:
        return atomic_directory(out, write_fn)
    except OSError as e:
        fail(script, f"cannot write {out} ({one_line(str(e), 300)}); give a writable folder "
                     f"with {option}; an earlier build there is left as it was.")


def tree_differences(rebuilt, out):
    """(relative path, what differs) for every file where the folder `out`
    differs from `rebuilt`, in sorted order (filecmp's default ignores apply)."""
    found = []

    def walk(a, b, rel):
        cmp = filecmp.dircmp(a, b)
        join = (lambda n: f"{rel}/{n}") if rel else (lambda n: n)
        for n in cmp.left_only:
            found.append((join(n), "missing"))
        for n in cmp.right_only:
            found.append((join(n), "extra"))
        for n in cmp.common_funny + cmp.funny_files:
            found.append((join(n), "not comparable"))
        _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
        for n in mismatch:
            found.append((join(n), "differs"))
        for n in errors:
            found.append((join(n), "unreadable"))
        for sub in cmp.common_dirs:
            walk(os.path.join(a, sub), os.path.join(b, sub), join(sub))

    walk(rebuilt, out, "")
    return sorted(found)


def report_check(rebuilt, out, limit=5):
    """Prints `identical`, or `DIFFERENT:` and the first `limit` differing,
    missing or extra files of `out` and their count (stderr); returns the exit
    status (0 / 1)."""
    differences = tree_differences(rebuilt, out)
    if not differences:
        print("identical", file=sys.stderr)
        return 0
    words = {"missing": "missing", "extra": "extra: not in the rebuild"}
    shown = ", ".join(f"{path} ({words.get(why, why)})" for path, why in differences[:limit])
    more = (f", and {len(differences) - limit} more" if len(differences) > limit else "")
    print(f"DIFFERENT: {len(differences)} file(s) of {out} differ from the rebuild: "
          f"{shown}{more}", file=sys.stderr)
    return 1


def output_dir_arg(script, path, option):
    """Exits with one line when `path` exists and is not a folder (an --out or
    --cache that the script writes into, without replacing it)."""
    if os.path.lexists(path) and not os.path.isdir(path):
        fail(script, f"{option} {path} is a file, not a folder; give a folder.")


if __name__ == "__main__":
    print("external_tools.py is a helper module of the data_prep builders, not a script; "
          "run one of the build_*.py / fetch_*.py scripts beside it.", file=sys.stderr)
    sys.exit(2)
