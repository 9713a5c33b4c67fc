"""Causal language modelling on a decoder backbone: next-token logits for fit, and fast generation.

Generation runs the whole decoding loop (prompt prefill, then one token per step through the KV
cache) as one ``tf.function``, XLA-compiled by default (see ``default_jit_compile``).
To avoid retracing and recompiling on every call, the batch size, the longest prompt and the
total length (longest prompt + new tokens) are padded to buckets (powers of two; at least 16
positions, capped at the context length), and the prompt lengths, the number of new tokens and
the stop tokens are tensors, not constants: calls whose shapes fall in the same buckets reuse one
traced function.
"""
from __future__ import annotations

import math

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from keras_lm.tasks.quantized_decoding import DecodingWeights, check_weight_dtype
from keras_lm.tasks.task import check_tokenizer_fits, tokenizer_vocabulary_size
from keras_lm.training.saving import RecompiledOnLoad
from keras_lm.values import is_integer, is_number

SAMPLER_ALIASES = {"temperature": "random"}
_MIN_BUCKET = 16


def _bucket(n: int, minimum: int = 1) -> int:
    """The smallest power of two >= max(n, minimum)."""
    n = max(int(n), minimum, 1)
    return 1 << (n - 1).bit_length()


def default_jit_compile(batch_size: int = 1, weight_dtype: str = "float32") -> bool:
    """Whether generation compiles with XLA by default, per batch size and weight precision.

    float32 and int8: XLA at every batch size. float32 measured on a shared 2-core CPU
    (GPT-2-style 6L/512/8H, vocabulary 50257, 8-token prompt, 64 new tokens, best of 5
    interleaved runs): batch 1 XLA 70.9 vs plain graph 72.0 tokens/s (a tie), batch 8 XLA 216.7
    vs 172.5. int8 without XLA runs TensorFlow's Eigen int8 matmul (oneDNN's is not used): 2-4x
    slower than with XLA. bfloat16: XLA at batch 1, the plain graph (oneDNN bfloat16 matmuls)
    above it, where XLA's CPU bfloat16 dot is slow. Figures in ``default_weight_dtype``. GPUs and
    TPUs gain more from XLA. Pass ``jit_compile`` to ``generate`` to choose yourself.
    """
    return not (weight_dtype == "bfloat16" and batch_size > 1)


def default_weight_dtype(batch_size: int = 1) -> str:
    """The precision generation reads the weights in by default: float32 at every batch size.

    Low precision is opt-in (``generate(..., weight_dtype="bfloat16" | "int8")``): it is not
    reliably faster at batch 1 and its greedy tokens drift from float32's.

    Measured on "Intel(R) Xeon(R) Processor, 2 cores, avx2 avx512f avx512_bf16 (no amx_tile
    amx_bf16), 24 GiB, no GPU; TensorFlow 2.21.0, Keras 3.15.1" (``machine_description()``),
    shared with other TensorFlow processes; GPT-2-style 6L/H512/A8, vocabulary 50257, 32-token
    prompt, 128 new tokens, greedy, random weights; tokens/s of the best of 3-5 interleaved rounds
    in one process, three separate runs (default ``jit_compile`` each):

    - batch 1: float32 (XLA) 74.5 / 100.5 / 71.8; bfloat16 (XLA) 115.6 / 77.0 / 72.3;
      int8 (XLA) 80.6 / 64.7 / 58.9.
    - batch 8: float32 (XLA) 421 / 301 / 415; bfloat16 (no XLA) 344 / 249 / 344;
      int8 (XLA) 610 / 387 / 571.

    keras-hub in the same rounds: 61.7 / 57.2 tok/s at batch 1, 219 / 160 at batch 8. bfloat16
    at batch 1 ties float32 (1.55x, 0.77x, 1.01x: noise), and XLA's CPU bfloat16 dot is slow at
    batch 8 (258 vs oneDNN's 344). int8 (XLA's int8 dot) is 1.3-1.45x float32 at batch 8 in
    every run, but slower at batch 1.

    Accuracy (Shakespeare, GPT-2 BPE ids, same shape; logits of a 4x256-token prefill vs float32):
    with weights drawn at std 0.02, max |logit difference| bfloat16 0.029, int8 0.078 (1.2% and
    3.2% of the largest |logit|, 2.41), the float32 argmax kept at 95.5% / 93.3% of positions,
    greedy 128 new tokens identical 63% / 48%. The benchmark's std-0.2 random weights amplify
    every rounding (max |logit difference| 8.5 / 11.8 of 27): greedy tokens differ from the
    first or second step. float32 stays the default at every batch size.
    """
    return "float32"


