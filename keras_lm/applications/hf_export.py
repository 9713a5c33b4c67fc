"""Export to Hugging Face transformers checkpoint folders (``to_hf``), readable without keras_lm.

A folder holds ``config.json``, ``model.safetensors`` (float32, transformers' parameter names,
written with ``safetensors.numpy``: no torch needed) and, when a tokenizer is given, its files:
``vocab.txt`` for a ``WordPiece`` (``BertTokenizer``), ``vocab.json`` + ``merges.txt`` for a
``BytePair`` (``GPT2Tokenizer``), each with ``tokenizer_config.json`` and ``special_tokens_map.json``.

keras_lm -> transformers, per layer ``i`` (torch ``Linear`` weights are ``[out, in]``, Keras kernels
``[in, out]``: BERT's are transposed; GPT-2's ``Conv1D`` weights are ``[in, out]`` already)::

    BERT (``BertModel``; ``bert.`` prefix and ``cls.*`` heads for BertForMaskedLM / BertForPreTraining)
    token/position/segment_embedding      -> embeddings.{word,position,token_type}_embeddings.weight
    embeddings_layer_norm                 -> embeddings.LayerNorm
    transformer_layer_i/self_attention/qkv  -> encoder.layer.i.attention.self.{query,key,value} (split q|k|v)
    .../self_attention/output             -> encoder.layer.i.attention.output.dense
    .../self_attention_norm                 -> encoder.layer.i.attention.output.LayerNorm
    .../feed_forward/intermediate_dense   -> encoder.layer.i.intermediate.dense
    .../feed_forward/output_dense         -> encoder.layer.i.output.dense
    .../feed_forward_norm                   -> encoder.layer.i.output.LayerNorm
    pooler/dense                          -> pooler.dense
    masked_lm_head transform_dense / transform_layer_norm / output_bias
                                          -> cls.predictions.transform.dense / .LayerNorm / cls.predictions.bias
    next_sentence_head/dense              -> cls.seq_relationship

    GPT-2 (``GPT2LMHeadModel``, ``transformer.`` prefix; ``lm_head`` is tied to ``wte``)
    token/position_embedding -> wte / wpe; self_attention_norm -> h.i.ln_1; qkv -> h.i.attn.c_attn;
    output -> h.i.attn.c_proj; feed_forward_norm -> h.i.ln_2; feed_forward -> h.i.mlp.{c_fc,c_proj};
    final_norm -> ln_f

The folder is written next to its target and renamed into place at the end. An existing non-empty
folder is replaced only with ``overwrite=True`` and only if it holds a previous ``to_hf`` export
(marked by a ``.keras_lm_export`` file reading ``hf``); anything else is refused before any work.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import keras
import numpy as np

from keras_lm.layers.utils import serialize_activation
from keras_lm.models import Decoder, Encoder
from keras_lm.tokenizers import BytePair, WordPiece

MARKER_FILE = ".keras_lm_export"
EXPORT_KIND = "hf"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu", "silu": "silu",
                   "tanh": "tanh"}


# --- arrays -----------------------------------------------------------------------------------

def _numpy(variable) -> np.ndarray:
    """A variable's value as a contiguous float32 numpy array (bf16 variables are widened)."""
    value = keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32"))
    return np.ascontiguousarray(value, dtype=np.float32)


def _linear(state: dict, name: str, dense, kernel=None) -> None:
    """A Keras ``Dense`` (kernel ``[in, out]``) as a torch ``Linear`` (weight ``[out, in]``)."""
    state[name + ".weight"] = np.ascontiguousarray(_numpy(dense.kernel if kernel is None else kernel).T)
    state[name + ".bias"] = _numpy(dense.bias)


def _conv1d(state: dict, name: str, dense) -> None:
    """A Keras ``Dense`` as GPT-2's ``Conv1D`` (weight ``[in, out]``, as the Keras kernel)."""
    state[name + ".weight"] = _numpy(dense.kernel)
    state[name + ".bias"] = _numpy(dense.bias)


