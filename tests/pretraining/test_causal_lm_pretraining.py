"""CausalLM pretraining: packed Shakespeare, held-out perplexity falls, .keras round trip."""
import numpy as np
import pytest

import keras_lm
from keras_lm.pretraining import CausalLM


@pytest.fixture(scope="module")
def tokenizer():
    works = keras_lm.data.load("shakespeare", split="train").take(3).map(lambda ex: ex["text"])
    return keras_lm.tokenizers.BytePair.train(works, vocabulary_size=600)


def _model(tokenizer):
    backbone = keras_lm.applications.Gpt2(
        "tiny", vocabulary_size=tokenizer.vocabulary_size(), max_sequence_length=64
    )
    model = CausalLM(backbone, tokenizer)
    model.compile(optimizer=keras_lm.training.adamw(3e-3, warmup=5))
    return model


def test_held_out_perplexity_falls_on_shakespeare(tokenizer):
    model = _model(tokenizer)
    train = model.dataset(keras_lm.data.load("shakespeare", split="train"), batch_size=16, seed=0)
    held_out = model.dataset(
        keras_lm.data.load("shakespeare", split="validation"), batch_size=16, shuffle=False
    ).take(8)
    before = model.evaluate(held_out, return_dict=True, verbose=0)
    history = model.fit(train.take(60), verbose=0)
    after = model.evaluate(held_out, return_dict=True, verbose=0)
    assert before["perplexity"] > 0.5 * tokenizer.vocabulary_size()  # untrained: about uniform
    assert after["perplexity"] < 0.3 * before["perplexity"], (before, after)
    np.testing.assert_allclose(after["perplexity"], np.exp(after["loss"]), rtol=0.05)
    assert history.history["loss"][-1] < before["loss"]


def test_dataset_rows_are_full_and_bounded_by_the_context(tokenizer):
    model = _model(tokenizer)
    works = keras_lm.data.load("shakespeare", split="validation")
    features, labels, weights = next(iter(model.dataset(works, batch_size=4, seed=1)))
    assert features["token_ids"].shape == (4, 64) and labels.shape == (4, 64)
    assert float(np.mean(weights)) == 1.0
    with pytest.raises(ValueError, match="max_sequence_length=64"):
        model.dataset(works, sequence_length=128)


def test_keras_round_trip_keeps_logits_and_tokenizer(tokenizer, tmp_path):
    model = _model(tokenizer)
    ids = np.array([[5, 9, 17, 3]], "int32")
    path = str(tmp_path / "lm.keras")
    model.save(path)
    import keras

    restored = keras.saving.load_model(path)
    assert isinstance(restored, CausalLM) and restored.tokenizer.vocabulary_size() == 600
    np.testing.assert_allclose(restored(ids), model(ids), atol=1e-6)
