"""GPT-style workflows: a byte-level BPE, causal-LM pretraining with packing, generation.

Their keyword arguments are the keys of the steps of ``applications/gpt_pretrain.yaml``. Files
under the output directory:

    OUTPUT/byte_pair/vocab.json, merges.txt   the BytePair tokenizer (train_byte_pair)
    OUTPUT/causal_lm.keras                     the pretrained CausalLM (pretrain_causal_lm)
    OUTPUT/serving/1/                          generation serving SavedModel (pretrain_causal_lm)
    OUTPUT/metrics.json                        perplexity before/after, generated samples
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time

import keras

import keras_lm
from keras_lm.recipes.progress import fit_verbosity, progress_callbacks
from keras_lm.recipes.workflows import _LossHistory, _stage, _update_metrics
from keras_lm.values import is_integer, is_number

TOKENIZER_DIR = "byte_pair"
MODEL_FILE = "causal_lm.keras"
SERVING_DIR = os.path.join("serving", "1")
ARCHITECTURES = ("gpt2", "llama")


def train_byte_pair(
    output: str,
    corpus: str = "shakespeare",
    vocabulary_size: int = 4000,
    gpt2: bool = False,
) -> str:
    """Trains a byte-level BPE on the corpus' train split (or, with ``gpt2``, takes GPT-2's files).

    Writes OUTPUT/byte_pair/vocab.json and merges.txt; returns that directory.
    """
    start = time.time()
    if gpt2:
        _stage("using GPT-2's byte-level BPE (50,257 tokens)")
        tokenizer = keras_lm.tokenizers.BytePair.gpt2()
    else:
        _stage(f"training a {vocabulary_size}-token byte-level BPE on '{corpus}' (train split)")
        tokenizer = keras_lm.tokenizers.BytePair.train(
            keras_lm.data.load(corpus, split="train"), vocabulary_size=vocabulary_size
        )
    directory = os.path.join(output, TOKENIZER_DIR)
    tokenizer.save_vocabulary(directory)
    _update_metrics(
        output,
        "byte_pair",
        {"size": int(tokenizer.vocabulary_size()), "gpt2": bool(gpt2), "seconds": round(time.time() - start, 1)},
    )
    return directory


def _backbone(architecture: str, size: str, vocabulary_size: int, sequence_length: int, dtype):
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; use one of {', '.join(ARCHITECTURES)}.")
    constructor = keras_lm.applications.Gpt2 if architecture == "gpt2" else keras_lm.applications.Llama
    return constructor(size, vocabulary_size=vocabulary_size, max_sequence_length=sequence_length, dtype=dtype)


def _perplexity(metrics: dict) -> float:
    return float(metrics.get("perplexity", math.exp(float(metrics["loss"]))))


def pretrain_causal_lm(
    output: str,
    corpus: str = "shakespeare",
    architecture: str = "gpt2",
    size: str = "tiny",
    tokenizer: str | None = None,
    sequence_length: int = 128,
    batch_size: int = 16,
    steps: int = 200,
    learning_rate: float = 1e-3,
    warmup: int = 20,
    eval_batches: int = 10,
    reset_attention: bool = False,
    seed: int = 0,
    mixed_precision: str | None = "auto",
) -> str:
    """Pretrains ``Gpt2(size)`` or ``Llama(size)`` on packed rows of the corpus for ``steps`` steps.

    Held-out perplexity (the validation split) before and after goes to metrics.json; writes
    OUTPUT/causal_lm.keras and the generation serving export OUTPUT/serving/1 (returned).
    ``tokenizer`` is a BytePair directory (default OUTPUT/byte_pair); the context length is
    ``sequence_length``. ``mixed_precision="auto"`` trains in mixed_bfloat16 where bfloat16 is
    native and measured faster (see ``keras_lm.training.fastest_precision``), else in float32.
    """
    keras.utils.set_random_seed(seed)
    mixed_precision = keras_lm.training.resolve_precision(mixed_precision)
    directory = tokenizer or os.path.join(output, TOKENIZER_DIR)
    if not os.path.exists(os.path.join(directory, "vocab.json")):
        raise FileNotFoundError(f"No BytePair vocabulary in '{directory}'; run the train_byte_pair step first.")
    byte_pair = keras_lm.tokenizers.BytePair.from_directory(directory)
    backbone = _backbone(architecture, size, byte_pair.vocabulary_size(), sequence_length, mixed_precision)
    model = keras_lm.pretraining.CausalLM(backbone, byte_pair)
    train = model.dataset(
        keras_lm.data.load(corpus, split="train"), sequence_length=sequence_length, batch_size=batch_size,
        seed=seed, reset_attention=reset_attention,
    )
    validation = model.dataset(
        keras_lm.data.load(corpus, split="validation"), sequence_length=sequence_length, batch_size=batch_size,
        shuffle=False, reset_attention=reset_attention,
    ).take(eval_batches).cache()
    model.compile(optimizer=keras_lm.training.adamw(learning_rate, warmup=warmup, total=steps))
    _stage("held-out perplexity of the untrained model")
    before = model.evaluate(validation, return_dict=True, verbose=0)
    _stage(
        f"pretraining {architecture}('{size}') ({backbone.count_params():,} parameters) on '{corpus}': "
        f"{steps} steps of {batch_size}x{sequence_length} packed tokens"
    )
    history = _LossHistory()
    start = time.time()
    model.fit(train.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[history, *progress_callbacks(steps)],
              verbose=fit_verbosity())
    seconds = time.time() - start
    after = model.evaluate(validation, return_dict=True, verbose=0)
    print(f"   held-out perplexity {_perplexity(before):.1f} -> {_perplexity(after):.1f}", flush=True)
    model.save(os.path.join(output, MODEL_FILE))
    serving = keras_lm.export.serving(model, os.path.join(output, SERVING_DIR), overwrite=True)
    _update_metrics(
        output,
        "causal_lm_pretraining",
        {
            "architecture": architecture,
            "size": size,
            "parameters": int(backbone.count_params()),
            "steps": steps,
            "batch_size": batch_size,
            "sequence_length": sequence_length,
            "seconds": round(seconds, 1),
            "tokens_per_second": round(steps * batch_size * sequence_length / seconds, 1),
            "train_loss_curve": history.losses,
            "validation_perplexity_before": _perplexity(before),
            "validation_perplexity_after": _perplexity(after),
        },
    )
    return serving


def _keras_sampler(temperature: float, top_k: int, top_p: float, seed: int, vocabulary_size: int):
    """The keras-hub sampler matching the ``sample`` signature's parameters (``top_k`` capped at the vocabulary)."""
    import keras_hub

    if temperature <= 0:
        return "greedy"
    top_k = min(top_k, vocabulary_size)
    if top_p < 1:
        return keras_hub.samplers.TopPSampler(p=top_p, k=top_k if top_k > 0 else None, temperature=temperature,
                                              seed=seed)
    if top_k > 0:
        return keras_hub.samplers.TopKSampler(k=top_k, temperature=temperature, seed=seed)
    return keras_hub.samplers.RandomSampler(temperature=temperature, seed=seed)


