"""Seq2seq serving export: source text in, translations out, equal to ``Seq2SeqLM.generate`` in a fresh process."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.applications import T5
from keras_lm.applications.transformer import Transformer
from keras_lm.export.seq2seq import seq2seq_serving
from keras_lm.tasks.seq2seq_lm import Seq2SeqLM

MAX_NEW = 8  # fewer than the model's target_length: some translations run to it
WORDS = 5  # words of each verse kept as a source / target
TRAIN_STEPS = 48
MEGABYTE = 1 << 20


def bible_pairs(count):
    """The first ``count`` English-Spanish verse pairs of the train split, as Python strings."""
    rows = keras_lm.data.load("bible_en_es", split="train").take(count)
    return [(ex["en"].numpy().decode("utf-8"), ex["es"].numpy().decode("utf-8")) for ex in rows]


def first_words(text, count=WORDS):
    return " ".join(text.split()[:count])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny Transformer trained for a few steps to translate the first words of Bible verses, saved as .keras
    and exported twice (beam search with 4 beams, greedy). Tests reload the .keras file: tf-text SentencePiece
    resources do not survive the per-test seeding."""
    keras.utils.set_random_seed(0)
    verses = bible_pairs(128)
    tokenizer = keras_lm.tokenizers.SentencePiece.train([text for pair in verses for text in pair],
                                                        vocabulary_size=500, num_sentinels=0)
    backbone = Transformer("tiny", vocabulary_size=500, num_layers=2, hidden_dim=64, num_heads=4, intermediate_dim=128,
                           dropout=0.0)
    model = Seq2SeqLM(backbone, tokenizer, source_length=16, target_length=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    pairs = [(first_words(en), first_words(es)) for en, es in verses]
    batches = model.dataset(pairs, batch_size=32, shuffle_seed=0).cache()
    history = model.fit(batches.repeat(), steps_per_epoch=TRAIN_STEPS // 4, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]  # it learned something
    folder = tmp_path_factory.mktemp("seq2seq")
    path = str(folder / "translate.keras")
    model.save(path)
    return {
        "model": path,
        "sources": [en for en, _ in pairs[:5]],
        "beam": keras_lm.export.serving(model, str(folder / "beam" / "1"), max_new_tokens=MAX_NEW),  # dispatched
        "greedy": seq2seq_serving(model, str(folder / "greedy" / "1"), num_beams=1, max_new_tokens=MAX_NEW),
    }


RUN_BOTH_WAYS = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the graph)
requests = json.loads(sys.stdin.read())
as_json = lambda name, v: [t.decode("latin-1") for t in v.tolist()] if name == "text" else v.tolist()
batches = lambda directory: [[t.encode("latin-1") for t in r["sources"]] for r in requests if r["directory"] == directory]
results = {}
for directory in dict.fromkeys(r["directory"] for r in requests):
    results[directory] = {"eager": [], "session": []}
    serve = tf.saved_model.load(directory).signatures["serving_default"]
    for sources in batches(directory):
        outputs = serve(sources=tf.constant(sources, dtype=tf.string))
        results[directory]["eager"].append({k: as_json(k, v.numpy()) for k, v in outputs.items()})
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        definition = tf.compat.v1.saved_model.load(session, ["serve"], directory).signature_def["serving_default"]
        names = sorted(definition.outputs)
        for sources in batches(directory):
            values = session.run([definition.outputs[n].name for n in names],
                                 {definition.inputs["sources"].name: np.array(sources, dtype=object)})
            results[directory]["session"].append({n: as_json(n, v) for n, v in zip(names, values)})
print("RESULT " + json.dumps(results))
"""


def run_in_fresh_process(requests):
    """Runs ``(directory, sources)`` requests in one new Python process, each directory loaded once with each
    loader (TF2 and a TF1 session, the way TF Serving loads); returns ``[{"eager": outputs, "session": outputs}]``
    in request order. Sources may be bytes (invalid UTF-8 survives the trip as latin-1 code points)."""
    payload = [{"directory": directory,
                "sources": [(s if isinstance(s, bytes) else s.encode("utf-8")).decode("latin-1") for s in sources]}
               for directory, sources in requests]
    process = subprocess.run([sys.executable, "-c", RUN_BOTH_WAYS], input=json.dumps(payload), capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]  # the process survived every request
    line = [row for row in process.stdout.splitlines() if row.startswith("RESULT ")][-1]
    by_directory = json.loads(line[len("RESULT "):])
    results, seen = [], {}
    for directory, _ in requests:
        index = seen[directory] = seen.get(directory, -1) + 1
        result = {loader: by_directory[directory][loader][index] for loader in ("eager", "session")}
        for outputs in result.values():
            outputs["text"] = [t.encode("latin-1").decode("utf-8") for t in outputs["text"]]
        results.append(result)
    return results


def source_ids(model, sources):
    """Token ids of each source as ``generate`` reads them (the first ``source_length``)."""
    rows = model.tokenizer(tf.constant([s if isinstance(s, bytes) else s.encode("utf-8") for s in sources]))
    return [row[: model.source_length] for row in rows.to_list()]


# As exported; like the export, without XLA (Seq2SeqLM's own tests show XLA decodes the same tokens).
DECODING = {"beam": dict(sampler="beam", num_beams=4, length_penalty=0.6, max_new_tokens=MAX_NEW, jit_compile=False),
            "greedy": dict(sampler="greedy", max_new_tokens=MAX_NEW, jit_compile=False)}


@pytest.mark.slow  # long: run with -m slow
def test_translations_equal_generate_in_a_fresh_process_with_both_loaders(exported):
    model = keras.saving.load_model(exported["model"])
    hostile = [("In the beginning God created the heavens and the earth. " * 20_000)[:MEGABYTE],  # 1 MB
               b"\xff\xfe\xc3\x28 God said",  # invalid UTF-8
               "tab\tbell\x07 nul\x00 escape\x1b[31m"]
    sources = exported["sources"] + hostile
    expected = {kind: model.generate(sources, **options) for kind, options in DECODING.items()}
    ids = {kind: model.generate(source_ids(model, sources), **options) for kind, options in DECODING.items()}
    assert expected["beam"] != expected["greedy"]  # the export's decoding matters
    assert len(set(expected["greedy"])) >= 4  # and the source does
    lengths = [len(row) for row in ids["greedy"] + ids["beam"]]
    assert min(lengths) < MAX_NEW and max(lengths) == MAX_NEW  # some rows stop early, others run to the end
    empties = ["", "   ", sources[0]]
    requests = [(exported[kind], batch) for kind in DECODING for batch in (sources, empties, [])]
    results = dict(zip([(kind, i) for kind in DECODING for i in range(3)], run_in_fresh_process(requests)))
    for kind in DECODING:
        for loader in ("eager", "session"):
            outputs = results[kind, 0][loader]
            assert outputs["text"] == expected[kind], (kind, loader)
            assert outputs["length"] == [len(row) for row in ids[kind]]
            assert [row[:n] for row, n in zip(outputs["token_ids"], outputs["length"])] == ids[kind]
            assert all(set(row[n:]) <= {0} for row, n in zip(outputs["token_ids"], outputs["length"]))
            # An empty source (no tokens) gets an empty translation; the other rows are unchanged.
            outputs = results[kind, 1][loader]
            assert outputs["text"] == ["", "", expected[kind][0]] and outputs["length"][:2] == [0, 0]
            # A batch of 0 gets empty outputs.
            assert results[kind, 2][loader] == {"text": [], "length": [], "token_ids": []}


def test_generate_signature_takes_max_new_tokens_up_to_the_exported_maximum(exported):
    model = keras.saving.load_model(exported["model"])
    sources = exported["sources"]
    served = tf.saved_model.load(exported["beam"])
    generate = served.signatures["generate"]
    outputs = generate(sources=tf.constant(sources), max_new_tokens=tf.constant(5))
    assert outputs["token_ids"].shape == (5, 5)
    texts = [t.decode("utf-8") for t in outputs["text"].numpy()]
    assert texts == model.generate(sources, **{**DECODING["beam"], "max_new_tokens": 5})
    for bad in (0, -1, MAX_NEW + 1):
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"max_new_tokens must be in \[1, {MAX_NEW}\]"):
            generate(sources=tf.constant(sources), max_new_tokens=tf.constant(bad))
    served_default = served.signatures["serving_default"](sources=tf.constant(sources))
    assert served_default["token_ids"].shape == (5, MAX_NEW)  # the process still serves


@pytest.mark.slow  # long: run with -m slow
def test_wordpiece_t5_with_end_token_on_sources(tmp_path):
    """T5 (relative position buckets) with a WordPiece vocabulary and T5-style sources ending in the end token,
    exported for greedy decoding (random weights, spread so that rows differ)."""
    verses = [en for en, _ in bible_pairs(64)]
    tokenizer = keras_lm.tokenizers.WordPiece.train(tf.data.Dataset.from_tensor_slices(verses), vocabulary_size=300)
    backbone = T5("tiny", vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, hidden_dim=32, num_heads=4,
                  intermediate_dim=64)
    rng = np.random.default_rng(0)
    for weight in backbone.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32") + (len(weight.shape) == 1))
    model = Seq2SeqLM(backbone, tokenizer, source_length=8, target_length=8, source_end_token=True)
    directory = seq2seq_serving(model, str(tmp_path / "t5"), num_beams=1, max_new_tokens=6)
    served = tf.saved_model.load(directory).signatures["serving_default"]
    sources = [first_words(text, 6) for text in verses[:4]] + ["", " ".join(verses), b"\xff\xfe God said"]
    # "" is [end] (source_end_token): it gets a translation; invalid UTF-8 reads as U+FFFD ([UNK])
    outputs = served(sources=tf.constant(sources))
    expected = model.generate(sources, max_new_tokens=6, jit_compile=False)
    assert [t.decode("utf-8") for t in outputs["text"].numpy()] == expected
    assert outputs["length"].numpy().min() > 0 and len(set(expected)) >= 3


def test_bad_export_options_are_clear_errors_and_write_nothing(exported, tmp_path):
    model = keras.saving.load_model(exported["model"])
    bare = Seq2SeqLM(model.backbone, source_length=8, target_length=8, decoder_start_token_id=0, end_token_id=1)
    cases = [
        (bare, {}, "needs a tokenizer"),
        (model, {"num_beams": 0}, "num_beams must be an integer >= 1"),
        (model, {"length_penalty": float("nan")}, "length_penalty must be a finite number"),
        (model, {"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
    ]
    for i, (task, options, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            keras_lm.export.serving(task, str(tmp_path / str(i)), **options)
    assert not list(tmp_path.iterdir())
    with pytest.raises(FileExistsError, match="already exists"):  # never over an existing export silently
        seq2seq_serving(model, exported["beam"])
    assert tf.saved_model.load(exported["beam"]).signatures["serving_default"](
        sources=tf.constant(["x"]))["length"].shape == (1,)  # the export is intact
