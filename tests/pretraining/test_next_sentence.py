"""Next-sentence pairs and packing on real Shakespeare: balance, true successors, segment ids."""
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.pretraining import (
    IS_NEXT,
    IS_RANDOM,
    BertPretrainer,
    MaskedLM,
    next_sentence_pairs,
    pack_segments,
    split_into_segments,
)


def first_lines_of(works, title, num_lines):
    """A small known document: the first ``num_lines`` non-blank lines of one real work."""
    text = next(iter(works.filter(lambda work: work["title"] == title)))["text"].numpy().decode()
    lines = [line for line in text.splitlines() if line.strip()][:num_lines]
    return "\n".join(lines)


def contains_run(haystack, needle):
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def test_segments_cover_the_document_in_order(validation_works, tokenizer):
    document = first_lines_of(validation_works, "Macbeth", 200)
    segments = split_into_segments(tf.constant(document), tokenizer, segment_length=30)
    stream = tokenizer(tf.constant(document.split("\n"))).flat_values.numpy().tolist()
    assert segments.flat_values.numpy().tolist() == stream
    lengths = segments.row_lengths().numpy()
    assert len(lengths) > 10 and lengths.min() > 0
    assert np.median(lengths) == pytest.approx(30, abs=8)


def test_positives_are_real_successors(validation_works, tokenizer):
    documents = [first_lines_of(validation_works, title, 150) for title in ("Macbeth", "Sonnets", "Twelfth Night")]
    streams = [tokenizer(tf.constant(doc.split("\n"))).flat_values.numpy().tolist() for doc in documents]
    segmented = tf.data.Dataset.from_tensor_slices(documents).map(
        lambda text: split_into_segments(text, tokenizer, segment_length=25)
    )
    pairs = list(next_sentence_pairs(segmented, seed=3, shuffle_buffer=100).as_numpy_iterator())
    expected_pairs = sum(int(split_into_segments(tf.constant(d), tokenizer, 25).nrows()) - 1 for d in documents)
    assert len(pairs) == expected_pairs

    for pair in pairs:
        first, second = pair["first"].tolist(), pair["second"].tolist()
        consecutive = any(contains_run(stream, first + second) for stream in streams)
        assert any(contains_run(stream, first) for stream in streams)
        assert any(contains_run(stream, second) for stream in streams)
        assert consecutive == (pair["next_sentence_label"] == IS_NEXT), (first, second)
    labels = [int(pair["next_sentence_label"]) for pair in pairs]
    assert {IS_NEXT, IS_RANDOM} == set(labels)


def test_pairs_are_deterministic_given_a_seed_and_change_every_epoch(validation_works, tokenizer):
    segmented = validation_works.map(lambda work: split_into_segments(work["text"], tokenizer, 30))

    def labels_and_firsts(dataset):
        return [(int(p["next_sentence_label"]), p["first"].tobytes(), p["second"].tobytes())
                for p in dataset.take(300).as_numpy_iterator()]

    pairs = next_sentence_pairs(segmented, seed=5, shuffle_buffer=500)
    first_pass = labels_and_firsts(pairs)
    assert labels_and_firsts(next_sentence_pairs(segmented, seed=5, shuffle_buffer=500)) == first_pass
    assert labels_and_firsts(pairs) != first_pass
    fixed = next_sentence_pairs(segmented, seed=5, shuffle=False, reshuffle_each_iteration=False)
    assert labels_and_firsts(fixed) == labels_and_firsts(fixed)


def test_half_of_the_pairs_are_positives(train_works, preprocessor, tiny_backbone):
    dataset = BertPretrainer(tiny_backbone).dataset(train_works, preprocessor, batch_size=128, seed=1,
                                                    shuffle_buffer=2000)
    labels = np.concatenate([targets["nsp"].numpy() for _, targets, _ in dataset.take(40)])
    assert len(labels) == 40 * 128
    assert set(np.unique(labels)) == {IS_NEXT, IS_RANDOM}
    assert np.mean(labels == IS_NEXT) == pytest.approx(0.5, abs=0.03)