def check_generation_arguments(max_new_tokens, temperature, top_k, top_p, seed) -> None:
    """One ValueError naming the first argument of ``generate_text`` that cannot work."""
    if not is_integer(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}.")
    if not is_number(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}.")
    if not is_integer(top_k) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 keeps every token), got {top_k!r}.")
    if not is_number(top_p) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be a number in (0, 1] (1 keeps every token), got {top_p!r}.")
    if not is_integer(seed) or not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must be a 64-bit integer, got {seed!r}.")


EXPECTED_MODEL = ("a generation serving export (a directory written by `keras-lm export serving` or "
                  "keras_lm.export.serving(causal_lm or seq2seq_lm, ...)) or a .keras file holding a CausalLM "
                  "or a Seq2SeqLM")
#: ``max_new_tokens`` of a causal LM when none is given (a seq2seq model uses its own maximum).
DEFAULT_MAX_NEW_TOKENS = 32


class ModelPathError(ValueError, FileNotFoundError):
    """``generate_text`` was given a path that holds no model it can generate with."""


def check_model_path(model) -> None:
    """One ModelPathError (a ValueError) unless ``model`` looks like a generation export or a .keras file."""
    if not isinstance(model, (str, os.PathLike)) or not str(model):
        raise ModelPathError(f"--model must be a path to {EXPECTED_MODEL}; got {model!r}.")
    if not os.path.exists(model):
        raise ModelPathError(f"No such file or directory: '{model}'. Expected {EXPECTED_MODEL}.")
    if os.path.isdir(model) and not os.path.isfile(os.path.join(model, "saved_model.pb")):
        raise ModelPathError(f"'{model}' is a directory without a saved_model.pb. Expected {EXPECTED_MODEL}.")
    if not os.path.isdir(model) and not str(model).endswith(".keras"):
        raise ModelPathError(f"'{model}' is not a .keras file. Expected {EXPECTED_MODEL}.")


