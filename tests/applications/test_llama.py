import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
import keras_lm.applications.llama as llama_module
from keras_lm.applications import Llama
from keras_lm.tasks import CausalLM
from reference import assert_close_at_bfloat16_scale, causal_lm_gradients, logits_of, randomize_every_parameter

VOCABULARY = 203
CONTEXT = 64


def is_norm_scale(name):
    return name.endswith("norm.weight")


def hf_llama(tmp_path, **overrides):
    import transformers

    config = dict(vocab_size=VOCABULARY, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT, rope_theta=500.0,
                  rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=0)
    config.update(overrides)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).eval()
    randomize_every_parameter(model, seed=0, is_norm_scale=is_norm_scale)
    model.save_pretrained(tmp_path)
    return model


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama")
    return hf_llama(directory), directory


def padded_batch(seed=0, length=12):
    """Token ids with one full row, one right-padded and one left-padded row."""
    ids = np.random.default_rng(seed).integers(1, VOCABULARY, (3, length)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 7:] = 0  # right padding
    mask[2, :5] = 0  # left padding
    return ids, mask


def assert_matches_transformers(model, llama, ids, mask):
    import torch

    with torch.no_grad():
        expected = model(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)).logits.numpy()
    ours = logits_of(llama, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - expected[real]).max() <= 1e-4
    assert np.abs(expected[real]).max() > 1.0  # not a degenerate comparison


def test_reference_weights_are_random_everywhere(saved_llama):
    model, _ = saved_llama
    for name, parameter in model.named_parameters():
        center = 1.0 if is_norm_scale(name) else 0.0
        assert 0.1 < np.abs(parameter.detach().numpy() - center).mean() < 0.3, name  # not a default 0 or 1


def test_logits_match_transformers_with_right_and_left_padding(saved_llama):
    model, directory = saved_llama
    llama = Llama.from_hf(directory)
    assert (llama.num_key_value_heads, llama.rope_max_wavelength, llama.tie_word_embeddings) == (2, 500.0, False)
    assert_matches_transformers(model, llama, *padded_batch())


def test_checkpoint_with_attention_and_mlp_biases(tmp_path):
    model = hf_llama(tmp_path, attention_bias=True, mlp_bias=True)
    assert sum(name.endswith(".bias") for name, _ in model.named_parameters()) == 2 * 7
    llama = Llama.from_hf(tmp_path)
    assert llama.use_bias and llama.transformer_layers[0].feed_forward.gate_up_dense.bias is not None
    assert_matches_transformers(model, llama, *padded_batch(1))


def test_greedy_generation_matches_transformers(saved_llama):
    import torch

    model, directory = saved_llama
    lm = CausalLM(Llama.from_hf(directory))
    prompts = [[4, 50, 9, 13], [120, 7]]
    ours = lm.generate(prompts, max_new_tokens=32)
    for prompt, generated in zip(prompts, ours):
        with torch.no_grad():
            expected = model.generate(torch.tensor([prompt]), attention_mask=torch.ones_like(torch.tensor([prompt])),
                                      max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)
        assert generated == expected[0].tolist()


def test_tied_multi_query_checkpoint(tmp_path):
    import torch

    model = hf_llama(tmp_path, tie_word_embeddings=True, num_key_value_heads=1, head_dim=16)
    llama = Llama.from_hf(tmp_path)
    assert llama.lm_head is None and llama.num_key_value_heads == 1 and llama.head_dim == 16
    ids = np.arange(1, 11, dtype="int32")[None]
    with torch.no_grad():
        expected = model(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    assert np.abs(logits_of(llama, ids, np.ones_like(ids)) - expected).max() <= 1e-4


def test_greedy_generation_from_left_padded_prompts_matches_transformers(saved_llama):
    import torch

    model, directory = saved_llama
    lm = CausalLM(Llama.from_hf(directory))
    ids = np.array([[0, 0, 0, 4, 50, 9, 13], [9, 120, 7, 33, 2, 61, 8], [0, 0, 0, 0, 0, 120, 7]], "int32")
    mask = (np.arange(7)[None] >= np.array([[3], [0], [5]])).astype("int32")
    ours = lm.generate({"token_ids": ids, "padding_mask": mask}, max_new_tokens=16)
    unpadded = lm.generate([row[keep].tolist() for row, keep in zip(ids, mask.astype(bool))], max_new_tokens=16)
    with torch.no_grad():
        expected = model.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                                  max_new_tokens=16, min_new_tokens=16, do_sample=False, pad_token_id=0).numpy()
    for i in range(3):
        generated = ours["token_ids"][i][ours["padding_mask"][i].astype(bool)].tolist()
        reference = expected[i, 7 - mask[i].sum():].tolist()  # transformers keeps the left padding
        assert generated == unpadded[i] == reference, i


