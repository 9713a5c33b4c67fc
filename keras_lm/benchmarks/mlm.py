"""Masked-LM pretraining throughput: keras_lm vs keras-hub `BertMaskedLM` (vs HF torch when installed).

Sections (a) step throughput on a fixed in-memory batch, (b) real non-padding tokens/s on Shakespeare
(keras_lm's packed rows vs keras-hub's one-line-per-example padded rows), (c) achieved model FLOP/s as a
fraction of the machine's measured matmul peak and (e) input-pipeline throughput vs model consumption.
"""
from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_lm.benchmarks.timing import (
    dtype_policy,
    fit_dataset_seconds_per_step,
    fit_seconds_per_step,
    matmul_peak_gflops,
)


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
    timed_steps: int = 20

    @property
    def label(self) -> str:
        return (f"BERT L{self.num_layers}/H{self.hidden_dim}/A{self.num_heads}, vocab "
                f"{self.vocabulary_size}, seq {self.sequence_length}, batch {self.batch_size}")


QUICK = MlmConfig(num_layers=2, hidden_dim=128, num_heads=2, intermediate_dim=512,
                  vocabulary_size=2000, sequence_length=64, batch_size=8, max_predictions=10,
                  warmup_steps=2, timed_steps=3)


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


def keras_lm_model(config: MlmConfig, vocabulary_size: int | None = None) -> keras.Model:
    from keras_lm.applications import Bert
    from keras_lm.pretraining import MaskedLM

    backbone = Bert(None, vocabulary_size=vocabulary_size or config.vocabulary_size,
                    num_layers=config.num_layers, hidden_dim=config.hidden_dim,
                    num_heads=config.num_heads, intermediate_dim=config.intermediate_dim)
    model = MaskedLM(backbone, max_predictions=config.max_predictions)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
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


def torch_seconds_per_step(config: MlmConfig, batch: dict) -> float | None:
    """HF transformers `BertForMaskedLM` train step in torch (None when torch is not installed)."""
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
    start = time.perf_counter()
    for _ in range(config.timed_steps):
        step()
    return (time.perf_counter() - start) / config.timed_steps


def step_throughput(config: MlmConfig, log) -> dict:
    """(a) + (c): tokens/s of one MLM train step per library and precision, and fraction of peak."""
    batch = synthetic_batch(config)
    tokens = config.batch_size * config.sequence_length
    flops = training_flops_per_token(config)
    results = {"config": config.label, "flops_per_token": flops, "runs": {}}
    for policy in ("float32", "mixed_bfloat16"):
        for library, build, as_batch in (("keras_lm", keras_lm_model, _keras_lm_batch),
                                         ("keras_hub", keras_hub_model, _keras_hub_batch)):
            log(f"(a) {library} masked LM, {policy}")
            keras.utils.set_random_seed(0)
            with dtype_policy(policy):
                model = build(config)
            seconds = fit_seconds_per_step(model, as_batch(batch), config.warmup_steps, config.timed_steps)
            results["runs"][f"{library}/{policy}"] = {"seconds_per_step": seconds,
                                                      "tokens_per_second": tokens / seconds}
            keras.backend.clear_session()
    log("(a) HF transformers torch BertForMaskedLM, float32 (when installed)")
    seconds = torch_seconds_per_step(config, batch)
    if seconds is not None:
        results["runs"]["hf_torch/float32"] = {"seconds_per_step": seconds,
                                               "tokens_per_second": tokens / seconds}
    log("(c) measuring the matmul peak of this machine")
    size = 2048 if config.hidden_dim >= 256 else 512
    results["peak_gflops"] = {p: matmul_peak_gflops(p, size) for p in ("float32", "bfloat16")}
    for name, run in results["runs"].items():
        if name.startswith("hf_torch"):
            continue
        peak = results["peak_gflops"]["bfloat16" if "bfloat16" in name else "float32"]
        run["model_gflops"] = run["tokens_per_second"] * flops / 1e9
        run["fraction_of_peak"] = run["model_gflops"] / peak
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
    log("(b) keras_lm masked LM on packed Shakespeare rows")
    ours_step = fit_dataset_seconds_per_step(ours, packed, config.warmup_steps, config.timed_steps)
    keras.backend.clear_session()
    log("(b) keras-hub BertMaskedLM on padded Shakespeare lines")
    keras.utils.set_random_seed(0)
    hub = keras_hub_model(config, len(vocabulary))
    hub_step = fit_dataset_seconds_per_step(hub, padded, config.warmup_steps, config.timed_steps)
    keras.backend.clear_session()
    results = {
        "non_padding_fraction": fractions,
        "keras_lm_packed": {"seconds_per_step": ours_step,
                            "real_tokens_per_second": batch_size * length * fractions["keras_lm_packed"] / ours_step},
        "keras_hub_padded": {"seconds_per_step": hub_step,
                             "real_tokens_per_second": batch_size * length * fractions["keras_hub_padded"] / hub_step},
    }

    log("(e) input pipeline alone: one epoch of tokenize + pack + mask, nothing cached")
    epoch = ours.dataset(corpus, preprocessor, batch_size=batch_size, seed=1, cache=False)
    start = time.perf_counter()
    count = sum(1 for _ in epoch)
    pipeline_rate = count / (time.perf_counter() - start)
    results["pipeline"] = {"batches_per_second": pipeline_rate,
                           "model_steps_per_second": 1.0 / ours_step,
                           "ratio": pipeline_rate * ours_step}
    return results
