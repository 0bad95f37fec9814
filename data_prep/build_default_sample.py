"""Build the bundled default image-caption sample from the npm package
``emoji-datasource-google``.

The script is deterministic: given the same npm tarball it writes byte-identical
files. It copies the 64 px Noto emoji PNGs (no re-encoding) of every base emoji
(skin-tone variants and the five "Component" swatches are left out), writes a
caption for each image and a label (its Unicode category), and splits the rows
into train / validation / test with a fixed seed, stratified by label.

Usage:
    python data_prep/build_default_sample.py                 # runs `npm pack`
    python data_prep/build_default_sample.py --tarball emoji-datasource-google-16.0.0.tgz
    python data_prep/build_default_sample.py --out /tmp/sample --check

`--check` rebuilds into a temporary folder and compares with the `--out` folder
(by default the bundled files), naming the files that differ. A tarball of
another version than the pinned one is refused. The output folder is replaced as a whole; an
--out that holds anything but an earlier build of this script is refused.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from external_tools import (check_out, fail, replace_folder, report_check,  # noqa: E402
                            require_file, run_tool)
from stratified import stratified_split  # noqa: E402 (the folder of this script)

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "mmtl_tf", "data",
    "default_sample")
SPLITS = (("train", 0.7), ("validation", 0.15), ("test", 0.15))
SEED = 20260101
EXCLUDED_CATEGORIES = {"Component"}
# The Apache License 2.0 text (the repository's LICENSE), copied beside the images.
APACHE_LICENSE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "LICENSE")
APACHE_COPY = "LICENSE-APACHE-2.0.txt"
SCRIPT = "build_default_sample.py"
TARBALL_URL = (f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz")
# What the script writes into its output folder (an earlier build: these only,
# its LICENSE.md naming the script).
OUTPUT_NAMES = ("images", "train.jsonl", "validation.jsonl", "test.jsonl", "LICENSE.md",
                APACHE_COPY)

LICENSE_TEXT = """\
# Licence and attribution of the bundled default sample

