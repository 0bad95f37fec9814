"""Text vectorisation: a Keras `TextVectorization` vocabulary, adapted on the
training split, saved beside the model and reused by the exported model.

Tokenisation runs in `tf.data` (training) or in the serving function (export),
never inside an XLA-compiled function: strings cannot enter XLA.
"""

import json
import os
import threading
import warnings

import keras
import numpy as np
import tensorflow as tf

from mmtl_tf.errors import DataError, DataWarning, check_texts
from mmtl_tf.files import atomic_json, user_path

# `warn_if_truncated` warns when more than this share of the texts is cut (the
# bundled recipes stay below it: at most 29% of the quotes at the text
# classifier's tiny size, 10% of the spoken captions, 1% of the image captions).
TRUNCATION_WARNING_SHARE = 1 / 3

# A short English stop-word list (articles, pronouns, auxiliaries, prepositions).
STOP_WORDS = (
    "a an the and or but if then else of at by for with about against between "
    "into through during before after above below to from up down in out on off "
    "over under again further once here there when where why how all any both "
    "each few more most other some such no nor not only own same so than too very "
    "can will just don should now i me my myself we our ours ourselves you your "
    "yours yourself yourselves he him his himself she her hers herself it its "
    "itself they them their theirs themselves what which who whom this that these "
    "those am is are was were be been being have has had having do does did doing "
    "would could ought as until while s t"
).split()

_PUNCTUATION = r'[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\']'
_STOP_PATTERN = r"\b(?:" + "|".join(STOP_WORDS) + r")\b"


# Keras' "lower_and_strip_punctuation" removes these characters.
_KERAS_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


@keras.saving.register_keras_serializable(package="mmtl_tf")
def standardize_text(text):
    """Keras' "lower_and_strip_punctuation", but lower-casing every letter:
    Keras' `tf.strings.lower` without an encoding lower-cases A-Z only, so
    "CAFÉ" became "cafÉ", a word apart from "café" ("ÜBER" from "über")."""
    text = tf.strings.lower(text, encoding="utf-8")
    return tf.strings.regex_replace(text, _KERAS_PUNCTUATION, "")


@keras.saving.register_keras_serializable(package="mmtl_tf")
def standardize_without_stopwords(text):
    """Lower-cases (every letter, as `standardize_text`), strips punctuation
    and removes English stop words."""
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, _PUNCTUATION, " ")
    text = tf.strings.regex_replace(text, _STOP_PATTERN, " ")
    return tf.strings.regex_replace(tf.strings.strip(text), r"\s+", " ")


def make_text_vectorizer(texts=None, vocab_size=5000, sequence_length=100,
                         remove_stopwords=False, vocabulary=None, split="whitespace",
                         warn_truncation=True):
    """Builds a `keras.layers.TextVectorization` and adapts it on `texts`.

    Index 0 is padding, index 1 the out-of-vocabulary token; sequences are cut or
    zero-padded to `sequence_length` (texts longer than that are truncated).

    Args:
        texts: list of str (not a bare str) or a `tf.data.Dataset` of strings.
            The training captions to adapt on (ignored when `vocabulary` is given).
        vocab_size: int. Maximum vocabulary size, padding and OOV included.
        sequence_length: int. Output length.
        remove_stopwords: bool. Also drop English stop words when standardising.
        vocabulary: list of str or None. A fixed vocabulary instead of adapting.
        split: str. `"whitespace"` (word tokens) or `"character"` (one token
            per character, spaces included: spellings of unseen words still
            share tokens with the training captions).
        warn_truncation: bool. Emit a `mmtl_tf.DataWarning` when more than a
            third of `texts` (a list) have more tokens than
            `sequence_length` (`warn_if_truncated`).

    Returns:
        An adapted `TextVectorization` layer producing int64 token ids.

    Example:
        >>> import mmtl_tf
        >>> vec = mmtl_tf.data.make_text_vectorizer(["a red apple", "a green pear"],
        ...                                         vocab_size=10, sequence_length=4)
        >>> vec(["red pear"]).shape
        TensorShape([1, 4])
    """
    layer = _new_text_vectorizer(vocab_size, sequence_length, remove_stopwords, vocabulary,
                                 split)
    if vocabulary is None:
        if texts is None:
            raise ValueError("make_text_vectorizer needs `texts` or `vocabulary`.")
        if isinstance(texts, tf.data.Dataset):
            layer.adapt(texts)
        else:
            texts = _checked_list(texts)
            lengths = _adapt_on_list(layer, texts, count=warn_truncation)
            if warn_truncation:
                warn_if_truncated(lengths, sequence_length)
    return layer


