import doctest
import json
import os

import keras
import numpy as np
import pytest

import keras_lm.applications.t5 as t5_module
from keras_lm.applications import CheckpointError, T5
from reference import randomize_every_parameter

VOCABULARY = 151
VARIANTS = ("v1.0", "v1.1")


def is_norm_scale(name):
    return name.endswith("layer_norm.weight")


def hf_t5(directory, variant, **overrides):
    """A random-weight transformers T5 of ``variant`` (every parameter random), saved to ``directory``.

    v1.0 ties encoder, decoder and output embeddings and rescales the decoder output; v1.1 shares
    the input embedding between the stacks and has its own ``lm_head`` (as google/t5-v1_1-* do).
    """
    import transformers

    config = dict(vocab_size=VOCABULARY, d_model=32, d_kv=6, d_ff=48, num_layers=2, num_decoder_layers=3,
                  num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                  feed_forward_proj="relu" if variant == "v1.0" else "gated-gelu",
                  tie_word_embeddings=variant == "v1.0", decoder_start_token_id=0, pad_token_id=0,
                  eos_token_id=None, attn_implementation="eager")
    config.update(overrides)
    config = transformers.T5Config(**config)
    config.tie_word_embeddings = variant == "v1.0"  # transformers 5 forces True; v1.1 keeps its lm_head
    model = transformers.T5ForConditionalGeneration(config).eval()
    model.set_input_embeddings(model.shared)  # one input embedding for both stacks, in every variant
    randomize_every_parameter(model, seed=0, is_norm_scale=is_norm_scale)
    model.save_pretrained(directory)
    return model


@pytest.fixture(scope="module", params=VARIANTS)
def saved_t5(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"t5_{request.param}")
    return request.param, hf_t5(directory, request.param), directory


def padded_batch(seed=0):
    """Source and target ids, the second row of each padded at the end."""
    rng = np.random.default_rng(seed)
    source = rng.integers(2, VOCABULARY, (3, 11)).astype("int32")
    target = rng.integers(2, VOCABULARY, (3, 9)).astype("int32")
    target[:, 0] = 0  # the decoder start token
    source_mask, target_mask = np.ones_like(source), np.ones_like(target)
    source_mask[1, 7:] = 0
    source_mask[2, 4:] = 0
    target_mask[1, 6:] = 0
    return source, source_mask, target, target_mask


def transformers_logits(model, source, source_mask, target, target_mask):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(source, dtype=torch.long), attention_mask=torch.tensor(source_mask),
                     decoder_input_ids=torch.tensor(target, dtype=torch.long),
                     decoder_attention_mask=torch.tensor(target_mask)).logits.numpy()


def our_logits(t5, source, source_mask, target, target_mask):
    outputs = t5({"encoder_token_ids": source, "encoder_padding_mask": source_mask, "decoder_token_ids": target,
                  "decoder_padding_mask": target_mask})
    return np.asarray(t5.logits(outputs["decoder_sequence_output"]))


def assert_matches_transformers(model, t5, seed=0):
    source, source_mask, target, target_mask = padded_batch(seed)
    expected = transformers_logits(model, source, source_mask, target, target_mask)
    actual = our_logits(t5, source, source_mask, target, target_mask)
    real = target_mask.astype(bool)
    assert np.abs(actual[real] - expected[real]).max() <= 1e-4
    assert np.abs(expected[real]).max() > 0.3  # not a degenerate comparison (v1.0 rescales by d_model ** -0.5)


def greedy(t5, source, source_mask, steps):
    """Greedy decoding from token 0 with the encoder run once and the decoder's KV cache."""
    _, context_caches = t5.encode({"encoder_token_ids": source, "encoder_padding_mask": source_mask})
    cache = t5.init_cache(source.shape[0], steps)
    token = np.zeros((source.shape[0], 1), "int32")
    generated, step_logits = [], []
    for step in range(steps):
        logits, _, cache = t5.call_with_cache(token, cache, step, context_caches=context_caches,
                                              encoder_padding_mask=source_mask)
        step_logits.append(np.asarray(logits)[:, -1])
        token = np.argmax(step_logits[-1], axis=-1).astype("int32")[:, None]
        generated.append(token[:, 0])
    return np.stack(generated, axis=1), np.stack(step_logits, axis=1)


def test_reference_weights_are_random_everywhere(saved_t5):
    variant, model, directory = saved_t5
    names = [name for name, _ in model.named_parameters()]
    assert ("lm_head.weight" in names) == (variant == "v1.1")
    for name, parameter in model.named_parameters():
        center = 1.0 if is_norm_scale(name) else 0.0
        assert 0.1 < np.abs(parameter.detach().numpy() - center).mean() < 0.3, name  # not a default 0 or 1


def test_logits_match_transformers_with_source_and_target_padding(saved_t5):
    variant, model, directory = saved_t5
    t5 = T5.from_hf(directory)
    assert (t5.variant, t5.num_layers, t5.num_decoder_layers, t5.head_dim) == (variant, 2, 3, 6)
    assert (t5.num_buckets, t5.max_distance, t5.lm_head is None) == (8, 20, variant == "v1.0")
    assert_matches_transformers(model, t5)


