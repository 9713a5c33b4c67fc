"""CausalLM.from_hf: weights and tokenizer of a Hugging Face checkpoint directory; greedy generation as transformers.

Each checkpoint is a random-weight transformers model (every parameter random) saved with save_pretrained,
with a byte-level BPE tokenizer trained here on Shakespeare saved into the same directory.
"""
import json

import pytest

from keras_lm.tasks import CausalLM

PROMPTS = ["some prompt", "To be, or not to be", "The king is dead"]
MAX_NEW_TOKENS = 5


def _train_tokenizer(pattern: str | None):
    """A byte-level BPE (GPT-2's split, or a Split pattern + ByteLevel as Llama 3) with 400 tokens."""
    import keras_lm
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from keras_lm.tokenizers.byte_pair_split import PATTERNS

    work = next(iter(keras_lm.data.load("shakespeare", split="train")))
    text = work["text"].numpy().decode("utf-8")[:200_000]
    tokenizer = Tokenizer(models.BPE())
    if pattern is None:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PATTERNS[pattern]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|begin_of_text|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator([text], trainer)
    return tokenizer


def _save_checkpoint(directory, model, tokenizer, bos: str, eos: str):
    import transformers

    model.save_pretrained(str(directory))
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos).save_pretrained(
        str(directory)
    )


@pytest.fixture(scope="module")
def gpt2_checkpoint(tmp_path_factory, randomize_every_parameter):
    import transformers

    tokenizer = _train_tokenizer(None)
    config = transformers.GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2,
                                     n_head=4, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    randomize_every_parameter(
        model, seed=0, is_norm_scale=lambda name: name.endswith((".ln_1.weight", ".ln_2.weight", "ln_f.weight"))
    )
    directory = tmp_path_factory.mktemp("gpt2")
    _save_checkpoint(directory, model, tokenizer, "<|endoftext|>", "<|endoftext|>")
    return model, directory


@pytest.fixture(scope="module")
def llama_checkpoint(tmp_path_factory, randomize_every_parameter):
    import transformers

    tokenizer = _train_tokenizer("llama3")
    config = transformers.LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=48,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, bos_token_id=1, eos_token_id=0)
    model = transformers.LlamaForCausalLM(config).eval()
    randomize_every_parameter(model, seed=1, is_norm_scale=lambda name: name.endswith("norm.weight"))
    directory = tmp_path_factory.mktemp("llama")
    _save_checkpoint(directory, model, tokenizer, "<|begin_of_text|>", "<|endoftext|>")
    return model, directory


def _transformers_greedy(model, directory, prompt, bos_id=None):
    """transformers' greedy continuation of `prompt` (ids, cut after the first end token) and its text."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = ([bos_id] if bos_id is not None else []) + ids
    with torch.no_grad():
        output = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=0)
    generated = output[0].tolist()
    new = generated[len(ids):]
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id) + 1]
    return ids, ids + new, tokenizer


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_generation_equals_transformers(family, gpt2_checkpoint, llama_checkpoint):
    model, directory = gpt2_checkpoint if family == "gpt2" else llama_checkpoint
    lm = CausalLM.from_hf(directory)
    assert type(lm.backbone).__name__ == {"gpt2": "Gpt2", "llama": "Llama"}[family]
    assert lm.tokenizer.end_token == "<|endoftext|>" and lm.tokenizer.end_token_id == 0
    assert lm.start_token_id == (0 if family == "gpt2" else 1)
    for prompt in PROMPTS:
        prompt_ids, expected, hf_tokenizer = _transformers_greedy(model, directory, prompt)
        assert lm.tokenizer(prompt).numpy().tolist() == prompt_ids
        assert lm.generate([prompt_ids], max_new_tokens=MAX_NEW_TOKENS, sampler="greedy") == [expected]
        text = lm.generate([prompt], max_new_tokens=MAX_NEW_TOKENS, sampler="greedy")
        assert text == [hf_tokenizer.decode(expected, skip_special_tokens=True)]
    if family == "llama":  # a prompt starting with the BOS token, as Llama checkpoints are trained
        prompt_ids, expected, _ = _transformers_greedy(model, directory, PROMPTS[0], bos_id=lm.start_token_id)
        assert lm.generate([prompt_ids], max_new_tokens=MAX_NEW_TOKENS, sampler="greedy") == [expected]


def test_unknown_model_type_and_missing_files_are_clear_errors(gpt2_checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json in"):
        CausalLM.from_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    with pytest.raises(ValueError, match=r"holds a model_type='bert' checkpoint; supported: gpt2, llama"):
        CausalLM.from_hf(tmp_path)
    (tmp_path / "config.json").write_text((gpt2_checkpoint[1] / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"BytePair\.from_hf: no tokenizer in .*expected tokenizer\.json"):
        CausalLM.from_hf(tmp_path)


def test_dtype_reaches_the_backbone(gpt2_checkpoint):
    _, directory = gpt2_checkpoint
    lm = CausalLM.from_hf(directory, dtype="mixed_bfloat16")
    assert lm.backbone.transformer_layers[0].compute_dtype == "bfloat16"
    assert lm.backbone.token_embedding.embeddings.dtype == "float32"
    ids = lm.generate([[5, 6, 7]], max_new_tokens=MAX_NEW_TOKENS, sampler="greedy")[0]
    assert ids[:3] == [5, 6, 7] and 3 < len(ids) <= 3 + MAX_NEW_TOKENS