def generate_text(model: str, prompts, max_new_tokens: int | None = None, temperature: float = 0.0, top_k: int = 0,
                  top_p: float = 1.0, seed: int = 0, num_beams: int | None = None) -> list[str]:
    """Continuations of ``prompts`` by a causal LM, or translations of them by a seq2seq LM.

    ``model`` is a serving export (a directory: a causal LM's generation export or a
    ``Seq2SeqLM``'s seq2seq export) or a ``.keras`` file holding a ``CausalLM`` or a ``Seq2SeqLM``.
    ``temperature == 0`` decodes greedily (a ``Seq2SeqLM``: beam search with ``num_beams``, default
    4, length penalty 0.6, as its export does by default; an export decodes as it was exported);
    otherwise tokens are sampled, keeping the ``top_k`` most likely tokens when ``top_k > 0`` and
    the nucleus of probability ``top_p`` when ``top_p < 1``. ``max_new_tokens`` defaults to 32
    for a causal LM and to the model's own maximum for a seq2seq one.

    Raises one ``ValueError`` before loading anything for a bad argument (``max_new_tokens`` an
    integer >= 1; ``temperature`` finite and >= 0; ``top_k`` an integer >= 0; ``top_p`` in ``(0, 1]``;
    ``seed`` an integer; ``num_beams`` an integer >= 1) or a ``model`` path that is missing or
    neither a directory with a ``saved_model.pb`` nor a ``.keras`` file (``ModelPathError``, also a
    ``FileNotFoundError``), and one ``ValueError`` for a model that is neither kind.
    """
    return _generate(model, prompts, max_new_tokens, temperature, top_k, top_p, seed, num_beams)[0]


def generate_lines(model: str, prompts, max_new_tokens: int | None = None, temperature: float = 0.0, top_k: int = 0,
                   top_p: float = 1.0, seed: int = 0, num_beams: int | None = None) -> list[str]:
    """What ``keras-lm generate`` prints, one line per prompt: prompt + continuation, or the translation.

    The arguments are ``generate_text``'s.
    """
    texts, seq2seq = _generate(model, prompts, max_new_tokens, temperature, top_k, top_p, seed, num_beams)
    return texts if seq2seq else [str(prompt) + text for prompt, text in zip(prompts, texts)]


def _check_request(model, max_new_tokens, temperature, top_k, top_p, seed, num_beams) -> None:
    """One clear error for a bad generation argument or model path, before any model is loaded."""
    check_generation_arguments(DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens, temperature,
                               top_k, top_p, seed)
    if num_beams is not None and (not is_integer(num_beams) or num_beams < 1):
        raise ValueError(f"num_beams must be an integer >= 1 (1 is greedy decoding), got {num_beams!r}.")
    check_model_path(model)