def _new_text_vectorizer(vocab_size=5000, sequence_length=100, remove_stopwords=False,
                         vocabulary=None, split="whitespace"):
    if sequence_length < 1 or vocab_size < 3:
        raise ValueError(
            f"need sequence_length >= 1 and vocab_size >= 3, got "
            f"sequence_length={sequence_length}, vocab_size={vocab_size}.")
    if split not in ("whitespace", "character"):
        raise ValueError(f"split={split!r} is not allowed; use one of 'whitespace', "
                         "'character'.")
    standardize = standardize_without_stopwords if remove_stopwords else standardize_text
    return keras.layers.TextVectorization(
        max_tokens=vocab_size, standardize=standardize,
        output_mode="int", output_sequence_length=sequence_length,
        vocabulary=vocabulary, split=split)


def _checked_list(texts):
    check_texts(texts)
    texts = list(texts)
    if not texts:
        raise DataError("cannot adapt a text vocabulary on zero texts.")
    return texts


def _adapt_on_list(layer, texts, count=True, stop=None):
    """Adapts `layer` on a checked list of str, 1,024 texts at a time (what
    `layer.adapt` does with a dataset batched so); returns each text's token
    count (None without `count`, or when `stop`, a `threading.Event`, was
    set between two batches: the layer is then left unadapted)."""
    layer.reset_state()
    for start in range(0, len(texts), _ADAPT_BATCH):
        if stop is not None and stop.is_set():
            return None
        layer.update_state(tf.constant(texts[start:start + _ADAPT_BATCH]))
    layer.finalize_state()
    return count_tokens(layer, texts) if count else None


_ADAPT_BATCH = 1024


def vectorize_while_loading(load, captions, text_vectorizer=None, train_captions=None,
                            **adapt):
    """Runs `load()`, a files' checking pass, while another thread prepares
    the captions' token ids.

    The vocabulary is adapted and the captions vectorised beside the
    decoding (on 2 cores the checking pass leaves part of the second one
    idle), instead of after it. The result is what the sequential steps
    give: `make_text_vectorizer(**adapt)` on the kept rows' captions (rows
    dropped by `load` do not shape the vocabulary: when any was dropped the
    vocabulary is adapted again on the kept ones), or on `train_captions`,
    or `text_vectorizer` as given; then `vectorize` on the kept captions.

    Order of events: the arguments and the texts to adapt on are checked,
    and the layer is made, on the calling thread before `load()` starts
    (Keras names layers and sets their dtype policy per thread). An error
    of `load()` then wins over one of the text side; when `load()` raises
    (or is interrupted), the thread stops at its next batch of 1,024 texts
    and has ended when this raises. The truncation warning
    (`warn_if_truncated`) comes after `load()`'s own warnings, also when
    adapting on `train_captions` (the sequential steps gave it before).

    Args:
        load: callable. () → (dataset, list of the kept row indices).
        captions: list of str. Every row's caption, in row order.
        text_vectorizer: `TextVectorization` or None. Use it as given.
        train_captions: list of str or None. Adapt on these instead of the
            kept rows' captions (with `text_vectorizer` None).
        **adapt: `make_text_vectorizer` arguments (vocab_size,
            sequence_length, remove_stopwords, split).

    Returns:
        (dataset, kept, the vectorizer, int32 token ids (len(kept), length)).
    """
    if text_vectorizer is None:
        layer = _new_text_vectorizer(**adapt)
        adapt_on = _checked_list(captions if train_captions is None else train_captions)
    else:
        adapt_on, layer = None, text_vectorizer
    stop = threading.Event()
    outcome = {}

    def text_side():
        try:
            lengths = None if adapt_on is None else _adapt_on_list(layer, adapt_on, stop=stop)
            check_texts(captions)
            config = layer.get_config()
            # In parts only at a fixed length (otherwise each part would be
            # padded to its own longest text); at least one part.
            step = (_VECTORIZE_BATCH if config.get("output_sequence_length")
                    and not config.get("ragged") else max(len(captions), 1))
            ids = []
            for start in range(0, max(len(captions), 1), step):
                if stop.is_set():
                    return
                ids.append(vectorize(layer, captions[start:start + step]))
            outcome["value"] = lengths, (ids[0] if len(ids) == 1 else tf.concat(ids, 0))
        except BaseException as e:  # re-raised on the calling thread
            outcome["error"] = e

    thread = threading.Thread(target=text_side, name="mmtl_tf-vectorize")
    try:
        thread.start()
        ds, kept = load()
    except BaseException:
        stop.set()  # the outcome no longer matters
        raise
    finally:
        if thread.ident is not None:  # started
            thread.join()
    if "error" in outcome:
        raise outcome["error"]
    lengths, tokens = outcome["value"]
    if len(kept) != len(captions):
        if text_vectorizer is None and train_captions is None:
            # Adapted on rows that were dropped since: again on the kept ones
            # (the same layer, as `adapt` resets it first).
            kept_captions = [captions[i] for i in kept]
            lengths = _adapt_on_list(layer, kept_captions)
            tokens = vectorize(layer, kept_captions)
        else:
            tokens = tf.gather(tokens, kept)
    if lengths is not None:
        warn_if_truncated(lengths, layer.get_config()["output_sequence_length"])
    return ds, kept, layer, tokens


