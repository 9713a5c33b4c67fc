"""Where keras_lm keeps fetched sources and prepared datasets."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "KERAS_LM_CACHE"
DATA_DIR_ENV = "KERAS_LM_DATA_DIR"


def cache_dir() -> Path:
    """Directory for fetched package sources: ``$KERAS_LM_CACHE`` or ``~/.cache/keras_lm``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.cache/keras_lm").expanduser()


def data_dir(explicit: str | os.PathLike | None = None) -> str:
    """TFDS data directory: ``explicit``, else ``$KERAS_LM_DATA_DIR``, else ``~/tensorflow_datasets``."""
    if explicit is not None:
        return os.fspath(Path(explicit).expanduser())
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return os.fspath(Path(configured).expanduser())
    return os.fspath(Path("~/tensorflow_datasets").expanduser())
