"""PortableBytePair: core-op byte-level BPE giving exactly the ids of the tf-text BytePair."""
import itertools

import pytest
import tensorflow as tf

import keras_lm
from keras_lm.tokenizers import BytePair
from keras_lm.tokenizers.portable_byte_pair import PortableBytePair, regex_split

from portable_strings import EDGE_CASES

ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

BYTE_PAIR_EDGE_CASES = [
    "<s>", "</s><s>", "<s><s>a</s>", " <pad> x</s>\n", "x<mask>y <mask> <unk>", "<s", "s>", "</ s>",
    "nul\x00inside\x00\x00 and\x00", "\x00", "\uf8ff\uf8fe\uf8fd private escapes",
    "digits 0123456789 1 22 333 4444 55555 ٣٤٥ ² ½ Ⅻ",
    "  leading and trailing  ", "\n\n\nit's   we'll  I'M   they've\r\n\r\n", "\t\t x\t", " ", "  ", "\u3000x\u00a0y \u2003z",
    "'s 't 're 've 'm 'll 'd 'S ''", "x" * 300, "😀" * 30, "東京" * 30,
    "a\u0301\u0301\u0301 e\u0300 ﬁ ẞ", "!!!???...---!!!", "$100.00 + 20% = €1,234",
]


def _lines(name: str, documents: int) -> list:
    rows = [r["text"].numpy().decode("utf-8") for r in keras_lm.data.load(name, split="train").take(documents)]
    return [line for row in rows for line in row.splitlines() if line.strip()], rows