def _layer_norm(state: dict, name: str, norm) -> None:
    state[name + ".weight"] = _numpy(norm.gamma)
    state[name + ".bias"] = _numpy(norm.beta)


def hf_activation(activation, owner: str) -> str:
    """The transformers ``hidden_act`` name of a keras_lm activation (``gelu_approximate`` -> ``gelu_new``)."""
    name = serialize_activation(activation)
    if isinstance(name, str) and name in _HF_ACTIVATIONS:
        return _HF_ACTIVATIONS[name]
    raise ValueError(
        f"{owner}: cannot export activation {name!r} to transformers; supported: {', '.join(_HF_ACTIVATIONS)}."
    )


# --- BERT -------------------------------------------------------------------------------------

def _check_bert(backbone) -> None:
    if hasattr(backbone, "backbone") and hasattr(backbone, "masked_lm_head"):
        raise TypeError(
            "bert_to_hf takes the encoder backbone: pass model.backbone and masked_lm_head=model.masked_lm_head "
            "(and next_sentence_head=model.next_sentence_head for a BertPretrainer)."
        )
    if not isinstance(backbone, Encoder):
        raise TypeError(f"bert_to_hf needs a keras_lm Encoder (e.g. keras_lm.applications.Bert); "
                        f"got {type(backbone).__name__}.")
    if backbone.norm_first:
        raise ValueError("bert_to_hf: transformers' BERT is post-LN; this encoder has norm_first=True.")


def bert_state(backbone: Encoder, prefix: str = "") -> dict:
    """``{transformers BertModel parameter name: float32 array}`` of an encoder (names start with ``prefix``)."""
    state = {}
    p = prefix
    state[p + "embeddings.word_embeddings.weight"] = _numpy(backbone.token_embedding.embeddings)
    state[p + "embeddings.position_embeddings.weight"] = _numpy(backbone.position_embedding.embeddings)
    state[p + "embeddings.token_type_embeddings.weight"] = _numpy(backbone.segment_embedding.embeddings)
    _layer_norm(state, p + "embeddings.LayerNorm", backbone.get_layer("embeddings_layer_norm"))
    for i, block in enumerate(backbone.transformer_layers):
        layer = f"{p}encoder.layer.{i}."
        qkv = block.self_attention.qkv_dense
        kernels = np.split(_numpy(qkv.kernel), 3, axis=-1)
        biases = np.split(_numpy(qkv.bias), 3)
        for name, kernel, bias in zip(("query", "key", "value"), kernels, biases):
            state[f"{layer}attention.self.{name}.weight"] = np.ascontiguousarray(kernel.T)
            state[f"{layer}attention.self.{name}.bias"] = np.ascontiguousarray(bias)
        _linear(state, layer + "attention.output.dense", block.self_attention.output_dense)
        _layer_norm(state, layer + "attention.output.LayerNorm", block.self_attention_norm)
        _linear(state, layer + "intermediate.dense", block.feed_forward.intermediate_dense)
        _linear(state, layer + "output.dense", block.feed_forward.output_dense)
        _layer_norm(state, layer + "output.LayerNorm", block.feed_forward_norm)
    _linear(state, p + "pooler.dense", backbone.pooler.dense)
    return state


def _masked_lm_state(backbone: Encoder, head) -> tuple[dict, bool]:
    """The ``cls.predictions.*`` weights of a ``MaskedLMHead`` and whether its output is tied."""
    if not head.built:
        raise ValueError("masked_lm_head is not built yet: call the model once (or build it) before exporting.")
    activation = hf_activation(head.activation, "masked_lm_head")
    if activation != hf_activation(backbone.activation, "backbone"):
        raise ValueError(
            f"masked_lm_head uses activation {activation!r} but the backbone "
            f"{hf_activation(backbone.activation, 'backbone')!r}: transformers' BERT uses one `hidden_act` for both."
        )
    if not np.isclose(head.layer_norm_epsilon, backbone.layer_norm_epsilon):
        raise ValueError("masked_lm_head and the backbone use different LayerNorm epsilons; transformers' BERT "
                         "uses one `layer_norm_eps` for both.")
    state = {}
    _linear(state, "cls.predictions.transform.dense", head.transform_dense)
    _layer_norm(state, "cls.predictions.transform.LayerNorm", head.transform_layer_norm)
    state["cls.predictions.bias"] = _numpy(head.output_bias)
    if head.token_embedding is None:
        state["cls.predictions.decoder.weight"] = np.ascontiguousarray(_numpy(head.output_kernel).T)
        state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"].copy()
        return state, False
    if head.token_embedding is not backbone.token_embedding:
        raise ValueError("masked_lm_head is tied to another token embedding than this backbone's: pass the "
                         "backbone the head was built on.")
    return state, True


