"""Labelled examples from your own files (CSV, TSV, JSON Lines) or from TFDS features.

``read_labelled(path, text="review", label="sentiment")`` reads every row of the file in Python,
so that each row that cannot be used is counted and named with its line number instead of being
dropped silently: a missing column or field, an empty text, a label that is not a class, a row
that is not valid UTF-8 (or not valid JSON). ``strict=True`` stops at the first such row.

Labels are class ids (integers) or class names (any other text). Names become ids in sorted
order unless ``label_names`` gives the order (pass the training file's names when reading its
validation and test files, so that every file maps a name to the same id); the names are kept
(``label_names``) so that a classifier can carry them to its serving export.

``keras_lm.data.load(path, text=..., label=...)`` is the same as ``read_labelled(...).dataset()``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import sys
from typing import Sequence

import numpy as np
import tensorflow as tf

#: File formats by extension (lower case).
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
#: Bad rows listed one by one in the printed report (all of them are in ``bad_rows``).
LISTED_BAD_ROWS = 10
_INTEGER = re.compile(r"^[+-]?\d+$")


class BadRowError(ValueError):
    """A row that cannot be used, under ``strict=True`` (the message names the file and the line)."""


@dataclasses.dataclass(frozen=True)
class BadRow:
    """One row that was not used: its 1-based line number in the file and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclasses.dataclass
class LabelledExamples:
    """The usable rows of a labelled file, with the rows that were not used and why.

    ``texts`` (and ``text_pairs`` when a second text column was read) are strings, ``labels``
    int64 class ids, ``lines`` the line number each example came from. ``label_names`` names the
    classes by id (None when the file gives integer ids). ``rows`` counts every row read.
    """

    source: str
    texts: list
    labels: np.ndarray
    lines: list
    label_names: tuple | None
    bad_rows: list
    rows: int
    text_pairs: list | None = None

    @property
    def num_classes(self) -> int:
        """The number of classes: the names, else the largest id + 1."""
        if self.label_names is not None:
            return len(self.label_names)
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def dataset(self) -> tf.data.Dataset:
        """``{"text", "label"}`` (and ``"text_pair"``) examples in file order.

        The dataset also carries ``label_names`` and ``bad_rows`` as attributes (lost by
        ``map``, ``batch`` and other transformations: keep them from here).
        """
        columns = {"text": np.array(self.texts, dtype=object), "label": self.labels}
        if self.text_pairs is not None:
            columns["text_pair"] = np.array(self.text_pairs, dtype=object)
        dataset = tf.data.Dataset.from_tensor_slices(columns)
        dataset.label_names = self.label_names
        dataset.bad_rows = list(self.bad_rows)
        return dataset

    def summary(self) -> str:
        """One line: rows kept and skipped, the classes and how many examples each has."""
        counts = np.bincount(self.labels, minlength=self.num_classes) if len(self.labels) else []
        names = self.label_names or tuple(str(i) for i in range(len(counts)))
        classes = ", ".join(f"{name} {count:,}" for name, count in zip(names, counts))
        skipped = f", skipped {len(self.bad_rows):,} bad rows" if self.bad_rows else ""
        return (f"{self.source}: {len(self.texts):,} examples of {self.rows:,} rows{skipped}; "
                f"{len(counts)} classes ({classes})")

    def report(self, file=None) -> None:
        """Prints the summary and the bad rows (the first ``LISTED_BAD_ROWS`` of them) to ``file``."""
        file = sys.stdout if file is None else file
        print(f"[data] {self.summary()}", file=file, flush=True)
        for bad in self.bad_rows[:LISTED_BAD_ROWS]:
            print(f"[data]   skipped {bad}", file=file, flush=True)
        if len(self.bad_rows) > LISTED_BAD_ROWS:
            print(f"[data]   ... and {len(self.bad_rows) - LISTED_BAD_ROWS:,} more bad rows (every one is in "
                  "bad_rows)", file=file, flush=True)


def file_format(path: str) -> str | None:
    """``"csv"``, ``"tsv"`` or ``"jsonl"`` from the file's extension, else None."""
    return FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())


