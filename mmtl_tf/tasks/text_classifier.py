"""Task `text-classifier`: a frozen BERT-family encoder with a new head on
(text, label) data, next to a logistic-regression probe on the same frozen
features and a from-scratch TextVectorization + Embedding + LSTM baseline."""

import collections
import os
import re
import time
import warnings

import keras
import numpy as np

from mmtl_tf import runtime, training
from mmtl_tf.data.bert_preprocessor import BertPreprocessor, fetch_minilm
from mmtl_tf.data.text import make_text_vectorizer, warn_if_truncated
from mmtl_tf.data.text_classification import (load_text_classification_records,
                                              make_text_classification_dataset)
from mmtl_tf.errors import check_texts, raise_collected_problems
from mmtl_tf.export import export_text_classifier
from mmtl_tf.models.text_classifier import (build_lstm_text_classifier,
                                            build_text_classifier, encode_texts)
from mmtl_tf.tasks import common

NAME = "text-classifier"
SPLITS = ("train", "validation", "test")
RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# Longer words are [UNK] for the WordPiece tokenizer (tensorflow-text's
# max_bytes_per_word; it refuses vocabulary entries over 256 bytes).
_LONGEST_WORD_BYTES = 100


def word_vocabulary(texts, size):
    """A whole-word WordPiece vocabulary: BERT's special tokens, the
    punctuation seen, then the most frequent words, as the tokenizer that
    reads it splits and normalises them (`BertPreprocessor`: its text
    cleaning, lower-casing, accents stripped, CJK characters one by one).
    Words of more than 100 UTF-8 bytes are left out: the tokenizer makes
    them [UNK] (and refuses entries over 256 bytes).

    Before, words were cut with `\w+` from `str.lower()`: words with
    accents and runs of CJK characters entered the vocabulary as the
    tokenizer never produces them (every "café" was [UNK]), and a run of
    over 256 bytes (a 90-character Chinese sentence) stopped the tokenizer
    with tensorflow-text's "Vocab token utf8 length ... exceeds the max".
    """
    import tensorflow as tf
    from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize

    from mmtl_tf.data.bert_preprocessor import clean_text, lower_case

    check_texts(texts)
    counts = collections.Counter()
    punctuation = set()
    cleaned = lower_case(clean_text(tf.constant(list(texts), dtype=tf.string)))
    for row in pretokenize(cleaned, lowercase=False, strip_accents=True,
                           split_on_cjk=True).to_list():
        for token in (t.decode("utf-8") for t in row):
            if len(token.encode("utf-8")) > _LONGEST_WORD_BYTES:
                continue
            # The tokenizer splits punctuation into characters of their own;
            # a word may hold marks that are not \w (a Devanagari vowel sign).
            if len(token) == 1 and not re.fullmatch(r"\w", token):
                punctuation.add(token)
            else:
                counts[token] += 1
    vocab = list(RESERVED_TOKENS) + sorted(punctuation)
    room = max(0, int(size) - len(vocab))
    vocab += [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:room]]
    return vocab


RANDOM_ENCODER = {"vocabulary_size": 2000, "num_layers": 2, "num_heads": 2, "hidden_dim": 64,
                  "intermediate_dim": 128}


def resolve_encoder(config, train_texts):
    """(encoder for the builder, tokenizer source, description) from the config."""
    encoder = config.get("encoder", "minilm")
    if encoder == "minilm":
        path = fetch_minilm()
        return path, path, "MiniLM-L6 (all-MiniLM-L6-v2)"
    if encoder == "random":
        import keras_hub

        # Sizes the recipe does not give (the base recipe gives none: 'random'
        # is for smoke tests) are those of a small BERT.
        sizes = {**RANDOM_ENCODER, **(config.get("random_encoder") or {})}
        vocab = word_vocabulary(train_texts, sizes.pop("vocabulary_size"))
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=len(vocab), max_sequence_length=int(config["sequence_length"]),
            **sizes)
        return backbone, vocab, "random small BERT"
    if os.path.isdir(encoder):
        return encoder, encoder, os.path.basename(os.path.normpath(encoder))
    return encoder, encoder, encoder


def _records(config, splits=SPLITS):
    # The hash split's key ("split_key", in the recipe and so in run.json):
    # runs from before text_key was the key (2026-11-29) have none and keep
    # theirs ("raw") when evaluated.
    return {s: load_text_classification_records(
        config["data"], s, seed=int(config["seed"]), on_error=config.get("on_error", "raise"),
        split_key=config.get("split_key", "raw"))
        for s in splits}


def _evaluate(model, ds, verbose=0):
    with warnings.catch_warnings():
        # Keras' note that a finite dataset "ran out of data" is expected here.
        warnings.filterwarnings("ignore", message=r".*ran out of data.*")
        return model.evaluate(ds, verbose=verbose, return_dict=True)


def _early_stopping(config):
    """Stops after `patience` epochs without a better validation loss (the best
    epoch's weights are the ones checkpointed)."""
    patience = config.get("patience")
    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(patience))] \
        if patience else []


