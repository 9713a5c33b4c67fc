"""Runs the benchmark sections, prints the table and writes JSON + markdown."""
from __future__ import annotations

import json
import os
import platform
import time

from keras_lm.benchmarks.table import format_table, machine_description

SECTIONS = ("mlm", "packing", "serving", "generation")


def _log(message: str) -> None:
    print(f"== [bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_benchmarks(output: str = "runs/bench", sections=SECTIONS, quick: bool = False) -> dict:
    """Runs `sections` side by side (keras_lm vs keras-hub, HF torch when installed).

    `quick=True` uses a tiny model and a few steps (checks the harness, figures are meaningless).
    Writes OUTPUT/bench.json and OUTPUT/bench.md and returns the results.
    """
    from keras_lm.benchmarks import generation, mlm, serving

    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"Unknown benchmark section(s) {unknown}; known: {', '.join(SECTIONS)}.")
    config = mlm.QUICK if quick else mlm.MlmConfig()
    results = {"machine": machine_description(), "quick": quick,
               "date": time.strftime("%Y-%m-%d"), "python": platform.python_version()}
    if "mlm" in sections:
        results["mlm"] = mlm.step_throughput(config, _log)
    if "packing" in sections:
        results["packing"] = mlm.packed_vs_padded(config, _log, 1000 if quick else 8000)
    if "serving" in sections:
        results["serving"] = serving.serving_latency(
            _log, size="tiny" if quick else "mini", sequence_length=64 if quick else 128,
            repeats=10 if quick else 200)
    if "generation" in sections:
        results["generation"] = generation.generation_throughput(
            generation.QUICK if quick else generation.GenerationConfig(), _log)
    os.makedirs(output, exist_ok=True)
    table = format_table(results)
    with open(os.path.join(output, "bench.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(output, "bench.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    _log(f"wrote {os.path.join(output, 'bench.json')} and bench.md")
    return results
