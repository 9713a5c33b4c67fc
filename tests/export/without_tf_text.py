"""Loading a SavedModel in a fresh process that never imports tensorflow_text, with both loaders."""
import json
import subprocess
import sys

# Loads an export with both loaders in a process that never imports tensorflow_text (texts as latin-1
# code points, so that any bytes, invalid UTF-8 included, survive JSON).
LOAD_WITHOUT_TF_TEXT = r"""
import json, sys
import numpy as np
import tensorflow as tf
directory = sys.argv[1]
texts = [t.encode("latin-1") for t in json.loads(sys.stdin.read())]
result = {}
try:
    loaded = tf.saved_model.load(directory)
    outputs = loaded.signatures["serving_default"](text=tf.constant(texts, dtype=tf.string))
    result["eager"] = {k: v.numpy().tolist() for k, v in outputs.items() if v.dtype != tf.string}
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], directory)
        definition = meta_graph.signature_def["serving_default"]
        feed = {definition.inputs["text"].name: np.array(texts, dtype=object)}
        names = sorted(n for n in definition.outputs if n != "label_name")
        values = session.run([definition.outputs[n].name for n in names], feed)
        result["session"] = {n: v.tolist() for n, v in zip(names, values)}
except Exception as error:  # reported to the test, which decides
    result["error"] = f"{type(error).__name__}: {error}"[:2000]
assert "tensorflow_text" not in sys.modules, "tensorflow_text was imported"
print("RESULT " + json.dumps(result))
"""


def load_without_tf_text(directory, texts: list) -> dict:
    """Runs both loaders on ``texts`` (bytes) in a fresh process: {"eager": ..., "session": ...} or {"error": ...}."""
    process = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_TF_TEXT, str(directory)],
        input=json.dumps([t.decode("latin-1") for t in texts]), capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    line = [l for l in process.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])
