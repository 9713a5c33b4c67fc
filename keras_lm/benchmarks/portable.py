"""(h) String-in serving latency: the tf-text export vs the portable (core-op) export of the same classifier.

For WordPiece (a Bert classifier) and byte-level BPE (a RoBERTa-style classifier), both SavedModels are
written, loaded in this process and checked to give the same probabilities; then one request of each
alternates request by request (rotated order), so drift hits both alike. p50 / best over requests.
"""
from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_lm.benchmarks.timing import interleaved_rounds, percentiles_ms

TOKENIZERS = ("word_piece", "byte_pair")
_TITLES = {"word_piece": "WordPiece (Bert)", "byte_pair": "byte-level BPE (RoBERTa-style)"}


def _classifier(kind: str, size: str, sequence_length: int, vocabulary_size: int):
    import keras_lm

    reviews = keras_lm.data.load("movie_snippets", split="train").map(lambda ex: ex["text"])
    keras.utils.set_random_seed(0)
    if kind == "word_piece":
        tokenizer = keras_lm.tokenizers.WordPiece.train(reviews, vocabulary_size=vocabulary_size)
        preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=sequence_length)
        backbone = keras_lm.applications.Bert(size, vocabulary_size=tokenizer.vocabulary_size())
    else:
        tokenizer = keras_lm.tokenizers.BytePair.train(
            reviews, vocabulary_size=vocabulary_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        preprocessor = keras_lm.tokenizers.RobertaPreprocessor(tokenizer, sequence_length=sequence_length)
        backbone = keras_lm.applications.Roberta(size, vocabulary_size=tokenizer.vocabulary_size())
    return keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor)


def portable_latency(log, size: str = "mini", sequence_length: int = 128, repeats: int = 200,
                     batch_sizes=(1, 32), vocabulary_size: int = 4000) -> dict:
    """p50 / p99 / best ms per request of the tf-text and the portable export, per tokenizer and batch size.

    Returns ``{"model": str, "tokenizers": {kind: {"batches": {batch: {"tf_text": ms, "portable": ms,
    "portable_over_tf_text": p50 ratio}}}}}`` with ``kind`` in ``TOKENIZERS``.

    Example:
        >>> portable_latency(print, size="tiny", sequence_length=64, repeats=10)  # doctest: +SKIP
    """
    import tensorflow_text  # noqa: F401  (ops of the tf-text graph)

    import keras_lm

    texts = [t.decode() for t in keras_lm.data.load("movie_snippets", split="test")
             .map(lambda ex: ex["text"]).take(max(batch_sizes)).as_numpy_iterator()]
    results = {"model": f"{size} classifier, sequence_length {sequence_length}, "
                        f"{vocabulary_size}-token vocabulary trained on movie_snippets", "tokenizers": {}}
    with tempfile.TemporaryDirectory() as root:
        for kind in TOKENIZERS:
            log(f"(h) building a {_TITLES[kind]} {size} classifier and its two string-in SavedModels")
            classifier = _classifier(kind, size, sequence_length, vocabulary_size)
            keras_lm.export.serving(classifier, os.path.join(root, kind, "tf_text"))
            keras_lm.export.serving(classifier, os.path.join(root, kind, "portable"), portable=True)
            endpoints = {name: tf.saved_model.load(os.path.join(root, kind, name)).signatures["serving_default"]
                         for name in ("tf_text", "portable")}
            batches = {}
            for batch_size in batch_sizes:
                text = tf.constant(texts[:batch_size])
                expected = endpoints["tf_text"](text=text)["probabilities"].numpy()
                np.testing.assert_allclose(endpoints["portable"](text=text)["probabilities"].numpy(), expected,
                                           atol=1e-5, err_msg=f"{kind}: portable and tf-text exports disagree")
                count = repeats if batch_size == 1 else max(repeats // 4, 10)
                log(f"(h) {kind} batch {batch_size}: {count} requests each, one per export per round, interleaved")
                systems = {name: (lambda endpoint=endpoint: endpoint(text=text)["probabilities"].numpy())
                           for name, endpoint in endpoints.items()}
                rounds = interleaved_rounds(systems, count, warmup=3)
                figures = {name: percentiles_ms(timing["round_seconds"]) for name, timing in rounds.items()}
                figures["portable_over_tf_text"] = figures["portable"]["p50_ms"] / figures["tf_text"]["p50_ms"]
                batches[str(batch_size)] = figures
            results["tokenizers"][kind] = {"batches": batches}
    return results


def format_portable(results: dict) -> str:
    """Markdown rows of ``portable_latency``'s result.

    Example:
        >>> print(format_portable(results["portable"]))  # doctest: +SKIP
    """
    rows = [f"Serving model for (h): {results['model']}; latencies are percentiles over requests alternating "
            "between the two exports.", "",
            "| (h) string-in serving, p50 / best ms | tf-text export | portable export (core ops) | "
            "portable ÷ tf-text (p50) |",
            "|---|---|---|---|"]
    for kind, section in results["tokenizers"].items():
        for batch, figures in section["batches"].items():
            tf_text, portable = figures["tf_text"], figures["portable"]
            rows.append(f"| {_TITLES.get(kind, kind)}, batch {batch} | {tf_text['p50_ms']:.2f} / "
                        f"{tf_text['best_ms']:.2f} | {portable['p50_ms']:.2f} / {portable['best_ms']:.2f} | "
                        f"{figures['portable_over_tf_text']:.2f} |")
    return "\n".join(rows)
