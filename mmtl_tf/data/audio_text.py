"""`make_audio_text_dataset`: (audio file, caption[, label, voice]) rows → `tf.data`.

Audio sources are captions files like the image ones (`mmtl_tf.data.sources`):
CSV or JSON Lines with `path` (an audio file, relative to the captions file),
`caption` (the transcript or description), `label` (for classification) and
optionally `split`; an optional `voice` (or `speaker`) column names who speaks,
and `voice_group` (`train` / `heldout`, any case; given for every row of a
split or for none) marks voices held out of training.
`"default"` is the bundled spoken-emoji sample (`mmtl_tf/data/default_audio/`,
SYNTHETIC speech made with espeak-ng, see its `LICENSE.md`).
"""

import dataclasses
import math
import numbers
import os

import tensorflow as tf

from mmtl_tf.data import audio as audio_ops
from mmtl_tf.data.sources import (ImageTextRecords, _read_rows, check_two_classes,
                                  kept_records,
                                  load_image_text_records, resolve_source)
from mmtl_tf.data.file_dataset import checked_file_dataset
from mmtl_tf.data.text import make_text_vectorizer, vectorize_while_loading
from mmtl_tf.data.tfds_access import check_download_reachable, tfds_temp_folder
from mmtl_tf.errors import (DataError, DownloadError, check_count, check_on_error,
                            handle_problems, loading_split, without_repeated_warnings)

VOICE_GROUPS = ("train", "heldout")
DEFAULT_AUDIO_DIR = os.path.join(os.path.dirname(__file__), "default_audio")


@dataclasses.dataclass
class AudioTextRecords(ImageTextRecords):
    """Rows of an audio-caption source, one split (`ImageTextRecords` + voices).

    Attributes:
        paths: list of str. Absolute audio-file paths.
        captions: list of str. Transcripts or descriptions.
        labels: list of str or None.
        rows: list of str. "file:line" of each row, for error messages.
        class_names: list of str. Sorted labels of the *training* split
            (numerically if all are integers: `sources.sorted_class_names`).
        root: str. The folder the paths are relative to.
        voices: list of str or None. Speaker / voice of each clip ("" if unknown).
        voice_groups: list of str. `"train"` or `"heldout"` ("" if unknown).
        items: list of str. What is spoken, as an id ("" if unknown; for the
            bundled sample the emoji's image file name).
    """

    voices: list
    voice_groups: list
    items: list

    ROW_FIELDS = ImageTextRecords.ROW_FIELDS + ("voices", "voice_groups", "items")


def _resolve(source):
    return DEFAULT_AUDIO_DIR if source in (None, "default") else source


def load_audio_text_records(source="default", split="train", require_label=True,
                            seed=0, on_error="raise", voice_group=None, class_names=None):
    """Loads one split of an audio-caption source (no audio is decoded here).

    Args:
        source: str. `"default"` (the bundled spoken-emoji sample), a folder or a
            captions file (see the module docstring).
        split: str. `"train"`, `"validation"` or `"test"`.
        require_label: bool. Labels are needed for classification.
        seed: int. Seed of the hash split when the source has no split column.
        on_error: str. `"raise"` or `"skip"` for bad rows.
        voice_group: str or None. Keep only rows of this voice group
            (`"train"`: voices seen in training, `"heldout"`: new voices).
        class_names: list of str or None. The classes that label ids index
            (default: the sorted labels of the training split); a trained
            model evaluated on other data passes its own (rows with other
            labels are bad rows), as for `load_image_text_records`.

    Returns:
        `AudioTextRecords`.

    Example:
        >>> import mmtl_tf
        >>> test = mmtl_tf.data.load_audio_text_records("default", "test")
        >>> sorted(set(test.voice_groups))
        ['heldout', 'train']
    """
    source = _resolve(source)
    base = load_image_text_records(source, split, require_label=require_label,
                                   seed=seed, on_error=on_error, class_names=class_names)
    extra = {}
    kind, path = resolve_source(source)
    files = set(row.rsplit(":", 1)[0] for row in base.rows)
    for file in files:
        # (Its bad rows and warnings were reported by the load above.)
        for n, row in without_repeated_warnings(lambda: list(_read_rows(file, problems=[]))):
            extra[f"{file}:{n}"] = row
    get = lambda r, *keys: next((str(extra[r][k]) for k in keys  # noqa: E731
                                 if extra.get(r, {}).get(k) not in (None, "")), "")
    records = AudioTextRecords(
        paths=base.paths, captions=base.captions, labels=base.labels, rows=base.rows,
        class_names=base.class_names, root=base.root,
        voices=[get(r, "voice", "speaker") for r in base.rows],
        voice_groups=[get(r, "voice_group").strip().lower() for r in base.rows],
        items=[get(r, "item") for r in base.rows])
    records = _with_valid_voice_groups(records, on_error)
    if voice_group is not None:
        keep = [i for i, g in enumerate(records.voice_groups) if g == voice_group]
        if not keep:
            raise DataError(f"{path}: the {split!r} split has no rows with "
                            f"voice_group={voice_group!r}.")
        records = records.subset(keep)
    return records


