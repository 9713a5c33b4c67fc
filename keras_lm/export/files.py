"""Writing export directories atomically: a failed export never damages what is already saved."""
import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_directory(directory: str, overwrite: bool = False):
    """Yields a temporary directory that replaces `directory` only if the block succeeds.

    Raises FileExistsError (before any work) when `directory` exists and `overwrite` is False.
    """
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and not overwrite:
        raise FileExistsError(f"'{directory}' already exists; pass overwrite=True to replace it.")
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.", dir=parent)
    try:
        yield staging
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