def varied_strings(count: int = 1000) -> list:
    """Movie reviews, Shakespeare and WordNet lines interleaved, two long multi-line extracts, edge cases."""
    movies, _ = _lines("movie_snippets", count)
    plays, works = _lines("shakespeare", 2)
    glosses, _ = _lines("wordnet_glosses", 3)
    sources = [movies[:count], plays[:: max(1, len(plays) // count)], glosses[:: max(1, len(glosses) // count)],
               [works[0][:3000], works[1][1000:2500]]]
    mixed = list(dict.fromkeys(t for row in itertools.zip_longest(*sources) for t in row if t is not None))
    edge = EDGE_CASES + BYTE_PAIR_EDGE_CASES
    return mixed[: count - len(edge)] + edge


@pytest.fixture(scope="module")
def tokenizer():
    reviews = keras_lm.data.load("movie_snippets", split="train")
    return BytePair.train(reviews, vocabulary_size=1000, special_tokens=ROBERTA_SPECIALS)


@pytest.fixture(scope="module")
def texts():
    strings = varied_strings(1000)
    assert len(strings) == 1000 and len(set(strings)) > 990
    return tf.constant([t.encode("utf-8") for t in strings] + [b"\xff\xfe\xc3\x28 broken utf-8 <s>\xc3", b"\x80"])


def _graph(portable):
    return tf.function(portable.__call__, input_signature=[tf.TensorSpec([None], tf.string)])


def _assert_same_ids(tokenizer, texts, options):
    configured = BytePair.from_config({**tokenizer.get_config(), **options})
    expected = configured(texts).to_list()
    got = _graph(PortableBytePair(configured))(texts).to_list()
    different = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
    assert not different, [(texts[i].numpy()[:80], expected[i][:20], got[i][:20]) for i in different[:3]]
    special_ids = {configured.vocabulary[t] for t in ROBERTA_SPECIALS}
    assert sum(any(i in special_ids for i in ids) for ids in expected) >= 5  # special tokens written in text


@pytest.mark.parametrize("prefix_space", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["gpt2", "roberta_prefix_space"])
def test_ids_equal_tf_text_byte_pair_on_1000_varied_strings(tokenizer, texts, prefix_space):
    _assert_same_ids(tokenizer, texts, dict(add_prefix_space=prefix_space))


OTHER_SPLITS = {
    "llama3": dict(split_pattern="llama3"),
    "o200k_individual_digits": dict(split_pattern="o200k", split_digits="individual"),
    "qwen2_ignore_merges_digit_runs": dict(split_pattern="qwen2", ignore_merges=True, split_digits="runs"),
    "no_split": dict(split_pattern=None),
}


@pytest.mark.slow  # long: run with -m slow
@pytest.mark.parametrize("options", OTHER_SPLITS.values(), ids=OTHER_SPLITS.keys())
def test_ids_equal_tf_text_byte_pair_with_other_word_splits(tokenizer, texts, options):
    _assert_same_ids(tokenizer, tf.concat([texts[:200:2], texts[-60:]], axis=0), options)


@pytest.mark.parametrize("style", ["llama3", "prefix_space"])
def test_ids_equal_a_hf_tokenizer_json_with_added_special_tokens(tmp_path, style):
    from tokenizers import Tokenizer

    from hf_strings import corpus_text, varied_strings as hf_varied_strings
    from test_byte_pair_hf import train_byte_level_bpe

    reference = train_byte_level_bpe(style, corpus_text(60_000), vocabulary_size=600)
    reference.add_special_tokens(["<|eot_id|>", "<|reserved_special_token_0|>"] if style != "llama3" else [])
    reference.save(str(tmp_path / "tokenizer.json"))
    reference = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    strings = hf_varied_strings() + ["<|im_start|>user\nHi!<|im_end|>\n<|endoftext|>", "a<|eot_id|>b", "<|eot_id|>"]
    expected = [e.ids for e in reference.encode_batch(strings, add_special_tokens=False)]
    got = _graph(PortableBytePair(BytePair.from_hf(tmp_path)))(tf.constant([t.encode("utf-8") for t in strings]))
    mismatches = {t: (ours, theirs) for t, ours, theirs in zip(strings, got.to_list(), expected) if ours != theirs}
    assert mismatches == {}
    assert reference.token_to_id("<|eot_id|>") in expected[-1] and reference.token_to_id("<|eot_id|>") >= 600


def test_exact_ids_merges_special_tokens_and_padding():
    vocabulary = {"<|endoftext|>": 0, "b": 1, "u": 2, "t": 3, "e": 4, "r": 5, "Ġ": 6,
                  "bu": 7, "tt": 8, "er": 9, "butt": 10, "butter": 11, "Ġbutter": 12}
    merges = ["b u", "t t", "e r", "bu tt", "butt er", "Ġ butter"]
    text = tf.constant(["butter butter<|endoftext|>", "", "<|endoftext|><|endoftext|>", "tt b x"])
    portable = _graph(PortableBytePair(BytePair(vocabulary, merges)))
    assert portable(text).to_list() == [[11, 12, 0], [], [0, 0], [8, 6, 1, 6, -1]]
    assert portable(text).to_list() == BytePair(vocabulary, merges)(text).to_list()
    padded = PortableBytePair(BytePair(vocabulary, merges, sequence_length=4))(text)
    assert padded.numpy().tolist() == [[11, 12, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [8, 6, 1, 6]]


def test_regex_split_keeps_matches_and_the_text_between():
    pieces = regex_split(tf.constant(["ab12cd3", "", "45", "x\x00y"]), r"\p{N}+|\x00")
    assert pieces.to_list() == [[b"ab", b"12", b"cd", b"3"], [], [b"45"], [b"x", b"\x00", b"y"]]


def test_the_graph_uses_core_tensorflow_ops_only(tokenizer):
    graph = _graph(PortableBytePair(tokenizer)).get_concrete_function().graph
    op_types = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:
        op_types |= {node.op for node in function.node_def}
    core = set(dir(tf.raw_ops))  # tensorflow_text's ops are not in tf.raw_ops
    assert op_types - {"Placeholder", "Const", "NoOp", "Identity"} <= core, sorted(op_types - core)
    assert {"StaticRegexReplace", "StringSplitV2", "While"} & op_types
    tf_text_graph = tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    tf_text_ops = {op.type for op in tf_text_graph.get_concrete_function().graph.get_operations()}
    assert tf_text_ops - core  # the check above can fail: the tf-text graph has ops outside core


def test_refuses_what_it_cannot_reproduce(tokenizer):
    nfc = BytePair.from_config({**tokenizer.get_config(), "normalization": "NFC"})
    with pytest.raises(ValueError, match="normalization='NFC'"):
        PortableBytePair(nfc)
    with pytest.raises(TypeError, match="BytePair"):
        PortableBytePair("vocab.json")