def _generate(model, prompts, max_new_tokens, temperature, top_k, top_p, seed, num_beams) -> tuple[list[str], bool]:
    """``(texts, is_seq2seq)``: see ``generate_text``."""
    prompts = [str(p) for p in prompts]
    _check_request(model, max_new_tokens, temperature, top_k, top_p, seed, num_beams)
    if os.path.isdir(model):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (tokenizer ops used by the serving graph)

        served = tf.saved_model.load(model)
        if _is_seq2seq_export(served):
            return _translate_with_export(served, model, prompts, max_new_tokens, temperature, num_beams), True
        if num_beams is not None:
            raise ValueError(f"num_beams applies to seq2seq models; '{model}' is not a seq2seq export.")
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
        signature = "serving_default" if temperature <= 0 else "sample"
        if signature not in served.signatures:
            raise ValueError(f"'{model}' has no {signature} signature.")
        arguments = {"prompts": tf.constant(prompts, tf.string),
                     "max_new_tokens": tf.constant(max_new_tokens, tf.int32)}
        if signature == "sample":
            arguments.update(temperature=tf.constant(temperature, tf.float32), top_k=tf.constant(top_k, tf.int32),
                             top_p=tf.constant(top_p, tf.float32), seed=tf.constant(seed, tf.int64))
        try:
            outputs = served.signatures[signature](**arguments)
        except TypeError as error:
            raise ValueError(f"'{model}' is neither a generation nor a seq2seq export: {error}") from None
        except tf.errors.InvalidArgumentError as error:
            found = re.search(r"(max_new_tokens must be [^\]]*\)|max_new_tokens must be >= 0|Empty prompt[^\]]*"
                              r"|(?:temperature|top_k|top_p) must be [^\];]*)", error.message)
            raise ValueError(found.group(1) if found else error.message.strip().splitlines()[-1]) from None
        if "text" not in outputs:
            raise ValueError(f"'{model}' is not a generation export (its outputs: {', '.join(sorted(outputs))}).")
        return [t.decode("utf-8", errors="replace") for t in outputs["text"].numpy().tolist()], False
    task = keras.saving.load_model(model)
    if isinstance(task, keras_lm.tasks.Seq2SeqLM):
        return _translate_with_keras(task, prompts, max_new_tokens, temperature, top_k, top_p, seed, num_beams), True
    if not isinstance(task, keras_lm.tasks.CausalLM):
        raise ValueError(f"'{model}' holds a {type(task).__name__}, neither a CausalLM nor a Seq2SeqLM.")
    if num_beams is not None:
        raise ValueError(f"num_beams applies to seq2seq models; '{model}' holds a CausalLM.")
    max_new_tokens = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
    sampler = _keras_sampler(temperature, top_k, top_p, seed, task._generation_vocabulary_size())
    texts = task.generate(prompts, max_new_tokens=max_new_tokens, sampler=sampler)
    return [text[len(prompt):] if text.startswith(prompt) else text for prompt, text in zip(prompts, texts)], False


def print_generation(model: str, prompts: tuple[str, ...], max_new_tokens: int | None = None,
                     temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                     num_beams: int | None = None, stream=None) -> list[str]:
    """Prints a continuation of each prompt as its tokens are produced (or each translation).

    What ``keras-lm generate`` runs: one line per prompt, the prompt followed by its continuation,
    written to ``stream`` (default: standard output) as the tokens come; a seq2seq model prints
    each translation when it is complete. A ``.keras`` CausalLM is decoded one token at a time
    through its KV cache, picking tokens as its generation export does (greedy, or the ``sample``
    signature's seeded draws); a generation export is asked for 1, 2, 4, ... new tokens (its
    signatures return whole texts), which gives the same text at most twice the work. Arguments
    are ``generate_text``'s and are checked before anything is printed. Returns the lines.
    """
    stream = sys.stdout if stream is None else stream
    prompts = [str(p) for p in prompts]
    _check_request(model, max_new_tokens, temperature, top_k, top_p, seed, num_beams)
    streamer = _export_streamer if os.path.isdir(model) else _keras_streamer
    lines = streamer(model, prompts, max_new_tokens, temperature, top_k, top_p, seed, num_beams, stream)
    if lines is None:  # a seq2seq model: whole translations
        lines = generate_lines(model, prompts, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               seed=seed, num_beams=num_beams)
        for line in lines:
            stream.write(line + "\n")
            stream.flush()
    return lines


class _Line:
    """One printed line: the prompt, then each new piece of its continuation."""

    def __init__(self, prompt: str, stream):
        self.prompt, self.stream, self.printed, self.started = prompt, stream, "", False

    def show(self, text: str, final: bool = False) -> None:
        """Prints what `text` (the continuation so far) adds; an incomplete character waits."""
        if not final:
            text = text.rstrip("\ufffd")
        if not self.started:
            self.stream.write(self.prompt)
            self.started = True
        if text.startswith(self.printed):
            self.stream.write(text[len(self.printed):])
            self.printed = text
        elif final:  # a text that does not extend what is shown: show the whole line again
            self.stream.write("\n" + self.prompt + text)
            self.printed = text
        if final:
            self.stream.write("\n")
        self.stream.flush()


