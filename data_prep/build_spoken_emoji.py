"""Build the bundled default audio sample: the names of the bundled emoji spoken
by several espeak-ng voices (SYNTHETIC speech), 16 kHz mono, Ogg/Opus.

Every row of `mmtl_tf/data/default_sample/{train,validation,test}.jsonl` is one
*item*; its spoken text is the emoji's name (the caption without the short names
in parentheses, e.g. "electric torch"); its label is the emoji's category. The
splits hold out items *and* voices:

* voices are split into TRAIN_VOICES (used in every split) and HELDOUT_VOICES
  (used only in the test split);
* items keep the image sample's split: training items are spoken only in the
  training split, validation items only in the validation split, test items only
  in the test split;
* test items are spoken by one training voice (held-out item, known voice) and
  by every held-out voice (held-out item, new voice): the `voice_group` column
  ("train" / "heldout") tells the two conditions apart.

To stay within the package's size budget (at most 6 MB), each training and
validation item is spoken by `--train-voices-per-item` of the training voices
(chosen in rotation, so every voice speaks about as many items of every class).

Requires the Debian package `espeak-ng` (`apt-get install espeak-ng`); the
output is not byte-identical across espeak-ng or libsndfile versions, so the
versions used are written into `LICENSE.md`. Even with the same versions two runs
differ in the Ogg headers (libsndfile picks a random stream serial number); the
decoded samples are the same.

Usage:
    python data_prep/build_spoken_emoji.py                     # into mmtl_tf/data/default_audio
    python data_prep/build_spoken_emoji.py --out /tmp/spoken --limit 50
"""

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from external_tools import (check_out, fail, int_at_least,  # noqa: E402 (this folder)
                            replace_folder, run_tool)

SCRIPT = "build_spoken_emoji.py"
ESPEAK_MISSING = ("install it (Debian/Ubuntu: apt-get install -y espeak-ng; Fedora: "
                  "dnf install espeak-ng); nothing was written.")

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE_DIR = os.path.join(HERE, os.pardir, "mmtl_tf", "data", "default_sample")
DEFAULT_OUT = os.path.join(HERE, os.pardir, "mmtl_tf", "data", "default_audio")
SAMPLE_RATE = 16000
SPEED_WPM = 165
TRAILING_SILENCE_S = 0.15
# libsndfile's Opus compression level: about 13 kbit/s for speech, at which the
# encoder keeps the band below about 4.5 kHz (0.98 keeps 8 kHz but makes the
# sample about 7 MB, over the 6 MB budget).
OPUS_COMPRESSION = 0.99
SPLITS = ("train", "validation", "test")
# What the script writes into its output folder (an earlier build: these only,
# its LICENSE.md naming the script).
OUTPUT_NAMES = ("clips", "train.jsonl", "validation.jsonl", "test.jsonl", "LICENSE.md")

# voice id -> espeak-ng voice (language + variant). Accent and pitch differ.
TRAIN_VOICES = {
    "en-us_m": "en-us",
    "en-gb_f2": "en-gb+f2",
    "en-gb-scotland_m": "en-gb-scotland",
    "en-029_f4": "en-029+f4",
}
HELDOUT_VOICES = {
    "en-gb-x-rp_f3": "en-gb-x-rp+f3",
    "en-us-nyc_m3": "en-us-nyc+m3",
}

LICENSE_TEXT = """\
# Licence and provenance of the bundled audio sample (SYNTHETIC speech)

The clips in `clips/` are **synthetic speech**: the names of the bundled emoji
(see `../default_sample/`) spoken by the text-to-speech program eSpeak NG
({espeak}), resampled to 16 kHz mono and encoded as Ogg/Opus with libsndfile
({sndfile}). They were made by `data_prep/build_spoken_emoji.py`; no person's
voice was recorded. Voices (espeak-ng voice + variant): {voices}.

* **What is spoken** (the `caption` column: the emoji names) and the labels
  (Unicode emoji categories) come from the npm package `emoji-datasource-google`'s
  `emoji.json`, Copyright (c) 2013 Cal Henderson, MIT License (full text in
  `../default_sample/LICENSE.md`). The same terms apply to these files.
* **eSpeak NG** is licensed under the GNU GPL version 3 or later. That licence
  covers the program, not what the program produces from our input: the audio
  contains no part of eSpeak NG's code, and the GPL does not extend to the
  output of a covered program unless that output contains the program itself
  (the FSF's GPL FAQ says so). We therefore ship the clips under the emoji
  names' terms above and name eSpeak NG here as the tool that made them. The
  voice data (phoneme tables, variants) of eSpeak NG are part of the program and
  are not shipped here.

Columns of `train.jsonl`, `validation.jsonl`, `test.jsonl`: `path` (relative to
this folder), `caption` (the spoken text), `label` (emoji category), `voice`
(voice id), `voice_group` (`train` or `heldout`: held-out voices occur only in
the test split), `item` (the emoji's image file name in `../default_sample/`,
without extension), `synthetic` (always true).
"""


