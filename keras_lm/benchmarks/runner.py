"""Runs the benchmark sections, prints the table and writes JSON + markdown."""
from __future__ import annotations

import json
import os
import platform
import time

from keras_lm.benchmarks.table import format_table, machine_description, machine_info

SECTIONS = ("mlm", "packing", "serving", "portable", "generation", "seq2seq", "profile")


def _log(message: str) -> None:
    print(f"== [bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_benchmarks(output: str = "runs/bench", sections=SECTIONS, quick: bool = False,
                   rounds: int | None = None) -> dict:
    """Runs `sections` side by side (keras_lm vs keras-hub, HF torch when installed).

    Within a section every compared system is built and warmed up first, then timed in interleaved
    rounds (best round reported, median kept); "profile" breaks a keras_lm MLM train step down by op
    category. `quick=True` uses a tiny model, few steps and 2 rounds (checks the harness, figures are
    meaningless); `rounds` overrides the number of rounds. Writes OUTPUT/bench.json and OUTPUT/bench.md
    (and OUTPUT/profile.md with the profiler traces under OUTPUT/profile_trace) and returns the results.

    Example:
        >>> results = run_benchmarks("runs/bench", sections=["mlm"], quick=True)  # doctest: +SKIP
        >>> results["mlm"]["runs"]["keras_lm/float32"]["tokens_per_second"]  # doctest: +SKIP
    """
    import dataclasses

    from keras_lm.benchmarks import generation, mlm, portable, profile, seq2seq, serving

    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"Unknown benchmark section(s) {unknown}; known: {', '.join(SECTIONS)}.")
    if rounds is not None and rounds < 1:
        raise ValueError(f"rounds (--rounds) must be at least 1, got {rounds}.")
    config = mlm.QUICK if quick else mlm.MlmConfig()
    generation_config = generation.QUICK if quick else generation.GenerationConfig()
    seq2seq_config = seq2seq.QUICK if quick else seq2seq.Seq2SeqConfig()
    if rounds is not None:
        config = dataclasses.replace(config, rounds=rounds)
        generation_config = dataclasses.replace(generation_config, rounds=rounds)
        seq2seq_config = dataclasses.replace(seq2seq_config, rounds=rounds)
    info = machine_info()
    results = {"machine": machine_description(info), "machine_info": info, "quick": quick,
               "date": time.strftime("%Y-%m-%d"), "python": platform.python_version()}
    if "mlm" in sections:
        results["mlm"] = mlm.step_throughput(config, _log)
    if "packing" in sections:
        results["packing"] = mlm.packed_vs_padded(config, _log, 1000 if quick else 8000)
    if "serving" in sections:
        results["serving"] = serving.serving_latency(
            _log, size="tiny" if quick else "mini", sequence_length=64 if quick else 128,
            repeats=10 if quick else 200)
    if "portable" in sections:
        results["portable"] = portable.portable_latency(
            _log, size="tiny" if quick else "mini", sequence_length=64 if quick else 128,
            repeats=10 if quick else 200, vocabulary_size=600 if quick else 4000)
    if "generation" in sections:
        results["generation"] = generation.generation_throughput(generation_config, _log)
    if "seq2seq" in sections:
        results["seq2seq"] = seq2seq.seq2seq_throughput(seq2seq_config, _log)
    os.makedirs(output, exist_ok=True)
    if "profile" in sections:
        results["profile"] = profile.profile_training_step(
            config, _log, os.path.join(output, "profile_trace"), steps=2 if quick else 5)
        with open(os.path.join(output, "profile.md"), "w") as f:
            f.write(f"Machine: {results['machine']} — {results['date']}\n\n"
                    + profile.format_profile(results["profile"]) + "\n")
    table = format_table(results)
    if "portable" in results:
        table += "\n\n" + portable.format_portable(results["portable"])
    with open(os.path.join(output, "bench.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(output, "bench.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    _log(f"wrote {os.path.join(output, 'bench.json')} and bench.md")
    return results