def bert_hf_config(backbone: Encoder, architecture: str = "BertModel", tokenizer=None,
                   tie_word_embeddings: bool = True) -> dict:
    """The transformers ``BertConfig`` (as a dict) of an encoder."""
    return {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": int(backbone.vocabulary_size),
        "hidden_size": int(backbone.hidden_dim),
        "num_hidden_layers": int(backbone.num_layers),
        "num_attention_heads": int(backbone.num_heads),
        "intermediate_size": int(backbone.intermediate_dim),
        "hidden_act": hf_activation(backbone.activation, "backbone"),
        "hidden_dropout_prob": float(backbone.dropout),
        "attention_probs_dropout_prob": float(backbone.dropout),
        "max_position_embeddings": int(backbone.max_sequence_length),
        "type_vocab_size": int(backbone.num_segments),
        "initializer_range": 0.02,
        "layer_norm_eps": float(backbone.layer_norm_epsilon),
        "pad_token_id": int(tokenizer.pad_id) if tokenizer is not None else 0,
        "position_embedding_type": "absolute",
        "classifier_dropout": None,
        "tie_word_embeddings": bool(tie_word_embeddings),
        "dtype": "float32",
    }


def bert_to_hf(backbone: Encoder, directory: str, tokenizer=None, masked_lm_head=None, next_sentence_head=None,
               overwrite: bool = False) -> str:
    """Writes a keras_lm BERT encoder (and optional pretraining heads) as a transformers checkpoint folder.

    Without heads the folder is a ``BertModel``; with ``masked_lm_head`` a ``BertForMaskedLM``
    (names under ``bert.``, ``cls.predictions.*``), with both heads a ``BertForPreTraining``, with
    only ``next_sentence_head`` a ``BertForNextSentencePrediction``.

    Args:
        backbone: a ``keras_lm.models.Encoder`` (e.g. ``keras_lm.applications.Bert``), post-LN.
        directory: the folder to write (created; see the module doc for when it may exist).
        tokenizer: optional ``keras_lm.tokenizers.WordPiece`` (or a ``BertPreprocessor``); its
            ``vocab.txt`` and tokenizer configs are written too.
        masked_lm_head: the ``MaskedLMHead`` of a ``keras_lm.pretraining.MaskedLM`` / ``BertPretrainer``.
        next_sentence_head: the ``NextSentenceHead`` of a ``BertPretrainer``.
        overwrite: replace a previous ``to_hf`` export at ``directory``.

    Returns:
        ``directory``.

    Example:
        >>> import tempfile, os, keras_lm
        >>> bert = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> folder = bert_to_hf(bert, os.path.join(tempfile.mkdtemp(), "bert"))
        >>> sorted(name for name in os.listdir(folder) if not name.startswith("."))
        ['config.json', 'model.safetensors']
    """
    _check_bert(backbone)
    tokenizer = _word_piece(tokenizer, backbone.vocabulary_size)
    state, tied = {}, True
    heads = {}
    if masked_lm_head is not None:
        heads, tied = _masked_lm_state(backbone, masked_lm_head)
    if next_sentence_head is not None:
        if not next_sentence_head.built:
            raise ValueError("next_sentence_head is not built yet: call the model once before exporting.")
        _linear(heads, "cls.seq_relationship", next_sentence_head.dense)
    if masked_lm_head is not None and next_sentence_head is not None:
        architecture = "BertForPreTraining"
    elif masked_lm_head is not None:
        architecture = "BertForMaskedLM"
    elif next_sentence_head is not None:
        architecture = "BertForNextSentencePrediction"
    else:
        architecture = "BertModel"
    state.update(bert_state(backbone, prefix="" if architecture == "BertModel" else "bert."))
    state.update(heads)
    config = bert_hf_config(backbone, architecture, tokenizer, tie_word_embeddings=tied)
    with _staged_directory(directory, overwrite) as staging:
        _write_checkpoint(staging, config, state)
        if tokenizer is not None:
            write_word_piece_files(tokenizer, staging, model_max_length=backbone.max_sequence_length)
    return directory


