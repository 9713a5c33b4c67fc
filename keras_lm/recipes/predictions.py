"""Answers and figures from a serving export: `keras-lm predict` and `keras-lm evaluate`.

    keras-lm predict --model runs/a/serving/1 reviews.txt          # one JSON line per input
    keras-lm evaluate --model runs/a/serving/1 --data test.csv     # accuracy, macro F1, loss
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

from keras_lm.data.labelled import read_labelled, read_rows

#: Inputs sent to the export per call.
BATCH_SIZE = 32


def _load_export(model: str):
    """`(loaded SavedModel, its serving_default signature)`, with one clear error for a wrong folder."""
    if not os.path.isfile(os.path.join(model, "saved_model.pb")):
        raise FileNotFoundError(
            f"No serving export at '{model}' (no saved_model.pb): pass the folder written by `keras-lm finetune` "
            "(RUN/serving/1) or `keras-lm export serving`."
        )
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (tokenizer ops used by the serving graph)

    served = tf.saved_model.load(model)
    if "serving_default" not in served.signatures:
        raise ValueError(f"'{model}' has no serving_default signature.")
    return served, served.signatures["serving_default"]


def _text_input(model: str, signature) -> str:
    """The name of the signature's one text input."""
    import tensorflow as tf

    inputs = signature.structured_input_signature[1]
    names = [name for name, spec in inputs.items() if spec.dtype == tf.string]
    if len(inputs) != 1 or len(names) != 1:
        raise ValueError(f"predict feeds one text per input, but the serving_default of '{model}' takes "
                         f"{', '.join(sorted(inputs))}.")
    return names[0]


def _as_json(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_as_json(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _texts(inputs, column: str):
    """`(source, line, text)` for every input: the lines of text files (or standard input, `-`) or
    the `column` of CSV / TSV / JSON Lines files."""
    for source in inputs:
        if source == "-":
            for line, content in enumerate(sys.stdin, start=1):
                if content.strip():
                    yield "<stdin>", line, content.rstrip("\r\n")
            continue
        for line, fields, problem in read_rows(source, {"text": column}):
            if problem is None and (not isinstance(fields["text"], str) or not fields["text"].strip()):
                problem = f"no text in {column}"
            if problem is not None:
                raise ValueError(f"'{source}' line {line}: {problem}; every input needs a text to predict.")
            yield source, line, fields["text"]


def predict(model: str, inputs: tuple[str, ...], text_column: str = "text", batch_size: int = BATCH_SIZE,
            stream=None) -> int:
    """Writes one JSON line per input text: the text and the serving export's outputs for it.

    `inputs` are text files (one input per non-blank line; `-` reads standard input) or CSV, TSV
    and JSON Lines files (the `text_column` of each row). A classifier export gives e.g.
    `{"text": ..., "label": 1, "label_name": "positive", "probabilities": [0.1, 0.9]}`.
    Returns the number of inputs answered.

    Example:
        >>> predict("runs/a/serving/1", ["reviews.txt"])  # doctest: +SKIP
    """
    stream = sys.stdout if stream is None else stream
    if not inputs:
        raise ValueError("predict needs at least one input file (or - for standard input).")
    import tensorflow as tf

    _, signature = _load_export(model)
    name = _text_input(model, signature)
    count, batch = 0, []

    def answer(batch):
        outputs = signature(**{name: tf.constant([text for _, _, text in batch], tf.string)})
        values = {key: value.numpy() for key, value in outputs.items()}
        for i, (_, _, text) in enumerate(batch):
            row = {"text": text, **{key: _as_json(value[i]) for key, value in sorted(values.items())}}
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        stream.flush()

    for item in _texts(inputs, text_column):
        batch.append(item)
        if len(batch) == batch_size:
            answer(batch)
            count, batch = count + len(batch), []
    if batch:
        answer(batch)
        count += len(batch)
    return count


def evaluate(model: str, data: str, text_column: str = "text", label_column: str = "label",
             batch_size: int = BATCH_SIZE, stream=None) -> dict:
    """Prints a classifier export's accuracy, macro F1 and loss on a labelled file; returns them.

    `data` is a CSV, TSV or JSON Lines file with `text_column` and `label_column`; its labels are
    class names (mapped with the names the export was written with) or class ids. Bad rows are
    skipped and reported with their line numbers, as `keras_lm.data.read_labelled` does.

    Example:
        >>> evaluate("runs/a/serving/1", "test.csv")  # doctest: +SKIP
        {'examples': 200, 'accuracy': 0.81, 'macro_f1': 0.8, 'loss': 0.44, 'bad_rows': 0}
    """
    from keras_lm.evaluation import accuracy, f1_score
    from keras_lm.export.serving import read_label_names

    stream = sys.stdout if stream is None else stream
    import tensorflow as tf

    _, signature = _load_export(model)
    name = _text_input(model, signature)
    outputs = signature.structured_outputs
    if "probabilities" not in outputs or "label" not in outputs:
        raise ValueError(f"evaluate measures classifier exports (text -> label, probabilities); '{model}' returns "
                         f"{', '.join(sorted(outputs))}.")
    names = read_label_names(model)
    rows = read_labelled(data, text=text_column, label=label_column, label_names=names)
    if names is None and rows.label_names is not None:
        raise ValueError(f"The labels of '{data}' are names ({', '.join(rows.label_names)}) but '{model}' was "
                         "exported without class names: give class ids (0, 1, ...) in the label column.")
    probabilities = []
    for start in range(0, len(rows.texts), batch_size):
        texts = tf.constant(rows.texts[start:start + batch_size], tf.string)
        probabilities.append(signature(**{name: texts})["probabilities"].numpy())
    probabilities = np.concatenate(probabilities)
    classes = probabilities.shape[-1]
    if rows.labels.max() >= classes:
        raise ValueError(f"'{data}' has class id {int(rows.labels.max())} but the model has {classes} classes.")
    chosen = probabilities[np.arange(len(rows.labels)), rows.labels]
    metrics = {
        "examples": len(rows.texts),
        "accuracy": accuracy(rows.labels, probabilities),
        "macro_f1": f1_score(rows.labels, probabilities, average="macro"),
        "loss": float(-np.mean(np.log(np.maximum(chosen, 1e-12)))),
        "bad_rows": len(rows.bad_rows),
    }
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)
        stream.write(f"{key} {shown}\n")
    stream.flush()
    return metrics
