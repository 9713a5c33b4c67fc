import doctest

import keras
import keras_hub
import numpy as np
import pytest

import keras_lm.applications.gpt2 as gpt2_module
from keras_lm.applications import Gpt2
from keras_lm.tasks import CausalLM
from reference import (
    assert_close_at_bfloat16_scale,
    causal_lm_gradients,
    logits_of,
    nonzero_fraction,
    randomize_every_parameter,
)

VOCABULARY = 211
CONTEXT = 64


def is_norm_scale(name):
    return name.endswith((".ln_1.weight", ".ln_2.weight", "ln_f.weight"))


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    """A GPT2LMHeadModel with every parameter random, saved with save_pretrained (safetensors)."""
    import transformers

    config = transformers.GPT2Config(vocab_size=VOCABULARY, n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    randomize_every_parameter(model, seed=0, is_norm_scale=is_norm_scale)
    directory = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(directory)
    return model, directory


def test_reference_weights_are_random_everywhere(hf_gpt2):
    model, _ = hf_gpt2
    names = [name for name, _ in model.named_parameters()]
    assert any(name.endswith("ln_1.bias") for name in names) and any("c_proj.bias" in name for name in names)
    for name, parameter in model.named_parameters():
        values = parameter.detach().numpy()
        center = 1.0 if is_norm_scale(name) else 0.0
        assert 0.1 < np.abs(values - center).mean() < 0.3, name  # not a default constant (0 or 1)


def token_batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCABULARY, (3, 12)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 8:] = 0  # right padding
    mask[2, :5] = 0  # left padding
    return ids, mask


def test_logits_match_transformers_with_padding(hf_gpt2):
    import torch

    model, directory = hf_gpt2
    gpt = Gpt2.from_hf(directory)
    assert (gpt.num_layers, gpt.hidden_dim, gpt.num_heads, gpt.max_sequence_length) == (2, 32, 4, 64)
    ids, mask = token_batch()
    with torch.no_grad():
        expected = model(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)).logits.numpy()
    logits = np.asarray(gpt.logits(gpt({"token_ids": ids, "padding_mask": mask})["sequence_output"]))
    real = mask.astype(bool)
    assert np.abs(logits[real] - expected[real]).max() <= 1e-4
    # Also from the in-memory model and from a state dict.
    from_model = Gpt2.from_hf(model)
    from_state = Gpt2.from_hf(model.state_dict(), config=model.config)
    for other in (from_model, from_state):
        other_logits = np.asarray(other.logits(other({"token_ids": ids, "padding_mask": mask})["sequence_output"]))
        np.testing.assert_array_equal(other_logits, logits)


def test_greedy_generation_matches_transformers(hf_gpt2):
    import torch

    model, directory = hf_gpt2
    lm = CausalLM(Gpt2.from_hf(directory))
    prompts = [[5, 17, 42], [99, 3, 150, 7, 8, 61, 2]]
    ours = lm.generate(prompts, max_new_tokens=32)
    for prompt, generated in zip(prompts, ours):
        with torch.no_grad():
            expected = model.generate(torch.tensor([prompt]), attention_mask=torch.ones_like(torch.tensor([prompt])),
                                      max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)
        assert generated == expected[0].tolist()


