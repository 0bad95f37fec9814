"""Build a multi-class text-classification corpus from Debian's `fortunes` package.

Debian's `fortunes` (BSD licence, from fortune-mod) holds about 15,000 quotes in
category files (computers, science, politics, work, food, ...), each entry
ended by a line holding only `%`. This script fetches the pinned package with
`apt-get download` and unpacks it with `dpkg-deb -x` (no root, nothing is
installed), reads the chosen categories, and writes JSON Lines files with
`{"text", "label"}` rows, the format `mmtl_tf.data.load_text_classification_records`
reads:

* each entry's whitespace (tabs, line breaks, indentation) is collapsed into
  single spaces; entries shorter than `--min-chars` or longer than
  `--max-chars` are left out;
* a quote that occurs in two chosen categories is left out (its label would be
  ambiguous), a duplicate inside one category is kept once;
* at most `--per-class` entries per category (a seeded, stable choice), then a
  stratified 65 / 15 / 20 train / validation / test split fixed by the seed.

The output is deterministic for a given package file.

Usage:
    python data_prep/build_fortunes.py --out data/fortunes            # full corpus
    python data_prep/build_fortunes.py --bundle                       # the bundled subset
    python data_prep/build_fortunes.py --bundle --check               # verify the bundle
    python data_prep/build_fortunes.py --deb fortunes_1.99.1-7.3_all.deb --out DIR

`--bundle` writes the small default text data shipped inside the package
(`mmtl_tf/data/default_text/`: 8 categories, quotes of at most 300 characters,
at most 200 per category). `--check` rebuilds into a temporary folder and
compares with the target folder byte for byte (naming the files that differ).
The output folder is replaced as a whole; an --out that holds anything but an
earlier build of this script is refused.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from external_tools import (apt_download, check_out, fail, int_at_least,  # noqa: E402
                            replace_folder, report_check, require_file)
from external_tools import unpack_deb as _unpack_deb  # noqa: E402
from stratified import stratified_split  # noqa: E402 (the folder of this script)

PACKAGE = "fortunes"
VERSION = "1:1.99.1-7.3"
CATEGORIES = ("computers", "science", "politics", "work", "food", "sports", "love", "law")
SPLITS = (("train", 0.65), ("validation", 0.15), ("test", 0.20))
SEED = 20260104
BUNDLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "mmtl_tf",
                          "data", "default_text")
BUNDLE_OPTIONS = {"max_chars": 300, "per_class": 200, "min_chars": 20}
FORTUNE_DIR = os.path.join("usr", "share", "games", "fortunes")
COPYRIGHT = os.path.join("usr", "share", "doc", "fortunes", "copyright")
SCRIPT = "build_fortunes.py"
# What the script writes into its output folder (an earlier build: these only,
# its LICENSE.md naming the script).
OUTPUT_NAMES = ("train.jsonl", "validation.jsonl", "test.jsonl", "LICENSE.md")

LICENSE_TEXT = """\
# Licence and attribution of the fortunes text data

The files in this folder were built by `data_prep/build_fortunes.py` from the
Debian package `{package}` version `{version}` (source package fortune-mod,
the BSD fortune(6) cookie files). Each row is one entry of one category file
(`{categories}`) with its whitespace collapsed; the label is the name of the
file it comes from. Options: {options}.

The package's copyright file (`/usr/share/doc/fortunes/copyright`) follows
verbatim; the category files used here are covered by the BSD licence in it.

