"""Reading Llama-architecture GGUF files (llama.cpp's format) as a Hugging Face-style checkpoint.

A GGUF file holds the model's configuration and tokenizer as metadata and its weights as
(often quantized) tensors. ``read_gguf_llama`` turns one into what ``Llama.from_hf`` accepts — a
transformers ``LlamaConfig`` dict and a state dict of float32 arrays under transformers' names —
and ``gguf_byte_pair`` builds the ``BytePair`` tokenizer the metadata describes. Quantized
tensors are dequantized with llama.cpp's own reader (the ``gguf`` package).

llama.cpp's converter permutes the rows of ``attn_q`` and ``attn_k`` (each head's rotary pairs
interleaved instead of split in halves); ``_unpermute_rotary_rows`` undoes it exactly as
transformers' GGUF loader does. GGUF tensor -> transformers name, per layer ``i``::

    token_embd            -> model.embed_tokens.weight
    blk.i.attn_norm       -> model.layers.i.input_layernorm.weight
    blk.i.attn_{q,k,v}    -> model.layers.i.self_attn.{q,k,v}_proj.weight (q, k un-permuted)
    blk.i.attn_output     -> model.layers.i.self_attn.o_proj.weight
    blk.i.ffn_norm        -> model.layers.i.post_attention_layernorm.weight
    blk.i.ffn_{gate,up,down} -> model.layers.i.mlp.{gate,up,down}_proj.weight
    output_norm           -> model.norm.weight
    output                -> lm_head.weight (absent: tied to token_embd)

Example:
    >>> from keras_lm.applications.gguf import read_gguf_llama
    >>> config, state = read_gguf_llama("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    >>> config["hidden_size"], state["model.embed_tokens.weight"].shape  # doctest: +SKIP
    (576, (49152, 576))
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from keras_lm.applications.checkpoint_hf import CheckpointError

if TYPE_CHECKING:
    from keras_lm.tokenizers import BytePair

_LAYER_TENSORS = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

# llama.cpp's tokenizer.ggml.pre -> (BytePair split_pattern, split_digits), as llama.cpp splits words.
PRE_TOKENIZER_SPLITS = {
    "default": ("gpt2", None),
    "gpt2": ("gpt2", None),
    "smollm": ("gpt2", "individual"),  # llama.cpp: "\p{N}" first, then GPT-2's expression
    "llama3": ("llama3", None),
    "llama-v3": ("llama3", None),
    "llama-bpe": ("llama3", None),
    "smaug-bpe": ("llama3", None),
    "dbrx": ("llama3", None),
    "qwen2": ("qwen2", None),
    "deepseek-r1-qwen": ("qwen2", None),
    "gpt-4o": ("o200k", None),
    "llama4": ("o200k", None),
}
_CONTROL, _USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values


class GGUFError(CheckpointError):
    """A GGUF file that is unreadable or describes a model keras_lm cannot import."""


def open_gguf(path: str | os.PathLike):
    """A ``gguf.GGUFReader`` of ``path``; one ``GGUFError`` naming the file if it is not GGUF."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No GGUF file at '{path}'.")
    try:
        import gguf
    except ImportError as error:
        raise ImportError("Reading GGUF files needs the `gguf` package: pip install 'gguf==0.19.*'.") from error
    try:
        return gguf.GGUFReader(path, "r")
    except Exception as error:  # bad magic, truncated header, unknown version, ...
        raise GGUFError(f"'{path}' is not a readable GGUF file ({type(error).__name__}: {error}).") from error


def gguf_metadata(reader) -> dict:
    """Every metadata field of a ``GGUFReader`` as plain Python values (strings, numbers, lists)."""
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def _required(metadata: dict, key: str, path: str):
    if key not in metadata:
        raise GGUFError(f"'{path}' has no metadata '{key}', which a Llama GGUF file needs.")
    return metadata[key]


