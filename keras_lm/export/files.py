"""Writing export directories safely: atomically, and never over anything but an export of the same kind.

Every export holds a marker file (`.keras_lm_export`, containing its kind: "serving", "generation",
"encoder"). With `overwrite=True` an existing directory is replaced only if it carries the marker of
the same kind (or is empty); anything else is refused before any work is done, so an export can never
delete a user's files, the current folder, the home folder or the model it is exporting.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterable

MARKER_FILE = ".keras_lm_export"
"""Name of the file that marks a directory as a keras_lm export; it holds the export's kind."""


def export_kind(directory: str) -> str | None:
    """The kind written in `directory`'s marker file, or None when it is not a keras_lm export."""
    try:
        with open(os.path.join(directory, MARKER_FILE), encoding="utf-8") as file:
            return file.read().strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, UnicodeDecodeError):
        return None


def _real(path) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _contains(directory: str, path: str) -> bool:
    """Whether `path` is `directory` itself or lies inside it (both real, absolute paths)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def refuse_unsafe_directory(directory, protected: Iterable = ()) -> str:
    """Raise FileExistsError if writing an export at `directory` could delete something precious.

    Refused: an empty name, the filesystem root, the home folder, the current working directory
    or any folder containing it, and any folder containing (or equal to) a `protected` path such
    as the source model. Returns the absolute path of `directory`.
    """
    if directory is None or not os.fspath(directory).strip():
        raise FileExistsError(
            "Refusing to export to '': it is the current working folder; pass a new folder, e.g. 'export/1'."
        )
    target = _real(directory)
    precious = {
        _real(os.sep): "the filesystem root",
        _real("~"): "your home folder",
    }
    if target in precious:
        raise FileExistsError(f"Refusing to export to '{directory}': it is {precious[target]}; pass a new folder.")
    if _contains(target, _real(os.getcwd())):
        raise FileExistsError(
            f"Refusing to export to '{directory}': it is or contains the current working folder; pass a new folder."
        )
    for path in protected or ():
        if path is not None and _contains(target, _real(path)):
            raise FileExistsError(
                f"Refusing to export to '{directory}': it holds '{os.fspath(path)}', a source of this "
                "export (e.g. the model); pass a folder that does not contain it."
            )
    return os.path.abspath(os.fspath(directory))


def check_export_target(directory, overwrite: bool = False, kind: str = "export", protected: Iterable = ()) -> str:
    """Raise FileExistsError (one line naming the folder and why) unless `directory` may be written.

    A new directory may always be written; an existing one only with `overwrite=True` and only if
    it is empty or a keras_lm export of the same `kind`. Returns the absolute path.
    """
    directory = refuse_unsafe_directory(directory, protected)
    if not os.path.lexists(directory):
        return directory
    if not overwrite:
        raise FileExistsError(f"'{directory}' already exists; pass overwrite=True to replace it.")
    if os.path.islink(directory) or not os.path.isdir(directory):
        raise FileExistsError(
            f"Refusing to overwrite '{directory}': it is not a folder holding a {_label(kind)}; "
            "remove it yourself or pass another folder."
        )
    found = export_kind(directory)
    if found == kind or (found is None and not os.listdir(directory)):
        return directory
    why = "it is not a keras_lm export" if found is None else f"it holds a {_label(found)}"
    raise FileExistsError(
        f"Refusing to overwrite '{directory}': {why}, and only a previous {_label(kind)} (marked by "
        f"its '{MARKER_FILE}' file) is ever replaced; remove it yourself or pass another folder."
    )


def _label(kind: str) -> str:
    return "keras_lm export" if kind == "export" else f"keras_lm {kind} export"


@contextlib.contextmanager
def atomic_directory(directory: str, overwrite: bool = False, kind: str = "export", protected: Iterable = ()):
    """Yields a temporary directory that replaces `directory` only if the block succeeds.

    The finished directory holds a marker file naming `kind`. Raises FileExistsError before any
    work when `directory` exists and `overwrite` is False, or when replacing it could delete
    anything but a previous export of the same `kind` (see `check_export_target`).
    """
    directory = check_export_target(directory, overwrite, kind, protected)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", dir=parent)
    try:
        yield staging
        with open(os.path.join(staging, MARKER_FILE), "w", encoding="utf-8") as file:
            file.write(f"{kind}\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:  # the block may have run for minutes: check again just before replacing anything
        check_export_target(directory, overwrite, kind, protected)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if os.path.exists(directory):
        backup = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.old.", dir=parent)
        os.rmdir(backup)
        os.rename(directory, backup)
    os.rename(staging, directory)
    if backup:
        shutil.rmtree(backup, ignore_errors=True)
