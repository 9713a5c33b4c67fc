"""Keeping TensorFlow's and absl's start-up lines off the terminal unless `--verbose`.

Importing TensorFlow writes "WARNING: All log messages before absl::InitializeLog() ...", oneDNN
and CUDA lines from C++ straight to file descriptor 2, once per native library that carries its
own absl (twice here): TF_CPP_MIN_LOG_LEVEL does not reach them, since they come before the log
level is read. So the import runs with descriptor 2 pointed at a temporary file, which is
replayed only if the import fails; later native logs obey TF_CPP_MIN_LOG_LEVEL=3 (set even when
the environment asks for more: `--verbose` shows everything) and Python's absl and TensorFlow
loggers are set to errors.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile


@contextlib.contextmanager
def native_output_hidden(verbose: bool = False):
    """Runs the block (an import of TensorFlow) with C++ output to descriptor 2 hidden unless `verbose`."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # this process and the ones it starts (serve, generate)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_python_logging(verbose: bool = False) -> None:
    """Python-side absl and TensorFlow loggers: errors only, unless `verbose`."""
    if verbose:
        return
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.set_verbosity(absl_logging.ERROR)
