"""Task `audio-text`: a CLAP-style audio–text dual encoder on spoken captions,
evaluated by audio→text and text→audio retrieval on held-out items, separately
for voices seen in training and for held-out voices.

The audio tower (`AudioEncoder`: in-graph log-mel → CNN) takes raw float32
waveforms; the text tower is the Embedding + LSTM `TextEncoder` on a
`TextVectorization` vocabulary adapted on the training captions
(`text_split="character"` tokenises characters, so that names never heard in
training still share tokens with the training captions). Both are projected
into one space and trained with the CLIP loss (`mmtl_tf.models.DualEncoder`).
"""

import os

import keras

from mmtl_tf import runtime
from mmtl_tf.data.audio_text import load_audio_text_records, make_audio_text_dataset
from mmtl_tf.data.text import load_text_vectorizer, save_text_vectorizer
from mmtl_tf.errors import check_counts, raise_collected_problems
from mmtl_tf.export import export_audio_text_dual_encoder
from mmtl_tf.metrics.retrieval import evaluate_retrieval
from mmtl_tf.models.audio_text_dual_encoder import build_audio_text_dual_encoder
from mmtl_tf.tasks import common, shared_space

NAME = "audio-text"
DIRECTIONS = ("audio_to_text", "text_to_audio")
VECTORIZER_FILE = "text_vectorizer.json"
# Evaluation groups: held-out items in the training voices, and in held-out voices.
GROUPS = {"train": "training voices", "heldout": "held-out voices"}


def num_samples(config):
    """Samples per clip of a recipe."""
    return int(round(float(config["clip_seconds"]) * int(config["sample_rate"])))


def check_clip(config):
    """A `ValueError` when a clip is shorter than one FFT window: otherwise
    every file would be reported as too short (e.g. `--sample-rate 100`);
    and when the audio CNN's pooling blocks halve the mel bands to nothing
    (`--n-mels 2`: Keras' error named no setting, once every clip was read)."""
    filters = check_counts("conv_filters", config["conv_filters"], each="conv block")
    blocks, n_mels = len(filters), int(config["n_mels"])
    if n_mels < 2 ** blocks:
        raise ValueError(f"n_mels = {n_mels}: the audio CNN's {blocks} pooling blocks "
                         f"(conv_filters {list(filters)}) halve the mel bands "
                         f"{blocks} times and need at least {2 ** blocks}; raise --n-mels or "
                         "give fewer conv_filters.")
    n_fft = int(config.get("n_fft", 512))
    if num_samples(config) < n_fft:
        raise ValueError(
            f"clip_seconds x sample_rate = {float(config['clip_seconds']):g} s x "
            f"{int(config['sample_rate'])} Hz = {num_samples(config)} samples, fewer than "
            f"one FFT window (n_fft = {n_fft}); raise --sample-rate or --clip-seconds.")


def _records(config, split, voice_group=None):
    return load_audio_text_records(config["data"], split, require_label=False,
                                   seed=int(config["seed"]),
                                   on_error=config.get("on_error", "raise"),
                                   voice_group=voice_group)


def _dataset(config, vectorizer, split, training_split=False, voice_group=None):
    """Batched `{"audio", "text"}` pairs of a split (one voice group or all).
    `vectorizer` None (the whole training split): the dataset adapts one on
    the clips it keeps, with the recipe's vocab_size, sequence_length and
    text_split (`ds.text_vectorizer`)."""
    adapt = {} if vectorizer is not None else dict(
        vocab_size=int(config["vocab_size"]), sequence_length=int(config["sequence_length"]),
        text_split=config.get("text_split", "whitespace"))
    return make_audio_text_dataset(
        config["data"], split, text_vectorizer=vectorizer, **adapt,
        sample_rate=int(config["sample_rate"]), clip_seconds=float(config["clip_seconds"]),
        min_samples=int(config.get("n_fft", 512)), voice_group=voice_group,
        batch_size=int(config["batch_size"]), shuffle=training_split,
        drop_remainder=training_split, with_labels=False, seed=int(config["seed"]),
        on_error=config.get("on_error", "raise"),
        cache=common.dataset_cache(config, split if voice_group is None
                                   else f"{split}-{voice_group}"))