# --- GPT-2 ------------------------------------------------------------------------------------

def _check_gpt2(decoder) -> None:
    if not isinstance(decoder, Decoder):
        raise TypeError(f"gpt2_to_hf needs a keras_lm Decoder (e.g. keras_lm.applications.Gpt2); "
                        f"got {type(decoder).__name__}.")
    layout = {"position_embedding_type": "learned", "normalization": "layer_norm", "feed_forward": "mlp",
              "use_bias": True}
    for attribute, expected in layout.items():
        if getattr(decoder, attribute) != expected:
            raise ValueError(f"gpt2_to_hf: GPT-2 needs {attribute}={expected!r}; this decoder has "
                             f"{getattr(decoder, attribute)!r}.")
    if decoder.num_key_value_heads != decoder.num_heads:
        raise ValueError("gpt2_to_hf: GPT-2 has no grouped-query attention (num_key_value_heads != num_heads).")
    if decoder.head_dim not in (None, decoder.hidden_dim // decoder.num_heads):
        raise ValueError("gpt2_to_hf: GPT-2 needs head_dim = hidden_dim // num_heads.")


def gpt2_state(decoder: Decoder) -> dict:
    """``{transformers GPT2LMHeadModel parameter name: float32 array}`` of a GPT-2 decoder."""
    state = {
        "transformer.wte.weight": _numpy(decoder.token_embedding.embeddings),
        "transformer.wpe.weight": _numpy(decoder.position_embedding.embeddings),
    }
    for i, block in enumerate(decoder.transformer_layers):
        layer = f"transformer.h.{i}."
        _layer_norm(state, layer + "ln_1", block.self_attention_norm)
        _conv1d(state, layer + "attn.c_attn", block.self_attention.qkv_dense)
        _conv1d(state, layer + "attn.c_proj", block.self_attention.output_dense)
        _layer_norm(state, layer + "ln_2", block.feed_forward_norm)
        _conv1d(state, layer + "mlp.c_fc", block.feed_forward.intermediate_dense)
        _conv1d(state, layer + "mlp.c_proj", block.feed_forward.output_dense)
    _layer_norm(state, "transformer.ln_f", decoder.final_norm)
    if decoder.lm_head is not None:
        state["lm_head.weight"] = np.ascontiguousarray(_numpy(decoder.lm_head.kernel).T)
    return state


def gpt2_hf_config(decoder: Decoder, tokenizer=None) -> dict:
    """The transformers ``GPT2Config`` (as a dict) of a GPT-2 decoder."""
    if tokenizer is not None:
        end_id = int(tokenizer.end_token_id)
    else:
        end_id = 50256 if decoder.vocabulary_size > 50256 else None
    dropout = float(decoder.dropout)
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": int(decoder.vocabulary_size),
        "n_positions": int(decoder.max_sequence_length),
        "n_embd": int(decoder.hidden_dim),
        "n_layer": int(decoder.num_layers),
        "n_head": int(decoder.num_heads),
        "n_inner": int(decoder.intermediate_dim),
        "activation_function": hf_activation(decoder.activation, "decoder"),
        "resid_pdrop": dropout,
        "embd_pdrop": dropout,
        "attn_pdrop": dropout,
        "layer_norm_epsilon": float(decoder.layer_norm_epsilon),
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "bos_token_id": end_id,
        "eos_token_id": end_id,
        "tie_word_embeddings": bool(decoder.tie_word_embeddings),
        "use_cache": True,
        "dtype": "float32",
    }


