"""End-to-end workflows. Their keyword arguments are the keys of a recipe's steps (see runner.py).

Each workflow reads and writes plain files under one output directory, so steps can run in
separate processes (the CLI) or one after another (a recipe):

    OUTPUT/vocab.txt              WordPiece vocabulary (train_vocabulary)
    OUTPUT/pretrainer.keras       the pretrained model (pretrain)
    OUTPUT/encoder/               TF-Hub-style encoder + preprocess SavedModels (pretrain)
    OUTPUT/classifier_*.keras     fine-tuned classifiers (finetune)
    OUTPUT/serving/1/             string-in serving SavedModel (finetune)
    OUTPUT/metrics.json           every figure the steps produced
"""
import contextlib
import json
import os
import subprocess
import sys
import time

import keras
import tensorflow as tf

import keras_lm
from keras_lm.applications.bert import BERT_SIZES
from keras_lm.export.files import check_export_target, refuse_unsafe_directory
from keras_lm.values import is_integer, is_number

METRICS_FILE = "metrics.json"
ENCODER_EXPORT = "encoder"
SERVING_EXPORT = os.path.join("serving", "1")
#: Arguments (of any workflow) that count something and must be at least 1 when given.
POSITIVE_COUNTS = ("steps", "batch_size", "sequence_length", "vocabulary_size", "epochs",
                   "max_predictions", "max_train_examples", "eval_batches")


def check_values(function, arguments: dict):
    """The first argument value `function` cannot use, as (name, "must be ..."), else None.

    Types are checked by `keras_lm.recipes.runner.check_arguments`; this checks ranges and choices,
    so that a recipe or a command fails before any work instead of minutes into a run.
    """
    for name in POSITIVE_COUNTS:
        value = arguments.get(name)
        if is_integer(value) and value < 1:
            return name, f"must be at least 1, got {value}."
    rules = {
        "num_classes": (lambda v: v >= 2, "must be at least 2"),
        "warmup": (lambda v: v >= 0, "must be 0 or more"),
        "learning_rate": (lambda v: v > 0 and v != float("inf"), "must be a positive number"),
    }
    for name, (valid, message) in rules.items():
        value = arguments.get(name)
        if is_number(value) and not valid(value):
            return name, f"{message}, got {value}."
    if function is pretrain and arguments.get("size", "mini") not in BERT_SIZES:
        return "size", f"must be one of {', '.join(BERT_SIZES)}, got {arguments['size']!r}."
    return None


def _check_values(function, arguments: dict) -> None:
    problem = check_values(function, arguments)
    if problem:
        raise ValueError(f"`{problem[0]}` {problem[1]}")