def test_greedy_decoding_with_the_cache_matches_transformers_generate(saved_t5):
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    _, model, directory = saved_t5
    t5 = T5.from_hf(directory)
    source, source_mask, _, _ = padded_batch(1)
    ours, our_step_logits = greedy(t5, source, source_mask, 32)
    with torch.no_grad():
        result = model.generate(input_ids=torch.tensor(source, dtype=torch.long),
                                attention_mask=torch.tensor(source_mask), max_new_tokens=32, do_sample=False,
                                num_beams=1, decoder_start_token_id=0, return_dict_in_generate=True,
                                output_logits=True,
                                # transformers sizes its default cache by the encoder's layer count
                                cache=EncoderDecoderCache(DynamicCache(), DynamicCache()))
    expected = result.sequences.numpy()
    assert expected.shape == (3, 33) and (expected[:, 0] == 0).all()
    np.testing.assert_array_equal(ours, expected[:, 1:])
    # Every step's logits agree too, so a token that merely repeats still checks the cached path.
    expected_step_logits = np.stack([step.numpy() for step in result.logits], axis=1)
    assert np.abs(our_step_logits - expected_step_logits).max() <= 1e-4


def test_import_from_an_in_memory_model_and_a_state_dict(saved_t5):
    _, model, _ = saved_t5
    assert_matches_transformers(model, T5.from_hf(model), seed=2)
    assert_matches_transformers(model, T5.from_hf(model.state_dict(), config=model.config.to_dict()), seed=3)


def test_missing_and_mismatched_tensors_are_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    hf_t5(tmp_path, "v1.1")
    path = os.path.join(tmp_path, "model.safetensors")
    state = load_file(path)
    missing = dict(state)
    del missing["decoder.block.2.layer.1.EncDecAttention.k.weight"]
    save_file(missing, path)
    with pytest.raises(CheckpointError, match=r"no weight 'decoder.block.2.layer.1.EncDecAttention.k.weight'"):
        T5.from_hf(tmp_path)
    wrong = dict(state)
    wrong["encoder.block.1.layer.1.DenseReluDense.wo.weight"] = np.zeros((32, 40), "float32")
    save_file(wrong, path)
    with pytest.raises(CheckpointError, match=r"'encoder.block.1.layer.1.DenseReluDense.wo.weight'.*\(40, 32\)"):
        T5.from_hf(tmp_path)
    extra = {**state, "encoder.block.0.layer.2.adapter.weight": np.zeros((4,), "float32")}
    save_file(extra, path)
    with pytest.raises(CheckpointError, match=r"not understood: encoder.block.0.layer.2.adapter.weight"):
        T5.from_hf(tmp_path)


def test_checkpoint_of_neither_variant_is_a_clear_error(tmp_path):
    hf_t5(tmp_path, "v1.0", feed_forward_proj="gated-silu")
    with pytest.raises(CheckpointError, match=r"feed_forward_proj='gated-silu'.*neither T5 v1.0.*nor v1.1"):
        T5.from_hf(tmp_path)
    config_path = os.path.join(tmp_path, "config.json")
    with open(config_path) as file:
        config = json.load(file)
    with open(config_path, "w") as file:
        json.dump({**config, "model_type": "bart"}, file)
    with pytest.raises(CheckpointError, match=r"Not a T5 checkpoint: model_type='bart'"):
        T5.from_hf(tmp_path)


def test_sizes_variants_and_keras_round_trip(tmp_path):
    assert list(T5.sizes["v1.0"]) == list(T5.sizes["v1.1"]) == ["tiny", "mini", "small", "base"]
    small = T5.sizes["v1.1"]["small"]
    assert (small["num_layers"], small["num_heads"], small["head_dim"], small["intermediate_dim"]) == (8, 6, 64, 1024)
    t5 = T5("tiny", variant="v1.1", vocabulary_size=100, num_layers=1, num_decoder_layers=2)
    assert t5.feed_forward == "gated" and t5.lm_head is not None and not t5.scale_decoder_output
    assert t5.encoder_layers[0].feed_forward.gated and t5.decoder_layers[0].attention_scale == 1.0
    path = str(tmp_path / "t5.keras")
    t5.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is T5 and restored.get_config() == t5.get_config() and restored.variant == "v1.1"
    source, source_mask, target, target_mask = padded_batch()
    source, target = source % 100, target % 100
    np.testing.assert_array_equal(our_logits(restored, source, source_mask, target, target_mask),
                                  our_logits(t5, source, source_mask, target, target_mask))


@pytest.mark.parametrize(
    "args,kwargs,pattern",
    [
        (("large",), {}, r"Unknown T5 size 'large'; known sizes: tiny, mini, small, base"),
        (("tiny",), {"variant": "v2"}, r"Unknown T5 variant 'v2'; use one of v1.0, v1.1"),
        (("tiny",), {"feed_forward": "gated"}, r"T5 v1.0 fixes feed_forward='mlp'"),
        (("tiny",), {"variant": "v1.1", "tie_word_embeddings": True}, r"T5 v1.1 fixes tie_word_embeddings=False"),
        (("tiny",), {"use_bias": True}, r"T5 v1.0 fixes use_bias=False"),
        ((None,), {"num_layers": 2}, r"T5\(size=None\) needs explicit hidden_dim, num_heads, intermediate_dim"),
        (("tiny",), {"num_heads": 5, "head_dim": None}, r"hidden_dim=256 is not divisible by num_heads=5"),
    ],
)
def test_bad_configs_are_clear_errors(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        T5(*args, **kwargs)


def test_docstring_examples():
    result = doctest.testmod(t5_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
