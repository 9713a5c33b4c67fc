"""Side-by-side benchmarks: keras_lm vs keras-hub (and HF torch when installed), one run, one machine.

``python -m keras_lm.benchmarks`` / ``keras-lm bench`` / ``scripts/bench`` run every section and print a
table; the JSON and a markdown table go to the output directory.

Example:
    >>> from keras_lm.benchmarks import run_benchmarks
    >>> results = run_benchmarks("runs/bench", quick=True)  # doctest: +SKIP
"""
from keras_lm.benchmarks.runner import SECTIONS, run_benchmarks

__all__ = ["SECTIONS", "run_benchmarks"]