def _tokenizer_of(preprocessor_or_tokenizer):
    return getattr(preprocessor_or_tokenizer, "tokenizer", preprocessor_or_tokenizer)


def _to_lists(values) -> list:
    """Tokenizer outputs (ragged or dense tensors, arrays or lists) as Python lists."""
    if isinstance(values, tf.RaggedTensor):
        return values.to_list()
    if hasattr(values, "numpy"):
        values = values.numpy()
    if isinstance(values, np.ndarray):
        return values.tolist()
    return list(values)


def _is_string(x) -> bool:
    return isinstance(x, (str, bytes))


def generation_vocabulary_size(backbone, tokenizer) -> int:
    """Ids generation may produce: the tokenizer's vocabulary when it is smaller than the backbone's."""
    size = tokenizer_vocabulary_size(tokenizer)
    vocabulary = int(backbone.vocabulary_size)
    return vocabulary if size is None else min(size, vocabulary)


def check_sampler(sampler, vocabulary_size: int) -> None:
    """One clear ValueError for a keras-hub sampler whose parameters cannot sample.

    ``temperature`` must be finite and > 0 (use the greedy sampler for temperature 0), ``k`` an
    integer in ``[1, vocabulary_size]``, ``p`` in ``(0, 1]``, ``num_beams`` in ``[1, vocabulary_size]``
    and ``seed`` None or an integer.
    """
    name = type(sampler).__name__
    temperature = getattr(sampler, "temperature", 1.0)
    if not is_number(temperature) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(
            f"{name}: temperature must be a finite number > 0, got {temperature!r} "
            "(for temperature 0 use sampler='greedy')."
        )
    k = getattr(sampler, "k", None)
    if isinstance(sampler, keras_hub.samplers.TopKSampler) or k is not None:
        if not is_integer(k) or not 1 <= k <= vocabulary_size:
            raise ValueError(f"{name}: k must be an integer in [1, {vocabulary_size}] (the vocabulary), got {k!r}.")
    if isinstance(sampler, keras_hub.samplers.TopPSampler):
        p = getattr(sampler, "p", None)
        if not is_number(p) or not 0 < p <= 1:
            raise ValueError(f"{name}: p must be a number in (0, 1], got {p!r}.")
    if isinstance(sampler, keras_hub.samplers.BeamSampler):
        beams = sampler.num_beams
        if not is_integer(beams) or not 1 <= beams <= vocabulary_size:
            raise ValueError(f"{name}: num_beams must be an integer in [1, {vocabulary_size}], got {beams!r}.")
    seed = getattr(sampler, "seed", None)
    if seed is not None and not is_integer(seed):
        raise ValueError(f"{name}: seed must be None or an integer, got {seed!r}.")


def zero_cache(backbone, batch_size, max_length) -> tuple:
    """The backbone's zero KV cache; ``batch_size`` and ``max_length`` may be scalar tensors."""
    if isinstance(batch_size, (int, np.integer)) and isinstance(max_length, (int, np.integer)):
        return backbone.init_cache(int(batch_size), int(max_length))
    dtype = backbone.transformer_layers[0].compute_dtype
    return tuple(
        ops.zeros(block.self_attention.cache_shape(batch_size, max_length), dtype=dtype)
        for block in backbone.transformer_layers
    )


def prefilled_cache(backbone, token_ids, prefill_length):
    """A KV cache holding the first ``prefill_length`` positions of ``token_ids`` ``[B, total]``."""
    batch, total = token_ids.shape
    batch = ops.shape(token_ids)[0] if batch is None else batch
    total = ops.shape(token_ids)[1] if total is None else total
    cache = zero_cache(backbone, batch, total)
    _, _, cache = backbone.call_with_cache(token_ids[:, :prefill_length], cache, 0)
    return cache


