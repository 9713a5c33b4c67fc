"""Writing a recipe step's markdown report and copying it next to its recipe."""
from __future__ import annotations

import os
import shutil

from keras_lm.recipes.workflows import _stage


def write_report(output: str, name: str, lines: list, results: str | None = None, copies: tuple = ()) -> str:
    """Writes OUTPUT/`name` from markdown `lines`, prints them (the last line, the figure link, left out)
    and, when `results` is given, copies the report and the files `copies` of OUTPUT there.

    Example:
        >>> write_report("runs/a", "peft.md", ["# PEFT", "![plot](peft.png)"],
        ...              results="applications/peft", copies=("peft.png",))  # doctest: +SKIP
        'runs/a/peft.md'
    """
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, name)
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
