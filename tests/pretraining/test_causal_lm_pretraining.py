"""CausalLM pretraining: packed Shakespeare beats the unigram baseline, bad backbones, .keras round trip."""
import keras
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


@pytest.mark.slow  # long: run with -m slow
def test_held_out_loss_beats_the_unigram_baseline_on_shakespeare(tokenizer, unigram_baseline):
    keras.utils.set_random_seed(0)
    model = _model(tokenizer)
    train = model.dataset(keras_lm.data.load("shakespeare", split="train"), batch_size=16, seed=0)
    held_out = model.dataset(
        keras_lm.data.load("shakespeare", split="validation"), batch_size=16, shuffle=False
    ).take(8)
    labels, weights = zip(*[(y, w) for _, y, w in held_out.as_numpy_iterator()])
    entropy, most_frequent = unigram_baseline(np.concatenate(labels), np.concatenate(weights))
    before = model.evaluate(held_out, return_dict=True, verbose=0)
    history = model.fit(train.take(60), verbose=0)
    after = model.evaluate(held_out, return_dict=True, verbose=0)
    print(before, after, {"unigram_entropy": entropy, "most_frequent": most_frequent})
    assert before["perplexity"] > 0.5 * tokenizer.vocabulary_size()  # untrained: about uniform
    # A model that knew only the token frequencies could not go below the unigram entropy of the
    # held-out targets (about 5.2 nats here) nor above the most frequent token's share (about 7%).
    assert after["loss"] < entropy - 0.25, (after, entropy)
    assert after["accuracy"] > most_frequent + 0.01, (after, most_frequent)
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


def test_an_encoder_backbone_is_one_clear_error():
    encoder = keras_lm.applications.Bert("tiny", vocabulary_size=50, hidden_dim=16, intermediate_dim=32,
                                         max_sequence_length=16)
    with pytest.raises(TypeError, match=r"CausalLM pretraining needs a decoder backbone.*got Bert\. "
                                        r"It is an encoder: .*BertPretrainer"):
        CausalLM(encoder)
    with pytest.raises(TypeError, match="needs a decoder backbone.*got str"):
        CausalLM("gpt2")


def test_keras_round_trip_keeps_logits_and_tokenizer(tokenizer, tmp_path):
    model = _model(tokenizer)
    ids = np.array([[5, 9, 17, 3]], "int32")
    path = str(tmp_path / "lm.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, CausalLM) and restored.tokenizer.vocabulary_size() == 600
    np.testing.assert_allclose(restored(ids), model(ids), atol=1e-6)