def test_from_pytorch_bin_checkpoint(hf_gpt2, tmp_path):
    import torch

    model, _ = hf_gpt2
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    ids, mask = token_batch(1)
    gpt = Gpt2.from_hf(tmp_path)
    with torch.no_grad():
        expected = model(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    logits = np.asarray(gpt.logits(gpt({"token_ids": ids, "padding_mask": np.ones_like(ids)})["sequence_output"]))
    assert np.abs(logits - expected).max() <= 1e-4


def test_mixed_bfloat16_logits_match_float32_on_a_long_sequence(hf_gpt2):
    _, directory = hf_gpt2
    full, mixed = Gpt2.from_hf(directory), Gpt2.from_hf(directory, dtype="mixed_bfloat16")
    assert mixed.transformer_layers[0].compute_dtype == "bfloat16"
    assert mixed.token_embedding.embeddings.dtype == "float32"
    ids = np.random.default_rng(3).integers(1, VOCABULARY, (2, CONTEXT)).astype("int32")
    mask = np.ones_like(ids)
    expected, actual = logits_of(full, ids, mask), logits_of(mixed, ids, mask)
    assert_close_at_bfloat16_scale(actual, expected)


def test_gradients_reach_every_weight_element():
    gpt = Gpt2(None, vocabulary_size=53, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
               max_sequence_length=12, dropout=0.0)
    weights, gradients, _, _ = causal_lm_gradients(gpt, vocabulary_size=53)
    assert len(weights) == 2 + 2 * 12 + 2  # embeddings, 2 blocks, final norm (tied head)
    for weight, gradient in zip(weights, gradients):
        # Every element moves: the tied head reaches every embedding row, all 12 positions are used.
        assert nonzero_fraction(gradient) == 1.0, (weight.path, nonzero_fraction(gradient))


def test_matches_keras_hub_gpt2_backbone():
    hub = keras_hub.models.GPT2Backbone(vocabulary_size=VOCABULARY, num_layers=2, num_heads=4, hidden_dim=32,
                                        intermediate_dim=64, max_sequence_length=32)
    rng = np.random.default_rng(2)
    for weight in hub.weights:  # random biases and norms too, so every weight's mapping is exercised
        weight.assign(rng.normal(scale=0.2, size=weight.shape).astype("float32"))
    gpt = Gpt2.from_keras_hub(hub)
    ids, mask = token_batch()
    mask[2] = 1  # keras-hub's masking: compare right padding
    expected = np.asarray(hub({"token_ids": ids, "padding_mask": mask}))
    ours = np.asarray(gpt({"token_ids": ids, "padding_mask": mask})["sequence_output"])
    real = mask.astype(bool)
    assert np.abs(ours[real] - expected[real]).max() <= 1e-4


def test_sizes_and_parameter_counts():
    assert {name: dict(table)["num_layers"] for name, table in Gpt2.sizes.items()} == {
        "tiny": 2, "mini": 4, "small": 12, "medium": 24}
    small = Gpt2("small")
    assert small.count_params() == 124_439_808  # GPT-2 124M
    assert (small.vocabulary_size, small.max_sequence_length, small.intermediate_dim) == (50257, 1024, 3072)
    assert small.lm_head is None and small.position_embedding is not None
    wide = Gpt2("tiny", hidden_dim=256, num_heads=4, vocabulary_size=100)
    assert wide.intermediate_dim == 1024


def test_medium_shape_without_building_weights():
    config = gpt2_module.zoo_config("Gpt2", Gpt2.sizes, "medium", {}, gpt2_module.GPT2_ARCHITECTURE, {})
    assert (config["num_layers"], config["hidden_dim"], config["num_heads"], config["intermediate_dim"]) == (
        24, 1024, 16, 4096)


@pytest.mark.parametrize(
    "args,kwargs,pattern",
    [
        (("huge",), {}, r"Unknown Gpt2 size 'huge'.*tiny, mini, small, medium"),
        (("tiny",), {"num_heads": 3}, r"hidden_dim=128.*num_heads=3"),
        (("tiny",), {"normalization": "rms_norm"}, r"Gpt2 fixes normalization='layer_norm'"),
        (("tiny",), {"num_key_value_heads": 1}, "grouped-query"),
        ((None,), {"num_layers": 2}, r"needs explicit hidden_dim, num_heads"),
    ],
)
def test_bad_sizes_and_overrides(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Gpt2(*args, **kwargs)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        Gpt2.from_hf(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config.json"):
        Gpt2.from_hf(tmp_path)
    with pytest.raises(ValueError, match="model_type='llama'"):
        Gpt2.from_hf({}, config={"model_type": "llama"})


def test_keras_round_trip(tmp_path):
    gpt = Gpt2("tiny", vocabulary_size=100, max_sequence_length=32)
    path = str(tmp_path / "gpt.keras")
    gpt.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Gpt2 and restored.size == "tiny"
    ids = np.arange(1, 9, dtype="int32")[None]
    data = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    np.testing.assert_array_equal(np.asarray(restored(data)["sequence_output"]),
                                  np.asarray(gpt(data)["sequence_output"]))


def test_docstring_examples():
    result = doctest.testmod(gpt2_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
