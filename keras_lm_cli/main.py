"""`keras-lm`'s entry point: parse (TensorFlow-free), then import keras_lm quietly and run."""
from __future__ import annotations

import sys

from keras_lm_cli.parser import parse_arguments
from keras_lm_cli.quiet import native_output_hidden, quiet_python_logging


def _wants_verbose(argv: list) -> bool:
    return "--verbose" in argv[: argv.index("--") if "--" in argv else len(argv)]


def main(argv=None) -> int:
    """Runs one command; bad input gives one line `keras-lm: error: ...` and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its flags belong to the benchmark runner
        verbose = _wants_verbose(argv)
        with native_output_hidden(verbose):
            from keras_lm.benchmarks.__main__ import main as bench_main
        quiet_python_logging(verbose)
        return bench_main([a for a in argv[1:] if a != "--verbose"])
    args = parse_arguments(argv)
    verbose = bool(getattr(args, "verbose", False))
    with native_output_hidden(verbose):
        from keras_lm import cli
    quiet_python_logging(verbose)
    return cli.run(args)
