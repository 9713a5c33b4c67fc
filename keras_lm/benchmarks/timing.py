"""Timing helpers shared by the benchmark sections."""
from __future__ import annotations

import contextlib
import time

import keras
import numpy as np
import tensorflow as tf


def matmul_peak_gflops(dtype: str = "float32", size: int = 2048, repeats: int = 10) -> float:
    """Measured dense matmul throughput (GFLOP/s) of this machine for `dtype`, best of `repeats`."""
    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a, dtype)
    b = tf.cast(tf.random.normal([size, size], dtype=tf.float32), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[0, :1], tf.float32)))
    matmul(a, b).numpy()  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def fit_seconds_per_step(model: keras.Model, batch, warmup: int, steps: int) -> float:
    """Seconds per `model.fit` step on one repeated in-memory batch (tracing excluded)."""
    dataset = tf.data.Dataset.from_tensors(batch).repeat().prefetch(2)
    model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps


def fit_dataset_seconds_per_step(model: keras.Model, dataset: tf.data.Dataset, warmup: int,
                                 steps: int) -> float:
    """Seconds per `model.fit` step reading a real pipeline (repeated), tracing excluded."""
    dataset = dataset.repeat()
    model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps


def percentiles_ms(function, repeats: int, warmup: int = 3) -> dict:
    """p50 / p99 latency in milliseconds of calling `function()` `repeats` times."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


@contextlib.contextmanager
def dtype_policy(name: str):
    """Sets the global Keras dtype policy inside the block and restores it after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