def _with_valid_voice_groups(records, on_error):
    """The records without rows whose `voice_group` is neither train nor
    heldout, or is empty while other rows of the split have one (retrieval is
    measured per group, so such rows would be left out without a word)."""
    grouped = sum(1 for g in records.voice_groups if g)
    problems = []
    for row, group in zip(records.rows, records.voice_groups):
        if group and group not in VOICE_GROUPS:
            problems.append((row, f"voice_group {group!r} is not one of "
                                  f"{', '.join(VOICE_GROUPS)} (or empty for all rows)"))
        elif not group and grouped:
            problems.append((row, f"no voice_group, while {grouped} other row(s) of the "
                                  "split have one (give every row train or heldout)"))
    if not problems:
        return records
    handle_problems(problems, on_error, "rows", total=len(records))
    bad = {row for row, _ in problems}
    return records.subset([i for i, row in enumerate(records.rows) if row not in bad])


def decoded_audio_dataset(paths, sample_rate=audio_ops.DEFAULT_SAMPLE_RATE, trim=True,
                          top_db=40.0, min_samples=0, cache=True, validate=True,
                          on_error="raise", locations=None):
    """Loads (and trims) audio files in parallel into a cached dataset.

    Like `decoded_image_dataset`: the first pass (run here when `validate`)
    loads every file with `num_parallel_calls=AUTOTUNE`, fills the cache and
    finds the bad files, which raise one `DataError` naming each file and its
    problem, or, with `on_error="skip"`, are dropped with a `DataWarning`.

    Args:
        paths: list of str. Audio files.
        sample_rate: int >= 1 or None. Target rate (resampled; multi-channel
            → mono; None keeps each file's rate). A float, bool or value < 1
            raises one `ValueError` naming `sample_rate` before any file is
            read.
        trim: bool. Cut leading/trailing silence (`trim_silence`).
        top_db: float. Silence threshold below the loudest frame.
        min_samples: int. Shorter clips (before and after trimming) are errors.
        cache: bool or str. True: in memory; a str: files with that prefix
            and a key of the files and settings (`file_dataset.cache_file`).
        validate: bool. Run the checking pass now. Without it, a bad file
            raises TensorFlow's error while iterating (or, with `"skip"`, is
            dropped silently).
        on_error: str. `"raise"` or `"skip"`.
        locations: list of str or None. Names for the messages (captions rows).

    Returns:
        (dataset of (index int32, waveform float32 [None]), list of the kept
        indices into `paths`). The index counts kept files (see
        `checked_file_dataset`).
    """
    if sample_rate is not None:
        # Checked once here: inside the loads it failed (or, for 0, kept each
        # file's rate) once per file.
        sample_rate = check_count("sample_rate", sample_rate)
    min_samples = check_count("min_samples", min_samples, minimum=0)

    def load(p):
        return audio_ops.load_and_trim(p, sample_rate, trim, top_db, min_samples)

    def tf_load(p):
        return audio_ops.numpy_audio_op(load, p, "load_audio")

    def describe_failure(path):
        try:
            load(path)
        except DataError as e:
            return str(e).split(": ", 1)[-1]
        return "failed while loading (unknown reason)"

    return checked_file_dataset(paths, tf_load, describe_failure, "audio files", cache=cache,
                                validate=validate, on_error=on_error, locations=locations,
                                cache_key=f"rate={sample_rate} trim={trim} top_db={top_db} "
                                          f"min_samples={min_samples}")


def _clip_length(clip_seconds, sample_rate):
    """Samples per clip; a `ValueError` naming the argument at fault."""
    sample_rate = check_count("sample_rate", sample_rate)
    if isinstance(clip_seconds, bool) or not isinstance(clip_seconds, numbers.Real) or \
            not 0 < clip_seconds < math.inf:
        raise ValueError(f"clip_seconds must be a finite number of seconds > 0, got "
                         f"{clip_seconds!r}.")
    length = int(round(clip_seconds * sample_rate))
    if length < 1:
        raise ValueError(f"clip_seconds={clip_seconds} at sample_rate={sample_rate} gives "
                         f"no samples.")
    return length