def _feature_dataset(features, labels, batch_size, shuffle, seed):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((features, np.asarray(labels, "int32")))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def logistic_regression_probe(features, labels, c_values=(0.1, 0.3, 1.0, 3.0, 10.0),
                              seed=0):
    """scikit-learn logistic regression on frozen features, C chosen on validation.

    Returns:
        dict with test accuracy, the chosen C and its validation accuracy, or
        None when scikit-learn is not installed (it is a test extra).
    """
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    best = None
    for c in c_values:
        probe = LogisticRegression(C=float(c), max_iter=3000, random_state=seed)
        probe.fit(features["train"], labels["train"])
        val = probe.score(features["validation"], labels["validation"])
        if best is None or val > best[0]:
            best = (val, float(c), probe)
    val, c, probe = best
    return {"accuracy": float(probe.score(features["test"], labels["test"])), "C": c,
            "validation_accuracy": float(val)}


def lstm_baseline(config, records, verbose=0):
    """Trains the from-scratch TextVectorization + Embedding + LSTM classifier.

    Returns:
        dict with test accuracy and loss, the best epoch, parameters and seconds.
    """
    keras.utils.set_random_seed(int(config["seed"]))
    length = int(config["lstm_sequence_length"])
    vectorizer = make_text_vectorizer(records["train"].texts,
                                      vocab_size=int(config["lstm_vocab_size"]),
                                      sequence_length=length, warn_truncation=False)
    data = {s: make_text_classification_dataset(
        records[s], vectorizer, batch_size=int(config["batch_size"]), shuffle=s == "train",
        seed=int(config["seed"])) for s in SPLITS}
    num_classes = len(records["train"].class_names)
    with runtime.get_strategy().scope():
        model = build_lstm_text_classifier(
            vocab_size=int(config["lstm_vocab_size"]), sequence_length=length,
            embedding_dim=int(config["lstm_embedding_dim"]),
            lstm_units=int(config["lstm_units"]), num_classes=num_classes,
            head_units=config["head_units"], dropout=float(config["dropout"]))
        training.compile_classifier(model, num_classes, float(config["lstm_learning_rate"]))
    best = keras.callbacks.EarlyStopping(monitor="val_loss",
                                         patience=int(config.get("lstm_patience", 3)),
                                         restore_best_weights=True)
    history, seconds = training.fit(model, data["train"], data["validation"],
                                    epochs=int(config["lstm_epochs"]), callbacks=[best],
                                    verbose=verbose)
    result = _evaluate(model, data["test"])
    return {"accuracy": float(result["accuracy"]), "loss": float(result["loss"]),
            "best_epoch": int(np.argmin(history["val_loss"])) + 1,
            "params": int(model.count_params()), "train_seconds": seconds}


@common.staged_run
def train(config, run_dir, verbose=1):
    """Trains, evaluates on the test split and writes the run folder."""
    common.start_run(run_dir, NAME, config)
    records = _records(config)
    raise_collected_problems()  # bad rows of every split, before encoding
    class_names = records["train"].class_names
    num_classes = len(class_names)
    labels = {s: np.asarray(r.label_ids(), "int32") for s, r in records.items()}
    encoder_source, tokenizer_source, description = resolve_encoder(
        config, records["train"].texts)
    preprocessor = BertPreprocessor(tokenizer_source, int(config["sequence_length"]))
    preprocessor.save(run_dir)
    lengths = {s: preprocessor.count_tokens(r.texts) for s, r in records.items()}
    truncated = {s: int(np.sum(n > preprocessor.sequence_length - 2))
                 for s, n in lengths.items()}
    warn_if_truncated(lengths["train"], preprocessor.sequence_length, reserved=2)
    trainable = config.get("trainable", "frozen")
    with runtime.get_strategy().scope():
        model = build_text_classifier(
            encoder_source, num_classes=num_classes, head_units=config["head_units"],
            dropout=float(config["dropout"]), trainable=trainable,
            pooling=config["pooling"], sequence_length=int(config["sequence_length"]))
    encoder, head = model.get_layer("bert_encoder"), model.get_layer("head")
    batch_size, seed = int(config["batch_size"]), int(config["seed"])
    cached = bool(config.get("cache_features", True)) and trainable == "frozen"
    want_probe = bool(config.get("baselines", True))
    features, encode_seconds = None, None
    if cached or want_probe:
        start = time.perf_counter()
        features = {s: encode_texts(encoder, preprocessor, r.texts) for s, r in records.items()}
        encode_seconds = time.perf_counter() - start
    lr = float(config["learning_rate"])
    if cached:
        # Train only the head on the cached features; the head is the same object
        # as inside `model`, so `model` is the trained full classifier.
        with runtime.get_strategy().scope():
            training.compile_classifier(head, num_classes, lr)
        history, seconds = training.fit(
            head, _feature_dataset(features["train"], labels["train"], batch_size, True, seed),
            _feature_dataset(features["validation"], labels["validation"], batch_size, False,
                             seed),
            epochs=int(config["epochs"]), run_dir=run_dir, backup=False, verbose=verbose,
            callbacks=_early_stopping(config))
        head.load_weights(os.path.join(run_dir, "best.keras"))
        results = _evaluate(head, _feature_dataset(features["test"], labels["test"], 256,
                                                   False, seed))
    else:
        data = {s: make_text_classification_dataset(records[s], preprocessor, batch_size,
                                                    shuffle=s == "train", seed=seed)
                for s in SPLITS}
        with runtime.get_strategy().scope():
            training.compile_classifier(model, num_classes, lr)
        history, seconds = training.fit(model, data["train"], data["validation"],
                                        epochs=int(config["epochs"]), run_dir=run_dir, backup=False,
                                        verbose=verbose, callbacks=_early_stopping(config))
        model.load_weights(os.path.join(run_dir, "best.keras"))
        results = _evaluate(model, data["test"])
    training.save_model_atomic(model, os.path.join(run_dir, "model.keras"))
    training.atomic_write_json(history, os.path.join(run_dir, "history.json"))
    training.plot_curves(history, os.path.join(run_dir, "curves.png"),
                         title=f"{NAME}: {description} + head on {config['data']}")
    common.update_run(run_dir, class_names=class_names)
    baselines = {"majority_class_accuracy": training.majority_class_accuracy(
        labels["train"], labels["test"])}
    if want_probe:
        probe = logistic_regression_probe(features, labels, config.get(
            "probe_c_values", (0.1, 0.3, 1.0, 3.0, 10.0)), seed)
        if probe is not None:
            baselines["logistic_regression_probe_accuracy"] = probe["accuracy"]
            baselines["logistic_regression_probe"] = probe
        else:
            baselines["logistic_regression_probe"] = "skipped: scikit-learn is not installed"
        lstm = lstm_baseline(config, records)
        baselines["lstm_from_scratch_accuracy"] = lstm["accuracy"]
        baselines["lstm_from_scratch"] = lstm
    metrics = {
        "test": common.row_figures(results, len(labels["test"])),
        "baselines": baselines,
        "encoder": description,
        "trainable": trainable,
        "cached_features": cached,
        "encode_seconds": encode_seconds,
        "params": int(model.count_params()),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "train_seconds": seconds,
        "epochs": int(config["epochs"]),
        # Early stopping (`patience`) may end training sooner.
        "epochs_run": len(history["val_loss"]),
        "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        "truncated_texts": truncated,
        "split_sizes": {s: len(r) for s, r in records.items()},
    }
    return common.write_metrics(run_dir, metrics)