```
{copyright}```
"""


def fetch_deb(workdir):
    """Runs `apt-get download` for the pinned version; returns the .deb path."""
    return apt_download(SCRIPT, f"{PACKAGE}={VERSION}", "fortunes_*.deb", workdir)


def unpack_deb(deb, target):
    """`dpkg-deb -x` (needs no root); returns the folder."""
    return _unpack_deb(SCRIPT, deb, target)


def read_fortunes(path):
    """Entries of one fortune file: text between lines holding only `%`."""
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    entries = re.split(r"\n%\n", "\n" + raw + "\n")
    return [" ".join(e.split()) for e in entries if e.strip() and e.strip() != "%"]


def stable_rank(key):
    return hashlib.sha256(f"{SEED}:{key}".encode("utf-8")).hexdigest()


def collect(root, categories, min_chars, max_chars, per_class):
    """(text, label) rows after cleaning, de-duplication and the per-class cap."""
    seen = {}
    for category in categories:
        path = os.path.join(root, FORTUNE_DIR, category)
        if not os.path.isfile(path):
            available = sorted(f for f in os.listdir(os.path.join(root, FORTUNE_DIR))
                               if "." not in f)
            sys.exit(f"build_fortunes.py: no category {category!r}; available: "
                     f"{', '.join(available)}")
        for text in read_fortunes(path):
            if not min_chars <= len(text) <= max_chars:
                continue
            seen.setdefault(text.lower(), {}).setdefault(category, text)
    by_label = {c: [] for c in categories}
    for labels in seen.values():
        if len(labels) == 1:
            (label, text), = labels.items()
            by_label[label].append(text)
    for label, texts in by_label.items():
        texts.sort(key=lambda t: stable_rank(t))
        if per_class:
            del texts[per_class:]
    return by_label


def split_rows(by_label):
    splits = stratified_split(
        {label: [{"text": t, "label": label} for t in texts] for label, texts in by_label.items()},
        SPLITS)
    for rows in splits.values():
        rows.sort(key=lambda r: stable_rank(r["label"] + "\t" + r["text"]))
    return splits


def build(deb, out, categories=CATEGORIES, min_chars=20, max_chars=600, per_class=0):
    """Writes train/validation/test.jsonl and LICENSE.md into `out` (atomically)."""
    with tempfile.TemporaryDirectory() as work:
        root = unpack_deb(deb, os.path.join(work, "deb"))
        by_label = collect(root, categories, min_chars, max_chars, per_class)
        with open(os.path.join(root, COPYRIGHT), encoding="utf-8") as f:
            copyright_text = f.read()
    if not any(by_label.values()):
        fail(SCRIPT, f"no quotes of {min_chars}-{max_chars} characters in the categories "
                     f"{', '.join(categories) or '(none)'}; {out} is left as it was.")
    splits = split_rows(by_label)

    def write(staging):
        for name, rows in splits.items():
            with open(os.path.join(staging, f"{name}.jsonl"), "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        options = (f"min_chars={min_chars}, max_chars={max_chars}, "
                   f"per_class={per_class or 'no cap'}, seed={SEED}, splits "
                   + " / ".join(f"{n} {int(p * 100)} %" for n, p in SPLITS))
        with open(os.path.join(staging, "LICENSE.md"), "w", encoding="utf-8") as f:
            f.write(LICENSE_TEXT.format(package=PACKAGE, version=VERSION,
                                        categories="`, `".join(categories),
                                        options=options, copyright=copyright_text))

    replace_folder(SCRIPT, out, write, OUTPUT_NAMES)
    counts = {name: len(rows) for name, rows in splits.items()}
    counts["per_class"] = {label: len(texts) for label, texts in by_label.items()}
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deb", help="local fortunes_*.deb; default: `apt-get download`")
    parser.add_argument("--out", help="output folder (default with --bundle: the bundled "
                                      "mmtl_tf/data/default_text, rebuilt in place). An "
                                      "earlier build of this script there is replaced; a "
                                      "file or a folder holding anything else is refused")
    parser.add_argument("--bundle", action="store_true",
                        help="build the small bundled subset (max 300 characters, "
                             "200 per category)")
    parser.add_argument("--categories",
                        help=f"comma-separated category files (default: {','.join(CATEGORIES)})")
    parser.add_argument("--min-chars", type=int, help="default: 20")
    parser.add_argument("--max-chars", type=int, help="default: 600")
    parser.add_argument("--per-class", type=int_at_least(1),
                        help="at most this many entries per category, at least 1 (default: "
                             "all)")
    parser.add_argument("--check", action="store_true",
                        help="rebuild into a temporary folder and compare with --out (names "
                             "the files that differ)")
    args = parser.parse_args(argv)
    if not args.out and not args.bundle:
        parser.error("give --out DIR or --bundle")
    custom = [flag for flag, value in (("--categories", args.categories),
                                       ("--min-chars", args.min_chars),
                                       ("--max-chars", args.max_chars),
                                       ("--per-class", args.per_class)) if value is not None]
    if args.bundle and custom:
        parser.error(f"--bundle builds the fixed bundled subset and takes no "
                     f"{', '.join(custom)}; for a custom build give --out DIR instead "
                     "of --bundle")
    if args.bundle:
        options = dict(BUNDLE_OPTIONS)
        categories = CATEGORIES
    else:
        categories = (tuple(c.strip() for c in args.categories.split(",") if c.strip())
                      if args.categories is not None else CATEGORIES)
        options = dict(min_chars=20 if args.min_chars is None else args.min_chars,
                       max_chars=600 if args.max_chars is None else args.max_chars,
                       per_class=args.per_class or 0)
    out = os.path.abspath(args.out or BUNDLE_DIR)
    if args.deb:
        require_file(SCRIPT, args.deb, "the .deb", "--deb")
    if args.check and not os.path.isdir(out):
        fail(SCRIPT, f"no folder {out} to compare with; check --out.")
    if not args.check:  # before the download and the work
        check_out(SCRIPT, out, OUTPUT_NAMES)
    with tempfile.TemporaryDirectory() as work:
        deb = args.deb or fetch_deb(work)
        if args.check:
            target = os.path.join(work, "rebuilt")
            build(deb, target, categories, **options)
            return report_check(target, out)
        counts = build(deb, out, categories, **options)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
