"""Training progress that stays readable in a log file or a pipe.

On a terminal Keras redraws one progress bar in place. Written to a file or a pipe, each redraw
becomes a new line with terminal colour codes (thousands per run): there, `fit` prints one plain
line per epoch (`fit_verbosity()` is 2) and `StepLines` one plain line every N steps.

Example:
    >>> model.fit(data, epochs=1, verbose=fit_verbosity(),  # doctest: +SKIP
    ...           callbacks=progress_callbacks(steps=300))
"""
from __future__ import annotations

import sys
import time

import keras

#: Plain progress lines per run of `steps` steps when the output is not a terminal.
LINES_PER_RUN = 10


def interactive() -> bool:
    """Whether standard output is a terminal (where a progress bar redraws in place)."""
    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


def fit_verbosity() -> int:
    """`verbose` for `Model.fit`: 1 (a progress bar) on a terminal, 2 (one line per epoch) otherwise."""
    return 1 if interactive() else 2


class StepLines(keras.callbacks.Callback):
    """Prints `   step 30/300: loss 4.1203, mlm_accuracy 0.1520 (12 s)` every `every` steps.

    The values are the running means Keras reports for the epoch so far.
    """

    def __init__(self, steps: int, every: int):
        super().__init__()
        self.steps, self.every = int(steps), max(1, int(every))
        self._step, self._start = 0, None

    def on_train_begin(self, logs=None):
        self._start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every and self._step != self.steps:
            return
        values = []
        for name, value in (logs or {}).items():
            try:
                values.append(f"{name} {float(value):.4f}")
            except (TypeError, ValueError):
                continue
        seconds = time.time() - (self._start or time.time())
        print(f"   step {self._step}/{self.steps}: {', '.join(values)} ({seconds:.0f} s)", flush=True)


def progress_callbacks(steps: int) -> list:
    """`[StepLines]` (about `LINES_PER_RUN` lines for `steps` steps) when not on a terminal, else `[]`."""
    if interactive():
        return []
    return [StepLines(steps, every=max(1, steps // LINES_PER_RUN))]
