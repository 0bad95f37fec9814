"""A bare str/bytes given as the texts is refused (it would be read as a list
of characters: a vocabulary of letters, one row per character)."""
import pytest

import mmtl_tf
from mmtl_tf.data import BertPreprocessor
from mmtl_tf.data.text import vectorize
from mmtl_tf.tasks import text_classifier
from tests.tiny_bert import VOCAB, tiny_backbone

MESSAGE = r"texts is a single string \('the cat sat'\).*pass a list of texts"


@pytest.mark.parametrize("texts", ["the cat sat", b"the cat sat"])
def test_make_text_vectorizer_refuses_a_bare_string(texts):
    with pytest.raises(ValueError, match="texts is a single string.*pass a list of texts"):
        mmtl_tf.data.make_text_vectorizer(texts, vocab_size=50, sequence_length=8)
    vec = mmtl_tf.data.make_text_vectorizer(["the cat sat"], vocab_size=50, sequence_length=8)
    with pytest.raises(ValueError, match="pass a list of texts"):
        vectorize(vec, texts)


def test_encode_texts_count_tokens_and_word_vocabulary_refuse_a_bare_string():
    encoder = mmtl_tf.encoders.BertEncoder(tiny_backbone(max_sequence_length=16),
                                           pooling="mean", sequence_length=8)
    pre = BertPreprocessor(VOCAB, sequence_length=8)
    with pytest.raises(ValueError, match=MESSAGE):
        mmtl_tf.models.encode_texts(encoder, pre, "the cat sat")
    assert mmtl_tf.models.encode_texts(encoder, pre, ["the cat sat"]).shape[0] == 1
    with pytest.raises(ValueError, match=MESSAGE):
        pre.count_tokens("the cat sat")
    with pytest.raises(ValueError, match=MESSAGE):
        text_classifier.word_vocabulary("the cat sat", 20)
