"""RoBERTa's FULL-SENTENCES data (packing across documents, dynamic masking) and a short Roberta MLM run."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.applications.roberta import Roberta
from keras_lm.pretraining import MaskedLM
from keras_lm.pretraining.full_sentences import full_sentence_dataset, full_sentence_rows
from keras_lm.tokenizers.roberta_preprocessor import RobertaPreprocessor

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
CLS, PAD, SEP = 0, 1, 2


def excerpts(works, count, characters):
    """The first `characters` characters of `count` Shakespeare works, as plain strings."""
    return [work["text"].numpy().decode("utf-8")[:characters] for work in works.take(count)]


@pytest.fixture(scope="module")
def byte_pair(validation_works):
    """A 500-token byte-level BPE with RoBERTa's special tokens, trained on the validation works."""
    texts = validation_works.map(lambda work: work["text"])
    return keras_lm.tokenizers.BytePair.train(texts, vocabulary_size=500, special_tokens=SPECIAL_TOKENS)


@pytest.fixture(scope="module")
def roberta_preprocessor(byte_pair):
    preprocessor = RobertaPreprocessor(byte_pair, sequence_length=32)
    assert (preprocessor.cls_id, preprocessor.pad_id, preprocessor.sep_id, preprocessor.mask_id) == (0, 1, 2, 4)
    return preprocessor


def expected_rows(documents, tokenizer, length):
    """Reference packing in plain Python: every document's lines, then </s>; cut into rows of length - 2."""
    stream = []
    for document in documents:
        for line in document.split("\n"):
            if line.strip():
                stream += tokenizer(line.strip()).numpy().tolist()
        stream.append(SEP)
    body = length - 2
    return [[CLS] + stream[i:i + body] + [SEP] for i in range(0, len(stream) - body + 1, body)]


def test_rows_pack_contiguous_text_across_documents(train_works, byte_pair, roberta_preprocessor):
    documents = excerpts(train_works, 3, 400)
    corpus = tf.data.Dataset.from_tensor_slices(documents)
    rows = [row.numpy().tolist() for row in full_sentence_rows(corpus, roberta_preprocessor)]
    assert rows == expected_rows(documents, byte_pair, 32)
    assert len(rows) >= 10 and all(len(row) == 32 for row in rows)
    assert sum(row[1:-1].count(SEP) for row in rows) >= 2  # the ends of the first two works, inside rows
    assert PAD not in np.array(rows)  # full rows: no padding
    # A row that crosses a document boundary holds the end of one work and the start of the next.
    crossing = next(row for row in rows if SEP in row[1:-2])
    start_of_next = crossing[crossing.index(SEP, 1) + 1:-1]
    lines = "".join(line.strip() for line in documents[1].split("\n") if line.strip())
    assert lines.startswith(byte_pair.detokenize(start_of_next).numpy().decode())


def unmasked(features, targets, weights):
    """The rows before masking: the masked positions get their original ids back."""
    ids = features["token_ids"].numpy().copy()
    for row, (positions, originals, real) in enumerate(zip(features["mask_positions"].numpy(),
                                                           targets["mlm"].numpy(), weights["mlm"].numpy())):
        ids[row, positions[real > 0]] = originals[real > 0]
    return ids


@pytest.mark.slow  # long: run with -m slow
def test_masks_change_every_epoch_and_repeat_with_the_seed(train_works, roberta_preprocessor):
    corpus = tf.data.Dataset.from_tensor_slices(excerpts(train_works, 3, 2000))
    rows = np.array([row.numpy() for row in full_sentence_rows(corpus, roberta_preprocessor)])

    def epochs(dynamic_masking, count=2):
        dataset = full_sentence_dataset(corpus, roberta_preprocessor, batch_size=8, shuffle=False,
                                        dynamic_masking=dynamic_masking, seed=11)
        return [list(dataset) for _ in range(count)]

    first, second = epochs(dynamic_masking=True)
    for batches in (first, second):
        np.testing.assert_array_equal(np.concatenate([unmasked(*batch) for batch in batches]), rows)
    positions = [np.concatenate([b[0]["mask_positions"].numpy() for b in batches]) for batches in (first, second)]
    assert (positions[0] != positions[1]).any(axis=1).mean() > 0.9  # nearly every row masked differently
    again = epochs(dynamic_masking=True, count=1)[0]  # a new pipeline with the same seed: the same masks
    for batch, repeated in zip(first, again):
        np.testing.assert_array_equal(batch[0]["token_ids"].numpy(), repeated[0]["token_ids"].numpy())
    fixed_first, fixed_second = epochs(dynamic_masking=False)
    for batch, repeated in zip(fixed_first, fixed_second):
        np.testing.assert_array_equal(batch[0]["token_ids"].numpy(), repeated[0]["token_ids"].numpy())


def test_mask_rate_and_replacements(train_works, roberta_preprocessor):
    corpus = tf.data.Dataset.from_tensor_slices(excerpts(train_works, 4, 12_000))
    dataset = full_sentence_dataset(corpus, roberta_preprocessor, batch_size=64, seed=5)
    selected = maskable = as_mask = unchanged = 0
    for features, targets, weights in dataset:
        real = weights["mlm"].numpy() > 0
        original = unmasked(features, targets, weights)
        maskable += int(np.isin(original, [CLS, PAD, SEP], invert=True).sum())
        selected += int(real.sum())
        at_positions = np.take_along_axis(features["token_ids"].numpy(), features["mask_positions"].numpy(), 1)[real]
        as_mask += int((at_positions == 4).sum())
        unchanged += int((at_positions == targets["mlm"].numpy()[real]).sum())
        assert not np.isin(original[:, 0], [PAD]).any() and (features["segment_ids"].numpy() == 0).all()
    assert maskable > 5000
    assert abs(selected / maskable - 0.15) < 0.01, selected / maskable
    assert abs(as_mask / selected - 0.8) < 0.04 and abs(unchanged / selected - 0.1) < 0.04


@pytest.mark.slow  # long: run with -m slow
def test_roberta_masked_lm_loss_falls_on_shakespeare(train_works, roberta_preprocessor):
    keras.utils.set_random_seed(0)
    corpus = tf.data.Dataset.from_tensor_slices(excerpts(train_works, 3, 20_000))
    backbone = Roberta("tiny", vocabulary_size=roberta_preprocessor.vocabulary_size(), max_sequence_length=32,
                       hidden_dim=64, num_heads=2)
    model = MaskedLM(backbone, max_predictions=7)
    masker = model.masker_for(roberta_preprocessor)
    train = full_sentence_dataset(corpus, roberta_preprocessor, masker=masker, batch_size=32, seed=1)
    held_out = full_sentence_dataset(tf.data.Dataset.from_tensor_slices(excerpts(train_works.skip(3), 1, 6000)),
                                     roberta_preprocessor, masker=masker, batch_size=32, shuffle=False,
                                     dynamic_masking=False, seed=2)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    before = model.evaluate(held_out, verbose=0, return_dict=True)["mlm_loss"]
    history = model.fit(train, epochs=3, verbose=0)
    after = model.evaluate(held_out, verbose=0, return_dict=True)["mlm_loss"]
    losses = history.history["mlm_loss"]
    assert np.isfinite(before) and losses[-1] < losses[0], losses
    # ln(500) = 6.2 nats at the start; on a work it never saw, a short run gains more than 0.6 nats.
    assert after < before - 0.6, (before, after)
