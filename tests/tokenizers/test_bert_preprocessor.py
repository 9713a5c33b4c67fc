"""BertPreprocessor: exact packing with a small vocabulary, truncation, tf.data, SavedModel, hostile input."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.tokenizers import BertPreprocessor, WordPiece

HAMLET = "To be, or not to be: that is the question."   # 13 tokens with the small vocabulary
RICHARD = "A horse! A horse! My kingdom for a horse!"   # 12 tokens
HAMLET_IDS = [11, 12, 20, 13, 14, 11, 12, 23, 15, 7, 5, 16, 21]
RICHARD_IDS = [25, 26, 22, 25, 26, 22, 27, 28, 29, 25, 26, 22]


@pytest.fixture
def preprocessor(small_vocab):
    return BertPreprocessor(WordPiece(small_vocab), sequence_length=32)


def _lists(outputs):
    return {key: value.numpy().tolist() for key, value in outputs.items()}


def test_pair_is_packed_exactly(preprocessor):
    out = preprocessor((tf.constant([HAMLET]), tf.constant([RICHARD])))
    assert {k: v.dtype for k, v in out.items()} == {"token_ids": tf.int32, "segment_ids": tf.int32, "padding_mask": tf.bool}
    assert _lists(out) == {
        "token_ids": [[2] + HAMLET_IDS + [3] + RICHARD_IDS + [3] + [0] * 4],
        "segment_ids": [[0] * 15 + [1] * 13 + [0] * 4],
        "padding_mask": [[True] * 28 + [False] * 4],
    }


def test_single_segment_batch(preprocessor):
    out = _lists(preprocessor(tf.constant(["the king is dead", "long live the king!"])))
    assert out["token_ids"] == [[2, 5, 6, 7, 8, 3] + [0] * 26, [2, 9, 10, 5, 6, 22, 3] + [0] * 25]
    assert out["segment_ids"] == [[0] * 32, [0] * 32]
    assert out["padding_mask"] == [[True] * 6 + [False] * 26, [True] * 7 + [False] * 25]


def test_truncation_round_robin_and_waterfall(small_vocab):
    tokenizer = WordPiece(small_vocab)
    pair = (tf.constant([HAMLET]), tf.constant([RICHARD]))
    round_robin = _lists(BertPreprocessor(tokenizer, sequence_length=12)(pair))
    assert round_robin["token_ids"] == [[2] + HAMLET_IDS[:5] + [3] + RICHARD_IDS[:4] + [3]]
    assert round_robin["segment_ids"] == [[0] * 7 + [1] * 5]
    assert round_robin["padding_mask"] == [[True] * 12]
    waterfall = _lists(BertPreprocessor(tokenizer, sequence_length=12, truncate="waterfall")(pair))
    assert waterfall["token_ids"] == [[2] + HAMLET_IDS[:9] + [3, 3]]
    assert waterfall["segment_ids"] == [[0] * 11 + [1]]
    single = _lists(BertPreprocessor(tokenizer, sequence_length=8)(tf.constant([HAMLET])))
    assert single["token_ids"] == [[2] + HAMLET_IDS[:6] + [3]]


def test_scalars_inside_dataset_map(preprocessor):
    pairs = tf.data.Dataset.from_tensor_slices(([HAMLET, "the king"], [RICHARD, "is dead"]))
    packed = list(pairs.map(lambda a, b: preprocessor((a, b))).as_numpy_iterator())
    assert packed[0]["token_ids"].shape == (32,)
    assert packed[0]["token_ids"].tolist() == [2] + HAMLET_IDS + [3] + RICHARD_IDS + [3] + [0] * 4
    assert packed[1]["token_ids"].tolist() == [2, 5, 6, 3, 7, 8, 3] + [0] * 25
    assert packed[1]["segment_ids"].tolist() == [0, 0, 0, 0, 1, 1, 1] + [0] * 25
    batched = tf.data.Dataset.from_tensor_slices([HAMLET, RICHARD, "the king"]).batch(2).map(preprocessor)
    shapes = [b["token_ids"].shape for b in batched.as_numpy_iterator()]
    assert shapes == [(2, 32), (1, 32)]


def test_get_config_round_trip_includes_the_tokenizer(small_vocab):
    original = BertPreprocessor(WordPiece(small_vocab), sequence_length=16, truncate="waterfall")
    config = original.get_config()
    assert config["tokenizer"]["class_name"] == "WordPiece"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert type(restored) is BertPreprocessor
    assert isinstance(restored.tokenizer, WordPiece)
    assert (restored.sequence_length, restored.truncate) == (16, "waterfall")
    assert restored.tokenizer.get_vocabulary() == small_vocab
    text = tf.constant([HAMLET, RICHARD])
    assert _lists(restored(text)) == _lists(original(text))
    assert _lists(BertPreprocessor.from_config(config)(text)) == _lists(original(text))


HOSTILE = [b"", b"\xff\xfe", b"\x00\x01\x07\x1b[31m\x7f the king", ("the king is dead " * 70_000)[: 1 << 20].encode()]


def _check_hostile(out, sequence_length=32):
    token_ids = out["token_ids"].numpy()
    assert token_ids.shape == (4, sequence_length)
    assert token_ids[0].tolist() == [2, 3] + [0] * (sequence_length - 2)         # empty string
    assert token_ids[1].tolist() == [2, 1, 3] + [0] * (sequence_length - 3)      # invalid UTF-8 -> [UNK]
    assert token_ids[2].tolist()[:6] == [2, 1, 1, 5, 6, 3]                       # control chars are spaces
    assert token_ids[3].tolist() == [2] + [5, 6, 7, 8] * 7 + [5, 6, 3]           # 1 MB string, truncated
    assert out["padding_mask"].numpy()[3].all()


def test_hostile_inputs(preprocessor):
    _check_hostile(preprocessor(tf.constant(HOSTILE)))
    empty = preprocessor(tf.constant([], tf.string))
    assert {k: v.shape for k, v in empty.items()} == {k: (0, 32) for k in ("token_ids", "segment_ids", "padding_mask")}
    empty_pair = preprocessor((tf.constant([], tf.string), tf.constant([], tf.string)))
    assert empty_pair["token_ids"].shape == (0, 32)


def test_saved_and_reloaded_serving_function(preprocessor, tmp_path):
    module = tf.Module()
    module.preprocessor = preprocessor
    module.preprocess = tf.function(preprocessor, input_signature=[tf.TensorSpec([None], tf.string)])
    module.preprocess_pair = tf.function(
        lambda a, b: preprocessor((a, b)),
        input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, str(tmp_path / "preprocess"))
    reloaded = tf.saved_model.load(str(tmp_path / "preprocess"))

    _check_hostile(reloaded.preprocess(tf.constant(HOSTILE)))
    assert reloaded.preprocess(tf.constant([], tf.string))["token_ids"].shape == (0, 32)
    pair = reloaded.preprocess_pair(tf.constant([HAMLET]), tf.constant([RICHARD]))
    expected = preprocessor((tf.constant([HAMLET]), tf.constant([RICHARD])))
    for key in expected:
        np.testing.assert_array_equal(pair[key].numpy(), expected[key].numpy())


PAIRS_OF_DIFFERENT_SIZES = r"""
import json, sys
import tensorflow as tf
from keras_lm.tokenizers import BertPreprocessor, WordPiece
vocabulary = json.loads(sys.argv[1])
preprocessor = BertPreprocessor(WordPiece(vocabulary), sequence_length=8)
bad_pairs = [(["the king", "is dead"], ["long live"]), (["the"], ["king", "is", "dead"]), ([], ["king"])]
for first, second in bad_pairs:
    try:
        preprocessor((first, second))
        print("EAGER no error")
    except ValueError as error:
        print("EAGER", error)