def restrict_to_vocabulary(logits, vocabulary_size: int | None):
    """``logits [B, V]`` with ``-inf`` for ids ``>= vocabulary_size`` (None or >= V: unchanged).

    A backbone may have more rows than its tokenizer has tokens (a vocabulary padded to a round
    size); generation never picks those ids, which no tokenizer could turn back into text.
    """
    size = logits.shape[-1]
    if vocabulary_size is None or size is None or vocabulary_size >= size:
        return logits
    allowed = ops.arange(size) < vocabulary_size
    return ops.where(allowed[None, :], logits, ops.full_like(logits, float("-inf")))


def next_logits(backbone, tokens, cache, index, vocabulary_size: int | None = None):
    """Logits ``[B, V]`` for position ``index`` from the token at ``index - 1`` (and the new cache).

    Ids ``>= vocabulary_size`` get ``-inf`` (see ``restrict_to_vocabulary``).
    """
    batch = ops.shape(tokens)[0]
    previous = ops.slice(tokens, (0, index - 1), (batch, 1))
    logits, hidden, cache = backbone.call_with_cache(previous, cache, index - 1)
    return restrict_to_vocabulary(logits[:, 0, :], vocabulary_size), hidden[:, 0, :], cache


def sampler_next_token(sampler):
    """``next_token(logits, index)`` for ``decode_tokens`` from a keras-hub sampler."""

    def next_token(logits, index):
        return sampler.get_next_token(sampler.compute_probabilities(logits))

    return next_token


def decode_tokens(backbone, next_token, token_ids, prompt_mask, start_index, end_index, stop_token_ids,
                  prefill_length, vocabulary_size: int | None = None):
    """The decoding loop shared by ``CausalLM.generate`` and the generation serving export.

    Positions ``start_index … end_index - 1`` of ``token_ids`` ``[B, total]`` are filled one at a
    time through the KV cache: prompt positions (``prompt_mask`` True) keep their token, the others
    get ``next_token(logits [B, V] float32, index)``. The loop stops early once every row has
    produced one of ``stop_token_ids`` (``[S]`` int32, -1 for unused slots). Shapes may be dynamic;
    the loop is a ``tf.while_loop`` usable with or without XLA. With ``vocabulary_size`` (the
    tokenizer's, when smaller than the backbone's), larger ids are never generated.

    Returns:
        int32 ``[B, total]`` tokens (positions after a row's stop token hold unused tokens).
    """
    cache = prefilled_cache(backbone, token_ids, prefill_length)
    batch = ops.shape(token_ids)[0]
    done = ops.zeros((batch,), "bool")

    def cond(tokens, cache, index, done):
        return ops.logical_and(index < end_index, ops.logical_not(ops.all(done)))

    def body(tokens, cache, index, done):
        logits, _, cache = next_logits(backbone, tokens, cache, index, vocabulary_size)
        token = ops.cast(next_token(logits, index), "int32")
        in_prompt = ops.slice(prompt_mask, (0, index), (batch, 1))[:, 0]
        token = ops.where(in_prompt, ops.slice(tokens, (0, index), (batch, 1))[:, 0], token)
        tokens = ops.slice_update(tokens, (0, index), token[:, None])
        is_stop = ops.any(ops.equal(token[:, None], stop_token_ids[None, :]), axis=-1)
        done = ops.logical_or(done, ops.logical_and(is_stop, ops.logical_not(in_prompt)))
        return tokens, cache, index + 1, done

    maximum = token_ids.shape[1] if token_ids.shape[1] is not None else ops.shape(token_ids)[1]
    tokens, _, _, _ = ops.while_loop(cond, body, (token_ids, cache, start_index, done), maximum_iterations=maximum)
    return tokens


class _GenerationState:
    """Traced generation functions and resolved samplers of one CausalLM (kept out of checkpoints)."""

    def __init__(self):
        self.functions = {}
        self.samplers = {}
        self.weights = None  # a DecodingWeights, made on the first low-precision call