def gpt2_to_hf(decoder: Decoder, directory: str, tokenizer=None, overwrite: bool = False) -> str:
    """Writes a keras_lm GPT-2 decoder as a transformers ``GPT2LMHeadModel`` checkpoint folder.

    Args:
        decoder: a GPT-2-shaped ``keras_lm.models.Decoder`` (e.g. ``keras_lm.applications.Gpt2``).
        directory: the folder to write (see the module doc for when it may exist).
        tokenizer: optional ``keras_lm.tokenizers.BytePair``; ``vocab.json``, ``merges.txt`` and
            tokenizer configs are written too.
        overwrite: replace a previous ``to_hf`` export at ``directory``.

    Returns:
        ``directory``.

    Example:
        >>> import tempfile, os, keras_lm
        >>> gpt = keras_lm.applications.Gpt2("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> folder = gpt2_to_hf(gpt, os.path.join(tempfile.mkdtemp(), "gpt2"))
        >>> json.load(open(os.path.join(folder, "config.json")))["architectures"]
        ['GPT2LMHeadModel']
    """
    _check_gpt2(decoder)
    tokenizer = _byte_pair(tokenizer, decoder.vocabulary_size)
    state = gpt2_state(decoder)
    config = gpt2_hf_config(decoder, tokenizer)
    with _staged_directory(directory, overwrite) as staging:
        _write_checkpoint(staging, config, state)
        if tokenizer is not None:
            write_byte_pair_files(tokenizer, staging, model_max_length=decoder.max_sequence_length)
    return directory


# --- tokenizers -------------------------------------------------------------------------------

def _fits(tokenizer, vocabulary_size: int, kind: str) -> None:
    size = int(tokenizer.vocabulary_size())
    if size > vocabulary_size:
        raise ValueError(f"The {kind} tokenizer has {size} tokens but the model embeds only {vocabulary_size}: "
                         "they do not belong together.")


def _word_piece(tokenizer, vocabulary_size: int):
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a BertPreprocessor holds its WordPiece
    if tokenizer is None:
        return None
    if not isinstance(tokenizer, WordPiece):
        raise TypeError("A BERT export takes a keras_lm.tokenizers.WordPiece tokenizer; "
                        f"got {type(tokenizer).__name__}.")
    if tokenizer.suffix_indicator != "##" or not tokenizer.split:
        raise ValueError("transformers' BertTokenizer needs suffix_indicator='##' and split=True; this WordPiece "
                         f"has suffix_indicator={tokenizer.suffix_indicator!r}, split={tokenizer.split!r}.")
    _fits(tokenizer, vocabulary_size, "WordPiece")
    return tokenizer


def _byte_pair(tokenizer, vocabulary_size: int):
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    if tokenizer is None:
        return None
    if not isinstance(tokenizer, BytePair):
        raise TypeError("A GPT-2 export takes a keras_lm.tokenizers.BytePair tokenizer; "
                        f"got {type(tokenizer).__name__}.")
    _fits(tokenizer, vocabulary_size, "BytePair")
    return tokenizer


def _write_json(path: str, value: dict) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2, ensure_ascii=False)
        file.write("\n")


def write_word_piece_files(tokenizer: WordPiece, directory: str, model_max_length: int | None = None) -> None:
    """``vocab.txt``, ``tokenizer_config.json`` (``BertTokenizer``) and ``special_tokens_map.json``."""
    tokenizer.save_vocabulary(os.path.join(directory, "vocab.txt"))
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
               "mask_token": "[MASK]"}
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": bool(tokenizer.lowercase),
        "strip_accents": bool(tokenizer.strip_accents),
        "tokenize_chinese_chars": bool(tokenizer.split_on_cjk),
        "clean_up_tokenization_spaces": False,
        **special,
    }
    if model_max_length is not None:
        config["model_max_length"] = int(model_max_length)
    _write_json(os.path.join(directory, "tokenizer_config.json"), config)
    _write_json(os.path.join(directory, "special_tokens_map.json"), special)