def llama_config_from_gguf(metadata: dict, tensor_names, path: str = "the GGUF file") -> dict:
    """A transformers ``LlamaConfig`` dict from the ``llama.*`` metadata of a GGUF file."""
    architecture = metadata.get("general.architecture")
    if architecture != "llama":
        raise GGUFError(
            f"'{path}' holds a general.architecture={architecture!r} model; only 'llama' GGUF files can be imported."
        )
    key = lambda name: _required(metadata, f"llama.{name}", path)  # noqa: E731
    hidden, heads = int(key("embedding_length")), int(key("attention.head_count"))
    head_dim = int(metadata.get("llama.attention.key_length", hidden // heads))
    rotary = int(metadata.get("llama.rope.dimension_count", head_dim))
    if rotary != head_dim:
        raise GGUFError(f"'{path}' rotates {rotary} of {head_dim} head dimensions; partial rotary is not supported.")
    scaling = metadata.get("llama.rope.scaling.type")
    if (scaling not in (None, "none")) or "rope_freqs.weight" in tensor_names:
        raise GGUFError(f"'{path}' uses rope scaling ({scaling or 'rope_freqs.weight'}), which is not supported.")
    vocabulary_size = metadata.get("llama.vocab_size")
    if vocabulary_size is None:
        tokens = metadata.get("tokenizer.ggml.tokens")
        vocabulary_size = len(tokens) if tokens is not None else None
    if vocabulary_size is None:
        raise GGUFError(f"'{path}' states no vocabulary size (llama.vocab_size or tokenizer.ggml.tokens).")
    return {
        "model_type": "llama",
        "vocab_size": int(vocabulary_size),
        "hidden_size": hidden,
        "num_hidden_layers": int(key("block_count")),
        "intermediate_size": int(key("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(metadata.get("llama.attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "max_position_embeddings": int(metadata.get("llama.context_length", 2048)),
        "rope_theta": float(metadata.get("llama.rope.freq_base", 10000.0)),
        "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon")),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "hidden_act": "silu",
    }


def _unpermute_rotary_rows(weights: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's ``permute`` of q/k rows (transformers' ``_reverse_permute_weights``)."""
    half = weights.shape[0] // num_heads // 2
    return weights.reshape(num_heads, half, 2, *weights.shape[1:]).swapaxes(2, 1).reshape(weights.shape)


def _dequantized(tensor, path: str) -> np.ndarray:
    from gguf.quants import dequantize

    try:
        values = dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as error:
        raise GGUFError(
            f"'{path}': tensor '{tensor.name}' is stored as {tensor.tensor_type.name}, which the gguf package "
            "cannot dequantize; convert the file to F32/F16/Q8_0/Q4_0/Q4_1/Q5_x/Qx_K first."
        ) from error
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))  # GGUF lists dimensions innermost first
    return np.asarray(values, dtype=np.float32).reshape(shape)


def _hf_name(gguf_name: str) -> str | None:
    base = gguf_name[: -len(".weight")] if gguf_name.endswith(".weight") else None
    if base is None:
        return None
    if base in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[base] + ".weight"
    parts = base.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER_TENSORS:
        return f"model.layers.{parts[1]}.{_LAYER_TENSORS[parts[2]]}.weight"
    return None


def _expected_tensors(config: dict) -> list[str]:
    names = ["token_embd.weight", "output_norm.weight"]
    names += [f"blk.{i}.{part}.weight" for i in range(config["num_hidden_layers"]) for part in _LAYER_TENSORS]
    return names


def read_gguf_llama(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(transformers LlamaConfig dict, {transformers weight name: float32 array})`` of a Llama GGUF file.

    Raises:
        FileNotFoundError: no file at ``path``.
        GGUFError: not a GGUF file, another architecture, a tensor type the gguf package cannot
            dequantize, a missing or unknown tensor — one error naming the file and the tensor.
    """
    path = os.fspath(path)
    return _llama_checkpoint(open_gguf(path), path)


def read_gguf_llama_and_tokenizer(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """``read_gguf_llama`` and ``gguf_byte_pair_options`` of one file, read once (the tokenizer checked first)."""
    path = os.fspath(path)
    reader = open_gguf(path)
    options = _byte_pair_options(reader, path)
    return (*_llama_checkpoint(reader, path), options)


def _llama_checkpoint(reader, path: str) -> tuple[dict, dict]:
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    config = llama_config_from_gguf(gguf_metadata(reader), set(tensors), path)
    missing = [name for name in _expected_tensors(config) if name not in tensors]
    if missing:
        raise GGUFError(
            f"'{path}' has no tensor '{missing[0]}'"
            f"{f' (and {len(missing) - 1} more missing)' if len(missing) > 1 else ''}: not a complete Llama file."
        )
    unknown = sorted(name for name in tensors if _hf_name(name) is None)
    if unknown:
        raise GGUFError(f"'{path}' holds tensors a Llama model does not have: {', '.join(unknown[:8])}.")
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    state = {}
    for name, tensor in tensors.items():
        values = _dequantized(tensor, path)
        if ".attn_q." in name:
            values = _unpermute_rotary_rows(values, heads)
        elif ".attn_k." in name:
            values = _unpermute_rotary_rows(values, kv_heads)
        state[_hf_name(name)] = values
    return config, state


def _byte_to_unicode() -> dict:
    """GPT-2's byte -> printable character table (``bytes_to_unicode`` of its ``encoder.py``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def _byte_alphabet_spelling(token: str, alphabet: set, spelling: dict) -> str:
    """The token in GPT-2's byte-to-unicode alphabet (GGUF files store some tokens as raw text)."""
    return token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode("utf-8"))


def gguf_byte_pair_options(path: str | os.PathLike) -> dict:
    """``BytePair`` constructor arguments for the byte-level BPE tokenizer a GGUF file's metadata describes.

    Reads ``tokenizer.ggml.tokens`` / ``merges`` / ``token_type`` / ``eos_token_id`` / ``pre``;
    control and user-defined tokens are kept whole in text. Also returns ``bos_token_id`` (or None).
    """
    path = os.fspath(path)
    return _byte_pair_options(open_gguf(path), path)


def _byte_pair_options(reader, path: str) -> dict:
    metadata = gguf_metadata(reader)
    model = metadata.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFError(
            f"'{path}' has tokenizer.ggml.model={model!r}; only byte-level BPE ('gpt2') tokenizers are supported."
        )
    pre = metadata.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZER_SPLITS:
        raise GGUFError(
            f"'{path}' splits words the llama.cpp way {pre!r} (tokenizer.ggml.pre), which keras_lm does not "
            f"reproduce; known: {', '.join(PRE_TOKENIZER_SPLITS)}."
        )
    spelling = _byte_to_unicode()
    alphabet = set(spelling.values())
    raw_tokens = list(_required(metadata, "tokenizer.ggml.tokens", path))
    tokens = [_byte_alphabet_spelling(t, alphabet, spelling) for t in raw_tokens]
    vocabulary = {}
    for index, token in enumerate(tokens):
        vocabulary.setdefault(token, index)
    types = list(metadata.get("tokenizer.ggml.token_type") or [])
    special = [t for t, kind in zip(raw_tokens, types)
               if (kind == _CONTROL and set(t) <= alphabet) or kind == _USER_DEFINED]
    eos_id = metadata.get("tokenizer.ggml.eos_token_id")
    if eos_id is None or not 0 <= int(eos_id) < len(tokens):
        raise GGUFError(f"'{path}' names no end-of-text token (tokenizer.ggml.eos_token_id).")
    end_token = tokens[int(eos_id)]
    split_pattern, split_digits = PRE_TOKENIZER_SPLITS[pre]
    bos_id = metadata.get("tokenizer.ggml.bos_token_id")
    return {
        "vocabulary": vocabulary,
        "merges": [str(m) for m in metadata.get("tokenizer.ggml.merges") or []],
        "end_token": end_token,
        "special_tokens": [t for t in dict.fromkeys(special) if t != end_token],
        "add_prefix_space": bool(metadata.get("tokenizer.ggml.add_space_prefix", False)),
        "split_pattern": split_pattern,
        "split_digits": split_digits,
        "bos_token_id": None if bos_id is None else int(bos_id),
    }


def gguf_byte_pair(path: str | os.PathLike, **overrides) -> "BytePair":
    """The ``BytePair`` tokenizer of a GGUF file (see ``gguf_byte_pair_options``).

    Example:
        >>> tokenizer = gguf_byte_pair("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
        >>> tokenizer("Hello world").numpy().tolist()  # doctest: +SKIP
        [19556, 905]
    """
    from keras_lm.tokenizers import BytePair

    options = gguf_byte_pair_options(path)
    options.pop("bos_token_id")
    return BytePair(**{**options, **overrides})


def find_gguf_file(path: str | os.PathLike) -> str:
    """``path`` if it is a file, else the one ``.gguf`` file in the folder ``path``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(name for name in os.listdir(path) if name.lower().endswith(".gguf"))
        if len(found) != 1:
            raise FileNotFoundError(
                f"'{path}' holds {len(found)} .gguf files ({', '.join(found) or 'none'}); pass the file itself."
            )
        return os.path.join(path, found[0])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No GGUF file at '{path}'.")
    return path


def llama_from_gguf(cls, path, dtype=None):
    """Build ``cls`` (a ``Llama``) with the dequantized weights of a Llama GGUF file."""
    config, state = read_gguf_llama(find_gguf_file(path))
    return cls.from_hf(state, config=config, dtype=dtype)
