"""WordPiece: exact ids on a hand-written vocabulary, training on Shakespeare, vocab files, serialization."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.tokenizers import SPECIAL_TOKENS, WordPiece


def test_exact_ids_for_fixed_sentences(small_vocab):
    tokenizer = WordPiece(small_vocab)
    assert tokenizer.vocabulary_size() == 34
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (0, 1, 2, 3, 4)
    ids = tokenizer(tf.constant(["To be, or not to be: that is the question.", "A horse! A horse! My kingdom for a horse!"]))
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
    assert ids.to_list() == [
        [11, 12, 20, 13, 14, 11, 12, 23, 15, 7, 5, 16, 21],
        [25, 26, 22, 25, 26, 22, 27, 28, 29, 25, 26, 22],
    ]
    # continuation pieces, unknown words, case folding
    assert tokenizer("The KINGS walked, talking").numpy().tolist() == [5, 6, 17, 30, 31, 32, 33, 19, 20, 1]
    scalar = tokenizer("long live the king")
    assert scalar.shape == (4,) and scalar.dtype == tf.int32
    assert scalar.numpy().tolist() == [9, 10, 5, 6]
    assert tokenizer.id_to_token(6) == "king" and tokenizer.token_to_id("##s") == 17


def test_vocabulary_from_file_and_save_round_trip(small_vocab, tmp_path):
    path = tmp_path / "vocab.txt"
    WordPiece(small_vocab).save_vocabulary(path)
    assert path.read_text(encoding="utf-8") == "".join(f"{t}\n" for t in small_vocab)
    reloaded = WordPiece(str(path))
    assert reloaded.get_vocabulary() == small_vocab
    assert reloaded("the kings").numpy().tolist() == [5, 6, 17]


def test_missing_vocabulary_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        WordPiece(str(missing))


def test_vocabulary_without_special_tokens_is_rejected():
    with pytest.raises(ValueError, match=r"missing the special tokens \['\[CLS\]', '\[SEP\]', '\[MASK\]'\]"):
        WordPiece(["[PAD]", "[UNK]", "the", "king"])


def test_get_config_round_trip_through_keras_serialization(small_vocab):
    tokenizer = WordPiece(small_vocab, lowercase=False)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert type(restored) is WordPiece
    assert restored.get_vocabulary() == small_vocab
    assert restored.lowercase is False
    assert restored("The king").numpy().tolist() == [1, 6] == tokenizer("The king").numpy().tolist()


def test_hostile_strings_tokenize(small_vocab):
    tokenizer = WordPiece(small_vocab)
    ids = tokenizer(tf.constant([b"", b"\xff\xfe", b"the\x00king", b"\x07\x1b[0m the\tking\r\n", b"caf\xc3\xa9 \xc3 king"]))
    assert ids.to_list() == [[], [1], [5, 6], [1, 1, 5, 6], [1, 1, 6]]
    assert tokenizer(tf.constant([], tf.string)).to_list() == []


def test_works_in_dataset_map_and_saved_function(small_vocab, tmp_path):
    tokenizer = WordPiece(small_vocab)
    mapped = tf.data.Dataset.from_tensor_slices(["the king is dead", "long live the king"]).map(tokenizer)
    assert [x.tolist() for x in mapped.as_numpy_iterator()] == [[5, 6, 7, 8], [9, 10, 5, 6]]

    module = tf.Module()
    module.tokenizer = tokenizer
    module.tokenize = tf.function(
        lambda text: tokenizer(text).to_tensor(), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    tf.saved_model.save(module, str(tmp_path / "tokenizer"))
    reloaded = tf.saved_model.load(str(tmp_path / "tokenizer"))
    out = reloaded.tokenize(tf.constant(["the kings", "to be or not", b"\xff"]))
    np.testing.assert_array_equal(out.numpy(), [[5, 6, 17, 0], [11, 12, 13, 14], [1, 0, 0, 0]])


def test_trained_on_shakespeare(shakespeare_tokenizer, tmp_path):
    vocabulary = shakespeare_tokenizer.get_vocabulary()
    assert vocabulary[:5] == list(SPECIAL_TOKENS)
    assert 7000 < len(vocabulary) <= 8000
    assert len(set(vocabulary)) == len(vocabulary)
    for word in ("the", "king", "lord", "love", "romeo", "##s"):
        assert word in vocabulary
    ids = shakespeare_tokenizer("the king")
    assert ids.numpy().tolist() == [shakespeare_tokenizer.token_to_id("the"), shakespeare_tokenizer.token_to_id("king")]

    path = shakespeare_tokenizer.save_vocabulary(tmp_path / "vocab.txt")
    reloaded = WordPiece(path)
    assert reloaded.get_vocabulary() == vocabulary
    text = tf.constant(["Now is the winter of our discontent", "Made glorious summer by this sun of York;"])
    assert reloaded(text).to_list() == shakespeare_tokenizer(text).to_list()


def test_train_accepts_strings_or_dicts_and_rejects_others():
    lines = ["the king is dead", "long live the king", "the kings are dead"] * 4
    from_strings = WordPiece.train(tf.data.Dataset.from_tensor_slices(lines), vocabulary_size=60)
    from_dicts = WordPiece.train(tf.data.Dataset.from_tensor_slices({"text": lines}), vocabulary_size=60)
    assert from_strings.get_vocabulary() == from_dicts.get_vocabulary()
    assert from_strings.get_vocabulary()[:5] == list(SPECIAL_TOKENS)
    assert "king" in from_strings.get_vocabulary()
    with pytest.raises(ValueError, match="'text' key"):
        WordPiece.train(tf.data.Dataset.from_tensor_slices({"sentence": lines}))
    with pytest.raises(ValueError, match="no words"):
        WordPiece.train(tf.data.Dataset.from_tensor_slices(["", "  "]))


def test_detokenize_joins_pieces(small_vocab):
    tokenizer = WordPiece(small_vocab)
    assert tokenizer.detokenize([5, 6, 17]).numpy() == b"the kings"
    assert tokenizer.detokenize(tf.ragged.constant([[5, 6], [9, 10]])).numpy().tolist() == [b"the king", b"long live"]
    assert tokenizer.detokenize([[5, 6], [33]]).numpy().tolist() == [b"the king", b"##k"]


# Out-of-range ids crashed the process (segfault in tf-text), so they are only tried in a fresh one.
DETOKENIZE_OUT_OF_RANGE = r"""
import json, sys
import tensorflow as tf
from keras_lm.tokenizers import WordPiece
tokenizer = WordPiece(json.loads(sys.argv[1]))
for ids in (tf.constant([5, 34]), [-1], [[5], [6, 1 << 20]], tf.constant([5.0])):
    try:
        tokenizer.detokenize(ids)
        print("EAGER no error")
    except ValueError as error:
        print("EAGER", error)