def read_labelled(
    path: str | os.PathLike,
    text: str = "text",
    label: str = "label",
    text_pair: str | None = None,
    label_names: Sequence[str] | None = None,
    strict: bool = False,
    quiet: bool = False,
) -> LabelledExamples:
    """Reads a CSV, TSV or JSON Lines file of labelled texts; every unusable row is reported.

    Args:
        path: a ``.csv`` (comma-separated, quoted as RFC 4180, a header row naming the columns),
            ``.tsv`` (tab-separated, no quoting, a header row) or ``.jsonl`` / ``.json`` file
            (one JSON object per line). UTF-8, a byte-order mark is allowed.
        text: the column (or JSON key) holding the text.
        label: the column holding the label: an integer class id, or a class name.
        text_pair: optional second text column (sentence-pair tasks).
        label_names: the class names in id order. Rows whose label is not one of them are bad
            rows. Default: the file's own names, sorted (or integer ids when its labels are ids).
        strict: raise ``BadRowError`` at the first bad row instead of skipping and reporting it.
        quiet: do not print the summary and the bad rows.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown extension, a header without the named columns, or no usable row.
        BadRowError: with ``strict=True``, the first bad row (file, line number and reason).

    Example:
        >>> reviews = read_labelled("reviews.csv", text="review", label="sentiment")  # doctest: +SKIP
        >>> reviews.label_names, [str(bad) for bad in reviews.bad_rows]  # doctest: +SKIP
        (('negative', 'positive'), ['line 7: empty text (column review)'])
    """
    path = os.fspath(path)
    kind = file_format(path)
    if kind is None:
        raise ValueError(f"'{path}': labelled data must be a .csv, .tsv or .jsonl file; got "
                         f"'{os.path.splitext(path)[1] or 'no extension'}'.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No labelled data file at '{path}'.")
    columns = {"text": text, "label": label, **({"text_pair": text_pair} if text_pair else {})}
    reader = _read_json_lines(path, columns) if kind == "jsonl" else _read_table(path, columns, kind)
    parser = _LabelParser(label_names)
    rows, kept, bad_rows = 0, [], []
    for line, fields, problem in reader:
        rows += 1
        if problem is None:
            problem = _text_problem(fields, columns) or parser.problem(fields["label"], line)
        if problem is not None:
            if strict:
                raise BadRowError(f"'{path}' line {line}: {problem}. Fix the row, or pass strict=False to skip "
                                  "bad rows and have them reported.")
            bad_rows.append(BadRow(line, problem))
            continue
        kept.append((line, fields))
    if not kept:
        reasons = f" (line {bad_rows[0].line}: {bad_rows[0].reason})" if bad_rows else ""
        raise ValueError(f"'{path}' has no usable row: {rows} rows read{reasons}.")
    names, ids = parser.ids([fields["label"] for _, fields in kept])
    examples = LabelledExamples(
        source=path,
        texts=[fields["text"] for _, fields in kept],
        labels=np.array(ids, dtype=np.int64),
        lines=[line for line, _ in kept],
        label_names=names,
        bad_rows=bad_rows,
        rows=rows,
        text_pairs=[fields["text_pair"] for _, fields in kept] if text_pair else None,
    )
    if not quiet:
        examples.report()
    return examples


def read_rows(path: str | os.PathLike, columns: dict):
    """``(line, {key: value} or None, problem or None)`` for each row of a CSV, TSV or JSON Lines file.

    ``columns`` maps the keys wanted to column names (JSON keys); a header without one of them is
    a ValueError. A row that cannot be read gives ``None`` and the reason (see ``read_labelled``).
    Any other file gives one ``{key: line}`` per non-blank line for its single key.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: '{path}'.")
    kind = file_format(path)
    if kind == "jsonl":
        return _read_json_lines(path, columns)
    if kind is not None:
        return _read_table(path, columns, kind)
    if len(columns) != 1:
        raise ValueError(f"'{path}' is a text file (one text per line); columns need a .csv, .tsv or .jsonl file.")
    return _read_text_lines(path, next(iter(columns)))


def _utf8_lines(path: str):
    """``(line number, text, problem)`` per non-blank line (newline removed); text is None when the line
    is not valid UTF-8, and the problem says which byte."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as file:
        for line, content in enumerate(file, start=1):
            content = content.rstrip("\r\n")
            if not content.strip():
                continue
            byte = _undecodable(content)
            if byte:
                yield line, None, f"not valid UTF-8 (byte {byte}); save the file as UTF-8"
            else:
                yield line, content, None


