"""Masked-LM masking: statistics on real tokenized Shakespeare, special tokens, dynamics, determinism."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.pretraining import BertPretrainer, MaskedLM, MaskedLMMasker


def unmask(features, targets, weights):
    """The original token ids of a masked batch: put ``mask_ids`` back at ``mask_positions``."""
    token_ids = features["token_ids"].numpy().copy()
    positions = features["mask_positions"].numpy()
    real = weights["mlm"].numpy() > 0
    rows = np.broadcast_to(np.arange(len(token_ids))[:, None], positions.shape)
    token_ids[rows[real], positions[real]] = targets["mlm"].numpy()[real]
    return token_ids


def masking_counts(dataset, tokenizer, num_batches):
    specials = [tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id]
    counts = dict(maskable=0, selected=0, to_mask=0, to_random=0, unchanged=0, special_selected=0)
    for features, targets, weights in dataset.take(num_batches):
        original = unmask(features, targets, weights)
        masked = features["token_ids"].numpy()
        positions = features["mask_positions"].numpy()
        real = weights["mlm"].numpy() > 0
        before = np.take_along_axis(original, positions, axis=1)[real]
        after = np.take_along_axis(masked, positions, axis=1)[real]
        counts["maskable"] += int(np.sum(~np.isin(original, specials)))
        counts["selected"] += int(real.sum())
        counts["special_selected"] += int(np.isin(before, specials).sum())
        counts["to_mask"] += int(np.sum(after == tokenizer.mask_id))
        counts["unchanged"] += int(np.sum(after == before))
        counts["to_random"] += int(np.sum((after != before) & (after != tokenizer.mask_id)))
        # Nothing outside the selected positions changed.
        outside = np.ones_like(masked, dtype=bool)
        outside[np.broadcast_to(np.arange(len(masked))[:, None], positions.shape)[real], positions[real]] = False
        assert np.array_equal(masked[outside], original[outside])
    return counts


@pytest.mark.parametrize("pretrainer_class", [BertPretrainer, MaskedLM])
def test_masking_statistics_on_real_text(pretrainer_class, train_works, tokenizer, preprocessor, tiny_backbone):
    pretrainer = pretrainer_class(tiny_backbone, max_predictions=20)
    dataset = pretrainer.dataset(train_works, preprocessor, batch_size=64, seed=7, shuffle_buffer=2000)
    counts = masking_counts(dataset, tokenizer, num_batches=60)  # 3,840 rows, > 200k maskable tokens
    selected = counts["selected"]
    print(pretrainer_class.__name__, counts)

    assert counts["maskable"] > 150_000
    assert counts["selected"] / counts["maskable"] == pytest.approx(0.15, abs=0.01)
    assert counts["to_mask"] / selected == pytest.approx(0.80, abs=0.02)
    assert counts["to_random"] / selected == pytest.approx(0.10, abs=0.02)
    assert counts["unchanged"] / selected == pytest.approx(0.10, abs=0.02)
    assert counts["special_selected"] == 0


def test_random_replacements_are_ordinary_tokens(train_works, tokenizer, preprocessor, tiny_backbone):
    dataset = MaskedLM(tiny_backbone).dataset(train_works, preprocessor, batch_size=64, seed=3, shuffle_buffer=500)
    specials = [tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id]
    replaced = []
    for features, targets, weights in dataset.take(10):
        after = np.take_along_axis(features["token_ids"].numpy(), features["mask_positions"].numpy(), axis=1)
        real = weights["mlm"].numpy() > 0
        replaced.append(after[real & (after != targets["mlm"].numpy()) & (after != tokenizer.mask_id)])
    replaced = np.concatenate(replaced)
    assert len(replaced) > 100
    assert not np.isin(replaced, specials).any()
    assert replaced.max() < tokenizer.vocabulary_size()


def masks_by_example(dataset):
    """{original token ids: mask positions} over one pass of the dataset."""
    masks = {}
    for features, targets, weights in dataset:
        original = unmask(features, targets, weights)
        positions = features["mask_positions"].numpy()
        for row, row_positions in zip(original, positions):
            masks[row.tobytes()] = tuple(row_positions)
    return masks


def test_masks_differ_between_epochs_and_repeat_with_the_seed(validation_works, preprocessor, tiny_backbone):
    sonnets = validation_works.filter(lambda work: work["title"] == "Sonnets")
    pretrainer = MaskedLM(tiny_backbone)
    dataset = pretrainer.dataset(sonnets, preprocessor, batch_size=32, seed=11)

    first_epoch, second_epoch = masks_by_example(dataset), masks_by_example(dataset)
    assert len(first_epoch) > 300 and first_epoch.keys() == second_epoch.keys()
    changed = np.mean([first_epoch[k] != second_epoch[k] for k in first_epoch])
    assert changed > 0.95

    rebuilt = pretrainer.dataset(sonnets, preprocessor, batch_size=32, seed=11)
    assert masks_by_example(rebuilt) == first_epoch  # the same seed replays the same epochs

    fixed = pretrainer.dataset(sonnets, preprocessor, batch_size=32, seed=11, shuffle=False)
    assert masks_by_example(fixed) == masks_by_example(fixed)  # evaluation data does not change


def test_masker_on_one_sequence_and_config_round_trip():
    masker = MaskedLMMasker(vocabulary_size=50, mask_id=4, unselectable_ids=(0, 2, 3),
                            max_predictions=3, mask_rate=0.5)
    token_ids = tf.constant([2, 10, 11, 12, 13, 14, 15, 16, 17, 3, 0, 0])
    outputs = masker(token_ids, seed=tf.constant([5, 6]))
    assert outputs["token_ids"].shape == (12,) and outputs["mask_positions"].shape == (3,)
    # 8 maskable tokens at rate 0.5 is 4 selections, capped at max_predictions=3.
    np.testing.assert_array_equal(outputs["mask_weights"].numpy(), [1.0, 1.0, 1.0])
    positions = outputs["mask_positions"].numpy()
    assert np.all(np.diff(positions) > 0) and np.all((positions >= 1) & (positions <= 8))
    np.testing.assert_array_equal(outputs["mask_ids"].numpy(), token_ids.numpy()[positions])

    again = masker(token_ids, seed=tf.constant([5, 6]))
    np.testing.assert_array_equal(again["token_ids"].numpy(), outputs["token_ids"].numpy())

    restored = MaskedLMMasker.from_config(masker.get_config())
    assert restored.get_config() == masker.get_config()
    restored_outputs = restored(token_ids, seed=tf.constant([5, 6]))
    np.testing.assert_array_equal(restored_outputs["token_ids"].numpy(), outputs["token_ids"].numpy())
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(masker)).max_predictions == 3


def test_masker_pads_short_rows_and_rejects_bad_rates():
    masker = MaskedLMMasker(vocabulary_size=50, mask_id=4, unselectable_ids=(0,), max_predictions=6)
    outputs = masker(tf.constant([[7, 8, 0, 0], [0, 0, 0, 0]]), seed=tf.constant([1, 1]))
    weights = outputs["mask_weights"].numpy()
    assert outputs["mask_positions"].shape == (2, 6)
    assert weights[1].sum() == 0 and weights[0].sum() <= 2
    assert np.all(outputs["mask_positions"].numpy()[weights == 0] == 0)
    with pytest.raises(ValueError, match="sum to at most 1"):
        MaskedLMMasker(vocabulary_size=50, mask_id=4, mask_token_rate=0.9, random_token_rate=0.2)
    with pytest.raises(ValueError, match="mask_id"):
        MaskedLMMasker(vocabulary_size=4, mask_id=4)