def test_mixed_bfloat16_logits_match_float32_on_a_long_sequence(saved_llama):
    _, directory = saved_llama
    full, mixed = Llama.from_hf(directory), Llama.from_hf(directory, dtype="mixed_bfloat16")
    assert mixed.transformer_layers[0].compute_dtype == "bfloat16" and mixed.lm_head.kernel.dtype == "float32"
    ids = np.random.default_rng(3).integers(1, VOCABULARY, (2, CONTEXT)).astype("int32")
    mask = np.ones_like(ids)
    expected, actual = logits_of(full, ids, mask), logits_of(mixed, ids, mask)
    assert_close_at_bfloat16_scale(actual, expected)


def test_gradients_reach_every_weight_element():
    llama = Llama(None, vocabulary_size=53, num_layers=2, num_heads=4, num_key_value_heads=2, hidden_dim=16,
                  intermediate_dim=24, max_sequence_length=16)
    weights, gradients, ids, mask = causal_lm_gradients(llama, vocabulary_size=40)  # ids 40..52 never occur
    # Embedding, per block 2 RMSNorm scales + qkv + output + gate_up + down, the final RMSNorm, lm_head.
    assert len(weights) == 1 + 2 * 6 + 1 + 1
    for weight, gradient in zip(weights, gradients):
        if weight.path == llama.token_embedding.embeddings.path:  # only the rows of real input tokens
            used = np.zeros(53, bool)
            used[ids[mask.astype(bool)]] = True
            assert np.all(gradient[used] != 0) and np.all(gradient[~used] == 0)
        else:  # every element, including the whole untied lm_head
            assert np.mean(gradient != 0) == 1.0, (weight.path, np.mean(gradient != 0))


def test_short_training_run_on_shakespeare_beats_the_unigram_baseline():
    work = next(iter(keras_lm.data.load("shakespeare", split="validation")))
    lines = [line.strip() for line in work["text"].numpy().decode("utf-8").splitlines() if line.strip()][:1200]
    tokenizer = keras_lm.tokenizers.BytePair.train(tf.data.Dataset.from_tensor_slices(lines), vocabulary_size=320)
    stream = np.asarray(tokenizer(tf.constant("\n".join(lines)))).astype("int32")
    windows = stream[: stream.size // 33 * 33].reshape(-1, 33)
    train, held_out = windows[:-48], windows[-48:]
    labels = held_out[:, 1:].ravel()
    frequencies = np.bincount(labels) / labels.size
    unigram = -np.mean(np.log(frequencies[labels]))  # the best any token-frequency model does on these tokens
    vocabulary = tokenizer.vocabulary_size()
    llama = Llama(None, vocabulary_size=vocabulary, num_layers=2, num_heads=4, num_key_value_heads=2,
                  hidden_dim=32, intermediate_dim=64, max_sequence_length=32)
    lm = CausalLM(llama)
    lm.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)

    def features(rows):
        return {"token_ids": rows[:, :-1], "padding_mask": np.ones_like(rows[:, :-1])}

    def held_out_loss():
        return lm.evaluate(features(held_out), held_out[:, 1:], batch_size=48, verbose=0, return_dict=True)["loss"]

    before = held_out_loss()
    lm.fit(features(train), train[:, 1:], batch_size=16, epochs=3, verbose=0)
    after = held_out_loss()
    assert abs(before - np.log(vocabulary)) < 0.5  # untrained: about uniform
    assert after < unigram - 0.6, (before, after, unigram)


def test_sizes_and_round_trip(tmp_path):
    assert list(Llama.sizes) == ["tiny", "mini", "small"]
    llama = Llama("tiny", vocabulary_size=100, max_sequence_length=32)
    assert (llama.num_layers, llama.num_heads, llama.num_key_value_heads, llama.intermediate_dim) == (2, 4, 2, 384)
    assert llama.position_embedding is None and llama.lm_head is not None
    path = str(tmp_path / "llama.keras")
    llama.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Llama and restored.get_config() == llama.get_config()
    ids = np.arange(1, 9, dtype="int32")[None]
    np.testing.assert_array_equal(logits_of(restored, ids, np.ones_like(ids)), logits_of(llama, ids, np.ones_like(ids)))


@pytest.mark.parametrize(
    "args,kwargs,pattern",
    [
        (("large",), {}, r"Unknown Llama size 'large'"),
        (("tiny",), {"num_key_value_heads": 3}, r"num_key_value_heads=3.*num_heads=4"),
        (("tiny",), {"num_heads": 5}, r"hidden_dim=128.*num_heads=5"),
        (("tiny",), {"position_embedding": "learned"}, r"Llama fixes position_embedding='rotary'"),
    ],
)
def test_bad_sizes_and_overrides(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Llama(*args, **kwargs)


def test_unsupported_rope_scaling_is_a_clear_error():
    config = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
              "num_hidden_layers": 1, "num_attention_heads": 2,
              "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}
    with pytest.raises(ValueError, match="rope scaling 'yarn'"):
        Llama.from_hf({}, config=config)


def test_docstring_examples():
    result = doctest.testmod(llama_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