def write_byte_pair_files(tokenizer: BytePair, directory: str, model_max_length: int | None = None) -> None:
    """``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` (``GPT2Tokenizer``), ``special_tokens_map.json``."""
    tokenizer.save_vocabulary(directory)
    end = tokenizer.end_token
    special = {"bos_token": end, "eos_token": end, "unk_token": end}
    if tokenizer.extra_special_tokens:
        special["additional_special_tokens"] = list(tokenizer.extra_special_tokens)
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": bool(tokenizer.add_prefix_space),
        "add_bos_token": False,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        **special,
    }
    if model_max_length is not None:
        config["model_max_length"] = int(model_max_length)
    _write_json(os.path.join(directory, "tokenizer_config.json"), config)
    _write_json(os.path.join(directory, "special_tokens_map.json"), special)


# --- writing ----------------------------------------------------------------------------------

def _write_checkpoint(directory: str, config: dict, state: dict) -> None:
    try:
        from safetensors.numpy import save_file
    except ImportError as error:
        raise ImportError("to_hf needs the `safetensors` package (pip install safetensors).") from error
    _write_json(os.path.join(directory, CONFIG_FILE), config)
    save_file(state, os.path.join(directory, WEIGHTS_FILE), metadata={"format": "pt"})


def _real(path) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _is_previous_export(directory: str) -> bool:
    try:
        with open(os.path.join(directory, MARKER_FILE), encoding="utf-8") as file:
            return file.read().strip() == EXPORT_KIND
    except (OSError, UnicodeDecodeError):
        return False


def check_hf_target(directory, overwrite: bool = False) -> str:
    """The absolute path of ``directory`` if ``to_hf`` may write there; FileExistsError naming why otherwise."""
    if directory is None or not os.fspath(directory).strip():
        raise FileExistsError("to_hf needs a folder name, e.g. 'exports/bert-hf'; got ''.")
    target = _real(directory)
    cwd = _real(os.getcwd())
    if target in (_real(os.sep), _real("~")) or cwd == target or cwd.startswith(target.rstrip(os.sep) + os.sep):
        raise FileExistsError(f"Refusing to write to '{directory}': it is the filesystem root, your home folder "
                              "or holds the current working folder; pass a new folder.")
    path = os.path.abspath(os.fspath(directory))
    if not os.path.lexists(path):
        return path
    if os.path.islink(path) or not os.path.isdir(path):
        raise FileExistsError(f"Refusing to write to '{path}': it exists and is not a folder.")
    if not os.listdir(path):
        return path
    if not overwrite:
        raise FileExistsError(f"'{path}' already exists and is not empty; pass overwrite=True to replace a "
                              "previous to_hf export there.")
    if not _is_previous_export(path):
        raise FileExistsError(
            f"Refusing to overwrite '{path}': it is not a previous to_hf export (no '{MARKER_FILE}' file reading "
            f"'{EXPORT_KIND}'), and nothing else is ever replaced; remove it yourself or pass another folder."
        )
    return path


@contextlib.contextmanager
def _staged_directory(directory, overwrite: bool):
    """Yields a fresh folder next to ``directory`` that replaces it only when the block succeeds."""
    path = check_hf_target(directory, overwrite)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        yield staging
        with open(os.path.join(staging, MARKER_FILE), "w", encoding="utf-8") as file:
            file.write(EXPORT_KIND + "\n")
        check_hf_target(directory, overwrite)  # still safe to replace after the work
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if os.path.exists(path):
        backup = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old.", dir=parent)
        os.rmdir(backup)
        os.rename(path, backup)
    os.rename(staging, path)
    if backup:
        shutil.rmtree(backup, ignore_errors=True)