spec = tf.TensorSpec([None], tf.string)
serve_pair = tf.function(lambda a, b: preprocessor((a, b)), input_signature=[spec, spec])
for first, second in bad_pairs:
    try:
        serve_pair(tf.constant(first, tf.string), tf.constant(second, tf.string))
        print("GRAPH no error")
    except tf.errors.InvalidArgumentError as error:
        print("GRAPH", error.message[error.message.index("assertion failed"):].splitlines()[0])
print("GOOD", serve_pair(tf.constant(["the king"]), tf.constant(["is dead"]))["token_ids"].numpy().tolist())
"""


def test_a_pair_of_batches_of_different_sizes_is_a_clear_error_not_a_crash(small_vocab, run_in_fresh_process):
    lines = run_in_fresh_process(PAIRS_OF_DIFFERENT_SIZES, json.dumps(small_vocab)).splitlines()
    message = "BertPreprocessor: the two segments of a pair must have the same shape (one second text for each first text)"
    assert lines[:3] == [
        f"EAGER {message}; got shapes [2] and [1].",
        f"EAGER {message}; got shapes [1] and [3].",
        f"EAGER {message}; got shapes [0] and [1].",
    ]
    for line, shapes in zip(lines[3:6], ("[2] [and] [1]", "[1] [and] [3]", "[0] [and] [1]")):
        assert line.startswith(f"GRAPH assertion failed: [{message}; got shapes] {shapes}"), line
    assert lines[6] == "GOOD [[2, 5, 6, 3, 7, 8, 3, 0]]"