_VECTORIZE_BATCH = 8192


def count_tokens(layer, texts):
    """Tokens of each text for a `TextVectorization` (after its
    standardisation and split, before padding or truncation), as a NumPy
    int array."""
    config = layer.get_config()
    # Same standardisation and split, unpadded (ragged): one id per token.
    counter = keras.layers.TextVectorization(
        standardize=config["standardize"], split=config["split"], ragged=True,
        vocabulary=["a"])
    tokens = counter(tf.constant(list(texts), dtype=tf.string))
    return np.asarray(tokens.row_lengths())


def warn_if_truncated(lengths, sequence_length, what="training texts", reserved=0):
    """Warns (`mmtl_tf.DataWarning`) when more than a third of the texts are
    cut to `sequence_length`: their tokens are silently dropped otherwise.

    Args:
        lengths: sequence of int. Tokens of each text.
        sequence_length: int. Token ids per text.
        what: str. What the texts are, for the message.
        reserved: int. Positions taken by other tokens (BERT's [CLS] and
            [SEP]: 2).

    Returns:
        float. The share of texts that are truncated.
    """
    lengths = np.asarray(lengths)
    if not lengths.size:
        return 0.0
    cut = int(np.sum(lengths > sequence_length - reserved))
    share = cut / lengths.size
    if share > TRUNCATION_WARNING_SHARE:
        warnings.warn(DataWarning(
            f"{share:.0%} of the {what} ({cut} of {lengths.size}) have more than "
            f"{sequence_length - reserved} tokens and are truncated to sequence_length="
            f"{sequence_length} (median {int(np.median(lengths))} tokens, longest "
            f"{int(lengths.max())}); raise sequence_length to use more of them."),
        stacklevel=2)
    return share


# The standardisations a saved vectorizer may name (by Keras' registered name).
_STANDARDIZERS = {"mmtl_tf>standardize_text": standardize_text,
                  "mmtl_tf>standardize_without_stopwords": standardize_without_stopwords}


def vectorizer_to_dict(layer):
    """A JSON-able description of a `TextVectorization` (config + vocabulary)."""
    config = layer.get_config()
    config.pop("vocabulary", None)
    config.pop("idf_weights", None)
    standardize = config.get("standardize")
    if callable(standardize):
        config["standardize"] = keras.saving.get_registered_name(standardize)
    elif isinstance(standardize, dict):  # a serialised function
        config["standardize"] = standardize.get(
            "registered_name", "mmtl_tf>standardize_without_stopwords")
    if callable(standardize) or isinstance(standardize, dict):
        if config["standardize"] not in _STANDARDIZERS:
            raise ValueError(
                f"cannot save a TextVectorization whose standardize is "
                f"{config['standardize']!r}: use a Keras name ('lower_and_strip_punctuation', "
                f"...) or one of {sorted(_STANDARDIZERS)}.")
    return {"config": config, "vocabulary": layer.get_vocabulary()}


def vectorizer_from_dict(spec):
    """Rebuilds a `TextVectorization` from `vectorizer_to_dict`'s output."""
    config = dict(spec["config"])
    if config.get("standardize") in _STANDARDIZERS:
        config["standardize"] = _STANDARDIZERS[config["standardize"]]
    config["vocabulary"] = spec["vocabulary"]
    layer = keras.layers.TextVectorization(**config)
    layer(tf.constant([""]))  # builds the layer (export needs built layers)
    return layer


def save_text_vectorizer(layer, path):
    """Writes the vectorizer's config and vocabulary as JSON (atomically)."""
    atomic_json(vectorizer_to_dict(layer), user_path(path), ensure_ascii=False)


def load_text_vectorizer(path):
    """Reads a vectorizer written by `save_text_vectorizer`."""
    path = user_path(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: text vectorizer file not found.")
    try:
        with open(path, encoding="utf-8") as f:
            return vectorizer_from_dict(json.load(f))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a text vectorizer file written by "
                         f"save_text_vectorizer ({type(e).__name__}: {e}); it may be "
                         "damaged: train the run again.") from e


def vectorize(layer, texts):
    """Runs the vectorizer on a list of str; returns int32 token ids (N, length)."""
    check_texts(texts)
    return tf.cast(layer(tf.constant(list(texts), dtype=tf.string)), tf.int32)