@keras.saving.register_keras_serializable(package="keras_lm")
class CausalLM(RecompiledOnLoad, keras.Model):
    """A decoder backbone with its language-model head, trainable with ``fit`` and able to ``generate``.

    ``call(features)`` maps ``{"token_ids", "padding_mask"}`` (or a bare ``token_ids`` tensor) to
    float32 next-token logits ``[batch, length, vocabulary_size]``; ``compile()`` defaults to sparse
    cross-entropy from logits, weighted by the dataset's ``sample_weight`` (use it to mask padding
    or prompt tokens).

    Args:
        backbone: a ``keras_lm.models.Decoder`` (e.g. ``keras_lm.applications.Gpt2("tiny")``).
        preprocessor_or_tokenizer: optional; a keras-hub-style tokenizer (``tokenizer(strings)`` ->
            ids, ``tokenizer.detokenize(ids)`` -> strings) or a preprocessor with a ``.tokenizer``;
            needed to generate from strings.
        start_token_id: token prepended to empty prompts; defaults to the tokenizer's
            ``start_token_id`` when it has one. Without it an empty prompt is an error.

    The tokenizer may have fewer tokens than the backbone (a vocabulary padded to a round size):
    generation then never produces the extra ids, which no text could hold. A tokenizer with
    more tokens than the backbone is refused (a ``ValueError`` at construction).

    Example:
        >>> import keras_hub, keras_lm
        >>> backbone = keras_lm.applications.Gpt2("tiny", vocabulary_size=256, max_sequence_length=64)
        >>> lm = CausalLM(backbone, keras_hub.tokenizers.ByteTokenizer())
        >>> len(lm.generate([[1, 2, 3]], max_new_tokens=4)[0])
        7
        >>> isinstance(lm.generate("To be", max_new_tokens=3), str)
        True
    """

    def __init__(self, backbone, preprocessor_or_tokenizer=None, start_token_id: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not hasattr(backbone, "call_with_cache") or not hasattr(backbone, "logits"):
            raise TypeError(
                f"CausalLM needs a keras_lm decoder backbone (with `logits` and `call_with_cache`), "
                f"got {type(backbone).__name__}."
            )
        check_tokenizer_fits(backbone, _tokenizer_of(preprocessor_or_tokenizer))
        self.backbone = backbone
        self.preprocessor = preprocessor_or_tokenizer
        self.start_token_id = start_token_id
        self._generation = _GenerationState()  # a plain object: not tracked, not saved
        self.generate_trace_count = 0  # number of times a generation function was traced
        self.built = True  # the backbone is built; the head has no weights of its own

    @classmethod
    def from_hf(cls, directory: str, dtype=None) -> "CausalLM":
        """A causal LM with the weights and the tokenizer of a Hugging Face checkpoint directory.

        ``config.json``'s ``model_type`` picks the backbone (``gpt2``: ``Gpt2.from_hf``, ``llama``:
        ``Llama.from_hf``); the tokenizer is ``BytePair.from_hf`` of the same directory (a
        byte-level BPE ``tokenizer.json``, or ``vocab.json`` + ``merges.txt``). Generation stops at
        the tokenizer's ``eos_token``; an empty prompt starts from the ``bos_token``. String prompts
        are tokenized without special tokens (``add_special_tokens=False``): for checkpoints
        trained with a BOS token in front, pass token ids that start with it.

        Args:
            directory: the checkpoint directory.
            dtype: dtype policy of the backbone (e.g. ``"mixed_bfloat16"``).

        Raises:
            FileNotFoundError: no ``config.json``, no weights or no tokenizer files.
            ValueError: a ``model_type`` other than gpt2 or llama, or a tokenizer BytePair cannot
                reproduce exactly.

        Example:
            >>> lm = CausalLM.from_hf("path/to/gpt2")  # doctest: +SKIP
            >>> lm.generate("The meaning of life is", max_new_tokens=8, sampler="greedy")  # doctest: +SKIP
        """
        import json
        import os

        from keras_lm.applications import Gpt2, Llama
        from keras_lm.tokenizers import BytePair
        from keras_lm.tokenizers.hf_files import TOKENIZER_CONFIG_FILE, read_json, token_content

        directory = os.fspath(directory)
        config_path = os.path.join(directory, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"CausalLM.from_hf: no config.json in '{directory}': not a transformers checkpoint.")
        with open(config_path, encoding="utf-8") as file:
            config = json.load(file)
        families = {"gpt2": Gpt2, "llama": Llama}
        model_type = config.get("model_type")
        if model_type not in families:
            raise ValueError(
                f"CausalLM.from_hf: '{directory}' holds a model_type={model_type!r} checkpoint; supported: "
                f"{', '.join(families)}."
            )
        tokenizer = BytePair.from_hf(directory)  # before the weights: a bad tokenizer fails fast
        backbone = families[model_type].from_hf(directory, dtype=dtype)
        tokenizer_config_path = os.path.join(directory, TOKENIZER_CONFIG_FILE)
        tokenizer_config = read_json(tokenizer_config_path) if os.path.isfile(tokenizer_config_path) else {}
        bos = token_content(tokenizer_config.get("bos_token"))
        start = tokenizer.vocabulary.get(bos) if bos is not None else None
        if start is None and config.get("bos_token_id") is not None:
            start = int(config["bos_token_id"])
        return cls(backbone, tokenizer, start_token_id=start)

    @classmethod
    def from_gguf(cls, path: str, dtype=None) -> "CausalLM":
        """A causal LM with the weights and the tokenizer of a llama.cpp GGUF file (Llama architecture).

        The weights are dequantized to float32 (``Llama.from_gguf``); the tokenizer is the
        byte-level BPE its metadata describes (``keras_lm.applications.gguf.gguf_byte_pair``).
        Generation stops at ``tokenizer.ggml.eos_token_id``; an empty prompt starts from the BOS token.

        Args:
            path: a ``.gguf`` file, or a folder holding exactly one.
            dtype: dtype policy of the backbone.

        Example:
            >>> lm = CausalLM.from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
            >>> lm.generate("The capital of France is", max_new_tokens=8)  # doctest: +SKIP
        """
        from keras_lm.applications import Llama
        from keras_lm.applications.gguf import find_gguf_file, read_gguf_llama_and_tokenizer
        from keras_lm.tokenizers import BytePair

        config, state, options = read_gguf_llama_and_tokenizer(find_gguf_file(path))  # the file is parsed once
        start = options.pop("bos_token_id")
        tokenizer = BytePair(**options)
        backbone = Llama.from_hf(state, config=config, dtype=dtype)
        return cls(backbone, tokenizer, start_token_id=start)

    @classmethod
    def from_keras_file(cls, path: str, preprocessor_or_tokenizer=None, **kwargs) -> "CausalLM":
        """Starts from a ``.keras`` file holding a decoder backbone or a model with a ``.backbone``."""
        from keras_lm.tasks.classifier import load_backbone_file

        return cls(load_backbone_file(path), preprocessor_or_tokenizer, **kwargs)

    # --- training -----------------------------------------------------------------------------
    def call(self, features, training=None):
        if not isinstance(features, dict):
            token_ids = ops.convert_to_tensor(features)
            features = {"token_ids": token_ids, "padding_mask": ops.ones_like(token_ids, dtype="int32")}
        hidden = self.backbone(
            {"token_ids": features["token_ids"], "padding_mask": features["padding_mask"]}, training=training
        )["sequence_output"]
        return self.backbone.logits(hidden)

    def compile(self, optimizer="adam", loss="auto", weighted_metrics="auto", **kwargs):
        """Defaults: sparse categorical cross-entropy from logits and a weighted token accuracy."""
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if weighted_metrics == "auto":
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)

    def fine_tuning_dataset(self, pairs, sequence_length: int | None = None, batch_size: int = 16,
                            mask_prompt: bool = True, **kwargs):
        """``fit``-ready batches from ``(prompt, completion)`` pairs; see ``prompt_completion_dataset``.

        With ``mask_prompt=True`` the loss covers the completion (and its end token) only.
        ``sequence_length`` defaults to the backbone's ``max_sequence_length``.
        """
        from keras_lm.tasks.prompt_completion import prompt_completion_dataset

        if self.tokenizer is None:
            raise ValueError("fine_tuning_dataset needs a tokenizer: CausalLM(backbone, tokenizer).")
        limit = self.backbone.max_sequence_length
        sequence_length = int(sequence_length or limit)
        if sequence_length > limit:
            raise ValueError(f"sequence_length={sequence_length} exceeds the backbone's max_sequence_length={limit}.")
        return prompt_completion_dataset(pairs, self.tokenizer, sequence_length, batch_size=batch_size,
                                         mask_prompt=mask_prompt, **kwargs)

    # --- generation ---------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return None if self.preprocessor is None else _tokenizer_of(self.preprocessor)

    def _resolve_sampler(self, sampler):
        if isinstance(sampler, keras_hub.samplers.Sampler):
            chosen = sampler
        elif isinstance(sampler, str):
            name = SAMPLER_ALIASES.get(sampler, sampler)
            if name not in self._generation.samplers:
                try:
                    resolved = keras_hub.samplers.get(name)
                except (ValueError, TypeError):
                    resolved = None
                if not isinstance(resolved, keras_hub.samplers.Sampler):
                    raise ValueError(
                        f"Unknown sampler {sampler!r}; use greedy, temperature, top_k, top_p, beam or a "
                        "keras_hub.samplers.Sampler instance."
                    )
                self._generation.samplers[name] = resolved
            chosen = self._generation.samplers[name]
        else:
            raise TypeError(f"`sampler` must be a name or a keras_hub.samplers.Sampler, got {type(sampler).__name__}.")
        if isinstance(chosen, keras_hub.samplers.ContrastiveSampler):
            raise ValueError("The contrastive sampler is not supported by CausalLM.generate.")
        check_sampler(chosen, self._generation_vocabulary_size())
        return chosen

    def _generation_vocabulary_size(self) -> int:
        return generation_vocabulary_size(self.backbone, self.tokenizer)

    def _encode_prompts(self, prompts):
        """``(list of token-id lists, kind)``; kind tells ``generate`` how to format the answer."""
        if isinstance(prompts, dict):
            if "token_ids" not in prompts:
                raise ValueError("A dict of prompts needs 'token_ids' (and optionally 'padding_mask').")
            token_ids = np.asarray(prompts["token_ids"])
            if token_ids.ndim != 2:
                raise ValueError(f"prompts['token_ids'] must be [batch, length], got shape {token_ids.shape}.")
            mask = np.asarray(prompts.get("padding_mask", np.ones_like(token_ids))) != 0
            return [row[keep].tolist() for row, keep in zip(token_ids, mask)], "dict"
        if isinstance(prompts, tf.Tensor):
            prompts = prompts.numpy()
        if _is_string(prompts):
            return self._tokenize([prompts]), "string"
        if isinstance(prompts, np.ndarray):
            if prompts.dtype.kind in "OSU":
                return self._tokenize(list(prompts.reshape(-1))), "strings"
            if prompts.ndim == 1:
                return [prompts.tolist()], "ids"
            if prompts.ndim == 2:
                return prompts.tolist(), "batch_ids"
            raise ValueError(f"Token-id prompts must be 1-D or 2-D, got shape {prompts.shape}.")
        if isinstance(prompts, (list, tuple)):
            if len(prompts) == 0:
                raise ValueError("`prompts` is an empty batch.")
            if all(_is_string(p) for p in prompts):
                return self._tokenize(list(prompts)), "strings"
            if all(isinstance(p, (int, np.integer)) for p in prompts):
                return [[int(p) for p in prompts]], "ids"
            rows = [np.asarray(p).reshape(-1).tolist() for p in prompts]
            if all(all(isinstance(t, int) for t in row) for row in rows):
                return rows, "batch_ids"
        raise TypeError(
            "`prompts` must be a string, a list of strings, token ids (a list, a list of lists or an "
            "array) or a dict with 'token_ids' and 'padding_mask'."
        )

    def _tokenize(self, texts):
        if self.tokenizer is None:
            raise ValueError("Generating from strings needs a tokenizer: CausalLM(backbone, tokenizer).")
        texts = [t if isinstance(t, bytes) else str(t).encode("utf-8") for t in texts]
        return [[int(t) for t in row] for row in _to_lists(self.tokenizer(tf.constant(texts, dtype=tf.string)))]

    def _detokenize(self, rows):
        texts = _to_lists(self.tokenizer.detokenize(tf.ragged.constant(rows, dtype=tf.int32)))
        return [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in texts]

    def _start_token(self):
        if self.start_token_id is not None:
            return int(self.start_token_id)
        token = getattr(self.tokenizer, "start_token_id", None) if self.tokenizer is not None else None
        return None if token is None else int(token)

    def _prepare(self, rows, max_new_tokens):
        context = self.backbone.max_sequence_length
        if not isinstance(max_new_tokens, (int, np.integer)) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be a positive integer, got {max_new_tokens!r}.")
        if max_new_tokens >= context:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the context of "
                f"{context} tokens."
            )
        vocabulary = self.backbone.vocabulary_size
        prepared = []
        for row in rows:
            if not row:
                start = self._start_token()
                if start is None:
                    raise ValueError(
                        "Empty prompt: there is no token to condition on. Pass `start_token_id` to "
                        "CausalLM (e.g. the end-of-text token) or give at least one token."
                    )
                row = [start]
            bad = [t for t in row if not 0 <= t < vocabulary]
            if bad:
                raise ValueError(f"Token id {bad[0]} is outside the vocabulary [0, {vocabulary}).")
            # Prompts longer than the context left over for new tokens keep their most recent tokens.
            prepared.append(list(row[-(context - max_new_tokens):]))
        return prepared

    def generate(self, prompts, max_new_tokens: int = 32, sampler="greedy", stop_token_ids=None,
                 jit_compile: bool | None = None, weight_dtype: str | None = None):
        """Continues each prompt by up to ``max_new_tokens`` tokens.

        Args:
            prompts: a string or a list of strings (needs a tokenizer); token ids as a list, a
                list of lists (prompts of different lengths) or a 2-D array; or a dict with
                ``token_ids`` and ``padding_mask`` (left- or right-padded; padding is dropped).
            max_new_tokens: tokens to add to every prompt (fewer if a stop token comes first).
            sampler: ``"greedy"``, ``"temperature"`` (= ``"random"``), ``"top_k"``, ``"top_p"``,
                ``"beam"`` or a ``keras_hub.samplers.Sampler`` (e.g. ``TopKSampler(k=5, seed=1)``).
                Its parameters are checked first (``check_sampler``): a finite temperature > 0,
                ``k`` and ``num_beams`` in ``[1, vocabulary]``, ``p`` in ``(0, 1]``, an integer seed.
            stop_token_ids: token ids ending a row's generation (kept in id outputs, dropped from
                text outputs). Defaults to the tokenizer's ``end_token_id`` when generating from text.
            jit_compile: compile the decoding loop with XLA; None uses ``default_jit_compile``
                for the batch size and weight dtype.
            weight_dtype: the precision decoding reads the weights in: ``"float32"`` (the
                backbone as it is), ``"bfloat16"`` (a bfloat16 copy computing in bfloat16) or
                ``"int8"`` (a copy quantized with Keras' int8 ``quantize``; per-channel scales,
                the tied output projection included); see ``keras_lm.tasks.quantized_decoding``.
                None picks ``default_weight_dtype(batch_size)``. Copies are made once and
                refreshed when the backbone's weights change; the backbone is never modified.

        Returns:
            The same kind as ``prompts``: a string / list of strings (prompt + completion), a
            list of ids / list of lists (prompt + new tokens), or a dict with right-padded
            ``token_ids`` and ``padding_mask``.

        A prompt longer than ``max_sequence_length - max_new_tokens`` is truncated from the left
        (its most recent tokens are kept); an empty prompt starts from ``start_token_id``.
        Beam search compiles one function per exact total length (its search horizon is the
        buffer length); the other samplers reuse one function per shape bucket.
        """
        sampler = self._resolve_sampler(sampler)
        rows, kind = self._encode_prompts(prompts)
        if stop_token_ids is None and kind in ("string", "strings"):
            end = getattr(self.tokenizer, "end_token_id", None)
            stop_token_ids = [] if end is None else [int(end)]
        stop_token_ids = [int(t) for t in (stop_token_ids or [])]
        rows = self._prepare(rows, max_new_tokens)
        weight_dtype = default_weight_dtype(len(rows)) if weight_dtype is None else check_weight_dtype(weight_dtype)
        if jit_compile is None:
            jit_compile = default_jit_compile(len(rows), weight_dtype)
        generated = self._generate_ids(rows, int(max_new_tokens), sampler, stop_token_ids, bool(jit_compile),
                                       weight_dtype)
        return self._format(generated, rows, kind, stop_token_ids)

    def _generate_ids(self, rows, max_new_tokens, sampler, stop_token_ids, jit_compile, weight_dtype="float32"):
        lengths = np.array([len(r) for r in rows], "int32")
        longest, shortest = int(lengths.max()), int(lengths.min())
        needed = longest + max_new_tokens
        context = self.backbone.max_sequence_length
        beam = isinstance(sampler, keras_hub.samplers.BeamSampler)
        total = needed if beam else min(_bucket(needed, _MIN_BUCKET), context)
        prefill = min(_bucket(longest, _MIN_BUCKET), total)
        batch = len(rows) if beam else _bucket(len(rows))
        # Extra rows (batch bucket) repeat the first prompt; their output is dropped.
        padded_rows = rows + [rows[0]] * (batch - len(rows))
        token_ids = np.zeros((batch, total), "int32")
        prompt_mask = np.zeros((batch, total), bool)
        for i, row in enumerate(padded_rows):
            token_ids[i, :len(row)] = row
            prompt_mask[i, :len(row)] = True
        stops = stop_token_ids + [-1] * (_bucket(len(stop_token_ids), 4) - len(stop_token_ids))
        function = self._generate_function(sampler, jit_compile, beam, self._decoding_backbone(weight_dtype))
        output = function(
            tf.constant(token_ids), tf.constant(prompt_mask), tf.constant(shortest, tf.int32),
            tf.constant(needed, tf.int32), tf.constant(stops, tf.int32), prefill,
        )
        output = np.asarray(output)[: len(rows)]
        return [output[i, : lengths[i] + max_new_tokens].tolist() for i in range(len(rows))]

    def _decoding_backbone(self, weight_dtype):
        """The backbone itself for float32, else its low-precision copy (kept in step with it)."""
        if weight_dtype == "float32":
            return self.backbone
        if self._generation.weights is None or self._generation.weights.backbone is not self.backbone:
            self._generation.weights = DecodingWeights(self.backbone)
        return self._generation.weights.get(weight_dtype)

    def _generate_function(self, sampler, jit_compile, beam, backbone=None):
        backbone = self.backbone if backbone is None else backbone
        key = (id(sampler), jit_compile, self._generation_vocabulary_size(), id(backbone))
        if key not in self._generation.functions:
            body = self._beam_search if beam else self._sample_loop

            def generate_tokens(token_ids, prompt_mask, start_index, end_index, stop_token_ids, prefill_length):
                self.generate_trace_count += 1
                return body(sampler, token_ids, prompt_mask, start_index, end_index, stop_token_ids, prefill_length,
                            backbone)

            self._generation.functions[key] = (
                tf.function(generate_tokens, jit_compile=jit_compile, reduce_retracing=False), sampler, backbone
            )
        return self._generation.functions[key][0]

    def _sample_loop(self, sampler, token_ids, prompt_mask, start_index, end_index, stop_token_ids, prefill_length,
                     backbone):
        return decode_tokens(backbone, sampler_next_token(sampler), token_ids, prompt_mask, start_index,
                             end_index, stop_token_ids, prefill_length, self._generation_vocabulary_size())

    def _beam_search(self, sampler, token_ids, prompt_mask, start_index, end_index, stop_token_ids,
                     prefill_length, backbone):
        cache = prefilled_cache(backbone, token_ids, prefill_length)
        vocabulary_size = self._generation_vocabulary_size()

        def next_step(tokens, cache, index):
            """Logits ``[B, V]`` for position ``index`` from the token at ``index - 1``."""
            return next_logits(backbone, tokens, cache, index, vocabulary_size)

        return sampler(next_step, token_ids, cache=cache, index=start_index, mask=prompt_mask,
                       stop_token_ids=None, model=self)

    def _format(self, generated, rows, kind, stop_token_ids):
        stops = set(stop_token_ids)
        cut = []
        for prompt, sequence in zip(rows, generated):
            end = len(sequence)
            for position in range(len(prompt), len(sequence)):
                if sequence[position] in stops:
                    end = position + 1
                    break
            cut.append(sequence[:end])
        if kind == "ids":
            return cut[0]
        if kind == "batch_ids":
            return cut
        if kind == "dict":
            width = max(len(s) for s in cut)
            token_ids = np.zeros((len(cut), width), "int32")
            padding_mask = np.zeros((len(cut), width), "int32")
            for i, sequence in enumerate(cut):
                token_ids[i, : len(sequence)] = sequence
                padding_mask[i, : len(sequence)] = 1
            return {"token_ids": token_ids, "padding_mask": padding_mask}
        texts = self._detokenize([[t for t in s if t not in stops] for s in cut])
        return texts[0] if kind == "string" else texts

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessor_or_tokenizer": keras.saving.serialize_keras_object(self.preprocessor)
            if self.preprocessor is not None
            else None,
            "start_token_id": self.start_token_id,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("preprocessor_or_tokenizer") is not None:
            config["preprocessor_or_tokenizer"] = keras.saving.deserialize_keras_object(
                config["preprocessor_or_tokenizer"]
            )
        return cls(**config)
