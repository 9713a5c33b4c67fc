"""Shared pytest setup: TensorFlow backend, quiet logs, deterministic seeds per test."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# scripts/test sets this: every reference library and tool is installed there, so a skip can only
# hide a missing dependency (a parity test that silently did not run). It fails instead.
FAIL_ON_SKIP = os.environ.get("KERAS_LM_FAIL_ON_SKIP") == "1"


def _skip_as_failure(report) -> None:
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under KERAS_LM_FAIL_ON_SKIP=1 (scripts/test installs everything): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if FAIL_ON_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        _skip_as_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if FAIL_ON_SKIP and report.skipped:
        _skip_as_failure(report)


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def movie_vocabulary():
    """A real WordPiece vocabulary (1,000 tokens) trained on the movie_snippets train split."""
    import keras_lm

    texts = keras_lm.data.load("movie_snippets", split="train").map(lambda ex: ex["text"])
    return keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=1000).get_vocabulary()


@pytest.fixture(scope="session")
def movie_sentences():
    """The first 64 (text, label) pairs of the movie_snippets train split, as Python values."""
    import keras_lm

    rows = keras_lm.data.load("movie_snippets", split="train").take(64)
    return [(ex["text"].numpy().decode("utf-8"), int(ex["label"].numpy())) for ex in rows]


LOAD_BOTH_WAYS = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the graph)
directory, signature = sys.argv[1], sys.argv[2]
texts = json.loads(sys.stdin.read())
texts = [t.encode("latin-1") if isinstance(t, str) else bytes(t) for t in texts]
result = {}
loaded = tf.saved_model.load(directory)
outputs = loaded.signatures[signature](text=tf.constant(texts, dtype=tf.string))
listed = lambda v: [t.decode("utf-8", "replace") for t in v.tolist()] if v.dtype == object else v.tolist()
result["eager"] = {k: listed(v.numpy()) for k, v in outputs.items()}
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], directory)
    definition = meta_graph.signature_def[signature]
    feed = {definition.inputs["text"].name: np.array(texts, dtype=object)}
    names = sorted(definition.outputs)
    values = session.run([definition.outputs[n].name for n in names], feed)
    result["session"] = {n: listed(v) for n, v in zip(names, values)}
print("RESULT " + json.dumps(result))
"""


@pytest.fixture
def load_in_fresh_process():
    """Loads a string-in SavedModel in a new Python process with both loaders (TF2 and a TF1
    session, the way TF Serving loads) and returns {"eager": outputs, "session": outputs}.

    Texts are passed as latin-1 code points so arbitrary bytes (invalid UTF-8) survive JSON."""
    import json
    import subprocess
    import sys

    def run(directory, texts, signature="serving_default"):
        as_codepoints = [
            t.decode("latin-1") if isinstance(t, bytes) else t.encode("utf-8").decode("latin-1")
            for t in texts
        ]
        process = subprocess.run(
            [sys.executable, "-c", LOAD_BOTH_WAYS, str(directory), signature],
            input=json.dumps(as_codepoints),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert process.returncode == 0, process.stderr[-3000:]
        line = [l for l in process.stdout.splitlines() if l.startswith("RESULT ")][-1]
        return json.loads(line[len("RESULT "):])

    return run


GENERATE_BOTH_WAYS = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the graph)
directory, signature = sys.argv[1], sys.argv[2]
request = json.loads(sys.stdin.read())
prompts = [t.encode("latin-1") for t in request.pop("prompts")]
dtypes = {"max_new_tokens": np.int32, "temperature": np.float32, "top_k": np.int32, "top_p": np.float32,
          "seed": np.int64}
scalars = {name: np.array(value, dtype=dtypes[name]) for name, value in request.items()}
result = {}
loaded = tf.saved_model.load(directory)
outputs = loaded.signatures[signature](prompts=tf.constant(prompts, dtype=tf.string),
                                       **{k: tf.constant(v) for k, v in scalars.items()})
as_json = lambda name, v: [t.decode("latin-1") for t in v.tolist()] if name == "text" else v.tolist()
result["eager"] = {k: as_json(k, v.numpy()) for k, v in outputs.items()}
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], directory)
    definition = meta_graph.signature_def[signature]
    feed = {definition.inputs["prompts"].name: np.array(prompts, dtype=object)}
    feed.update({definition.inputs[k].name: v for k, v in scalars.items()})
    names = sorted(definition.outputs)
    values = session.run([definition.outputs[n].name for n in names], feed)
    result["session"] = {n: as_json(n, v) for n, v in zip(names, values)}
print("RESULT " + json.dumps(result))
"""


@pytest.fixture
def generate_in_fresh_process():
    """Runs a generation SavedModel (``prompts`` + scalar inputs such as ``max_new_tokens``) in a
    new Python process with both loaders; returns {"eager": outputs, "session": outputs} with
    ``text`` as UTF-8 ``bytes``. Prompts may be ``bytes`` (invalid UTF-8 survives the trip)."""
    import json
    import subprocess
    import sys

    def run(directory, prompts, signature="serving_default", **scalars):
        as_codepoints = [
            t.decode("latin-1") if isinstance(t, bytes) else t.encode("utf-8").decode("latin-1") for t in prompts
        ]
        process = subprocess.run(
            [sys.executable, "-c", GENERATE_BOTH_WAYS, str(directory), signature],
            input=json.dumps({"prompts": as_codepoints, **scalars}),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if process.returncode != 0:
            raise RuntimeError(process.stderr[-3000:])
        line = [l for l in process.stdout.splitlines() if l.startswith("RESULT ")][-1]
        result = json.loads(line[len("RESULT "):])
        for outputs in result.values():
            if "text" in outputs:
                outputs["text"] = [t.encode("latin-1") for t in outputs["text"]]
        return result

    return run


@pytest.fixture(scope="session")
def randomize_every_parameter():
    """`tests/applications/reference.py`'s rule for importer tests outside that folder: every
    parameter of a reference model random, biases and norm scales included."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent / "applications" / "reference.py"
    spec = importlib.util.spec_from_file_location("importer_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.randomize_every_parameter