def make_audio_text_dataset(source="default", split="train", *, text_vectorizer=None,
                            vocab_size=5000, sequence_length=16, remove_stopwords=False,
                            text_split="whitespace",
                            sample_rate=audio_ops.DEFAULT_SAMPLE_RATE, clip_seconds=2.0,
                            trim=True, top_db=40.0, min_samples=512, crop=None,
                            pre_emphasis=None, band=None, compression=None,
                            front_end=None, voice_group=None,
                            batch_size=32, shuffle=None, shuffle_buffer=10000, cache=True,
                            deterministic=False, seed=0, with_labels=True,
                            on_error="raise", drop_remainder=False, class_names=None):
    """Builds a batched, prefetched dataset of audio, caption token ids and labels.

    Pipeline: load (soundfile; resample to `sample_rate`; mono) → trim silence
    (librosa) in a parallel `map` → cache of the trimmed waveforms → shuffle →
    filtering (pre-emphasis, band-pass) → crop/pad to `clip_seconds` →
    compression (mu-law / log) → batch → optional `front_end` (e.g. the
    in-graph log-mel layer) → prefetch. Every file is checked when the dataset is built: a missing, empty
    or corrupt file, NaN/inf samples, a clip shorter than `min_samples` (one
    FFT window) or an all-silent clip raises `mmtl_tf.DataError` naming the
    captions row, the file and the problem; `on_error="skip"` drops such clips
    and warns with their list.

    Args:
        source: str. `"default"` (bundled spoken-emoji sample, synthetic), a
            folder or a captions file.
        split: str. `"train"`, `"validation"` or `"test"`.
        text_vectorizer: `keras.layers.TextVectorization` or None. None adapts
            one on this source's training captions: for `split="train"` (and
            no `voice_group`) on the captions of the clips kept (rows skipped
            with `on_error="skip"` for a bad file do not shape the
            vocabulary); otherwise on every valid training row (the training
            audio is not loaded there, so rows with a bad file still count):
            pass the training dataset's vectorizer for the other splits.
        vocab_size: int. Vocabulary size when adapting.
        sequence_length: int. Token ids per caption when adapting.
        remove_stopwords: bool. Drop English stop words when adapting.
        text_split: str. `"whitespace"` (word tokens) or `"character"` when
            adapting (see `make_text_vectorizer`'s `split`).
        sample_rate: int >= 1. Samples per second of the output (a float,
            bool, or value < 1 raises a `ValueError` naming `sample_rate`).
        clip_seconds: float > 0. Output length (crop or zero-pad).
        trim: bool. Cut leading and trailing silence first.
        top_db: float. Silence threshold (dB below the loudest frame).
        min_samples: int. Shortest acceptable clip (use the front end's n_fft).
        crop: str or None. `"center"`, `"start"` or `"random"`; None: random
            for the training split, centre otherwise.
        pre_emphasis: float or None. Pre-emphasis coefficient (e.g. 0.97).
        band: (low_hz, high_hz) or None. Band-pass edges.
        compression: None, `"mu_law"` or `"log"`.
        front_end: callable or None. Applied to each batch of waveforms
            (B, samples) in the pipeline, e.g.
            `mmtl_tf.layers.LogMelSpectrogram(sample_rate=16000)` or an
            `AudioEncoder`'s `front_end` for a model with
            `input_type="log_mel"`. None yields the waveforms (the model
            computes its own log-mels).
        voice_group: str or None. Keep only `"train"` or `"heldout"` voices.
        batch_size: int.
        shuffle: bool or None. None shuffles the training split only.
        shuffle_buffer: int.
        cache: bool or str. Cache the trimmed waveforms (memory or files).
        deterministic: bool. Same order and random crops on every run
            (always so when not shuffled).
        seed: int.
        with_labels: bool. Yield `(inputs, label)` (else only `inputs`).
        on_error: str. `"raise"` or `"skip"`.
        drop_remainder: bool.
        class_names: list of str or None. The classes that labels index (see
            `load_audio_text_records`).

    Returns:
        A `tf.data.Dataset` of `({"audio": float32 (B, samples) (or what
        `front_end` makes of it, e.g. (B, frames, n_mels)), "text": int32 (B,
        sequence_length)}, label int32 (B,))`, in
        the order of `load_audio_text_records(source, split)` when not shuffled.
        Its `class_names` attribute lists the classes the labels index, and
        its `records` attribute holds the `AudioTextRecords` of the clips it
        yields (without the rows and files skipped with `on_error="skip"`),
        in its order when not shuffled. Its `text_vectorizer` attribute is the
        `TextVectorization` that made the token ids (`text_vectorizer`
        itself, or the one adapted here): pass the training dataset's to the
        other splits' datasets, and save it with the model.

    Example:
        >>> import mmtl_tf
        >>> ds = mmtl_tf.data.make_audio_text_dataset("default", "validation",
        ...                                          clip_seconds=1.0, batch_size=4)
        >>> x, y = next(iter(ds))
        >>> x["audio"].shape, x["text"].shape, y.shape
        (TensorShape([4, 16000]), TensorShape([4, 16]), TensorShape([4]))
    """
    check_on_error(on_error)
    batch_size = check_count("batch_size", batch_size)
    if trim:  # (unused without trimming)
        top_db = audio_ops.check_top_db(top_db)
    if band is not None:
        audio_ops.check_band(band, sample_rate)
    pre_emphasis = audio_ops.check_pre_emphasis(pre_emphasis)
    min_samples = check_count("min_samples", min_samples, minimum=0)
    if front_end is not None and not callable(front_end):
        raise TypeError(f"front_end must be callable (e.g. a LogMelSpectrogram layer) or "
                        f"None; got {type(front_end).__name__}.")
    if crop is not None and crop not in audio_ops.CROP_MODES:
        raise ValueError(f"crop={crop!r} is not allowed; use one of "
                         f"{', '.join(map(repr, audio_ops.CROP_MODES))} or None.")
    if compression not in audio_ops.COMPRESSIONS:
        raise ValueError(f"compression={compression!r} is not allowed; use one of "
                         f"{', '.join(map(repr, audio_ops.COMPRESSIONS))}.")
    length = _clip_length(clip_seconds, sample_rate)
    records = load_audio_text_records(source, split, require_label=with_labels,
                                      seed=seed, on_error=on_error,
                                      voice_group=voice_group, class_names=class_names)
    if with_labels and class_names is None:
        check_two_classes(source, records.class_names)
    adapt = dict(vocab_size=vocab_size, sequence_length=sequence_length,
                 remove_stopwords=remove_stopwords, split=text_split)
    adapt_on_kept = split == "train" and voice_group is None
    train_captions = None
    if text_vectorizer is None and not adapt_on_kept:
        # Skipped rows of the file were reported by the read above.
        train_captions = without_repeated_warnings(
            load_audio_text_records, source, "train", require_label=with_labels, seed=seed,
            on_error=on_error, class_names=class_names).captions
    load_kwargs = dict(sample_rate=sample_rate, trim=trim, top_db=top_db,
                       min_samples=min_samples, cache=cache)
    # Adapted on the training split's clips kept after the files were checked
    # (rows skipped for a bad file do not shape it), unless a vectorizer was
    # given or this is another split or one voice group (then on every valid
    # training row, read above).
    def load():
        with loading_split(split):  # bad files are said to be this split's
            return decoded_audio_dataset(records.paths, on_error=on_error,
                                         locations=records.rows, **load_kwargs)

    waves, kept, text_vectorizer, tokens = vectorize_while_loading(
        load, records.captions, text_vectorizer, train_captions, **adapt)
    warn_lost = split == "train" and with_labels and voice_group is None
    records = kept_records(records, kept, warn_lost, given=class_names is not None)
    crop = crop or ("random" if split == "train" else "center")
    labels = tf.constant(records.label_ids() if with_labels else [0] * len(records),
                         tf.int32)

    def prepare(pair, s):
        index, wave = pair
        wave = audio_ops.preprocess_waveform(
            wave, length, sample_rate, crop=crop, seed=s,
            pre_emphasis_coefficient=pre_emphasis, band=band, compression=compression)
        return index, wave

    ds = waves
    if shuffle is None:
        shuffle = split == "train"
    # An unshuffled dataset keeps the records' order (retrieval and per-voice
    # evaluation pair its elements with the records).
    deterministic = bool(deterministic) or not shuffle
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, max(len(records), 1)), seed=seed,
                        reshuffle_each_iteration=True)
    rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, rng)).map(
        prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic or None)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def attach(index, wave):
        audio = front_end(wave) if front_end is not None else wave
        inputs = {"audio": audio, "text": tf.gather(tokens, index)}
        return (inputs, tf.gather(labels, index)) if with_labels else inputs

    ds = ds.map(attach, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=deterministic or None)
    options = tf.data.Options()
    options.deterministic = deterministic
    ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
    ds.class_names = list(records.class_names)
    ds.records = records
    ds.text_vectorizer = text_vectorizer
    return ds