def build_model(config):
    """The audio–text dual encoder of a recipe (`mmtl_tf/recipes/audio_text.json`).

    `audio_weights` (optional): a `.keras` file of a model trained with mmtl_tf
    that holds an `AudioEncoder` of the same configuration (e.g. an audio
    classifier) or its `.weights.h5`; the audio tower starts from it."""
    return build_audio_text_dual_encoder(
        num_samples=num_samples(config), sample_rate=int(config["sample_rate"]),
        n_mels=int(config["n_mels"]), n_fft=int(config.get("n_fft", 512)),
        conv_filters=tuple(config["conv_filters"]),
        audio_pooling=config.get("audio_pooling", "time_avg"),
        audio_weights=config.get("audio_weights"),
        vocab_size=int(config["vocab_size"]), sequence_length=int(config["sequence_length"]),
        embedding_dim=int(config["embedding_dim"]), lstm_units=int(config["lstm_units"]),
        bidirectional=bool(config.get("bidirectional", False)),
        projection_dim=int(config["projection_dim"]),
        projection_hidden_dim=config.get("projection_hidden_dim"),
        dropout=float(config.get("dropout", 0.0)), loss=config.get("loss", "clip"))


def _voice_groups(config, split):
    """The voice groups present in a split ([None] when the source has none)."""
    groups = set(_records(config, split).voice_groups)
    present = [g for g in GROUPS if g in groups]
    return present or [None]


def _retrieval_datasets(config, vectorizer, split):
    """The batched pairs of each voice group of a split (files checked here)."""
    return {group: _dataset(config, vectorizer, split, voice_group=group)
            for group in _voice_groups(config, split)}


def retrieval(model, config, vectorizer, split, datasets=None):
    """Retrieval metrics of a split, one dict per voice group.

    Identical captions (`shared_space.caption_keys`: the same tokens for the
    vectorizer) count as the same answer, and so do clips of the same
    item (spoken by different voices): with the held-out voices each caption
    has two correct clips, and the chance levels account for it. Identical
    captions are also one item (`evaluate_retrieval`'s `collapse`): with two
    voices a caption was twice in the text gallery, which counted every
    wrong caption above the right one twice (the held-out audio → text R@10
    was R@5 among the distinct captions). Clips
    skipped with `on_error="skip"` leave the pairs they belong to out; the
    other pairs are scored by the same rules.

    Args:
        datasets: dict group → the group's `_dataset`, if built already (see
            `_retrieval_datasets`).

    Returns:
        dict group → metrics (`audio_to_text_R@1`, …, `chance_R@K`); group is
        `"train"` / `"heldout"` for sources with voice groups, else `"all"`.
    """
    datasets = datasets or _retrieval_datasets(config, vectorizer, split)
    raise_collected_problems()  # bad rows and files named before the model runs
    results = {}
    for group, dataset in datasets.items():
        # The rows of the clips the dataset yields, in its order: rows and
        # files skipped with on_error="skip" are not among them.
        records = dataset.records
        keys = {"text": shared_space.caption_keys(records.captions, vectorizer),
                "audio": [item or path for item, path in zip(records.items, records.paths)]}
        metrics = evaluate_retrieval(model, dataset, match_keys=keys, collapse=["text"])
        metrics["voices"] = sorted(set(records.voices) - {""})
        results[group or "all"] = metrics
    return results