def _export_streamer(model, prompts, max_new_tokens, temperature, top_k, top_p, seed, num_beams, stream):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (tokenizer ops used by the serving graph)

    served = tf.saved_model.load(model)
    if _is_seq2seq_export(served):
        return None
    if num_beams is not None:
        raise ValueError(f"num_beams applies to seq2seq models; '{model}' is not a seq2seq export.")
    max_new_tokens = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
    signature = "serving_default" if temperature <= 0 else "sample"
    if signature not in served.signatures:
        raise ValueError(f"'{model}' has no {signature} signature.")
    sampling = {}
    if signature == "sample":
        sampling = {"temperature": tf.constant(temperature, tf.float32), "top_k": tf.constant(top_k, tf.int32),
                    "top_p": tf.constant(top_p, tf.float32), "seed": tf.constant(seed, tf.int64)}

    def call(texts, new_tokens, only_argument_errors=False):
        try:
            outputs = served.signatures[signature](prompts=tf.constant(texts, tf.string),
                                                   max_new_tokens=tf.constant(new_tokens, tf.int32), **sampling)
        except TypeError as error:
            raise ValueError(f"'{model}' is neither a generation nor a seq2seq export: {error}") from None
        except tf.errors.InvalidArgumentError as error:
            found = re.search(r"(max_new_tokens must be [^\]]*\)|max_new_tokens must be >= 0|Empty prompt[^\]]*"
                              r"|(?:temperature|top_k|top_p) must be [^\];]*)", error.message)
            if only_argument_errors and not found:
                return None
            raise ValueError(found.group(1) if found else error.message.strip().splitlines()[-1]) from None
        if "text" not in outputs:
            raise ValueError(f"'{model}' is not a generation export (its outputs: {', '.join(sorted(outputs))}).")
        return outputs

    # An empty batch checks max_new_tokens and the sampling values before anything is printed (a
    # tokenizer that cannot take an empty batch leaves the check to the calls below).
    call(tf.constant([], tf.string), max_new_tokens, only_argument_errors=True)
    lines = []
    for prompt in prompts:
        line, new_tokens = _Line(prompt, stream), 1
        while True:
            new_tokens = min(new_tokens, max_new_tokens)
            outputs = call([prompt], new_tokens)
            text = outputs["text"].numpy()[0].decode("utf-8", errors="replace")
            done = new_tokens == max_new_tokens or int(outputs["length"].numpy()[0]) < new_tokens
            line.show(text, final=done)
            if done:
                break
            new_tokens *= 2
        lines.append(prompt + line.printed)
    return lines


def _keras_streamer(model, prompts, max_new_tokens, temperature, top_k, top_p, seed, num_beams, stream):
    import numpy as np
    import tensorflow as tf

    from keras_lm.export.generation import sample_next_token
    from keras_lm.tasks.causal_lm import next_logits, prefilled_cache

    task = keras.saving.load_model(model)
    if isinstance(task, keras_lm.tasks.Seq2SeqLM):
        return None
    if not isinstance(task, keras_lm.tasks.CausalLM):
        raise ValueError(f"'{model}' holds a {type(task).__name__}, neither a CausalLM nor a Seq2SeqLM.")
    if num_beams is not None:
        raise ValueError(f"num_beams applies to seq2seq models; '{model}' holds a CausalLM.")
    max_new_tokens = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
    backbone, vocabulary_size = task.backbone, task._generation_vocabulary_size()
    end = getattr(task.tokenizer, "end_token_id", None)
    rows = task._prepare(task._encode_prompts(prompts)[0], max_new_tokens)
    pick = sample_next_token(tf.constant(float(temperature)), tf.constant(int(top_k)), tf.constant(float(top_p)),
                             tf.constant(int(seed), tf.int64))

    @tf.function(reduce_retracing=True)
    def step(tokens, cache, index):
        logits, _, cache = next_logits(backbone, tokens, cache, index, vocabulary_size)
        return pick(logits, index), cache

    lines = []
    for prompt, row in zip(prompts, rows):
        length, line = len(row), _Line(prompt, stream)
        tokens = np.zeros((1, length + max_new_tokens), "int32")
        tokens[0, :length] = row
        cache = prefilled_cache(backbone, tf.constant(tokens), length)
        new = []
        for index in range(length, length + max_new_tokens):
            token, cache = step(tf.constant(tokens), cache, tf.constant(index))
            token = int(token.numpy()[0])
            tokens[0, index] = token
            if token == end:
                break
            new.append(token)
            line.show(task._detokenize([new])[0])
        line.show(task._detokenize([new])[0] if new else "", final=True)
        lines.append(prompt + line.printed)
    return lines