def _load(run_dir):
    info, model = common.load_run_model(run_dir, NAME)
    preprocessor = BertPreprocessor.load(run_dir)
    return info, model, preprocessor


@common.evaluation
def evaluate(run_dir, split="test", verbose=1, data=None, on_error=None):
    """Re-evaluates the saved model on a split; updates metrics.json."""
    info, model, preprocessor = _load(run_dir)
    config = common.run_config(info, data, on_error)
    class_names = info["class_names"]
    # Label ids index the run's classes, also on other data (TFDS sources
    # keep their own names: checked below).
    records = load_text_classification_records(config["data"], split, seed=int(config["seed"]),
                                               on_error=config.get("on_error", "raise"),
                                               class_names=class_names,
                                               split_key=config.get("split_key", "raw"))
    raise_collected_problems()  # bad rows and files named before the model runs
    unknown = sorted(set(records.class_names) - set(class_names))
    if unknown:
        raise ValueError(f"{config['data']}: labels {unknown} are not among the run's "
                         f"classes {class_names}.")
    records.class_names = class_names
    ds = make_text_classification_dataset(records, preprocessor, int(config["batch_size"]))
    training.compile_classifier(model, len(class_names), jit_compile=False)
    results = _evaluate(model, ds, verbose)
    return common.write_metrics(run_dir, common.scored_rows(split, results, records),
                                data=data)


def export(run_dir, saved_model_dir):
    """Writes a SavedModel serving raw strings (needs `import tensorflow_text`
    to load) and token ids, plus `tokens_only/` without tensorflow-text ops."""
    info, model, preprocessor = _load(run_dir)
    return export_text_classifier(model, preprocessor, saved_model_dir,
                                  class_names=info["class_names"])


def summary(metrics):
    state = "frozen" if metrics.get("trainable", "frozen") == "frozen" else "fine-tuned"
    baselines = metrics["baselines"]
    rows = [{"model": f"text-classifier ({state} {metrics['encoder']} + head)",
             "metric": "test accuracy", "value": metrics["test"]["accuracy"],
             "baseline": "LSTM from scratch" if "lstm_from_scratch_accuracy" in baselines
             else "majority class",
             "baseline_value": baselines.get("lstm_from_scratch_accuracy",
                                             baselines["majority_class_accuracy"]),
             "params": metrics["params"], "train_seconds": metrics["train_seconds"]}]
    if "logistic_regression_probe_accuracy" in baselines:
        rows.append({"model": "text-classifier: logistic-regression probe, same features",
                     "metric": "test accuracy",
                     "value": baselines["logistic_regression_probe_accuracy"],
                     "baseline": "majority class",
                     "baseline_value": baselines["majority_class_accuracy"]})
    return rows
