import doctest

import keras
import numpy as np
import pytest

import keras_lm.applications.llama as llama_module
from keras_lm.applications import Llama
from keras_lm.tasks import CausalLM

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCABULARY = 203


def hf_llama(tmp_path, **overrides):
    torch.manual_seed(0)
    config = dict(vocab_size=VOCABULARY, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rope_theta=500.0,
                  rms_norm_eps=1e-5, initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    config.update(overrides)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).eval()
    with torch.no_grad():  # random norm scales, so the RMSNorm mapping is exercised
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
    model.save_pretrained(tmp_path)
    return model


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama")
    return hf_llama(directory), directory


def logits_of(model, ids, mask):
    return np.asarray(model.logits(model({"token_ids": ids, "padding_mask": mask})["sequence_output"]))


def test_logits_match_transformers_with_padding(saved_llama):
    model, directory = saved_llama
    llama = Llama.from_hf(directory)
    assert (llama.num_key_value_heads, llama.rope_max_wavelength, llama.tie_word_embeddings) == (2, 500.0, False)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCABULARY, (2, 12)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        expected = model(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)).logits.numpy()
    ours = logits_of(llama, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - expected[real]).max() <= 1e-4


def test_greedy_generation_matches_transformers(saved_llama):
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
    model = hf_llama(tmp_path, tie_word_embeddings=True, num_key_value_heads=1, head_dim=16)
    llama = Llama.from_hf(tmp_path)
    assert llama.lm_head is None and llama.num_key_value_heads == 1 and llama.head_dim == 16
    ids = np.arange(1, 11, dtype="int32")[None]
    with torch.no_grad():
        expected = model(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    assert np.abs(logits_of(llama, ids, np.ones_like(ids)) - expected).max() <= 1e-4


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