def _is_seq2seq_export(served) -> bool:
    signature = served.signatures.get("serving_default")
    return signature is not None and "sources" in signature.structured_input_signature[1]


def _translate_with_export(served, model, sources, max_new_tokens, temperature, num_beams) -> list[str]:
    """Translations by a seq2seq export (``keras_lm.export.seq2seq``): it decodes as it was exported."""
    import tensorflow as tf

    if temperature > 0 or num_beams is not None:
        raise ValueError(f"'{model}' is a seq2seq export: it decodes as it was exported (beam search or greedy); "
                         "sampling and num_beams need the .keras model.")
    arguments = {"sources": tf.constant(sources, tf.string)}
    signature = "serving_default"
    if max_new_tokens is not None:
        signature, arguments["max_new_tokens"] = "generate", tf.constant(max_new_tokens, tf.int32)
    try:
        outputs = served.signatures[signature](**arguments)
    except tf.errors.InvalidArgumentError as error:
        found = re.search(r"max_new_tokens must be in \[\d+, \d+\]", error.message)
        raise ValueError(found.group(0) + " for this export" if found
                         else error.message.strip().splitlines()[-1]) from None
    return [t.decode("utf-8", errors="replace") for t in outputs["text"].numpy().tolist()]


def _translate_with_keras(task, sources, max_new_tokens, temperature, top_k, top_p, seed, num_beams) -> list[str]:
    """Translations by a ``Seq2SeqLM``: beam search (``num_beams``, default 4) unless sampling."""
    if temperature > 0:
        sampler = _keras_sampler(temperature, top_k, top_p, seed, task._generation_vocabulary_size())
        return task.generate(sources, max_new_tokens=max_new_tokens, sampler=sampler)
    beams = 4 if num_beams is None else num_beams
    if beams == 1:
        return task.generate(sources, max_new_tokens=max_new_tokens, sampler="greedy")
    return task.generate(sources, max_new_tokens=max_new_tokens, sampler="beam", num_beams=beams, length_penalty=0.6)


GENERATE_SCRIPT = r"""
import json, sys
from keras_lm.recipes.gpt import generate_text
model, max_new_tokens, prompts, sampling = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
print("RESULT " + json.dumps(generate_text(model, prompts, max_new_tokens, **sampling)))
"""


def generate(
    output: str,
    prompts: tuple = ("To be, or not to be", "ROMEO. ", "My lord,"),
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    model: str | None = None,
) -> list:
    """Generates continuations of ``prompts`` from the serving export in a fresh process; prints them.

    ``temperature == 0`` is greedy; otherwise sampling with optional ``top_k`` / ``top_p`` filters.
    Bad sampling arguments raise one ValueError before the process starts (see ``generate_text``).
    """
    check_generation_arguments(max_new_tokens, temperature, top_k, top_p, seed)
    sampling = {"temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p), "seed": int(seed)}
    model = model or os.path.join(output, SERVING_DIR)
    _stage(f"generating from {len(prompts)} prompts with {model} in a fresh process")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run(
        [sys.executable, "-c", GENERATE_SCRIPT, model, str(max_new_tokens), json.dumps(list(prompts)),
         json.dumps(sampling)],
        capture_output=True, text=True, env=env,
    )
    if process.returncode != 0:
        raise RuntimeError(f"Generation process failed:\n{process.stderr[-2000:]}")
    line = [row for row in process.stdout.splitlines() if row.startswith("RESULT ")][-1]
    texts = json.loads(line[len("RESULT "):])
    samples = []
    for prompt, text in zip(prompts, texts):
        print(f"   {prompt!r} -> {text!r}", flush=True)
        samples.append({"prompt": prompt, "text": text})
    _update_metrics(output, "generation", {"max_new_tokens": max_new_tokens, **sampling, "samples": samples})
    return samples
