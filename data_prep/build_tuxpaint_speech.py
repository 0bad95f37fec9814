"""Build an audio-caption dataset of REAL speech from Debian's
`tuxpaint-stamps-default`: the spoken stamp descriptions (`*_desc*.ogg`), each
paired with the caption in the same language from the stamp's `.txt` file.

The package (about 161 MB, GPL-2) is fetched with `apt-get download` (no root
install) and unpacked with `dpkg-deb -x`. A stamp `koala` has `koala.txt` (first
line: the English caption; then lines `LANG.utf8=caption`) and recordings
`koala_desc.ogg` (English) and `koala_desc_LANG.ogg`. Each recording whose
language has a caption becomes one row of `captions.jsonl`:

    {"path": "audio/animals/marsupials/koala_desc_fr.ogg", "caption": "Un koala.",
     "label": "animals", "language": "fr", "item": "animals/marsupials/koala",
     "voice": "tuxpaint-fr", "split": "test"}

`label` is the stamp's top-level category; `split` (train / validation / test,
80/10/10) is a stable hash of the stamp, so a stamp is in the same split in every
language (held-out items). The speakers are volunteers, one or a few per
language and not named per file; `voice` is therefore only the language tag.
The audio files are copied unchanged (Ogg Vorbis, mostly 44.1 kHz); the
pipeline resamples them. The output folder is a source for
`mmtl_tf.data.make_audio_text_dataset`.

Usage:
    python data_prep/build_tuxpaint_speech.py                       # into the mmtl_tf cache
    python data_prep/build_tuxpaint_speech.py --languages en --out DIR
    python data_prep/build_tuxpaint_speech.py --deb tuxpaint-stamps-default_*.deb
"""

import argparse
import glob
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The same Debian package, download and stable split as the stamp images.
from build_tuxpaint_stamps import (PACKAGE, fetch_deb, find_copyright,  # noqa: E402
                                   split_of, unpack_stamps, write_licence)
from external_tools import check_out, fail, replace_folder  # noqa: E402
from mmtl_tf.files import cache_root  # noqa: E402

SCRIPT = "build_tuxpaint_speech.py"
# What the script writes into its output folder (an earlier build: these only,
# its LICENSE.md naming the script).
OUTPUT_NAMES = ("audio", "captions.jsonl", "LICENSE.md")
DESC = re.compile(r"^(?P<stamp>.+)_desc(?:_(?P<lang>[A-Za-z@_]+))?\.ogg$")


def default_out():
    """`tuxpaint_speech` in the mmtl_tf cache (`$MMTL_TF_CACHE` or ~/.cache/mmtl_tf),
    the same folder as `mmtl_tf.data.cache_dir("tuxpaint_speech")`."""
    return os.path.join(cache_root(), "tuxpaint_speech")