def test_packed_rows_have_correct_segment_ids(train_works, tokenizer, preprocessor, tiny_backbone):
    dataset = BertPretrainer(tiny_backbone).dataset(train_works, preprocessor, batch_size=32, seed=2,
                                                    shuffle_buffer=500)
    features, targets, weights = next(iter(dataset))
    assert features["token_ids"].shape == (32, preprocessor.sequence_length)
    assert features["mask_positions"].shape == (32, 20)
    assert targets["mlm"].shape == (32, 20) and targets["nsp"].shape == (32,)
    original = features["token_ids"].numpy().copy()
    real = weights["mlm"].numpy() > 0
    rows = np.broadcast_to(np.arange(32)[:, None], real.shape)
    original[rows[real], features["mask_positions"].numpy()[real]] = targets["mlm"].numpy()[real]
    for tokens, segment_ids, padding_mask in zip(
        original, features["segment_ids"].numpy(), features["padding_mask"].numpy()
    ):
        separators = np.flatnonzero(tokens == tokenizer.sep_id)
        assert tokens[0] == tokenizer.cls_id and len(separators) == 2
        first_end, second_end = separators
        assert first_end > 1 and second_end > first_end + 1  # both segments non-empty
        expected = np.zeros_like(segment_ids)
        expected[first_end + 1 : second_end + 1] = 1
        np.testing.assert_array_equal(segment_ids, expected)
        np.testing.assert_array_equal(padding_mask, np.arange(len(tokens)) <= second_end)
        assert np.all(tokens[second_end + 1 :] == tokenizer.pad_id)


def test_pack_segments_trims_the_longer_segment_first():
    first = tf.ragged.constant([[10, 11, 12, 13, 14, 15, 16, 17], [20]])
    second = tf.ragged.constant([[30, 31], [40, 41, 42]])
    packed = pack_segments((first, second), sequence_length=9, cls_id=2, sep_id=3, pad_id=0)
    np.testing.assert_array_equal(packed["token_ids"].numpy(), [
        [2, 10, 11, 12, 13, 3, 30, 31, 3],
        [2, 20, 3, 40, 41, 42, 3, 0, 0],
    ])
    np.testing.assert_array_equal(packed["segment_ids"].numpy(), [
        [0, 0, 0, 0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 0, 0],
    ])
    assert packed["padding_mask"].numpy().sum() == 9 + 7


@pytest.mark.parametrize("pretrainer_class", [BertPretrainer, MaskedLM])
def test_empty_corpus_is_one_clear_error(pretrainer_class, preprocessor, tiny_backbone):
    pretrainer = pretrainer_class(tiny_backbone)
    empty = tf.data.Dataset.from_tensor_slices({"title": tf.constant([], tf.string), "text": tf.constant([], tf.string)})
    with pytest.raises(ValueError, match="corpus is empty"):
        pretrainer.dataset(empty, preprocessor)
    blank = tf.data.Dataset.from_tensor_slices({"text": ["", "  \n\n "]})
    with pytest.raises(ValueError, match="corpus is empty"):
        pretrainer.dataset(blank, preprocessor)
    with pytest.raises(ValueError, match="'text'"):
        pretrainer.dataset(tf.data.Dataset.from_tensor_slices({"body": ["a b c"]}), preprocessor)


def test_too_short_documents_for_pairs(preprocessor, tiny_backbone):
    one_line = tf.data.Dataset.from_tensor_slices({"text": ["To be, or not to be"]})
    with pytest.raises(ValueError, match="two segments"):
        BertPretrainer(tiny_backbone).dataset(one_line, preprocessor)
    batch = next(iter(MaskedLM(tiny_backbone).dataset(one_line, preprocessor)))  # one segment is enough
    assert batch[0]["token_ids"].shape == (1, preprocessor.sequence_length)
