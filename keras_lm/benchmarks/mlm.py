"""Masked-LM pretraining throughput: keras_lm vs keras-hub `BertMaskedLM` (vs HF torch when installed).

Sections (a) step throughput on a fixed in-memory batch, (b) real non-padding tokens/s on Shakespeare
(keras_lm's packed rows vs keras-hub's one-line-per-example padded rows), (c) achieved model FLOP/s as a
fraction of the machine's measured matmul peak and (e) input-pipeline throughput vs model consumption.
In (a)/(c) and (b) every compared system is built and traced first, then all are timed in interleaved
rounds (`timing.interleaved_rounds`); the matmul peak is two more systems of the same rounds.

Example:
    >>> results = step_throughput(QUICK, print)  # doctest: +SKIP
    >>> results["runs"]["keras_lm/float32"]["fraction_of_peak"]  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_lm.benchmarks.timing import dtype_policy, interleaved_rounds, matmul_round, train_steps


@dataclasses.dataclass(frozen=True)
class MlmConfig:
    """The benchmarked model and batch (BERT L4/H512/A8, vocab 30522, seq 128, batch 32)."""

    num_layers: int = 4
    hidden_dim: int = 512
    num_heads: int = 8
    intermediate_dim: int = 2048
    vocabulary_size: int = 30522
    sequence_length: int = 128
    batch_size: int = 32
    max_predictions: int = 20
    warmup_steps: int = 3
    timed_steps: int = 5  # per round
    rounds: int = 5
    matmul_count: int = 10  # matmuls per round of the peak measurement

    @property
    def label(self) -> str:
        return (f"BERT L{self.num_layers}/H{self.hidden_dim}/A{self.num_heads}, vocab "
                f"{self.vocabulary_size}, seq {self.sequence_length}, batch {self.batch_size}")


QUICK = MlmConfig(num_layers=1, hidden_dim=64, num_heads=2, intermediate_dim=128,
                  vocabulary_size=1000, sequence_length=32, batch_size=4, max_predictions=4,
                  warmup_steps=2, timed_steps=2, rounds=2, matmul_count=3)


def training_flops_per_token(config: MlmConfig) -> float:
    """Model FLOPs per trained token: 3 x forward (matmuls of the blocks, attention, MLM head)."""
    h, i, length = config.hidden_dim, config.intermediate_dim, config.sequence_length
    blocks = config.num_layers * (2 * (4 * h * h + 2 * h * i) + 2 * 2 * length * h)
    head = config.max_predictions / length * 2 * (h * h + h * config.vocabulary_size)
    return 3.0 * (blocks + head)


def synthetic_batch(config: MlmConfig, seed: int = 0) -> dict:
    """A full batch of random token ids with `max_predictions` distinct masked positions per row."""
    rng = np.random.default_rng(seed)
    b, t, p = config.batch_size, config.sequence_length, config.max_predictions
    positions = np.sort(np.stack([rng.choice(np.arange(1, t - 1), p, replace=False) for _ in range(b)]), 1)
    return {
        "token_ids": rng.integers(5, config.vocabulary_size, (b, t)).astype("int32"),
        "segment_ids": np.zeros((b, t), "int32"),
        "padding_mask": np.ones((b, t), "int32"),
        "mask_positions": positions.astype("int32"),
        "mask_ids": rng.integers(5, config.vocabulary_size, (b, p)).astype("int32"),
        "mask_weights": np.ones((b, p), "float32"),
    }


def _features(batch: dict) -> dict:
    return {k: batch[k] for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}


def keras_lm_model(config: MlmConfig, vocabulary_size: int | None = None,
                   attention_implementation: str = "auto") -> keras.Model:
    from keras_lm.applications import Bert
    from keras_lm.pretraining import MaskedLM
    from keras_lm.training import AdamW

    backbone = Bert(None, vocabulary_size=vocabulary_size or config.vocabulary_size,
                    num_layers=config.num_layers, hidden_dim=config.hidden_dim,
                    num_heads=config.num_heads, intermediate_dim=config.intermediate_dim,
                    attention_implementation=attention_implementation)
    model = MaskedLM(backbone, max_predictions=config.max_predictions)
    model.compile(optimizer=AdamW(1e-4))  # keras_lm's AdamW (fused update); keras-hub's gets Keras'
    return model


def keras_hub_model(config: MlmConfig, vocabulary_size: int | None = None) -> keras.Model:
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size or config.vocabulary_size, num_layers=config.num_layers,
        num_heads=config.num_heads, hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim, max_sequence_length=512,
    )
    model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    return model


def _keras_lm_batch(batch):
    return _features(batch), {"mlm": batch["mask_ids"]}, {"mlm": batch["mask_weights"]}


def _keras_hub_batch(batch):
    return _features(batch), batch["mask_ids"], batch["mask_weights"]


def torch_train_steps(config: MlmConfig, batch: dict, steps: int) -> Callable[[], None] | None:
    """N train steps of HF transformers `BertForMaskedLM` in torch, warmed up (None without torch)."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=config.vocabulary_size, hidden_size=config.hidden_dim,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_dim, max_position_embeddings=512,
    ))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = np.full(batch["token_ids"].shape, -100, "int64")
    np.put_along_axis(labels, batch["mask_positions"], batch["mask_ids"], axis=1)
    inputs = {
        "input_ids": torch.from_numpy(batch["token_ids"].astype("int64")),
        "attention_mask": torch.from_numpy(batch["padding_mask"].astype("int64")),
        "token_type_ids": torch.from_numpy(batch["segment_ids"].astype("int64")),
        "labels": torch.from_numpy(labels),
    }

    def step():
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(config.warmup_steps):
        step()

    def run():
        for _ in range(steps):
            step()

    return run


