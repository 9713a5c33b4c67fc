"""``keras_lm.data.load``: one entry point for embedded corpora, TFDS datasets and local text files."""
from __future__ import annotations

import glob
import os
from typing import Sequence, Union

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_lm.data.builders import EMBEDDED_BUILDERS
from keras_lm.data.errors import DataUnavailableError
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
    text: str | None = None,
    label: str | None = None,
    text_pair: str | None = None,
    label_names: Sequence[str] | None = None,
    strict: bool = False,
) -> tf.data.Dataset:
    """Load a text dataset as a ``tf.data.Dataset`` of dict examples.

    Args:
        name: one of
            - an embedded corpus: ``"shakespeare"`` (``{"title", "text"}``, splits train/validation),
              ``"movie_snippets"`` (``{"id", "text", "label", "rating"}``, splits
              train/validation/test), ``"state_of_the_union"`` (``{"year", "president",
              "party", "text"}``, splits train/validation), ``"wordnet_glosses"``
              (``{"part_of_speech", "first_offset", "text"}``, splits train/validation),
              ``"bible_en_es"`` (``{"en", "es", "book", "chapter", "verse"}``, splits
              train/validation/test) or ``"imdb_reviews_text"`` (``{"index", "text"}``, splits
              train/validation); prepared on first use;
            - ``"tfds:NAME"``, e.g. ``"tfds:glue/sst2"``: passed to ``tfds.load(NAME, ...)``;
            - a path, glob or list of paths of text files: ``{"text": line}`` for each non-blank line.
        split: split name; TFDS slicing such as ``"train[:10%]"`` works for embedded and TFDS
            datasets. Local files have the single split ``"train"``.
        data_dir: TFDS data directory; default ``$KERAS_LM_DATA_DIR``, else ``~/tensorflow_datasets``
            (for ``"tfds:"`` names, TFDS' own default).
        shuffle_files: shuffle the order of the dataset's files (TFDS datasets only).
        text, label, text_pair: read labelled examples ``{"text", "label"}`` (and ``"text_pair"``)
            from these columns of a CSV / TSV / JSON Lines file, or these features of an embedded
            or TFDS dataset; string labels become ids and the dataset carries ``label_names`` and
            ``bad_rows`` (see ``keras_lm.data.labelled``). ``label_names`` fixes the names' order;
            ``strict=True`` raises at the first bad row instead of reporting it.

    Returns:
        A ``tf.data.Dataset`` whose elements are dicts of tensors.

    Raises:
        ValueError: unknown name; a split that is unknown, badly formed (``"train[:200%]"``) or
            selects nothing (``"train[5:2]"``, an empty split).
        TypeError: a split that is not a string (e.g. None).
        FileNotFoundError: a path or glob that matches no file.
        keras_lm.data.DataUnavailableError: an embedded corpus could not be fetched, or a
            ``"tfds:"`` dataset is not prepared in the data directory (loading never downloads
            TFDS data: prepare it with ``tfds build NAME``).

    Example:
        >>> import keras_lm
        >>> works = keras_lm.data.load("shakespeare", split="train")
        >>> sorted(works.element_spec)
        ['text', 'title']
    """
    if text is not None or label is not None or text_pair is not None:
        from keras_lm.data.labelled import load_labelled

        return load_labelled(name, split, text=text or "text", label=label or "label", text_pair=text_pair,
                             label_names=label_names, strict=strict, data_dir=data_dir)
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
    _check_split_type(name, split)
    builder = prepared_builder(name, data_dir)
    _check_split(name, split, builder.info.splits)
    return builder.as_dataset(split=split, shuffle_files=shuffle_files)


def _check_split_type(name: str, split) -> None:
    if not isinstance(split, str):
        raise TypeError(
            f"split must be a string such as 'train', 'train[:10%]' or 'train+validation' for "
            f"dataset {name!r}; got {split!r}."
        )


def _check_split(name: str, split: str, splits) -> int:
    """The number of examples ``split`` selects from ``splits`` (a TFDS ``SplitDict``).

    A clear ``ValueError`` naming the split and the available splits when ``split`` is unknown,
    badly formed (e.g. ``"train[:200%]"``) or selects nothing (e.g. ``"train[5:2]"``)."""
    _check_split_type(name, split)
    available = sorted(splits)
    if split not in splits and "[" not in split and "+" not in split:
        raise ValueError(f"Dataset {name!r} has no split {split!r}; its splits are {available}.")
    try:
        instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(splits)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[-1].split(" Got: ")[0].rstrip(".")
        raise ValueError(_split_message(name, split, reason, splits)) from None
    selected = 0
    for instruction in instructions:
        total = splits[instruction.splitname].num_examples
        first = 0 if instruction.from_ is None else instruction.from_
        last = total if instruction.to is None else instruction.to
        if last <= first:
            piece = "it" if len(instructions) == 1 else f"its part of {instruction.splitname!r}"
            reason = f"{piece} selects no examples (from {first} to {last} of {total})"
            raise ValueError(_split_message(name, split, reason, splits))
        selected += last - first
    return selected


def _split_message(name: str, split: str, reason: str, splits) -> str:
    sizes = ", ".join(f"{s} ({splits[s].num_examples} examples)" for s in sorted(splits))
    return (
        f"Invalid split {split!r} for dataset {name!r}: {reason}. Its splits are {sizes}; "
        "name one, slice it with 'train[:10%]' or 'train[5:20]' (start < end, percentages "
        "within 100%), or join them with 'train+validation'."
    )


def _load_tfds(tfds_name: str, split: str, data_dir, shuffle_files: bool) -> tf.data.Dataset:
    if not tfds_name:
        raise ValueError(f"Expected '{TFDS_PREFIX}NAME', e.g. '{TFDS_PREFIX}glue/sst2'; got no name.")
    _check_split_type(f"{TFDS_PREFIX}{tfds_name}", split)
    if data_dir is None and os.environ.get(DATA_DIR_ENV):
        data_dir = resolve_data_dir()
    builder = _tfds_builder(tfds_name, data_dir)
    if not builder.is_prepared():
        raise DataUnavailableError(_not_prepared_message(tfds_name, builder, data_dir))
    _check_split(f"{TFDS_PREFIX}{tfds_name}", split, builder.info.splits)
    return builder.as_dataset(split=split, shuffle_files=shuffle_files)


def _tfds_builder(tfds_name: str, data_dir) -> tfds.core.DatasetBuilder:
    """The TFDS builder of ``tfds_name`` (nothing is downloaded or written)."""
    try:
        return tfds.builder(tfds_name, data_dir=None if data_dir is None else os.fspath(data_dir))
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"Unknown TFDS dataset {tfds_name!r}: it is not in tfds.list_builders() and not "
            "prepared in the data directory."
        ) from None


def _not_prepared_message(tfds_name: str, builder: tfds.core.DatasetBuilder, data_dir) -> str:
    where = f" --data_dir {os.fspath(data_dir)}" if data_dir is not None else ""
    return (
        f"TFDS dataset {tfds_name!r} is not prepared in {builder.data_dir} (keras_lm never "
        f"downloads TFDS data while loading): prepare it once on a machine with network access "
        f"with `tfds build {tfds_name}{where}` (or tfds.builder({tfds_name!r}).download_and_prepare()) "
        "and load it from that data directory (the data_dir argument)."
    )


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
        raise ValueError(
            f"Local text files have a single split 'train' (slice it with Dataset.take/skip); "
            f"got split={split!r}."
        )
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