@common.staged_run
def train(config, run_dir, verbose=1):
    """Trains on the training split, evaluates retrieval on the test split."""
    check_clip(config)
    common.start_run(run_dir, NAME, config)
    train_records = _records(config, "train")
    common.check_one_batch(config, len(train_records), items="clips", files="audio")
    # The training dataset adapts the vocabulary on the clips it keeps: rows
    # skipped for a bad audio file (on_error="skip") do not shape it.
    train_ds = _dataset(config, None, "train", training_split=True)
    vectorizer = train_ds.text_vectorizer
    save_text_vectorizer(vectorizer, os.path.join(run_dir, VECTORIZER_FILE))
    # Again with the files checked: with on_error="skip" bad files are gone.
    common.check_one_batch(config, len(train_ds.records), len(train_records), items="clips",
                           files="audio")
    val_ds = _dataset(config, vectorizer, "validation")
    # Built (and their clips checked) now, so bad test files stop the run before training.
    test_sets = _retrieval_datasets(config, vectorizer, "test")
    keras.utils.set_random_seed(int(config["seed"]))
    with runtime.get_strategy().scope():
        model = build_model(config)
        model.compile(optimizer=shared_space.optimizer(config),
                      jit_compile=runtime.get_jit_compile())
    history, seconds, best_epoch = shared_space.fit_and_restore(
        model, train_ds, val_ds, config, run_dir, verbose)
    metrics = {"test": retrieval(model, config, vectorizer, "test", datasets=test_sets),
               "params": int(model.count_params()), "train_seconds": seconds,
               "epochs": int(config["epochs"]), "best_epoch": best_epoch,
               "logit_scale": model.logit_scale_value(), "loss": config.get("loss", "clip"),
               "sample_rate": int(config["sample_rate"]), "num_samples": num_samples(config)}
    return common.write_metrics(run_dir, metrics)


def _load(run_dir):
    info, model = common.load_run_model(run_dir, NAME)
    vectorizer = load_text_vectorizer(common.require_file(run_dir, VECTORIZER_FILE))
    common.check_run_parts(run_dir, model, ("audio", "text"), vectorizer)
    return info, model, vectorizer


@common.evaluation
def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
    """Retrieval metrics of the saved model on a split; updates metrics.json."""
    info, model, vectorizer = _load(run_dir)
    config = common.run_config(info, data, on_error)
    return common.write_metrics(run_dir, {split: retrieval(model, config, vectorizer, split)},
                                data=data)


def export(run_dir, saved_model_dir):
    """SavedModel with `encode_audio(waveform)` and `encode_text(text)`.

    `encode_audio` takes float32 waveforms (N, samples), mono, in [-1, 1], at
    the recipe's `sample_rate` (16 kHz by default), trimmed and centre-cropped
    in the graph; `audio_config()` returns that rate."""
    info, model, vectorizer = _load(run_dir)
    return export_audio_text_dual_encoder(model, vectorizer, saved_model_dir,
                                          sample_rate=int(info["config"]["sample_rate"]))


def format_metrics(metrics, split="test"):
    """The retrieval tables `mmtl-tf evaluate` prints (one per voice group)."""
    tables = []
    for group, m in metrics[split].items():
        what = GROUPS.get(group, "all clips")
        voices = f" ({', '.join(m['voices'])})" if m.get("voices") else ""
        tables.append(shared_space.format_retrieval_table(
            m, DIRECTIONS, title=f"{split}, {what}{voices}: retrieval among "
                                 f"{m['num_pairs']} clip-caption pairs"
                                 f"{shared_space.distinct_items(m, DIRECTIONS)}"))
    return "\n\n".join(tables)


def summary(metrics):
    rows = []
    for group, m in metrics["test"].items():
        what = GROUPS.get(group, "all clips")
        for direction in DIRECTIONS:
            rows.append({"model": f"audio-text dual encoder ({shared_space.loss_name(metrics)})",
                         "metric": f"test {direction.replace('_to_', '->')} R@10, "
                                   f"{what} ({m['num_pairs']} pairs"
                                   f"{shared_space.distinct_items(m, [direction])})",
                         "value": m[f"{direction}_R@10"], "baseline": "chance",
                         "baseline_value": m.get(f"{direction}_chance_R@10",
                                                 m["chance_R@10"]),
                         "params": metrics["params"],
                         "train_seconds": metrics["train_seconds"]})
    return rows