MLM_SYSTEMS = tuple(f"{library}/{policy}" for policy in ("float32", "mixed_bfloat16")
                    for library in ("keras_lm", "keras_hub"))


def attention_kernels() -> dict:
    """The attention kernel keras_lm's "auto" picks here, and the alternatives the bench also times.

    On a GPU or TPU "auto" is the fused kernel and the bench adds keras_lm with explicit attention
    (``keras_lm_explicit/...`` systems); on a CPU "auto" is explicit and nothing is added.
    """
    from keras_lm.layers.attention import default_implementation

    chosen = default_implementation()
    return {"auto": chosen, "also_timed": ["explicit"] if chosen == "fused" else []}


def step_throughput(config: MlmConfig, log, include_torch: bool = True) -> dict:
    """(a) + (c): MLM train tokens/s per library and precision, the matmul peak, fraction of peak.

    keras_lm and keras-hub in float32 and mixed_bfloat16 (and HF torch in float32), plus a float32 and a
    bfloat16 matmul, are built first and then timed in interleaved rounds (see `interleaved_rounds`);
    every figure is a system's best round, its median kept beside it.
    """
    batch = synthetic_batch(config)
    tokens = config.batch_size * config.sequence_length
    flops = training_flops_per_token(config)
    builders = {"keras_lm": (keras_lm_model, _keras_lm_batch), "keras_hub": (keras_hub_model, _keras_hub_batch)}
    systems = {}
    for name in MLM_SYSTEMS:
        library, policy = name.split("/")
        build, as_batch = builders[library]
        log(f"(a) building and tracing {library} masked LM, {policy}")
        keras.utils.set_random_seed(0)
        with dtype_policy(policy):
            model = build(config)
        systems[name] = train_steps(model, as_batch(batch), config.timed_steps, config.warmup_steps)
    kernels = attention_kernels()
    for implementation in kernels["also_timed"]:
        for policy in ("float32", "mixed_bfloat16"):
            log(f"(a) building and tracing keras_lm masked LM, {policy}, {implementation} attention")
            keras.utils.set_random_seed(0)
            with dtype_policy(policy):
                model = keras_lm_model(config, attention_implementation=implementation)
            systems[f"keras_lm_{implementation}/{policy}"] = train_steps(
                model, _keras_lm_batch(batch), config.timed_steps, config.warmup_steps)
    if include_torch:
        log("(a) building HF transformers torch BertForMaskedLM, float32 (when installed)")
        torch_run = torch_train_steps(config, batch, config.timed_steps)
        if torch_run is not None:
            systems["hf_torch/float32"] = torch_run
    size = 2048 if config.hidden_dim >= 256 else 512
    matmul_flops = {}
    for dtype in ("float32", "bfloat16"):
        systems[f"matmul/{dtype}"], matmul_flops[dtype] = matmul_round(dtype, size, config.matmul_count)
    log(f"(a)/(c) {config.rounds} interleaved rounds of {config.timed_steps} steps (matmuls: "
        f"{config.matmul_count} x {size}^2) each")
    rounds = interleaved_rounds(systems, config.rounds, log=lambda message: log(f"(a) {message}"))
    results = {"config": config.label, "flops_per_token": flops, "rounds": config.rounds,
               "attention_kernel": kernels["auto"],
               "steps_per_round": config.timed_steps, "runs": {}, "peak_gflops": {}, "peak_median_gflops": {}}
    for dtype in ("float32", "bfloat16"):
        timing = rounds[f"matmul/{dtype}"]
        results["peak_gflops"][dtype] = matmul_flops[dtype] / timing["best_seconds"] / 1e9
        results["peak_median_gflops"][dtype] = matmul_flops[dtype] / timing["median_seconds"] / 1e9
    for name, timing in rounds.items():
        if name.startswith("matmul/"):
            continue
        best = timing["best_seconds"] / config.timed_steps
        median = timing["median_seconds"] / config.timed_steps
        run = {"seconds_per_step": best, "median_seconds_per_step": median,
               "tokens_per_second": tokens / best, "median_tokens_per_second": tokens / median}
        if not name.startswith("hf_torch"):
            peak = results["peak_gflops"]["bfloat16" if "bfloat16" in name else "float32"]
            run["model_gflops"] = run["tokens_per_second"] * flops / 1e9
            run["fraction_of_peak"] = run["model_gflops"] / peak
        results["runs"][name] = run
    return results