detokenize = tf.function(tokenizer.detokenize, input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)])
try:
    detokenize(tf.ragged.constant([[5, 6], [-7]]))
    print("GRAPH no error")
except tf.errors.InvalidArgumentError as error:
    print("GRAPH", error.message[error.message.index("assertion failed"):].splitlines()[0])
print("GOOD", detokenize(tf.ragged.constant([[5, 6], [9]])).numpy().tolist())
"""


def test_detokenize_out_of_range_ids_is_a_clear_error_not_a_crash(small_vocab, run_in_fresh_process):
    lines = run_in_fresh_process(DETOKENIZE_OUT_OF_RANGE, json.dumps(small_vocab)).splitlines()
    message = "WordPiece.detokenize: token ids must lie in [0, 34) (the vocabulary size); got ids from"
    assert lines == [
        f"EAGER {message} 5 to 34.",
        f"EAGER {message} -1 to -1.",
        f"EAGER {message} 5 to 1048576.",
        "EAGER WordPiece.detokenize takes integer token ids; got dtype float32.",
        f"GRAPH assertion failed: [{message}] [-7] [to] [6]",
        "GOOD [b'the king', b'long']",
    ]


def test_ids_equal_the_tokenizers_library_bert_word_piece_on_real_lines(shakespeare_tokenizer):
    """The 8k Shakespeare vocabulary in Hugging Face `tokenizers`' BERT WordPiece (same lowercasing and
    accent stripping) gives the same ids on a few hundred unseen lines."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocabulary = shakespeare_tokenizer.get_vocabulary()
    reference = Tokenizer(
        models.WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]", max_input_chars_per_word=100)
    )
    reference.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )
    reference.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    works = keras_lm.data.load("shakespeare", split="validation")
    lines = [line for work in works for line in work["text"].numpy().decode("utf-8").split("\n") if line.strip()]
    lines = lines[:: len(lines) // 400][:400] + [
        "Café naïve Ångström RÉSUMÉ", "東京は日本の首都 the KING", "zyxwvq qqqq", "x" * 150, "emoji 😀 king",
        "12,345.67 $9 100% a+b=c <tag> a|b ~x^y `q`", "  spaced\t\ttabs \n newline ", "don't o'er 'tis",
        "no-break\u00a0space ideographic\u3000space thin\u2009space", "e\u0301 combining", "ΣΊΣΥΦΟΣ Ὀδυσσεύς",
    ]
    expected = [encoding.ids for encoding in reference.encode_batch(lines, add_special_tokens=False)]
    assert shakespeare_tokenizer(tf.constant(lines)).to_list() == expected
    pieces = [vocabulary[i] for ids in expected for i in ids]
    assert len(pieces) > 3000 and "[UNK]" in pieces and sum(p.startswith("##") for p in pieces) > 50
