"""PortableWordPiece: core-op WordPiece giving exactly the ids of the tf-text WordPiece."""
import pytest
import tensorflow as tf

from keras_lm.tokenizers import WordPiece
from keras_lm.tokenizers.portable_word_piece import PortableWordPiece

from portable_strings import varied_texts


@pytest.fixture(scope="module")
def texts():
    texts = varied_texts(1000)
    assert len(texts) == 1000 and len(set(texts)) > 950
    return tf.constant([t.encode("utf-8") for t in texts] + [b"\xff\xfe\xc3\x28 broken utf-8"])


def _graph(portable):
    return tf.function(portable.__call__, input_signature=[tf.TensorSpec([None], tf.string)])


CONFIGURATIONS = {
    "uncased": {},
    "cased_clean_special_tokens": dict(lowercase=False, clean_text=True, special_tokens_in_strings=True),
    "lowercase_keep_accents_clean": dict(lowercase=True, strip_accents=False, clean_text=True),
}


@pytest.mark.parametrize("options", [
    pytest.param(options, id=name, marks=() if name == "uncased" else pytest.mark.slow)
    for name, options in CONFIGURATIONS.items()
])
def test_ids_equal_tf_text_word_piece_on_1000_varied_strings(movie_vocabulary, texts, options):
    tokenizer = WordPiece(movie_vocabulary, **options)
    expected = tokenizer(texts).to_list()
    got = _graph(PortableWordPiece(tokenizer))(texts).to_list()
    different = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
    assert not different, [(texts[i].numpy()[:80], expected[i][:20], got[i][:20]) for i in different[:3]]
    assert any(tokenizer.unk_id in ids for ids in expected)  # long words and unknown characters are covered


def test_greedy_longest_match_and_unknown_words(small_vocab):
    tokenizer = WordPiece(small_vocab)
    portable = _graph(PortableWordPiece(tokenizer))
    text = tf.constant(["The kings walked, kingdom!", "walks xyz", "", "a" * 101])
    assert portable(text).to_list() == [[5, 6, 17, 30, 31, 32, 33, 19, 20, 28, 22], [30, 31, 32, 33, 17, 1], [], [1]]
    assert portable(text).to_list() == tokenizer(text).to_list()


def test_the_graph_uses_no_tensorflow_text_op(small_vocab):
    graph = _graph(PortableWordPiece(WordPiece(small_vocab))).get_concrete_function().graph
    op_types = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:
        op_types |= {node.op for node in function.node_def}
    assert not {t for t in op_types if t.startswith(("Normalize", "RegexSplit", "FastWordpiece", "Wordpiece"))}
    assert "StringSplitV2" in op_types and "Substr" in op_types


def test_refuses_tokenizers_it_cannot_reproduce(small_vocab):
    with pytest.raises(ValueError, match="split=True and sequence_length=None"):
        PortableWordPiece(WordPiece(small_vocab, sequence_length=8))
    with pytest.raises(TypeError, match="WordPiece"):
        PortableWordPiece("vocab.txt")
