"""A tiny deterministic Classifier training job, run as a worker process by test_distribution.py.

    python multi_worker_job.py OUTPUT.npz --index I --ports P0,P1 [--die-after-step N]
    python multi_worker_job.py OUTPUT.npz                      # single device, same global batch

``train(strategy)`` is also imported by the tests to train the single-device reference in process.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GLOBAL_BATCH = 8
EXAMPLES = 32
EPOCHS = 2
VOCABULARY = 50
LENGTH = 12


def data():
    import numpy as np

    rng = np.random.RandomState(7)
    token_ids = rng.randint(4, VOCABULARY, size=(EXAMPLES, LENGTH)).astype("int32")
    features = {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": np.ones_like(token_ids),
    }
    labels = (token_ids[:, 0] > VOCABULARY // 2).astype("int32")
    return features, labels


def train(distribution=None, callbacks=()):
    """Builds (under ``distribution``'s scope) and trains the classifier; returns its weights."""
    import contextlib

    import keras
    import tensorflow as tf

    import keras_lm

    keras.utils.set_random_seed(0)
    scope = distribution.scope() if distribution is not None else contextlib.nullcontext()
    with scope:
        backbone = keras_lm.applications.Bert(
            None, vocabulary_size=VOCABULARY, num_layers=1, hidden_dim=16, num_heads=2,
            max_sequence_length=LENGTH, dropout=0.0,
        )
        model = keras_lm.tasks.Classifier(backbone, num_classes=2, dropout=0.0)
        model.compile(optimizer=keras_lm.training.adamw(1e-2, weight_decay=0.01))
    features, labels = data()
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(GLOBAL_BATCH)
    history = model.fit(dataset, epochs=EPOCHS, verbose=0, callbacks=list(callbacks))
    return [w.numpy() for w in model.weights], history.history


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--index", type=int)
    parser.add_argument("--ports")
    parser.add_argument("--die-after-step", type=int)
    parser.add_argument("--collective-timeout", type=float, default=60.0)
    args = parser.parse_args()

    distribution = None
    callbacks = []
    if args.ports:
        workers = [f"127.0.0.1:{port}" for port in args.ports.split(",")]
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": args.index}}
        )
        import keras

        import keras_lm

        distribution = keras_lm.training.strategy(
            "multi_worker", collective_timeout=args.collective_timeout
        )

        if args.die_after_step is not None:

            class Die(keras.callbacks.Callback):
                def on_train_batch_end(self, batch, logs=None):
                    if batch + 1 >= args.die_after_step:
                        os._exit(3)  # a crash: no cleanup, no goodbye to the peers

            callbacks.append(Die())
    import numpy as np

    weights, history = train(distribution, callbacks)
    np.savez(args.output, *weights, loss=np.array(history["loss"]))
    print("DONE", flush=True)
    sys.stderr.flush()
    os._exit(0)  # skip the collective runtime's shutdown handshake with the other workers


if __name__ == "__main__":
    main()
