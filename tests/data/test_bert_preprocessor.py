import numpy as np
import pytest
import tensorflow as tf

import mmtl_tf
from mmtl_tf.data import BertPreprocessor, check_encoder_directory, load_bert_tokenizer
from tests.tiny_bert import VOCAB, write_hf_config

ID = {token: i for i, token in enumerate(VOCAB)}


def _ids(*tokens):
    return [ID[t] for t in tokens]


def test_packs_cls_tokens_sep_and_padding():
    pre = BertPreprocessor(VOCAB, sequence_length=8)
    out = pre(["The cat sat.", "good"])
    assert out["token_ids"].dtype == tf.int32 and out["padding_mask"].dtype == tf.int32
    assert out["token_ids"].numpy().tolist() == [
        _ids("[CLS]", "the", "cat", "sat", ".", "[SEP]") + [0, 0],
        _ids("[CLS]", "good", "[SEP]") + [0] * 5]
    assert out["padding_mask"].numpy().tolist() == [[1] * 6 + [0] * 2, [1] * 3 + [0] * 5]


def test_long_texts_keep_their_first_pieces_and_end_with_sep():
    pre = BertPreprocessor(VOCAB, sequence_length=5)
    out = pre(["the cat sat on the mat"])
    assert out["token_ids"].numpy().tolist() == [_ids("[CLS]", "the", "cat", "sat", "[SEP]")]
    assert pre.count_tokens(["the cat sat on the mat"]).tolist() == [6]


def test_wordpieces_unknown_words_empty_and_invalid_utf8():
    pre = BertPreprocessor(VOCAB, sequence_length=8)
    out = pre(tf.constant(["cats eating", "zebra", "", b"the \xff\xfe cat"]))
    ids = out["token_ids"].numpy().tolist()
    assert ids[0][:5] == _ids("[CLS]", "cat", "##s", "eat", "##ing")
    assert ids[1][:3] == _ids("[CLS]", "[UNK]", "[SEP]")
    assert ids[2][:2] == _ids("[CLS]", "[SEP]") and out["padding_mask"].numpy()[2].sum() == 2
    # Invalid bytes are dropped (as Hugging Face drops U+FFFD) instead of
    # failing the whole batch; they were U+FFFD → [UNK].
    assert ids[3][:4] == _ids("[CLS]", "the", "cat", "[SEP]")