def _stage(message: str) -> None:
    print(f"== [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _update_metrics(output: str, section: str, values: dict) -> None:
    path = os.path.join(output, METRICS_FILE)
    metrics = {}
    if os.path.exists(path):
        with open(path) as f:
            metrics = json.load(f)
    metrics[section] = values
    with open(path, "w") as f:
        json.dump(metrics, f, indent=2)


def read_metrics(output: str) -> dict:
    path = os.path.join(output, METRICS_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _texts(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda example: example["text"])


def train_vocabulary(
    output: str,
    corpus: str = "shakespeare",
    vocabulary_size: int = 8000,
    lowercase: bool = True,
) -> str:
    """Trains a WordPiece vocabulary on the corpus' train split; writes OUTPUT/vocab.txt."""
    _check_values(train_vocabulary, locals())
    os.makedirs(output, exist_ok=True)
    _stage(f"training a {vocabulary_size}-token WordPiece vocabulary on '{corpus}' (train split)")
    start = time.time()
    tokenizer = keras_lm.tokenizers.WordPiece.train(
        _texts(keras_lm.data.load(corpus, split="train")),
        vocabulary_size=vocabulary_size,
        lowercase=lowercase,
    )
    path = os.path.join(output, "vocab.txt")
    tokenizer.save_vocabulary(path)
    _update_metrics(
        output,
        "vocabulary",
        {"size": int(tokenizer.vocabulary_size()), "seconds": round(time.time() - start, 1)},
    )
    return path


class _LossHistory(keras.callbacks.Callback):
    """Records the training loss of every step (for the report's curves)."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


def _vocabulary_path(output: str, vocabulary: str | None) -> str:
    path = vocabulary or os.path.join(output, "vocab.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No WordPiece vocabulary at '{path}'; run train-vocabulary first or pass --vocabulary."
        )
    return path


def _load_tokenizer(output: str, vocabulary: str | None, lowercase: bool = True):
    path = _vocabulary_path(output, vocabulary)
    return keras_lm.tokenizers.WordPiece(vocabulary=path, lowercase=lowercase)


def pretrain(
    output: str,
    corpus: str = "shakespeare",
    size: str = "mini",
    vocabulary: str | None = None,
    sequence_length: int = 128,
    batch_size: int = 32,
    steps: int = 300,
    learning_rate: float = 5e-4,
    warmup: int = 30,
    max_predictions: int = 20,
    seed: int = 0,
    strategy: str | None = None,
    mixed_precision: str | None = "auto",
    backup_dir: str | None = None,
) -> str:
    """Pretrains `Bert(size)` with masked LM + next-sentence prediction for `steps` steps.

    Writes OUTPUT/pretrainer.keras and the encoder export OUTPUT/encoder; returns the latter.
    Optional: `strategy` (a `keras_lm.training.strategy` name; the XLA choice follows it),
    `mixed_precision` (a dtype policy for the model; "auto", the default, picks the fastest for
    the hardware: mixed_bfloat16 where bfloat16 is native, else float32) and `backup_dir`
    (step-level backups: a killed run resumes where it stopped, see `resumable_fit`).
    """
    _check_values(pretrain, locals())
    encoder_export = os.path.join(output, ENCODER_EXPORT)
    sources = (_vocabulary_path(output, vocabulary), os.path.join(output, "pretrainer.keras"))
    check_export_target(encoder_export, overwrite=True, kind="encoder", protected=sources)
    keras.utils.set_random_seed(seed)
    tokenizer = _load_tokenizer(output, vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=sequence_length)
    distribution = keras_lm.training.strategy(strategy) if strategy else None
    mixed_precision = keras_lm.training.resolve_precision(mixed_precision, distribution)
    with distribution.scope() if distribution else contextlib.nullcontext():
        backbone = keras_lm.applications.Bert(
            size, vocabulary_size=tokenizer.vocabulary_size(), dtype=mixed_precision
        )
        pretrainer = keras_lm.pretraining.BertPretrainer(backbone, max_predictions=max_predictions)
    train = pretrainer.dataset(
        keras_lm.data.load(corpus, split="train"), preprocessor, batch_size=batch_size, seed=seed
    )
    validation = pretrainer.dataset(
        keras_lm.data.load(corpus, split="validation"),
        preprocessor,
        batch_size=batch_size,
        shuffle=False,
        seed=seed,
    )
    compile_options = {}
    if distribution:
        compile_options["jit_compile"] = keras_lm.training.jit_compile_for(distribution)
    with distribution.scope() if distribution else contextlib.nullcontext():
        pretrainer.compile(
            optimizer=keras_lm.training.adamw(learning_rate, warmup=warmup, total=steps),
            **compile_options,
        )
    _stage(
        f"pretraining Bert('{size}') ({backbone.count_params():,} parameters, "
        f"{backbone.dtype_policy.name}) on '{corpus}': {steps} steps of {batch_size}x{sequence_length} tokens"
    )
    history = _LossHistory()
    start = time.time()
    if backup_dir:
        keras_lm.training.resumable_fit(
            pretrainer, train, backup_dir, epochs=1, steps_per_epoch=steps,
            save_every=max(1, steps // 10), callbacks=[history], shuffle=False,
        )
    else:
        pretrainer.fit(train.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[history], shuffle=False)
    seconds = time.time() - start
    _stage("evaluating on the held-out works")
    before = _initial_validation(size, tokenizer, max_predictions, validation, seed)
    after = pretrainer.evaluate(validation.take(20), return_dict=True, verbose=0)
    pretrainer.save(os.path.join(output, "pretrainer.keras"))
    # Replaces only a previous encoder export (see keras_lm.export.files), never the sources.
    directory = keras_lm.export.encoder(
        backbone, preprocessor, encoder_export, overwrite=True, protected=sources
    )
    _update_metrics(
        output,
        "pretraining",
        {
            "size": size,
            "parameters": int(backbone.count_params()),
            "precision": backbone.dtype_policy.name,
            "steps": steps,
            "batch_size": batch_size,
            "sequence_length": sequence_length,
            "seconds": round(seconds, 1),
            "tokens_per_second": round(steps * batch_size * sequence_length / seconds, 1),
            "train_loss_curve": history.losses,
            "validation_before": {k: float(v) for k, v in before.items()},
            "validation_after": {k: float(v) for k, v in after.items()},
        },
    )
    return directory


def _initial_validation(size, tokenizer, max_predictions, validation, seed) -> dict:
    """Validation metrics of an untrained model of the same shape (the starting point)."""
    keras.utils.set_random_seed(seed)
    backbone = keras_lm.applications.Bert(size, vocabulary_size=tokenizer.vocabulary_size())
    untrained = keras_lm.pretraining.BertPretrainer(backbone, max_predictions=max_predictions)
    untrained.compile(optimizer="adam")
    return untrained.evaluate(validation.take(20), return_dict=True, verbose=0)


def _labelled(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda example: (example["text"], example["label"]))


def _finetune_one(classifier, name, train, validation, test, epochs, batch_size, learning_rate):
    examples = int(train.reduce(0, lambda count, _: count + 1).numpy())
    steps = epochs * -(-examples // batch_size)
    classifier.compile(
        optimizer=keras_lm.training.adamw(learning_rate, warmup=max(1, steps // 10), total=steps)
    )
    _stage(f"fine-tuning the {name} start for {epochs} epochs ({steps} steps)")
    history = _LossHistory()
    start = time.time()
    fit = classifier.fit(
        train.shuffle(10_000, seed=0).batch(batch_size),
        validation_data=validation.batch(batch_size),
        epochs=epochs,
        callbacks=[history],
    )
    seconds = time.time() - start
    test_metrics = classifier.evaluate(test.batch(batch_size), return_dict=True, verbose=0)
    return {
        "test_accuracy": float(test_metrics["accuracy"]),
        "test_loss": float(test_metrics["loss"]),
        "validation_accuracy": [float(x) for x in fit.history["val_accuracy"]],
        "train_loss_curve": history.losses,
        "seconds": round(seconds, 1),
    }


def finetune(
    output: str,
    encoder: str | None = None,
    dataset: str = "movie_snippets",
    num_classes: int = 2,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    compare_random_init: bool = True,
    max_train_examples: int | None = None,
    seed: int = 0,
) -> str:
    """Reloads the exported encoder trainably, fine-tunes a classifier, exports serving.

    With `compare_random_init`, the same classifier is also trained from a randomly initialised
    encoder of the same shape, and both test accuracies are reported. Returns the serving dir.
    """
    _check_values(finetune, locals())
    encoder = encoder or os.path.join(output, ENCODER_EXPORT)
    serving_export = os.path.join(output, SERVING_EXPORT)
    sources = (encoder, os.path.join(output, "classifier.keras"))
    check_export_target(serving_export, overwrite=True, kind="serving", protected=sources)
    train = _labelled(keras_lm.data.load(dataset, split="train"))
    if max_train_examples:
        train = train.take(max_train_examples)
    validation = _labelled(keras_lm.data.load(dataset, split="validation"))
    test = _labelled(keras_lm.data.load(dataset, split="test"))
    args = (train, validation, test, epochs, batch_size, learning_rate)
    results = {}

    keras.utils.set_random_seed(seed)
    _stage(f"reloading the exported encoder {encoder} as a trainable Keras layer")
    pretrained = keras_lm.tasks.Classifier.from_saved_model(encoder, num_classes=num_classes)
    results["pretrained"] = _finetune_one(pretrained, "pretrained", *args)

    if compare_random_init:
        keras.utils.set_random_seed(seed)
        manifest_size = read_metrics(output).get("pretraining", {}).get("size", "mini")
        tokenizer = _load_tokenizer(output, None)
        preprocessor = keras_lm.tokenizers.BertPreprocessor(
            tokenizer, sequence_length=pretrained.preprocessor.sequence_length
        )
        backbone = keras_lm.applications.Bert(
            manifest_size, vocabulary_size=tokenizer.vocabulary_size()
        )
        random_start = keras_lm.tasks.Classifier(
            backbone, num_classes=num_classes, preprocessor=preprocessor
        )
        results["random_init"] = _finetune_one(random_start, "random-init", *args)

    _update_metrics(output, "finetuning", {"dataset": dataset, "epochs": epochs, **results})
    pretrained.save(os.path.join(output, "classifier.keras"))
    # Replaces only a previous serving export (see keras_lm.export.files), never the sources.
    return keras_lm.export.serving(pretrained, serving_export, overwrite=True, protected=sources)


SERVE_SCRIPT = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the serving graph)
directory, texts = sys.argv[1], json.loads(sys.argv[2])
served = tf.saved_model.load(directory)
outputs = served.signatures["serving_default"](text=tf.constant(texts))
print(json.dumps({k: v.numpy().tolist() for k, v in outputs.items()}))
"""


def serve(
    output: str,
    sentences: tuple = (
        "A gripping, beautifully acted film.",
        "Dull, lifeless and far too long.",
        "The plot is thin but the cast is charming.",
    ),
    labels: tuple = ("negative", "positive"),
    model: str | None = None,
) -> list:
    """Answers raw sentences from the serving export in a fresh Python process."""
    model = model or os.path.join(output, SERVING_EXPORT)
    if not os.path.isfile(os.path.join(model, "saved_model.pb")):
        raise FileNotFoundError(
            f"No serving export at '{model}'; run finetune first (it writes OUTPUT/{SERVING_EXPORT}) "
            "or pass --model."
        )
    _stage(f"answering {len(sentences)} raw sentences from {model} in a fresh process")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, model, json.dumps(list(sentences))],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Serving process failed:\n{result.stderr[-2000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    rows = []
    for text, label, probabilities in zip(sentences, answer["label"], answer["probabilities"]):
        rows.append({"text": text, "label": labels[label], "probabilities": probabilities})
        print(f"   {labels[label]:>8}  p={max(probabilities):.3f}  {text}")
    _update_metrics(output, "serving", {"answers": rows})
    return rows


def export_encoder(
    output: str,
    model: str,
    vocabulary: str,
    sequence_length: int = 128,
    lowercase: bool = True,
    overwrite: bool = False,
) -> str:
    """Exports the backbone of a `.keras` file (a backbone or a pretrainer) as an encoder pair.

    `output` is the export folder itself. It must not exist, unless `overwrite` is set and it holds
    a previous encoder export: nothing else is ever replaced, least of all the source files.
    """
    from keras_lm.tasks.classifier import load_backbone_file

    _check_values(export_encoder, locals())
    protected = (model, vocabulary)
    check_export_target(output, overwrite, kind="encoder", protected=protected)
    backbone = load_backbone_file(model)
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=vocabulary, lowercase=lowercase)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=sequence_length)
    return keras_lm.export.encoder(backbone, preprocessor, output, overwrite=overwrite, protected=protected)


def export_serving(output: str, model: str, overwrite: bool = False) -> str:
    """Exports a fine-tuned task saved as `.keras` to a string-in serving SavedModel.

    `output` is the export folder itself (e.g. RUN/serving/2). It must not exist, unless
    `overwrite` is set and it holds a previous serving export: nothing else is ever replaced,
    least of all the source model.
    """
    from keras_lm.tasks.classifier import load_keras_file

    refuse_unsafe_directory(output, protected=(model,))
    if os.path.lexists(output) and not overwrite:
        raise FileExistsError(
            f"'{output}' already exists; pass overwrite=True (--overwrite) to replace a previous export there."
        )
    task = load_keras_file(model)
    return keras_lm.export.serving(task, output, overwrite=overwrite, protected=(model,))