def read_items(sample_dir):
    """(split, item, spoken text, label) for every row of the image sample."""
    items = []
    for split in SPLITS:
        with open(os.path.join(sample_dir, f"{split}.jsonl"), encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                name = row["caption"].split(" (")[0].strip()
                item = os.path.splitext(os.path.basename(row["path"]))[0]
                items.append((split, item, name, row["label"]))
    return items


def stable_int(text):
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def assign_voices(items, per_item):
    """Rows (split, item, text, label, voice id, group): see the module docstring."""
    train_ids = sorted(TRAIN_VOICES)
    rows = []
    counters = {}
    # Rotate through the training voices within each (split, label), in a
    # stable order, so every voice gets about as many items of every class.
    ordered = sorted(items, key=lambda it: (it[0], it[3], stable_int(it[1])))
    for split, item, text, label in ordered:
        k = counters.get((split, label), 0)
        counters[(split, label)] = k + 1
        n = 1 if split == "test" else per_item
        for j in range(n):
            voice = train_ids[(k * per_item + j) % len(train_ids)]
            rows.append((split, item, text, label, voice, "train"))
        if split == "test":
            for voice in sorted(HELDOUT_VOICES):
                rows.append((split, item, text, label, voice, "heldout"))
    return rows


def espeak_version():
    """espeak-ng's version line ("eSpeak NG text-to-speech: 1.51"). Exits with
    one line (status 1) when espeak-ng is missing or fails."""
    out = run_tool(SCRIPT, ["espeak-ng", "--version"], missing=ESPEAK_MISSING,
                   failed="reinstall espeak-ng (apt-get install --reinstall espeak-ng); "
                          "nothing was written.")
    return out.strip().split("  ")[0]


def synthesize(text, espeak_voice):
    """Runs espeak-ng; returns float32 mono samples at SAMPLE_RATE. Exits with
    one line (status 1) when espeak-ng is missing or fails."""
    import librosa
    import soundfile as sf

    wav = run_tool(
        SCRIPT, ["espeak-ng", "-v", espeak_voice, "-s", str(SPEED_WPM), "--stdout", text],
        missing=ESPEAK_MISSING,
        failed=f"check that `espeak-ng -v {espeak_voice} hello` speaks (the voice needs "
               "espeak-ng's data: apt-get install --reinstall espeak-ng espeak-ng-data); "
               "the output folder is left as it was.",
        binary=True)
    command = f"`espeak-ng -v {espeak_voice} --stdout {text!r}`"
    try:
        y, rate = sf.read(io.BytesIO(wav), dtype="float32")
    except Exception as e:  # soundfile raises LibsndfileError, TypeError, ... on non-WAV
        fail(SCRIPT, f"{command} exited 0 but printed no readable WAV ({len(wav)} bytes; "
                     f"{type(e).__name__}: {str(e)[:80]}); check that espeak-ng works "
                     "(apt-get install --reinstall espeak-ng); the output folder is left "
                     "as it was.")
    if y.ndim == 2:
        y = y.mean(axis=1)
    what = ("no samples" if not len(y) else "NaN or infinite samples"
            if not np.isfinite(y).all() else "only silence" if not y.any() else None)
    if what:
        fail(SCRIPT, f"{command} produced {what}; a caption that espeak-ng cannot speak "
                     "would be a silent training clip. The output folder is left as it was.")
    y = librosa.resample(y, orig_sr=rate, target_sr=SAMPLE_RATE).astype(np.float32)
    # espeak-ng ends each utterance with about 0.3 s of silence; keep at most
    # TRAILING_SILENCE_S of it (smaller files; the pipeline trims the rest).
    _, (_, end) = librosa.effects.trim(y, top_db=50, frame_length=1024, hop_length=256)
    return y[:end + int(TRAILING_SILENCE_S * SAMPLE_RATE)]


def encode_opus(y, path):
    import soundfile as sf

    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.99:  # resampling can overshoot; Opus clips at full scale
        y = y * (0.99 / peak)
    sf.write(path, y, SAMPLE_RATE, format="OGG", subtype="OPUS",
             compression_level=OPUS_COMPRESSION)


def build(out, per_item=1, limit=None, workers=2):
    """Writes `out` (atomically). `per_item`: 1 to len(TRAIN_VOICES); `limit`:
    None (all items) or at least 1 item per split. Exits with one line, leaving
    `out` as it was, when a split would be empty."""
    import soundfile as sf

    if not 1 <= per_item <= len(TRAIN_VOICES):
        fail(SCRIPT, f"--train-voices-per-item must be from 1 to {len(TRAIN_VOICES)} (the "
                     f"training voices), got {per_item}.")
    if limit is not None and limit < 1:
        fail(SCRIPT, f"--limit must be at least 1, got {limit}.")
    if workers < 1:
        fail(SCRIPT, f"--workers must be at least 1, got {workers}.")
    items = read_items(SAMPLE_DIR)
    if limit:
        keep = {}
        for it in items:
            keep.setdefault(it[0], [])
            if len(keep[it[0]]) < limit:
                keep[it[0]].append(it)
        items = [it for split in SPLITS for it in keep.get(split, [])]
    rows = assign_voices(items, per_item)
    empty = [split for split in SPLITS if not any(row[0] == split for row in rows)]
    if empty:
        fail(SCRIPT, f"no clips for the {' / '.join(empty)} split(s) (no rows in "
                     f"{os.path.normpath(SAMPLE_DIR)}); {out} is left as it was.")
    voices = {**TRAIN_VOICES, **HELDOUT_VOICES}

    def write(staging):
        for voice in voices:
            os.makedirs(os.path.join(staging, "clips", voice), exist_ok=True)

        def work(row):
            split, item, text, label, voice, group = row
            rel = f"clips/{voice}/{item}.ogg"
            encode_opus(synthesize(text, voices[voice]), os.path.join(staging, rel))
            return rel

        # A failing espeak-ng raises SystemExit (one line) in its worker thread;
        # map() raises it here, and the clips not started yet are cancelled.
        pool = concurrent.futures.ThreadPoolExecutor(workers)
        try:
            rels = list(pool.map(work, rows))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for split in SPLITS:
            lines = []
            for row, rel in zip(rows, rels):
                if row[0] != split:
                    continue
                _, item, text, label, voice, group = row
                lines.append(json.dumps(
                    {"path": rel, "caption": text, "label": label, "voice": voice,
                     "voice_group": group, "item": item, "synthetic": True},
                    ensure_ascii=False))
            lines.sort()
            with open(os.path.join(staging, f"{split}.jsonl"), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        espeak = espeak_version()
        voice_list = ", ".join(
            f"`{k}` = `{v}`" + (" (held out)" if k in HELDOUT_VOICES else "")
            for k, v in voices.items())
        with open(os.path.join(staging, "LICENSE.md"), "w", encoding="utf-8") as f:
            f.write(LICENSE_TEXT.format(espeak=espeak, sndfile=sf.__libsndfile_version__,
                                        voices=voice_list))

    replace_folder(SCRIPT, out, write, OUTPUT_NAMES)
    return rows


def folder_size(path):
    return sum(os.path.getsize(os.path.join(d, f))
               for d, _, files in os.walk(path) for f in files)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output folder (default: the bundled mmtl_tf/data/default_audio, "
                             "rebuilt in place). An earlier build of this script there is "
                             "replaced as a whole once the new one is complete; a file or a "
                             "folder holding anything else is refused")
    parser.add_argument("--train-voices-per-item", type=int_at_least(1, len(TRAIN_VOICES)),
                        default=1,
                        help=f"how many of the {len(TRAIN_VOICES)} training voices speak "
                             "each training and validation item (1 to "
                             f"{len(TRAIN_VOICES)}, default: 1); test items are spoken by "
                             "one training voice and every held-out voice")
    parser.add_argument("--limit", type=int_at_least(1), default=None,
                        help="at most this many items per split, at least 1 (for a quick "
                             "try; default: all)")
    parser.add_argument("--workers", type=int_at_least(1), default=2,
                        help="espeak-ng processes run at once (default: 2)")
    args = parser.parse_args(argv)
    espeak_version()  # a missing or broken espeak-ng: one line, before anything is written
    check_out(SCRIPT, args.out, OUTPUT_NAMES)
    rows = build(os.path.abspath(args.out), args.train_voices_per_item, args.limit,
                 args.workers)
    counts = {}
    for split, _, _, _, _, group in rows:
        counts[(split, group)] = counts.get((split, group), 0) + 1
    for key in sorted(counts):
        print(f"{key[0]:<11} {key[1]:<8} voices: {counts[key]} clips")
    print(f"{len(rows)} clips, {folder_size(args.out) / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
