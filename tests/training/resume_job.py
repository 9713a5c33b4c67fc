"""Tiny BertPretrainer on Shakespeare under ``resumable_fit``, run as a process by test_resume.py.

    python resume_job.py VOCAB BACKUP_DIR STEP_LOG OUTPUT.npz [--pause-after-step N]

Appends the optimizer step to STEP_LOG after every training step (so the test can count the
steps that were run twice) and, with ``--pause-after-step``, sleeps after that step so the test
can ``kill -9`` the process at a known point mid-epoch.
"""
import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EPOCHS = 2
STEPS_PER_EPOCH = 6
SAVE_EVERY = 4
SEQUENCE_LENGTH = 32
BATCH_SIZE = 8


def main():
    parser = argparse.ArgumentParser()
    for name in ("vocabulary", "backup_dir", "step_log", "output"):
        parser.add_argument(name)
    parser.add_argument("--pause-after-step", type=int)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_lm

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=args.vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=SEQUENCE_LENGTH)
    backbone = keras_lm.applications.Bert(
        "tiny", vocabulary_size=tokenizer.vocabulary_size(), max_sequence_length=SEQUENCE_LENGTH
    )
    pretrainer = keras_lm.pretraining.BertPretrainer(backbone, max_predictions=5)
    pretrainer.compile(optimizer=keras_lm.training.adamw(1e-3, warmup=2, total=EPOCHS * STEPS_PER_EPOCH))
    corpus = keras_lm.data.load("shakespeare", split="validation")
    dataset = pretrainer.dataset(corpus, preprocessor, batch_size=BATCH_SIZE, seed=0, shuffle_buffer=200)

    class StepLog(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            with open(args.step_log, "a") as log:
                log.write(f"{step}\n")
                log.flush()
                os.fsync(log.fileno())
            if step == args.pause_after_step:
                time.sleep(600)  # the test kills the process here

    keras_lm.training.resumable_fit(
        pretrainer, dataset, args.backup_dir, epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
        save_every=SAVE_EVERY, callbacks=[StepLog()], verbose=0,
    )
    np.savez(args.output, *[w.numpy() for w in pretrainer.weights])
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
