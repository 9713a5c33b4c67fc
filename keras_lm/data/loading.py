"""``keras_lm.data.load``: one entry point for embedded corpora, TFDS datasets and local text files."""
from __future__ import annotations

import glob
import os
from typing import Sequence, Union

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_lm.data.builders import EMBEDDED_BUILDERS
from keras_lm.data.fetch import report
from keras_lm.data.paths import DATA_DIR_ENV, data_dir as resolve_data_dir

TFDS_PREFIX = "tfds:"
_GLOB_CHARS = "*?["

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


def load(
    name: Source,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    shuffle_files: bool = False,
) -> tf.data.Dataset:
    """Load a text dataset as a ``tf.data.Dataset`` of dict examples.

    Args:
        name: one of
            - an embedded corpus: ``"shakespeare"`` (``{"title", "text"}``, splits train/validation)
              or ``"movie_snippets"`` (``{"id", "text", "label", "rating"}``, splits
              train/validation/test); prepared on first use;
            - ``"tfds:NAME"``, e.g. ``"tfds:glue/sst2"``: passed to ``tfds.load(NAME, ...)``;
            - a path, glob or list of paths of text files: ``{"text": line}`` for each non-blank line.
        split: split name; TFDS slicing such as ``"train[:10%]"`` works for embedded and TFDS
            datasets. Local files have the single split ``"train"``.
        data_dir: TFDS data directory; default ``$KERAS_LM_DATA_DIR``, else ``~/tensorflow_datasets``
            (for ``"tfds:"`` names, TFDS' own default).
        shuffle_files: shuffle the order of the dataset's files (TFDS datasets only).

    Returns:
        A ``tf.data.Dataset`` whose elements are dicts of tensors.

    Raises:
        ValueError: unknown name, unknown split, or an empty split.
        FileNotFoundError: a path or glob that matches no file.
        keras_lm.data.DataUnavailableError: an embedded corpus could not be fetched.

    Example:
        >>> import keras_lm
        >>> works = keras_lm.data.load("shakespeare", split="train")
        >>> sorted(works.element_spec)
        ['text', 'title']
    """
    if isinstance(name, (list, tuple)):
        return _load_text_files([os.fspath(p) for p in name], split)
    name = os.fspath(name)
    if name in EMBEDDED_BUILDERS:
        return _load_embedded(name, split, data_dir, shuffle_files)
    if name.startswith(TFDS_PREFIX):
        return _load_tfds(name[len(TFDS_PREFIX):], split, data_dir, shuffle_files)
    if _looks_like_path(name):
        return _load_text_files([name], split)
    raise ValueError(
        f"Unknown dataset {name!r}. Use an embedded corpus "
        f"({', '.join(repr(n) for n in EMBEDDED_BUILDERS)}), a TFDS dataset as "
        f"'{TFDS_PREFIX}NAME' (e.g. '{TFDS_PREFIX}glue/sst2'), or a path, glob or list of paths "
        "of text files (one example per non-blank line)."
    )


def prepared_builder(name: str, data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """The builder of embedded corpus ``name``, prepared (fetched and written) if it is not yet."""
    builder = EMBEDDED_BUILDERS[name](data_dir=resolve_data_dir(data_dir))
    if not builder.is_prepared():
        report(f"preparing {name} {builder.version} in {builder.data_dir} ...")
        builder.download_and_prepare()
        report(f"prepared {name}: {split_summary(builder)}")
    return builder


def split_summary(builder: tfds.core.DatasetBuilder) -> str:
    """E.g. ``"train 38, validation 4 examples"``."""
    splits = builder.info.splits
    return ", ".join(f"{s} {splits[s].num_examples}" for s in splits.keys()) + " examples"


def _load_embedded(name: str, split: str, data_dir, shuffle_files: bool) -> tf.data.Dataset:
    builder = prepared_builder(name, data_dir)
    try:
        num_examples = builder.info.splits[split].num_examples
    except (KeyError, ValueError):
        raise ValueError(
            f"Dataset {name!r} has no split {split!r}; its splits are {sorted(builder.info.splits)}."
        ) from None
    if num_examples == 0:
        raise ValueError(f"Split {split!r} of dataset {name!r} is empty.")
    return builder.as_dataset(split=split, shuffle_files=shuffle_files)


def _load_tfds(tfds_name: str, split: str, data_dir, shuffle_files: bool) -> tf.data.Dataset:
    if not tfds_name:
        raise ValueError(f"Expected '{TFDS_PREFIX}NAME', e.g. '{TFDS_PREFIX}glue/sst2'; got no name.")
    if data_dir is None and os.environ.get(DATA_DIR_ENV):
        data_dir = resolve_data_dir()
    try:
        return tfds.load(tfds_name, split=split, data_dir=data_dir, shuffle_files=shuffle_files)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"Unknown TFDS dataset {tfds_name!r}: it is not in tfds.list_builders() and not "
            "prepared in the data directory."
        ) from None


def _looks_like_path(name: str) -> bool:
    return (
        os.sep in name
        or "/" in name
        or any(c in name for c in _GLOB_CHARS)
        or os.path.splitext(name)[1] != ""
        or os.path.exists(name)
    )


def _load_text_files(patterns: list[str], split: str) -> tf.data.Dataset:
    if split not in ("train", None):
        raise ValueError(f"Local text files have a single split 'train'; got split={split!r}.")
    if not patterns:
        raise ValueError("Expected at least one text file path; got an empty list.")
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise FileNotFoundError(f"No text file matches {pattern!r}.")
        files.extend(matches)
    if not any(_has_text(f) for f in files):
        raise ValueError(f"The text files {files} contain no non-blank line.")
    lines = tf.data.TextLineDataset(files)
    lines = lines.map(lambda line: tf.strings.regex_replace(line, "\r$", ""))
    lines = lines.filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0)
    return lines.map(lambda line: {"text": line})


def _has_text(path: str, chunk_size: int = 1 << 16) -> bool:
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            if chunk.strip():
                return True
    return False