def read_captions(txt_path):
    """{language: caption} from a stamp's .txt file ("en" = the first line)."""
    with open(txt_path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    captions = {}
    if lines and "=" not in lines[0].split(" ")[0]:
        captions["en"] = lines[0]
    for line in lines[1:]:
        key, sep, text = line.partition("=")
        if sep and key.endswith(".utf8") and text.strip():
            captions[key[:-5]] = text.strip()
    return captions


def caption_for(captions, lang):
    """The caption in `lang`, falling back from `pt_BR` to `pt` and back."""
    if lang in captions:
        return captions[lang]
    base = lang.split("_")[0].split("@")[0]
    if base in captions:
        return captions[base]
    matches = [k for k in captions if k.split("_")[0] == base]
    return captions[sorted(matches)[0]] if matches else None


def build(deb, out, languages=None):
    """Writes `out` (atomically) from the .deb. Exits with one line, leaving `out`
    as it was, for a language without recordings or when no recording has a caption."""
    with tempfile.TemporaryDirectory() as tmp:
        stamps = unpack_stamps(deb, tmp, script=SCRIPT)
        rows, skipped, available = [], [], set()
        for path in sorted(glob.glob(os.path.join(stamps, "**", "*_desc*.ogg"),
                                     recursive=True)):
            m = DESC.match(os.path.basename(path))
            if not m:
                continue
            lang = m.group("lang") or "en"
            if lang.endswith(".ogg"):  # one file in the package is named *.ogg.ogg
                lang = lang[:-4]
            folder = os.path.dirname(path)
            txt = os.path.join(folder, m.group("stamp") + ".txt")
            rel_dir = os.path.relpath(folder, stamps)
            item = f"{rel_dir}/{m.group('stamp')}"
            caption = caption_for(read_captions(txt), lang) if os.path.exists(txt) else None
            if caption:
                available.add(lang)  # a language with at least one captioned recording
            if languages and lang not in languages:
                continue
            if not caption:
                skipped.append((os.path.relpath(path, stamps), f"no {lang} caption"))
                continue
            rel = f"audio/{rel_dir}/{os.path.basename(path)}"
            rows.append({"path": rel, "caption": caption, "label": rel_dir.split("/")[0],
                         "language": lang, "item": item, "voice": f"tuxpaint-{lang}",
                         "split": split_of(item), "source": path})
        unknown = sorted(set(languages or ()) - available)
        if unknown:
            fail(SCRIPT, f"no recordings with a caption in language {', '.join(unknown)}; "
                         "available (--languages, comma-separated, lower case): "
                         f"{', '.join(sorted(available))}")
        if not rows:
            fail(SCRIPT, f"no recording with a caption in its language in {deb}; "
                         f"{out} is left as it was.")
        copyright_file = find_copyright(stamps)

        def write(staging):
            for row in rows:
                dest = os.path.join(staging, row["path"])
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copyfile(row.pop("source"), dest)
            with open(os.path.join(staging, "captions.jsonl"), "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            write_licence(staging,
                          f"# {PACKAGE} spoken descriptions (real speech)\n\n"
                          f"Copied unchanged from the Debian package `{os.path.basename(deb)}` "
                          "by `data_prep/build_tuxpaint_speech.py`. Licence: GNU GPL "
                          "version 2 (Tux Paint stamps).", copyright_file)

        replace_folder(SCRIPT, out, write, OUTPUT_NAMES)
    return rows, skipped


def built_languages(out):
    """The languages of the rows of `out/captions.jsonl` whose audio file is there
    (empty when the file is missing, empty or unreadable)."""
    found = set()
    try:
        with open(os.path.join(out, "captions.jsonl"), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    if os.path.isfile(os.path.join(out, row["path"])):
                        found.add(row["language"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return found


def is_built(out, languages=None):
    """True when `out` holds recordings (in each of `languages`, when given)."""
    found = built_languages(out)
    return bool(found) and (not languages or set(languages) <= found)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None,
                        help="output folder (default: tuxpaint_speech in the mmtl_tf cache). "
                             "An earlier build of this script there is replaced; a file or a "
                             "folder holding anything else is refused")
    parser.add_argument("--deb", default=None, help="an already downloaded .deb")
    parser.add_argument("--languages", default=None,
                        help="comma-separated language tags to keep, e.g. en,fr")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when the output folder already holds recordings "
                             "(in each of --languages, when given); keeps an existing, "
                             "possibly larger, build")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out or default_out())
    languages = ({t.strip() for t in args.languages.split(",") if t.strip()}
                 if args.languages is not None else None)
    if languages is not None and not languages:
        parser.error(f"--languages {args.languages!r} names no language; give "
                     "comma-separated tags, e.g. en,fr (or leave it out for all)")
    if args.if_missing and is_built(out, languages):
        print(f"{out} already built; nothing to do (--if-missing)")
        return 0
    check_out(SCRIPT, out, OUTPUT_NAMES)  # before the download and the work
    with tempfile.TemporaryDirectory() as work:
        deb = args.deb or fetch_deb(work, script=SCRIPT)
        rows, skipped = build(deb, out, languages)
    per_lang = {}
    for row in rows:
        per_lang[row["language"]] = per_lang.get(row["language"], 0) + 1
    print(f"{len(rows)} recordings with captions in {out}: " +
          ", ".join(f"{k} {v}" for k, v in sorted(per_lang.items())))
    if skipped:
        print(f"skipped {len(skipped)} recordings without a caption in their language, "
              f"e.g. {skipped[0][0]} ({skipped[0][1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
