"""Build an image-caption dataset from Debian's `tuxpaint-stamps-default`.

The package (about 161 MB, GPL-2) holds the Tux Paint stamps: ~950 pictures in
16 categories, each with a `.txt` file whose first line is its English
description ("A US 25 cent piece ($.25) called a quarter."; the other lines
are translations, `LANG.utf8=...`). The script fetches the package with
`apt-get download` (no root install), unpacks it with `dpkg-deb -x`, and writes
a folder that `mmtl_tf.data.make_image_text_dataset` reads:

    OUT/images/<category>/.../<stamp>.png      (longest side at most --size px)
    OUT/captions.jsonl    {"path", "caption", "label", "subcategory", "item", "split"}
    OUT/subcategories.jsonl   the same rows, label = subcategory ("animals/birds")
    OUT/LICENSE.md

`label` is the stamp's top-level category; `subcategory` its first two folder
levels. `split` (train / validation / test, 80/10/10) is a stable hash of the
stamp's path, the same rule as `build_tuxpaint_speech.py`, so a stamp falls in
the same split for images and for speech. Stamps that exist only as SVG are
rasterised with `rsvg-convert` (Debian `librsvg2-bin`) when it is installed,
and otherwise left out and listed.

Usage:
    python data_prep/build_tuxpaint_stamps.py                      # into the mmtl_tf cache
    python data_prep/build_tuxpaint_stamps.py --out DIR --size 96
    python data_prep/build_tuxpaint_stamps.py --deb tuxpaint-stamps-default_*.deb
    python data_prep/build_tuxpaint_stamps.py --stamps /usr/share/tuxpaint/stamps
"""

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from mmtl_tf.files import cache_root

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from external_tools import (apt_download, check_out, fail,  # noqa: E402 (this folder)
                            int_at_least, replace_folder)
from external_tools import unpack_deb as _unpack_deb  # noqa: E402

PACKAGE = "tuxpaint-stamps-default"
STAMPS = os.path.join("usr", "share", "tuxpaint", "stamps")
SCRIPT = "build_tuxpaint_stamps.py"
# What the script writes into its output folder (an earlier build: these only,
# its LICENSE.md naming the script).
OUTPUT_NAMES = ("images", "captions.jsonl", "subcategories.jsonl", "LICENSE.md")


def default_out():
    """`tuxpaint_stamps` in the mmtl_tf cache (`$MMTL_TF_CACHE` or ~/.cache/mmtl_tf)."""
    return os.path.join(cache_root(), "tuxpaint_stamps")


def fetch_deb(workdir, script=SCRIPT):
    """`apt-get download` the package into `workdir`; returns the .deb path.
    Exits with one line (status 1) when apt-get is missing or fails."""
    return apt_download(script, PACKAGE, f"{PACKAGE}_*.deb", workdir)


def unpack_stamps(deb, target, script=SCRIPT, alternative=""):
    """`dpkg-deb -x DEB TARGET` (no root); returns the unpacked stamps folder.
    Exits with one line when it cannot unpack or the .deb holds no stamps."""
    stamps = os.path.join(_unpack_deb(script, deb, target, alternative), STAMPS)
    if not os.path.isdir(stamps):
        fail(script, f"{deb} holds no {STAMPS} folder; is it the {PACKAGE} package?")
    return stamps


def find_copyright(stamps):
    """The package's copyright file beside an unpacked or installed `stamps` folder
    (`.../usr/share/tuxpaint/stamps` → `.../usr/share/doc/PACKAGE/copyright`), or None."""
    share = os.path.dirname(os.path.dirname(os.path.abspath(stamps)))
    path = os.path.join(share, "doc", PACKAGE, "copyright")
    return path if os.path.isfile(path) else None


def write_licence(folder, intro, copyright_file):
    """`folder/LICENSE.md`: `intro`, then the package's copyright file, or where
    the copyright statement is to be found when that file is not there."""
    with open(os.path.join(folder, "LICENSE.md"), "w", encoding="utf-8") as f:
        f.write(intro)
        if copyright_file and os.path.exists(copyright_file):
            with open(copyright_file, encoding="utf-8", errors="replace") as c:
                f.write(" The package's copyright file follows.\n\n"
                        "```\n" + c.read() + "\n```\n")
        else:
            f.write("\n\nThe package's copyright file was not found beside the files "
                    "this was built from. For the Tux Paint stamps (upstream: "
                    "http://sourceforge.net/projects/tuxpaint) the copyright statement "
                    f"is the file `/usr/share/doc/{PACKAGE}/copyright` of the Debian "
                    f"package `{PACKAGE}` (inside the `.deb`: "
                    f"`usr/share/doc/{PACKAGE}/copyright`).\n")


