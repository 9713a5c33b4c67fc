"""Timing shared by the benchmark sections: every compared system timed in interleaved rounds.

On a shared machine speed drifts within a run, so timing one system after the other turns the drift
into a false ratio. Here every system is built and warmed up first, then each round runs every system
once, in turn, with the order rotated from round to round; noise only ever slows a round down, so a
system's best round is its figure (the median is kept beside it).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf


def rotated_order(names: list, round_index: int) -> list:
    """The order of round `round_index`: `names` rotated left by `round_index`."""
    shift = round_index % len(names) if names else 0
    return list(names[shift:]) + list(names[:shift])


def interleaved_rounds(systems: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1,
                       clock: Callable[[], float] = time.perf_counter, log=None) -> dict:
    """Times every system once per round, in rotated order, for `rounds` rounds.

    Args:
        systems: name -> a callable doing one round's work (e.g. N train steps), synchronously.
        rounds: how many rounds; each round calls every system exactly once.
        warmup: untimed calls of each system before the first round (tracing, caches).
        clock: the time source (seconds).
        log: optional ``print``-like progress function.

    Returns:
        name -> {"round_seconds": [seconds of round 0, 1, …], "best_seconds", "median_seconds"}.

    Example:
        >>> import time
        >>> rounds = interleaved_rounds({"fast": lambda: time.sleep(0.001),
        ...                              "slow": lambda: time.sleep(0.002)}, rounds=3)
        >>> rounds["fast"]["best_seconds"] == min(rounds["fast"]["round_seconds"])
        True
    """
    if rounds < 1:
        raise ValueError(f"interleaved_rounds needs rounds >= 1, got {rounds}.")
    names = list(systems)
    for name in names:
        for _ in range(warmup):
            systems[name]()
    seconds = {name: [0.0] * rounds for name in names}
    for round_index in range(rounds):
        order = rotated_order(names, round_index)
        if log:
            log(f"round {round_index + 1}/{rounds}: {', '.join(order)}")
        for name in order:
            start = clock()
            systems[name]()
            seconds[name][round_index] = clock() - start
    return {name: {"round_seconds": times, "best_seconds": float(min(times)),
                   "median_seconds": float(np.median(times))} for name, times in seconds.items()}


def percentiles_ms(round_seconds: list) -> dict:
    """p50 / p99 in milliseconds of per-call seconds (e.g. one request per round)."""
    times = np.asarray(round_seconds) * 1e3
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "best_ms": float(times.min())}


# How a Keras model's train steps are timed. Measured on a 1-layer H32 masked LM (the step itself is
# ~3 ms, so per-step overhead shows), 200 steps per call, best (median) of 5 interleaved rounds:
#   model.train_function(iterator) in a loop   2.88 (2.95) ms/step   used here
#   model.fit(dataset, steps_per_epoch=200)     2.99 (3.12) ms/step   + a data adapter and callbacks per call
#   model.train_on_batch(...) in a loop         3.50 (3.52) ms/step   converts inputs, resets metrics, syncs logs
# so the compiled train function that `fit` builds is called directly on an iterator over the repeated
# batch: no Python-side work per step beyond the call itself.
def train_steps(model: keras.Model, data, steps: int, warmup_steps: int = 2) -> Callable[[], None]:
    """A callable running `steps` compiled train steps of `model` on `data`, with tracing done here.

    Args:
        model: a compiled Keras model.
        data: one batch (``(x, y, sample_weight)``, repeated in memory) or a ``tf.data.Dataset``
            (repeated; e.g. a real input pipeline).
        steps: train steps per call of the returned function.
        warmup_steps: steps run now through ``model.fit`` (builds the optimizer, traces the step).

    Example:
        >>> run = train_steps(model, (x, y), steps=10)  # doctest: +SKIP
        >>> interleaved_rounds({"model": run}, rounds=5)["model"]["best_seconds"] / 10  # doctest: +SKIP
    """
    if isinstance(data, tf.data.Dataset):
        dataset = data.repeat()
    else:
        dataset = tf.data.Dataset.from_tensors(data).repeat()
    dataset = dataset.prefetch(2)
    model.fit(dataset, steps_per_epoch=warmup_steps, epochs=1, verbose=0)
    iterator = iter(dataset)

    def run():
        logs = None
        for _ in range(steps):
            logs = model.train_function(iterator)
        float(np.asarray(logs["loss"]))  # the round ends when the last step has finished

    return run


def matmul_round(dtype: str = "float32", size: int = 2048, count: int = 10) -> tuple[Callable[[], None], float]:
    """A callable doing `count` square `size` matmuls in `dtype`, and the FLOPs of one call.

    Example:
        >>> run, flops = matmul_round("bfloat16", size=256, count=2)
        >>> gflops = flops / interleaved_rounds({"mm": run}, rounds=2)["mm"]["best_seconds"] / 1e9
    """
    a = tf.cast(tf.random.normal([size, size], seed=1), dtype)
    b = tf.cast(tf.random.normal([size, size], seed=2), dtype)

    @tf.function
    def product(x, y):
        return tf.reduce_sum(tf.cast(tf.matmul(x, y)[0, :1], tf.float32))

    def run():
        for _ in range(count):
            product(a, b).numpy()

    product(a, b).numpy()  # trace
    return run, 2.0 * size**3 * count


@contextlib.contextmanager
def dtype_policy(name: str):
    """Sets the global Keras dtype policy inside the block and restores it after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