The files in this folder were built by `data_prep/build_default_sample.py` from the
npm package `{package}@{version}` (https://github.com/iamcal/emoji-data).

* `images/*.png`: the 64 px emoji images of Google's Noto Emoji font
  (https://github.com/googlefonts/noto-emoji), copied byte for byte from the
  package's `img/google/64/` folder. Noto Emoji images are licensed under the
  Apache License, Version 2.0; its full text is `LICENSE-APACHE-2.0.txt` in
  this folder (also https://www.apache.org/licenses/LICENSE-2.0). Flag images
  are in the public domain, as the Noto Emoji project states.
  Copyright 2013-2025 Google Inc. and the Noto Emoji contributors.
* Captions, labels and split assignment: derived from the package's `emoji.json`
  (emoji names, short names and categories), which is
  Copyright (c) 2013 Cal Henderson and released under the MIT License:

{mit}
"""


def fetch_tarball(workdir):
    """Runs `npm pack` for the pinned package version and returns the tarball path."""
    stdout = run_tool(
        SCRIPT, ["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"],
        missing=f"install Node.js's npm, or download {TARBALL_URL} and pass it with "
                "--tarball.",
        failed=f"check the network, or download {TARBALL_URL} and pass it with --tarball.",
        cwd=workdir)
    lines = stdout.strip().splitlines()
    path = os.path.join(workdir, lines[-1].strip()) if lines else ""
    if not lines or not os.path.isfile(path):
        fail(SCRIPT, f"`npm pack {PACKAGE}@{VERSION}` wrote no tarball; download "
                     f"{TARBALL_URL} and pass it with --tarball.")
    return path


def make_caption(entry):
    """Caption = the emoji's name, then its short names' words not already in it."""
    name = entry["name"].lower()
    words = name.split()
    extra = []
    for short in entry.get("short_names") or []:
        for w in re.split(r"[_\-\s]+", short.lower()):
            if w and w not in words and w not in extra and not w.isdigit():
                extra.append(w)
    return name if not extra else f"{name} ({' '.join(extra)})"


def stable_rank(key):
    return hashlib.sha256(f"{SEED}:{key}".encode()).hexdigest()


def read_rows(tar, tarball):
    """(rows with the image bytes, the package's MIT licence text) from the open
    npm tarball `tar` (closed on return)."""
    with tar:
        try:
            package = json.load(tar.extractfile("package/package.json"))
            meta = json.load(tar.extractfile("package/emoji.json"))
            mit = tar.extractfile("package/LICENSE").read().decode()
        except KeyError:
            fail(SCRIPT, f"{tarball} holds no package/package.json, package/emoji.json or "
                         f"package/LICENSE; is it the npm tarball {PACKAGE}-{VERSION}.tgz?")
        found = (package.get("name"), package.get("version")) if isinstance(package, dict) \
            else (None, None)
        if found != (PACKAGE, VERSION):
            # Another version built other splits and a LICENSE.md naming
            # VERSION as the source, silently.
            fail(SCRIPT, f"{tarball} is {found[0]}@{found[1]} (its package/package.json), "
                         f"not {PACKAGE}@{VERSION}, the version the bundled sample is built "
                         f"from; pass {PACKAGE}-{VERSION}.tgz with --tarball.")
        rows = []
        for e in sorted(meta, key=lambda e: e["sort_order"]):
            if e["category"] in EXCLUDED_CATEGORIES or not e.get("has_img_google"):
                continue
            member = f"package/img/google/64/{e['image']}"
            try:
                data = tar.extractfile(member).read()
            except KeyError:
                continue
            rows.append({"path": f"images/{e['image']}",
                         "caption": make_caption(e),
                         "label": e["category"],
                         "_bytes": data})
    return rows, mit


def build(tarball, out):
    require_file(SCRIPT, tarball, "the tarball", "--tarball")
    try:
        tar = tarfile.open(tarball)
    except tarfile.TarError:
        fail(SCRIPT, f"{tarball} is not a readable tarball (not a tar archive, plain or "
                     f"gzip / bz2 / xz compressed); pass the npm tarball "
                     f"{PACKAGE}-{VERSION}.tgz with --tarball.")
    try:
        rows, mit = read_rows(tar, tarball)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        fail(SCRIPT, f"{tarball} is truncated or damaged ({type(e).__name__}: "
                     f"{' '.join(str(e).split())[:120]}); download {TARBALL_URL} again and "
                     "pass it with --tarball.")
    if not rows:
        fail(SCRIPT, f"no 64 px Google emoji images in {tarball}; is it the npm tarball "
                     f"{PACKAGE}-{VERSION}.tgz? {out} is left as it was.")
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    split_rows = stratified_split(by_label, SPLITS, key=lambda r: stable_rank(r["path"]))

    def write(staging):
        os.makedirs(os.path.join(staging, "images"))
        for name, items in split_rows.items():
            items.sort(key=lambda r: r["path"])
            with open(os.path.join(staging, f"{name}.jsonl"), "w", encoding="utf-8") as f:
                for r in items:
                    with open(os.path.join(staging, r["path"]), "wb") as img:
                        img.write(r["_bytes"])
                    f.write(json.dumps({k: v for k, v in r.items() if k != "_bytes"},
                                       ensure_ascii=False) + "\n")
        with open(os.path.join(staging, "LICENSE.md"), "w", encoding="utf-8") as f:
            f.write(LICENSE_TEXT.format(package=PACKAGE, version=VERSION, mit=mit))
        shutil.copyfile(APACHE_LICENSE, os.path.join(staging, APACHE_COPY))

    replace_folder(SCRIPT, out, write, OUTPUT_NAMES)
    return {name: len(items) for name, items in split_rows.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", help="local npm tarball; default: run `npm pack`")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output folder (default: the bundled mmtl_tf/data/default_sample, "
                             "rebuilt in place). An earlier build of this script there is "
                             "replaced as a whole once the new one is complete; a file or a "
                             "folder holding anything else is refused")
    parser.add_argument("--check", action="store_true",
                        help="rebuild into a temporary folder and compare with --out (names "
                             "the files that differ)")
    args = parser.parse_args(argv)
    if args.tarball:
        require_file(SCRIPT, args.tarball, "the tarball", "--tarball")
    if args.check and not os.path.isdir(args.out):
        fail(SCRIPT, f"no folder {args.out} to compare with; check --out.")
    if not args.check:  # before the download and the work
        check_out(SCRIPT, args.out, OUTPUT_NAMES)
    if not os.path.isfile(APACHE_LICENSE):
        fail(SCRIPT, f"no {os.path.normpath(APACHE_LICENSE)} (the Apache License 2.0 text "
                     "copied beside the images); run the script from a complete checkout.")
    with tempfile.TemporaryDirectory() as work:
        tarball = args.tarball or fetch_tarball(work)
        if args.check:
            target = os.path.join(work, "rebuilt")
            build(tarball, target)
            return report_check(target, args.out)
        counts = build(tarball, os.path.abspath(args.out))
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