def english_caption(txt_path):
    """The first line of a stamp's description file (English), or None."""
    with open(txt_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if "=" in line.split(" ")[0]:  # a "LANG.utf8=..." line: no English line
                return None
            return line
    return None


def split_of(item, seed=0):
    """train / validation / test (80/10/10) from a stable hash of the stamp path."""
    u = int(hashlib.sha256(f"{seed}:{item}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if u < 0.8 else ("validation" if u < 0.9 else "test")


def _write_png(source, dest, size):
    """`source` as an RGBA PNG `dest`, shrunk (aspect kept) to at most `size` px a side."""
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGBA")  # read: `source` may be `dest`
    if max(image.size) > size:
        image.thumbnail((size, size), Image.LANCZOS)
    image.save(dest, optimize=True)


def _rasterise_svg(source, dest, size):
    """`source` rasterised by rsvg-convert into `dest`, at most `size` px a side;
    returns why it could not be, or None."""
    tool = shutil.which("rsvg-convert")
    if tool is None:
        return "SVG only and rsvg-convert (Debian librsvg2-bin) is not installed"
    result = subprocess.run([tool, "--keep-aspect-ratio", "-w", str(size), "-h", str(size),
                             "-o", dest, source], capture_output=True, text=True)
    if result.returncode != 0:
        return f"rsvg-convert failed: {result.stderr.strip()[:100]}"
    # rsvg-convert rounds some sizes up (a 97 x 51 PNG for -w 96 -h 96).
    from PIL import Image

    try:
        with Image.open(dest) as image:
            too_large = max(image.size) > size
    except FileNotFoundError:
        return "rsvg-convert exited 0 but wrote no PNG"
    except (OSError, SyntaxError) as e:  # PIL: UnidentifiedImageError is an OSError
        return f"rsvg-convert wrote an unreadable PNG ({type(e).__name__}: {str(e)[:80]})"
    if too_large:
        _write_png(dest, dest, size)
    return None


def collect(stamps):
    """(rows, skipped) for every stamp description under a `stamps` folder."""
    rows, skipped = [], []
    for txt in sorted(glob.glob(os.path.join(stamps, "**", "*.txt"), recursive=True)):
        folder, base = os.path.dirname(txt), os.path.basename(txt)[:-4]
        rel_dir = os.path.relpath(folder, stamps).replace(os.sep, "/")
        item = f"{rel_dir}/{base}"
        png, svg = os.path.join(folder, base + ".png"), os.path.join(folder, base + ".svg")
        image = png if os.path.exists(png) else svg if os.path.exists(svg) else None
        caption = english_caption(txt)
        if image is None:
            skipped.append((item, "no image file"))
            continue
        if not caption:
            skipped.append((item, "no English caption"))
            continue
        parts = rel_dir.split("/")
        rows.append({"path": f"images/{item}.png", "caption": caption, "label": parts[0],
                     "subcategory": "/".join(parts[:2]), "item": item,
                     "split": split_of(item), "source": image})
    return rows, skipped


def build(stamps, out, size=128, copyright_file=None):
    """Writes the dataset folder `out` (atomically) from an unpacked `stamps` folder.
    Exits with one line, leaving `out` as it was, when `stamps` is not a folder or
    no stamp could be written. `size`: at least 1."""
    if size < 1:
        fail(SCRIPT, f"--size must be at least 1 (pixels), got {size}.")
    if not os.path.isdir(stamps):
        fail(SCRIPT, f"no stamps folder {stamps}; give the folder that holds the stamp "
                     "categories (e.g. /usr/share/tuxpaint/stamps) with --stamps.")
    rows, skipped = collect(stamps)
    if not rows:
        fail(SCRIPT, f"no stamps (an image with a .txt description) under {stamps}; "
                     f"{len(skipped)} left out; {out} is left as it was.")
    kept = []

    def write(staging):
        for row in rows:
            source = row.pop("source")
            dest = os.path.join(staging, row["path"])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            problem = (_rasterise_svg(source, dest, size) if source.endswith(".svg")
                       else _write_png(source, dest, size))
            if problem:
                skipped.append((row["item"], problem))
                continue
            kept.append(row)
        if not kept:  # raised before atomic_directory renames: `out` is kept
            fail(SCRIPT, f"no stamp image could be written from {stamps} ({skipped[-1][1]}, "
                         f"...); {out} is left as it was.")
        with open(os.path.join(staging, "captions.jsonl"), "w", encoding="utf-8") as f:
            for row in kept:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        with open(os.path.join(staging, "subcategories.jsonl"), "w", encoding="utf-8") as f:
            for row in kept:
                f.write(json.dumps({**row, "label": row["subcategory"]}, ensure_ascii=False)
                        + "\n")
        write_licence(staging,
                      f"# {PACKAGE} stamps\n\nImages (resized to at most {size} px) and the "
                      "English first line of each stamp's description, from the Debian "
                      f"package `{PACKAGE}`, by `data_prep/build_tuxpaint_stamps.py`. "
                      "Licence: GNU GPL version 2 (Tux Paint stamps).", copyright_file)

    replace_folder(SCRIPT, out, write, OUTPUT_NAMES)
    return kept, skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=default_out(),
                        help="output folder (default: tuxpaint_stamps in the mmtl_tf cache). "
                             "An earlier build of this script there is replaced; a file or a "
                             "folder holding anything else is refused")
    parser.add_argument("--deb", help="a downloaded tuxpaint-stamps-default .deb")
    parser.add_argument("--stamps", help="an unpacked stamps folder instead of the .deb")
    parser.add_argument("--size", type=int_at_least(1), default=128,
                        help="longest image side in pixels, at least 1 (default: 128)")
    args = parser.parse_args(argv)
    check_out(SCRIPT, args.out, OUTPUT_NAMES)  # before the download and the work
    with tempfile.TemporaryDirectory() as tmp:
        stamps = args.stamps
        if stamps is None:
            deb = args.deb or fetch_deb(tmp)
            stamps = unpack_stamps(deb, os.path.join(tmp, "x"),
                                   alternative="or unpack the .deb another way and pass "
                                               f"its {STAMPS} folder with --stamps")
        copyright_file = find_copyright(stamps)
        kept, skipped = build(stamps, args.out, args.size, copyright_file)
    counts = {}
    for row in kept:
        counts[row["split"]] = counts.get(row["split"], 0) + 1
    per_split = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"{len(kept)} stamps written to {args.out} ({per_split}); {len(skipped)} left out",
          file=sys.stderr)
    reasons = {}
    for _, why in skipped:
        reasons[why] = reasons.get(why, 0) + 1
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {n} x {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