def _line_texts(corpus: tf.data.Dataset) -> tf.data.Dataset:
    """One example per non-blank line (keras-hub's usual text-line pipeline)."""
    lines = corpus.map(lambda ex: tf.strings.split(ex["text"], "\n")).unbatch()
    lines = lines.map(tf.strings.strip)
    return lines.filter(lambda line: tf.strings.length(line) > 0)


def _padding_fraction(dataset: tf.data.Dataset, batches: int, features_of) -> float:
    real = total = 0
    for element in dataset.take(batches):
        mask = np.asarray(features_of(element)["padding_mask"])
        real += int(mask.astype(bool).sum())
        total += mask.size
    return real / max(total, 1)


def packed_vs_padded(config: MlmConfig, log, vocabulary_size: int = 8000) -> dict:
    """(b) + (e): real non-padding tokens/s on Shakespeare and pipeline vs model throughput."""
    import keras_hub

    import keras_lm

    log(f"(b) training a {vocabulary_size}-token WordPiece vocabulary on Shakespeare")
    corpus = keras_lm.data.load("shakespeare", split="train")
    tokenizer = keras_lm.tokenizers.WordPiece.train(corpus.map(lambda ex: ex["text"]),
                                                    vocabulary_size=vocabulary_size)
    vocabulary = tokenizer.get_vocabulary()
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, config.sequence_length)
    length, batch_size = config.sequence_length, config.batch_size

    keras.utils.set_random_seed(0)
    ours = keras_lm_model(config, len(vocabulary))
    packed = ours.dataset(corpus, preprocessor, batch_size=batch_size, seed=0, drop_remainder=True)
    hub_preprocessor = keras_hub.models.BertMaskedLMPreprocessor(
        tokenizer=keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True),
        sequence_length=length, mask_selection_rate=0.15,
        mask_selection_length=config.max_predictions,
    )
    padded = (_line_texts(corpus).shuffle(10_000, seed=0).batch(batch_size, drop_remainder=True)
              .map(hub_preprocessor, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))

    log("(b) non-padding fraction of each pipeline")
    fractions = {"keras_lm_packed": _padding_fraction(packed, 50, lambda e: e[0]),
                 "keras_hub_padded": _padding_fraction(padded, 50, lambda e: e[0])}
    log("(b) building and tracing keras-hub BertMaskedLM on padded Shakespeare lines")
    keras.utils.set_random_seed(0)
    hub = keras_hub_model(config, len(vocabulary))
    systems = {"keras_hub_padded": train_steps(hub, padded, config.timed_steps, config.warmup_steps)}
    log("(b) tracing keras_lm masked LM on packed Shakespeare rows")
    systems["keras_lm_packed"] = train_steps(ours, packed, config.timed_steps, config.warmup_steps)
    log(f"(b) {config.rounds} interleaved rounds of {config.timed_steps} steps each")
    rounds = interleaved_rounds(systems, config.rounds, log=lambda message: log(f"(b) {message}"))
    results = {"non_padding_fraction": fractions, "rounds": config.rounds,
               "steps_per_round": config.timed_steps, "vocabulary_size": len(vocabulary),
               "config": dataclasses.replace(config, vocabulary_size=len(vocabulary)).label}
    for name, timing in rounds.items():
        best = timing["best_seconds"] / config.timed_steps
        median = timing["median_seconds"] / config.timed_steps
        results[name] = {"seconds_per_step": best, "median_seconds_per_step": median,
                         "real_tokens_per_second": batch_size * length * fractions[name] / best}
    ours_step = results["keras_lm_packed"]["seconds_per_step"]

    log("(e) input pipeline alone: one epoch of tokenize + pack + mask, nothing cached")
    epoch = ours.dataset(corpus, preprocessor, batch_size=batch_size, seed=1, cache=False)
    start = time.perf_counter()
    count = sum(1 for _ in epoch)
    pipeline_rate = count / (time.perf_counter() - start)
    results["pipeline"] = {"batches_per_second": pipeline_rate,
                           "model_steps_per_second": 1.0 / ours_step,
                           "ratio": pipeline_rate * ours_step}
    return results
