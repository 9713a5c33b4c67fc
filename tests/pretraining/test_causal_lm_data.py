"""causal_lm_dataset: exact packed rows on a hand-made corpus, real Shakespeare packing, shuffling, errors."""
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.pretraining import causal_lm_dataset, pack_documents
from keras_lm.tokenizers import BytePair

# One token per letter, no merges: "abc" -> [1, 2, 3]; <|endoftext|> = 0.
TINY_VOCABULARY = {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7}
EOT = 0


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return BytePair(TINY_VOCABULARY, [])


def _documents(*texts, as_dicts=True):
    if as_dicts:
        return tf.data.Dataset.from_tensor_slices({"text": list(texts), "title": [f"t{i}" for i in range(len(texts))]})
    return tf.data.Dataset.from_tensor_slices(list(texts))


def _rows(dataset):
    """All rows of all batches as Python lists: token_ids, padding_mask, labels, sample_weight."""
    rows = {"token_ids": [], "padding_mask": [], "labels": [], "sample_weight": []}
    for features, labels, weights in dataset.as_numpy_iterator():
        rows["token_ids"] += features["token_ids"].tolist()
        rows["padding_mask"] += features["padding_mask"].tolist()
        rows["labels"] += labels.tolist()
        rows["sample_weight"] += weights.tolist()
    return rows


def test_exact_rows_on_a_hand_made_corpus(tiny_tokenizer):
    corpus = _documents("ab", "cde", "fgabc", "d")  # stream: EOT ab EOT cde EOT fgabc EOT d EOT
    dataset = causal_lm_dataset(corpus, tiny_tokenizer, sequence_length=4, batch_size=2, shuffle=False)
    features, labels, weights = dataset.element_spec
    assert features["token_ids"].shape.as_list() == [None, 4] and features["token_ids"].dtype == tf.int32
    assert features["padding_mask"].dtype == tf.int32 and labels.dtype == tf.int32 and weights.dtype == tf.float32

    rows = _rows(dataset)
    assert rows["token_ids"] == [
        [EOT, 1, 2, EOT],
        [3, 4, 5, EOT],
        [6, 7, 1, 2],
        [3, EOT, 4, 0],  # last row: 3 real tokens, then padding (0)
    ]
    assert rows["labels"] == [
        [1, 2, EOT, 3],
        [4, 5, EOT, 6],
        [7, 1, 2, 3],
        [EOT, 4, EOT, 0],
    ]
    assert rows["sample_weight"] == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]
    assert rows["padding_mask"] == rows["sample_weight"]
    # labels are the inputs shifted by one across the whole stream
    stream = [t for row, w in zip(rows["token_ids"], rows["sample_weight"]) for t, m in zip(row, w) if m]
    predicted = [t for row, w in zip(rows["labels"], rows["sample_weight"]) for t, m in zip(row, w) if m]
    assert stream[1:] == predicted[:-1]
    assert [EOT] + predicted == [EOT, 1, 2, EOT, 3, 4, 5, EOT, 6, 7, 1, 2, 3, EOT, 4, EOT]


def test_reset_attention_numbers_documents_inside_each_row(tiny_tokenizer):
    corpus = _documents("ab", "cde", "fgabc", "d", as_dicts=False)
    rows = _rows(causal_lm_dataset(corpus, tiny_tokenizer, 4, batch_size=3, shuffle=False, reset_attention=True))
    assert rows["token_ids"] == [[EOT, 1, 2, EOT], [3, 4, 5, EOT], [6, 7, 1, 2], [3, EOT, 4, 0]]
    # An end token starts the next document: it is numbered with the tokens that follow it.
    assert rows["padding_mask"] == [[1, 1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 1], [1, 2, 2, 0]]
    # Every prediction stays inside its document (ends predict starts of the next document from
    # the end token alone), so all real labels keep weight 1.
    assert rows["sample_weight"] == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]


def test_a_row_holding_several_whole_documents(tiny_tokenizer):
    corpus = _documents("a", "b", "c", "de")  # stream: EOT a EOT b EOT c EOT de EOT
    rows = _rows(causal_lm_dataset(corpus, tiny_tokenizer, 8, shuffle=False, reset_attention=True))
    assert rows["token_ids"] == [[EOT, 1, EOT, 2, EOT, 3, EOT, 4], [5, 0, 0, 0, 0, 0, 0, 0]]
    assert rows["labels"] == [[1, EOT, 2, EOT, 3, EOT, 4, 5], [EOT, 0, 0, 0, 0, 0, 0, 0]]
    assert rows["padding_mask"] == [[1, 1, 2, 2, 3, 3, 4, 4], [1, 0, 0, 0, 0, 0, 0, 0]]
    assert rows["sample_weight"] == [[1.0] * 8, [1.0] + [0.0] * 7]
    # one more position: the whole stream fits one row, the final end token is its last label
    rows = _rows(causal_lm_dataset(corpus, tiny_tokenizer, 9, shuffle=False))
    assert rows["token_ids"] == [[EOT, 1, EOT, 2, EOT, 3, EOT, 4, 5]]
    assert rows["labels"] == [[1, EOT, 2, EOT, 3, EOT, 4, 5, EOT]]
    assert rows["padding_mask"] == [[1] * 9]


