"""Writing a recipe step's markdown report and copying it next to its recipe."""
from __future__ import annotations

import os
import shutil

from keras_lm.recipes.workflows import _stage


def write_report(output: str, name: str, lines: list, results: str | None = None, copies: tuple = ()) -> str:
    """Writes OUTPUT/`name` from markdown `lines`, prints them (the last line, the figure link, left out)
    and, when `results` is given, copies the report and the files `copies` of OUTPUT there. Paths inside
    the run folder are written as ``OUTPUT/...``, so a copied report names no folder of this machine.

    Example:
        >>> write_report("runs/a", "peft.md", ["# PEFT", "![plot](peft.png)"],
        ...              results="applications/peft", copies=("peft.png",))  # doctest: +SKIP
        'runs/a/peft.md'
    """
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, name)
    lines = [with_output_placeholder(line, output) for line in lines]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    _stage(f"report written to {path}")
    print("\n".join(lines[:-1]))
    if results:
        os.makedirs(results, exist_ok=True)
        for copied in (name, *copies):
            shutil.copy2(os.path.join(output, copied), os.path.join(results, copied))
        _stage(f"report copied to {results}")
    return path


def with_output_placeholder(text: str, output: str) -> str:
    """``text`` with the run folder ``output`` (as given or absolute) written as ``OUTPUT``.

    Example:
        >>> with_output_placeholder("Start: /data/runs/a/encoder", "/data/runs/a")
        'Start: OUTPUT/encoder'
    """
    for folder in sorted({os.path.abspath(output), os.path.normpath(output)}, key=len, reverse=True):
        if folder not in (".", os.sep):
            text = text.replace(folder + os.sep, "OUTPUT" + os.sep)
    return text
