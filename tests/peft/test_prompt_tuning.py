"""Prompt tuning: the extended padding mask, the shift of the text by N positions (checked against the
plain encoder reading the prompt as tokens), what trains, and the .keras round trip."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lm.peft.prompt_tuning import PromptEncoder, prompt_padding_mask, prompt_tuning

PROMPT_IDS = [7, 400, 23]


def test_prompt_padding_mask_prepends_ones_and_keeps_the_padding():
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], "int32")
    assert np.asarray(prompt_padding_mask(mask, 2)).tolist() == [
        [1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]
    assert np.asarray(prompt_padding_mask(mask.astype(bool), 1)).tolist()[1] == [1, 1, 0, 0, 0]


def _features(preprocessor, texts):
    return {k: np.asarray(v) for k, v in preprocessor(tf.constant(texts)).items()}


def test_text_outputs_are_the_plain_encoders_shifted_by_n(small_bert, preprocessor, texts_and_labels):
    backbone = small_bert()
    prompted = PromptEncoder(backbone, num_prompts=len(PROMPT_IDS))
    table = backbone.token_embedding.embeddings.numpy()
    prompted.soft_prompt.prompts.assign(table[PROMPT_IDS])  # prompts equal to the embeddings of real tokens
    features = _features(preprocessor, texts_and_labels[0][:6])  # rows of different lengths: padding
    assert features["padding_mask"].min() == 0
    outputs = prompted(features)

    n, batch = len(PROMPT_IDS), features["token_ids"].shape[0]
    reference = backbone({
        "token_ids": np.concatenate([np.tile(PROMPT_IDS, (batch, 1)), features["token_ids"]], 1).astype("int32"),
        "segment_ids": np.concatenate([np.zeros((batch, n), "int32"), features["segment_ids"]], 1),
        "padding_mask": np.concatenate([np.ones((batch, n), "int32"), features["padding_mask"]], 1),
    })["sequence_output"].numpy()
    real = features["padding_mask"].astype(bool)
    np.testing.assert_allclose(outputs["sequence_output"].numpy()[real], reference[:, n:][real], atol=1e-5)
    np.testing.assert_allclose(outputs["prompt_output"].numpy(), reference[:, :n], atol=1e-5)
    np.testing.assert_allclose(outputs["pooled_output"].numpy(), backbone.pooler(reference[:, n:]).numpy(), atol=1e-5)
    assert outputs["sequence_output"].shape == features["token_ids"].shape + (64,)


def test_padded_positions_stay_masked(small_bert, preprocessor, texts_and_labels):
    prompted = PromptEncoder(small_bert(), num_prompts=4, initializer="random_normal")
    features = _features(preprocessor, ["a fine film", texts_and_labels[0][0]])
    padded = features["padding_mask"] == 0
    assert padded[0].any()
    noisy = dict(features, token_ids=np.where(padded, 900, features["token_ids"]).astype("int32"))
    real = ~padded
    for key in ("sequence_output",):
        np.testing.assert_allclose(prompted(noisy)[key].numpy()[real], prompted(features)[key].numpy()[real],
                                   atol=1e-5)
    np.testing.assert_allclose(prompted(noisy)["pooled_output"].numpy(), prompted(features)["pooled_output"].numpy(),
                               atol=1e-5)


def test_only_the_prompts_and_the_head_change_in_a_real_fit(classifier, fit_and_diff, tmp_path):
    prompted = prompt_tuning(classifier, num_prompts=5, seed=1)
    table = classifier.backbone.token_embedding.embeddings.numpy()
    start = prompted.backbone.soft_prompt.prompts.numpy()
    assert all(any(np.array_equal(row, token) for token in table) for row in start)  # vocabulary rows
    changed, paths = fit_and_diff(prompted, learning_rate=1e-2, epochs=2)
    assert changed == {"soft_prompt/prompts", "logits/kernel", "logits/bias"}

    features = prompted.preprocessor(tf.constant(["a gripping film", "dull"]))
    path = str(tmp_path / "prompted.keras")
    prompted.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.backbone, PromptEncoder) and reloaded.backbone.num_prompts == 5
    np.testing.assert_array_equal(reloaded(features).numpy(), prompted(features).numpy())


def test_prompts_that_do_not_fit_the_positions_fail_clearly(classifier):
    with pytest.raises(ValueError, match=r"40 prompts \+ the preprocessor's sequence_length 32 exceed .* 64"):
        prompt_tuning(classifier, num_prompts=40)
    with pytest.raises(ValueError, match="`num_prompts` must be a positive integer"):
        prompt_tuning(classifier, num_prompts=0)