def speech_commands_to_audio_text(dataset, label_names, *, text_vectorizer,
                                  clip_seconds=1.0, sample_rate=16000, trim=False,
                                  top_db=40.0, crop="center", pre_emphasis=None,
                                  band=None, compression=None, batch_size=32):
    """Maps TFDS `speech_commands` examples onto the audio-text element structure.

    Args:
        dataset: `tf.data.Dataset` of (audio int16 [samples], label int64), as
            `tfds.load("speech_commands", as_supervised=True)` yields.
        label_names: list of str. The label names ("down", "go", ...,
            "_silence_", "_unknown_"); the caption of a clip is its label name.
        text_vectorizer: an adapted `TextVectorization` (e.g. on `label_names`).
        clip_seconds, sample_rate, trim, top_db, crop, pre_emphasis, band,
        compression, batch_size: as in `make_audio_text_dataset`. `trim` runs
            librosa through `tf.numpy_function`; it is off by default because
            `_silence_` clips are silent on purpose.

    Returns:
        A `tf.data.Dataset` of `({"audio": float32 (B, samples), "text": int32
        (B, L)}, label int32 (B,))`.
    """
    length = _clip_length(clip_seconds, sample_rate)
    # Checked here, as make_audio_text_dataset checks them: inside the map
    # they failed while it was traced.
    pre_emphasis = audio_ops.check_pre_emphasis(pre_emphasis)
    if band is not None:
        audio_ops.check_band(band, sample_rate)
    names = tf.constant([str(n).replace("_", " ").strip() for n in label_names])
    rng = tf.data.Dataset.random(seed=0).batch(2)

    def convert(pair, s):
        wave, label = pair
        wave = tf.cast(wave, tf.float32) / 32768.0
        if trim:
            wave = audio_ops.trim_silence(wave, top_db=top_db)
        wave = audio_ops.preprocess_waveform(
            wave, length, sample_rate, crop=crop, seed=s,
            pre_emphasis_coefficient=pre_emphasis, band=band, compression=compression)
        text = tf.cast(text_vectorizer(names[label][None])[0], tf.int32)
        return {"audio": wave, "text": text}, tf.cast(label, tf.int32)

    ds = tf.data.Dataset.zip((dataset, rng)).map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_tfds_speech_commands(split="train", *, data_dir=None, text_vectorizer=None,
                              batch_size=32, **kwargs):
    """TFDS `speech_commands` (needs internet on first use) as audio-text batches.

    Downloads and prepares the dataset through TFDS (about 2.4 GB) unless
    `data_dir` already holds it, then feeds it through the same pipeline
    functions as `make_audio_text_dataset` (see `speech_commands_to_audio_text`).

    Args:
        split: str. `"train"`, `"validation"` or `"test"`.
        data_dir: str or None. TFDS data folder.
        text_vectorizer: `TextVectorization` or None (None: adapted on the label
            names).
        batch_size: int.
        **kwargs: passed to `speech_commands_to_audio_text`.

    Returns:
        (dataset, label names, text_vectorizer).

    Example:
        >>> import mmtl_tf
        >>> ds, names, vec = mmtl_tf.data.load_tfds_speech_commands(  # doctest: +SKIP
        ...     "validation")  # needs internet (or data_dir) on first use

    References:
        Warden, "Speech Commands: A Dataset for Limited-Vocabulary Speech
        Recognition" (2018).
    """
    import tensorflow_datasets as tfds

    try:
        check_download_reachable("speech_commands", data_dir)
        with tfds_temp_folder():
            builder = tfds.builder("speech_commands", data_dir=data_dir)
            builder.download_and_prepare()
    except Exception as e:  # no internet, or TFDS cannot reach the source
        raise DownloadError(
            f"could not download or prepare TFDS 'speech_commands' ({type(e).__name__}: "
            f"{e}). It needs internet on first use; on a machine with internet run "
            "`tfds build speech_commands --data_dir DIR` and pass data_dir=DIR.") from e
    names = builder.info.features["label"].names
    ds = builder.as_dataset(split=split, as_supervised=True)
    if text_vectorizer is None:
        text_vectorizer = make_text_vectorizer(
            [n.replace("_", " ").strip() for n in names], vocab_size=len(names) + 4,
            sequence_length=2)
    return (speech_commands_to_audio_text(ds, names, text_vectorizer=text_vectorizer,
                                          batch_size=batch_size, **kwargs),
            names, text_vectorizer)
