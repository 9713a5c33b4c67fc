"""(d) Serving latency: the string-in SavedModel vs the bare token-id model, same weights, same process.

The three request kinds alternate request by request (rotated order), so drift hits all of them alike.
"""
from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_lm.benchmarks.timing import interleaved_rounds, percentiles_ms


def _bare_export(classifier, directory: str) -> None:
    """A token-id-in SavedModel of the same classifier (what a client that tokenizes itself calls)."""
    archive = keras.export.ExportArchive()
    archive.track(classifier)
    spec = {name: tf.TensorSpec([None, None], tf.int32, name=name)
            for name in ("token_ids", "segment_ids", "padding_mask")}

    def serve(features):
        return {"probabilities": tf.nn.softmax(tf.cast(classifier(features, training=False), tf.float32))}

    archive.add_endpoint("serve", serve, input_signature=[spec])
    archive.write_out(directory, verbose=False)


def serving_latency(log, size: str = "mini", sequence_length: int = 128, repeats: int = 200,
                    batch_sizes=(1, 32)) -> dict:
    import tensorflow_text  # noqa: F401  (ops of the string-in graph)

    import keras_lm
    from keras_lm.tasks.task import trim_padding

    log(f"(d) building a Bert('{size}') classifier and its two SavedModels")
    reviews = keras_lm.data.load("movie_snippets", split="train").map(lambda ex: ex["text"])
    tokenizer = keras_lm.tokenizers.WordPiece.train(reviews, vocabulary_size=4000)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=sequence_length)
    keras.utils.set_random_seed(0)
    classifier = keras_lm.tasks.Classifier(
        keras_lm.applications.Bert(size, vocabulary_size=tokenizer.vocabulary_size()),
        num_classes=2, preprocessor=preprocessor,
    )
    texts = [t.decode() for t in keras_lm.data.load("movie_snippets", split="test")
             .map(lambda ex: ex["text"]).take(max(batch_sizes)).as_numpy_iterator()]
    results = {"model": f"Bert('{size}') classifier, sequence_length {sequence_length}", "batches": {}}
    with tempfile.TemporaryDirectory() as root:
        keras_lm.export.serving(classifier, os.path.join(root, "string"))
        _bare_export(classifier, os.path.join(root, "bare"))
        loaded = [tf.saved_model.load(os.path.join(root, name)) for name in ("string", "bare")]
        string_in, bare = loaded[0].signatures["serving_default"], loaded[1].serve
        for batch_size in batch_sizes:
            text = tf.constant(texts[:batch_size])
            full = {k: tf.cast(v, tf.int32) for k, v in preprocessor(text).items()}
            trimmed = trim_padding(full)
            expected = bare(trimmed)["probabilities"].numpy()
            np.testing.assert_allclose(string_in(text=text)["probabilities"].numpy(), expected, atol=1e-4)
            count = repeats if batch_size == 1 else max(repeats // 4, 10)
            log(f"(d) batch {batch_size}: {count} requests each, one per system per round, interleaved")
            systems = {
                "string_in": lambda: string_in(text=text)["probabilities"].numpy(),
                "bare_trimmed": lambda: bare(trimmed)["probabilities"].numpy(),
                "bare_full_length": lambda: bare(full)["probabilities"].numpy(),
            }
            rounds = interleaved_rounds(systems, count, warmup=3)
            results["batches"][str(batch_size)] = {
                name: percentiles_ms(timing["round_seconds"]) for name, timing in rounds.items()}
    return results