def test_empty_documents_are_skipped(tiny_tokenizer):
    rows = _rows(causal_lm_dataset(_documents("", "ab", ""), tiny_tokenizer, 4, shuffle=False))
    assert rows["token_ids"] == [[EOT, 1, 2, 0]]
    assert rows["labels"] == [[1, 2, EOT, 0]]


def test_pack_documents_yields_overlapping_rows():
    documents = tf.data.Dataset.from_generator(
        lambda: iter([[1, 2], [3, 4, 5]]), output_signature=tf.TensorSpec([None], tf.int32)
    )
    rows = [(t.tolist(), d.tolist()) for t, d in pack_documents(documents, 4, EOT).as_numpy_iterator()]
    assert rows == [([EOT, 1, 2, EOT, 3], [0, 0, 0, 1, 1]), ([3, 4, 5, EOT], [1, 1, 1, 2])]


def test_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="sequence_length must be at least 2, got 1"):
        causal_lm_dataset(_documents("ab"), tiny_tokenizer, sequence_length=1)
    with pytest.raises(ValueError, match="The corpus is empty"):
        causal_lm_dataset(_documents("ab").take(0), tiny_tokenizer, sequence_length=4)
    with pytest.raises(ValueError, match="The corpus is empty"):
        causal_lm_dataset(_documents("", ""), tiny_tokenizer, sequence_length=4)
    with pytest.raises(ValueError, match="without a 'text' field"):
        causal_lm_dataset(tf.data.Dataset.from_tensor_slices({"body": ["ab"]}), tiny_tokenizer, 4)
    with pytest.raises(ValueError, match="needs the end-of-text token id"):
        causal_lm_dataset(_documents("ab"), lambda text: tf.strings.unicode_decode(text, "UTF-8"), 4)


def test_shuffling_is_reproducible_with_a_seed_and_changes_between_passes():
    texts = ["".join("abcdefg"[(i * 3 + j) % 7] for j in range(i % 5 + 1)) for i in range(40)]
    corpus = _documents(*texts)

    def letters(text):  # a=1 ... g=7; any callable string -> ids works as the tokenizer
        return tf.strings.unicode_decode(text, "UTF-8") - 96

    def dataset(**kwargs):
        return causal_lm_dataset(corpus, letters, 6, batch_size=4, end_token_id=EOT, **kwargs)

    def batches(dataset):
        return _rows(dataset)["token_ids"]

    unshuffled = batches(dataset(shuffle=False))
    assert unshuffled[0] == [EOT, 1, EOT, 4, 5, EOT]
    assert batches(dataset(shuffle=False)) == unshuffled

    first, again, other = dataset(seed=7), dataset(seed=7), dataset(seed=8)
    epoch_1 = batches(first)
    assert epoch_1 == batches(again)
    assert epoch_1 != unshuffled and epoch_1 != batches(other)
    assert batches(first) != epoch_1  # reshuffled on the next pass
    # shuffling reorders documents and rows but packs the same tokens
    assert sorted(np.concatenate(epoch_1).tolist()) == sorted(np.concatenate(unshuffled).tolist())


def test_real_shakespeare_packs_with_almost_no_padding():
    tokenizer = BytePair.gpt2()
    works = keras_lm.data.load("shakespeare", split="validation")
    dataset = causal_lm_dataset(works, tokenizer, sequence_length=256, batch_size=16, seed=0, reset_attention=True)
    rows = _rows(dataset)
    token_ids = np.array(rows["token_ids"])
    padding_mask = np.array(rows["padding_mask"])
    weights = np.array(rows["sample_weight"])
    assert token_ids.shape[1] == 256 and len(token_ids) > 100
    assert (padding_mask > 0).mean() >= 0.99
    assert ((padding_mask > 0) == (weights > 0)).all()
    assert (padding_mask[:, 0] == 1).all() and padding_mask.max() >= 2  # document boundaries inside rows
    # four works, each followed by one end token; the stream starts with one too
    assert (token_ids[weights > 0] == tokenizer.end_token_id).sum() in (4, 5)
    assert (np.array(rows["labels"])[weights > 0] == tokenizer.end_token_id).sum() == 4


def test_docstring_examples():
    import doctest

    import keras_lm.pretraining.causal_lm_data as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