def _read_text_lines(path: str, key: str):
    for line, content, problem in _utf8_lines(path):
        yield line, None if problem else {key: content}, problem


def _undecodable(value: str) -> str | None:
    """The first byte that was not valid UTF-8 (read with ``surrogateescape``), as ``0xE9``, else None."""
    for character in value:
        if "\udc80" <= character <= "\udcff":
            return f"0x{ord(character) - 0xDC00:02X}"
    return None


def _read_table(path: str, columns: dict, kind: str):
    """``(line, {key: value}, problem)`` per record of a CSV/TSV file (``line``: where it starts)."""
    options = {"delimiter": ","} if kind == "csv" else {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as file:
        reader = csv.reader(file, strict=True, **options)
        header, line = None, 0
        while header is None:
            try:
                row = next(reader)
            except StopIteration:
                raise ValueError(f"'{path}' is empty: it needs a header row naming its columns.") from None
            line = reader.line_num
            header = row or None
        header = [name.strip() for name in header]
        missing = [name for name in columns.values() if name not in header]
        if missing:
            raise ValueError(
                f"'{path}' has no column {_listed(missing)}; its header (line {line}) names "
                f"{', '.join(repr(h) for h in header)}. Pass the column names (e.g. --text-column, --label-column)."
            )
        position = {key: header.index(name) for key, name in columns.items()}
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield start, None, f"not a valid {kind.upper()} row ({error})"
                continue
            if not row:
                continue  # a blank line holds no row
            if len(row) != len(header):
                hint = " (an unquoted ',' in a text? quote the field)" if kind == "csv" else ""
                yield start, None, f"{len(row)} fields where the header has {len(header)}{hint}"
                continue
            fields = {key: row[index] for key, index in position.items()}
            byte = next((b for b in map(_undecodable, row) if b), None)
            if byte:
                yield start, None, f"not valid UTF-8 (byte {byte}); save the file as UTF-8"
                continue
            yield start, fields, None


def _read_json_lines(path: str, columns: dict):
    """``(line, {key: value}, problem)`` per non-blank line of a JSON Lines file."""
    for line, content, problem in _utf8_lines(path):
        if problem:
            yield line, None, problem
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as error:
            yield line, None, f"not valid JSON ({error.msg} at column {error.colno})"
            continue
        if not isinstance(record, dict):
            yield line, None, f"a JSON {type(record).__name__}, not an object with fields"
            continue
        missing = [name for name in columns.values() if name not in record]
        if missing:
            yield line, None, f"no field {_listed(missing)}"
            continue
        yield line, {key: record[name] for key, name in columns.items()}, None


def _listed(names: list) -> str:
    """`'a'`, `'a' or 'b'`, `'a', 'b' or 'c'`."""
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _text_problem(fields: dict, columns: dict) -> str | None:
    for key in ("text", "text_pair"):
        if key not in columns:
            continue
        value = fields[key]
        if not isinstance(value, str):
            return f"{columns[key]} is {_json_kind(value)}, not a text"
        if not value.strip():
            return f"empty text (column {columns[key]})"
    return None


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a JSON {type(value).__name__}"


class _LabelParser:
    """Decides whether a file's labels are ids or names (from its first usable label) and checks each."""

    def __init__(self, label_names):
        self.names = None if label_names is None else tuple(str(name) for name in label_names)
        if self.names is not None and len(set(self.names)) != len(self.names):
            raise ValueError(f"label_names repeats a name: {list(self.names)}.")
        self.mode, self.first_line = ("names", None) if self.names is not None else (None, None)

    @staticmethod
    def _as_id(value):
        """The integer id ``value`` holds (an int, an integral float, or integer text), else None."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER.match(value.strip()):
            return int(value.strip())
        return None

    def problem(self, value, line: int) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return "empty label"
        if isinstance(value, (bool, list, dict)) or (isinstance(value, float) and not value.is_integer()):
            return f"label {json.dumps(value)} is neither a class id (an integer) nor a class name"
        if self.names is not None:
            if str(value).strip() in self.names:
                return None
            identifier = self._as_id(value)
            if identifier is not None and 0 <= identifier < len(self.names):
                return None
            return f"unknown label {str(value).strip()!r}; the labels are {', '.join(self.names)}"
        identifier = self._as_id(value)
        if self.mode is None:
            self.mode, self.first_line = ("ids" if identifier is not None else "names"), line
        if self.mode == "ids":
            if identifier is None:
                return (f"label {str(value).strip()!r} is not a class id: this file's labels are integer ids "
                        f"(from line {self.first_line})")
            if identifier < 0:
                return f"label {identifier} is negative; class ids start at 0"
        elif not isinstance(value, str):
            return (f"label {value!r} is a number: this file's labels are names (from line {self.first_line}); "
                    "quote it to make it a name")
        return None

    def ids(self, values: list) -> tuple[tuple | None, list]:
        """``(label names or None, ids)`` for the labels of the rows kept."""
        if self.mode == "ids":
            return None, [self._as_id(value) for value in values]
        names = self.names if self.names is not None else tuple(sorted({str(v).strip() for v in values}))
        index = {name: i for i, name in enumerate(names)}
        return names, [index[str(v).strip()] if str(v).strip() in index else self._as_id(v) for v in values]


def load_labelled(
    name: str | os.PathLike,
    split: str = "train",
    text: str = "text",
    label: str = "label",
    text_pair: str | None = None,
    label_names: Sequence[str] | None = None,
    strict: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> tf.data.Dataset:
    """``{"text", "label"}`` (and ``"text_pair"``) examples from a labelled file or a TFDS dataset.

    A path is read with ``read_labelled`` (``split`` must be ``"train"``: a file is one split);
    an embedded corpus or ``"tfds:NAME"`` has its features ``text`` / ``label`` / ``text_pair``
    renamed, and its label names taken from the label's ``ClassLabel``. The dataset carries
    ``label_names`` and ``bad_rows`` as attributes.

    Example:
        >>> snippets = load_labelled("movie_snippets", split="validation")
        >>> snippets.label_names
        ('negative', 'positive')
    """
    from keras_lm.data.loading import load

    location = os.fspath(name)
    if file_format(location) is not None or os.path.isfile(location):
        if split not in ("train", None):
            raise ValueError(f"'{location}' is a single split: load it with split='train' (the default) and give "
                             f"the other splits as their own files; got split={split!r}.")
        return read_labelled(location, text=text, label=label, text_pair=text_pair, label_names=label_names,
                             strict=strict).dataset()
    dataset = load(location, split=split, data_dir=data_dir)
    columns = {"text": text, "label": label, **({"text_pair": text_pair} if text_pair else {})}
    features = dataset.element_spec
    missing = [source for source in columns.values() if source not in features]
    if missing:
        raise ValueError(f"Dataset {location!r} has no feature {_listed(missing)}; its features "
                         f"are {', '.join(repr(f) for f in sorted(features))}.")
    if features[label].dtype == tf.string:
        raise ValueError(f"The label feature {label!r} of {location!r} holds text; keras_lm reads class ids "
                         "(integers or a ClassLabel) from TFDS datasets.")
    dataset = dataset.map(lambda example: {key: example[source] for key, source in columns.items()})
    names = _class_names(location, label, data_dir)
    if label_names is not None and names is not None and tuple(map(str, label_names)) != names:
        raise ValueError(f"label_names {list(label_names)} differ from the names of {location!r}'s "
                         f"{label!r}: {list(names)}.")
    dataset.label_names = names if names is not None else (None if label_names is None else tuple(label_names))
    dataset.bad_rows = []
    return dataset


def _class_names(name: str, label: str, data_dir) -> tuple | None:
    """The names of a TFDS ``ClassLabel`` feature, else None."""
    from keras_lm.data.builders import EMBEDDED_BUILDERS
    from keras_lm.data.loading import TFDS_PREFIX, _tfds_builder, prepared_builder

    if name in EMBEDDED_BUILDERS:
        builder = prepared_builder(name, data_dir)
    else:
        builder = _tfds_builder(name[len(TFDS_PREFIX):], data_dir)
    feature = builder.info.features[label]
    names = getattr(feature, "names", None)
    return tuple(names) if names else None