def test_ids_match_hugging_faces_bert_tokenizer_on_unicode_text():
    # keras-hub splits words on ASCII white space only and lower-cases by NFKC
    # case folding: "computer\u00a0crashed" was one [UNK], "ß" became "ss".
    # The reference is Hugging Face's own BERT normaliser + WordPiece
    # (`tokenizers`, installed with keras-hub) on the same vocabulary.
    import tokenizers
    from tokenizers import normalizers, pre_tokenizers, processors

    vocab = VOCAB + ["crashed", "ß", "ss", "ﬁ", "fi", "ａｂｃ", "abc", "...", "…", "½",
                     "1", "2", "⁄", "µ", "μ", "π", "日", "本", "xy", "de", "σασ", "σας", "x"]
    ref = tokenizers.Tokenizer(tokenizers.models.WordPiece(
        {t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    ref.normalizer = normalizers.BertNormalizer(lowercase=True)
    ref.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    ref.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    texts = ["The computer\u00a0crashed", "cat\u3000dog\u2028run\u2009film",
             "comp\u200buter\x07 bad\ufeff", "tab\there\nand\rthere", "Straße ß SS",
             "ﬁ ＡＢＣ … ½ µ π", "Café CAFÉ", "日本 cat", "  ", "",
             # Dropped, not spaces; Σ is σ at a word's end too (they differed).
             "a\x0bb\x0cc", "d\x85e", "x\ufffdy", "ΣΑΣ x σας"]
    pre = BertPreprocessor(vocab, sequence_length=16)
    ours = pre(texts)
    for text, ids, mask in zip(texts, ours["token_ids"].numpy(), ours["padding_mask"].numpy()):
        assert ids[mask == 1].tolist() == ref.encode(text).ids, repr(text)
    assert pre.count_tokens(texts).tolist() == [len(ref.encode(t).ids) - 2 for t in texts]


def test_same_ids_in_a_tf_data_graph_as_eagerly():
    pre = BertPreprocessor(VOCAB, sequence_length=8)
    texts = ["The dog is very good!", "a bad movie", "cafe"]
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(pre)
    graph = np.concatenate([b["token_ids"].numpy() for b in ds])
    np.testing.assert_array_equal(graph, pre(texts)["token_ids"].numpy())


def test_save_and_load_round_trip(tmp_path):
    pre = BertPreprocessor(VOCAB, sequence_length=7)
    pre.save(str(tmp_path))
    again = BertPreprocessor.load(str(tmp_path))
    assert again.sequence_length == 7 and again.vocabulary_size == len(VOCAB)
    texts = ["The CAT sat on the mat.", "Café food"]
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(again(texts)[key], pre(texts)[key])
    with pytest.raises(mmtl_tf.DataError, match="missing preprocessor.json"):
        BertPreprocessor.load(str(tmp_path / "nothing"))
    # A folder without its vocabulary file: named, with what to do (it was
    # keras_hub's bare "[Errno 2] No such file or directory").
    (vocabulary,) = (tmp_path / "tokenizer_assets").iterdir()
    vocabulary.unlink()
    with pytest.raises(ValueError, match=r"vocabulary.txt: cannot read the tokenizer's "
                                         r"vocabulary \(No such file or directory\), which "
                                         r"preprocessor.json needs: .* train the run again"):
        BertPreprocessor.load(str(tmp_path))


def test_hugging_face_folder_casing_and_accents(tmp_path):
    lower = write_hf_config(tmp_path / "lower", tokenizer_config={"do_lower_case": True})
    # Hugging Face strips accents when it lower-cases and strip_accents is unset.
    assert BertPreprocessor(lower, 6)(["Café"])["token_ids"].numpy()[0, 1] == ID["cafe"]
    cased = write_hf_config(tmp_path / "cased", tokenizer_config={"do_lower_case": False})
    assert BertPreprocessor(cased, 6)(["Cat"])["token_ids"].numpy()[0, 1] == ID["[UNK]"]
    assert BertPreprocessor(cased, 6)(["cat"])["token_ids"].numpy()[0, 1] == ID["cat"]


def test_encoder_folder_errors_name_the_missing_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(mmtl_tf.DataError) as e:
        check_encoder_directory(str(empty))
    message = str(e.value)
    assert "config.json" in message and "vocab.txt" in message and "model.safetensors" in message
    no_vocab = write_hf_config(tmp_path / "novocab", vocab=False)
    with pytest.raises(mmtl_tf.DataError, match=r"missing vocab\.txt \(the WordPiece"):
        load_bert_tokenizer(no_vocab)
    gpt = write_hf_config(tmp_path / "gpt", model_type="gpt2")
    with pytest.raises(mmtl_tf.DataError, match="model_type 'gpt2'.*bert, distilbert"):
        load_bert_tokenizer(gpt)
    # A damaged tokenizer_config.json was a bare JSONDecodeError naming no file.
    for name, text, words in (("badjson", "{not json", "tokenizer_config.json: not valid JSON"),
                              ("list", "[1, 2]", r"tokenizer_config.json: not a tokenizer "
                                                 r"configuration \(a JSON object\); it holds "
                                                 r"list")):
        folder = write_hf_config(tmp_path / name, tokenizer_config={"do_lower_case": True})
        with open(f"{folder}/tokenizer_config.json", "w") as f:
            f.write(text)
        with pytest.raises(mmtl_tf.DataError, match=words):
            load_bert_tokenizer(folder)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sequence_length must be >= 3"):
        BertPreprocessor(VOCAB, sequence_length=2)
    with pytest.raises(TypeError, match="cannot make a tokenizer"):
        BertPreprocessor(42)
