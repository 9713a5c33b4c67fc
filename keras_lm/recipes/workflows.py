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
import dataclasses
import json
import os
import random
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lm
from keras_lm.applications.bert import BERT_SIZES
from keras_lm.export.files import check_export_target, refuse_unsafe_directory
from keras_lm.recipes.progress import fit_verbosity, progress_callbacks
from keras_lm.values import is_integer, is_number

METRICS_FILE = "metrics.json"
ENCODER_EXPORT = "encoder"
SERVING_EXPORT = os.path.join("serving", "1")
#: Arguments (of any workflow) that count something and must be at least 1 when given.
POSITIVE_COUNTS = ("steps", "batch_size", "sequence_length", "vocabulary_size", "epochs",
                   "max_predictions", "max_train_examples", "eval_batches", "random_init_epochs",
                   "evaluations", "embedding_dim")
#: Pretraining objectives: masked LM alone (RoBERTa's choice), with next-sentence prediction (BERT), or
#: ELECTRA's replaced-token detection ("rtd": a small generator's samples judged by the encoder).
OBJECTIVES = ("mlm", "mlm+nsp", "rtd")
#: The ELECTRA generator's width as a fraction of the discriminator's (the paper's 1/4 for small models).
GENERATOR_FRACTION = 0.25
#: How `pretrain` starts the token embeddings: drawn at random, or from co-occurrence statistics.
TOKEN_EMBEDDINGS = ("random", "cooccurrence")
#: Sentences of a labelled sentence dataset (e.g. movie_snippets) joined into one pretraining document.
SENTENCES_PER_DOCUMENT = 32
#: What the pretrained start of `finetune` takes from the exported encoder (see `finetune`).
TRANSFERS = ("all", "embeddings")
#: The encoder's embedding block: the variables `transfer="embeddings"` keeps.
EMBEDDING_VARIABLES = ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm")


def check_values(function, arguments: dict):
    """The first argument value `function` cannot use, as (name, "must be ..."), else None.

    Types are checked by `keras_lm.recipes.runner.check_arguments`; this checks ranges and choices,
    so that a recipe or a command fails before any work instead of minutes into a run.
    """
    for name in POSITIVE_COUNTS:
        value = arguments.get(name)
        if is_integer(value) and value < 1:
            return name, f"must be at least 1, got {value}."
    positive = (lambda v: v > 0 and v != float("inf"), "must be a positive number")
    rules = {
        "num_classes": (lambda v: v >= 2, "must be at least 2"),
        "warmup": (lambda v: v >= 0, "must be 0 or more"),
        "l2_sp": (lambda v: 0 <= v < float("inf"), "must be 0 or more"),
        "learning_rate": positive,
        "random_init_learning_rate": positive,
        "dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    }
    for name, (valid, message) in rules.items():
        value = arguments.get(name)
        if is_number(value) and not valid(value):
            return name, f"{message}, got {value}."
    if function is pretrain and arguments.get("size", "mini") not in BERT_SIZES:
        return "size", f"must be one of {', '.join(BERT_SIZES)}, got {arguments['size']!r}."
    poolings = keras_lm.tasks.classifier.CLASSIFIER_POOLINGS
    if function is finetune and arguments.get("pooling", "cls") not in poolings:
        return "pooling", f"must be one of {', '.join(poolings)}, got {arguments['pooling']!r}."
    if function is finetune and arguments.get("transfer", "all") not in TRANSFERS:
        return "transfer", f"must be one of {', '.join(TRANSFERS)}, got {arguments['transfer']!r}."
    if function is pretrain and arguments.get("token_embeddings", "random") not in TOKEN_EMBEDDINGS:
        return "token_embeddings", (f"must be one of {', '.join(TOKEN_EMBEDDINGS)}, "
                                    f"got {arguments['token_embeddings']!r}.")
    if function is pretrain and arguments.get("objective", "mlm+nsp") not in OBJECTIVES:
        return "objective", f"must be one of {', '.join(OBJECTIVES)}, got {arguments['objective']!r}."
    corpus = arguments.get("corpus")
    if isinstance(corpus, (list, tuple)) and not corpus:
        return "corpus", "must name at least one corpus, got an empty list."
    tried = arguments.get("tried")
    if isinstance(tried, (list, tuple)):
        from keras_lm.recipes.report import tried_problem  # report imports this module

        if tried_problem(tried):
            return "tried", tried_problem(tried)
    seeds = arguments.get("seeds")
    if isinstance(seeds, (list, tuple)):
        if not seeds:
            return "seeds", "must list at least one seed, got an empty list."
        if len(set(seeds)) != len(seeds):
            return "seeds", f"must not repeat a seed, got {list(seeds)}."
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


def corpus_names(corpus: str | tuple) -> list:
    """`corpus` as a list of names: one name, or a list of names whose train splits are mixed."""
    return [corpus] if isinstance(corpus, str) else list(corpus)


def _describe(corpus: str | tuple) -> str:
    return " + ".join(f"'{name}'" for name in corpus_names(corpus))


def documents(corpus: str | tuple, split: str = "train") -> tf.data.Dataset:
    """The documents (`{"text"}`) of one corpus or of several, one after another, for pretraining.

    A labelled sentence dataset (one with a `label`, e.g. movie_snippets, whose examples are
    single sentences) is read as documents of `SENTENCES_PER_DOCUMENT` consecutive sentences, one
    per line, so that masked-LM rows are filled with text instead of padding. Only the `split`
    asked for is read: pretraining reads `train` splits only.

    Example:
        >>> docs = documents(["movie_snippets", "shakespeare"])  # doctest: +SKIP
        >>> sorted(docs.element_spec)  # doctest: +SKIP
        ['text']
    """
    parts = [_documents_of(name, split) for name in corpus_names(corpus)]
    mixed = parts[0]
    for part in parts[1:]:
        mixed = mixed.concatenate(part)
    return mixed


def _documents_of(name: str, split: str) -> tf.data.Dataset:
    dataset = keras_lm.data.load(name, split=split)
    spec = dataset.element_spec
    if isinstance(spec, dict) and "label" in spec:
        texts = _texts(dataset).batch(SENTENCES_PER_DOCUMENT)
        return texts.map(lambda lines: {"text": tf.strings.reduce_join(lines, separator="\n")})
    return dataset.map(lambda example: {"text": example["text"]})


def has_split(name: str, split: str) -> bool:
    """Whether corpus `name` has `split` (embedded corpora and TFDS names; local files have train only)."""
    try:
        keras_lm.data.load(name, split=split)
    except ValueError:
        return False
    return True


def train_vocabulary(
    output: str,
    corpus: str | tuple = "shakespeare",
    vocabulary_size: int = 8000,
    lowercase: bool = True,
) -> str:
    """Trains a WordPiece vocabulary on the corpus' train split; writes OUTPUT/vocab.txt.

    `corpus` is one corpus or a list of corpora (e.g. `[movie_snippets, shakespeare]`) whose
    train splits are read together, so that the words of each are in the vocabulary.
    """
    _check_values(train_vocabulary, locals())
    os.makedirs(output, exist_ok=True)
    _stage(f"training a {vocabulary_size}-token WordPiece vocabulary on {_describe(corpus)} (train split)")
    start = time.time()
    tokenizer = keras_lm.tokenizers.WordPiece.train(
        _texts(documents(corpus, "train")),
        vocabulary_size=vocabulary_size,
        lowercase=lowercase,
    )
    path = os.path.join(output, "vocab.txt")
    tokenizer.save_vocabulary(path)
    _update_metrics(
        output,
        "vocabulary",
        {
            "size": int(tokenizer.vocabulary_size()),
            "corpus": corpus_names(corpus),
            "seconds": round(time.time() - start, 1),
        },
    )
    return path


class StepHistory(keras.callbacks.Callback):
    """Records the value of every step of `fit`'s metrics (for the report's curves).

    Keras reports the running mean of each metric since the start of the epoch; the value of
    step t is recovered from two consecutive means: t * mean_t - (t - 1) * mean_(t-1).
    `values["loss"]` is the per-step training loss, likewise `values["mlm_accuracy"]`, ...
    """

    def __init__(self):
        super().__init__()
        self.values = {}
        self._means = {}
        self._step = 0

    @property
    def losses(self) -> list:
        return self.values.get("loss", [])

    def on_epoch_begin(self, epoch, logs=None):
        self._means, self._step = {}, 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        for name, mean in (logs or {}).items():
            try:
                mean = float(mean)
            except (TypeError, ValueError):
                continue
            previous = self._means.get(name, 0.0)
            self.values.setdefault(name, []).append(self._step * mean - (self._step - 1) * previous)
            self._means[name] = mean


_LossHistory = StepHistory  # the name keras_lm.recipes.gpt imports


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
    corpus: str | tuple = "shakespeare",
    size: str = "mini",
    vocabulary: str | None = None,
    sequence_length: int = 128,
    batch_size: int = 32,
    steps: int = 300,
    learning_rate: float = 5e-4,
    warmup: int = 30,
    max_predictions: int = 20,
    objective: str = "mlm+nsp",
    norm_first: bool = False,
    dropout: float = 0.1,
    evaluations: int = 10,
    seed: int = 0,
    strategy: str | None = None,
    mixed_precision: str | None = "auto",
    backup_dir: str | None = None,
    token_embeddings: str = "random",
    embedding_corpus: str | tuple | None = None,
    train_token_embeddings: bool = True,
    discriminator_weight: float = 50.0,
    embedding_dim: int | None = None,
) -> str:
    """Pretrains an encoder of `Bert(size)`'s shape for `steps` steps.

    `corpus` is one corpus or a list whose train splits are mixed (see `documents`); only train
    splits are pretrained on. `objective` is "mlm+nsp" (BERT: masked LM + next-sentence
    prediction on segment pairs), "mlm" (masked LM alone on full rows, as RoBERTa) or "rtd"
    (ELECTRA: the encoder is an `Electra` discriminator of the same shape, trained with
    `keras_lm.pretraining.ReplacedTokenDetection` against a generator a quarter as wide that
    shares its embeddings; loss = generator MLM + `discriminator_weight` x detection). The
    held-out loss and accuracies are measured `evaluations` times during training, on the
    validation splits of the corpora (for the report's curves), and before and after training.
    `norm_first` (pre-LayerNorm blocks) and `dropout` shape the encoder, as in
    `keras_lm.models.Encoder`: pre-LN blocks without dropout learn much faster in a short
    pretraining run; the exported encoder keeps them for fine-tuning.
    `token_embeddings="cooccurrence"` starts the token embeddings from PPMI + SVD vectors of the
    train splits of `embedding_corpus` (default: `corpus`; see
    `keras_lm.pretraining.cooccurrence`): every token of the corpus has a meaningful vector from
    the first step, which a short masked-LM run cannot give rare tokens. With
    `train_token_embeddings=False` masked LM trains everything else around them. `embedding_dim`
    makes the embeddings wider (or narrower) than the blocks, with a learnt projection between
    them as in ELECTRA and ALBERT (default: as wide as the blocks).

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
        backbone, pretrainer = pretraining_models(
            objective, size, tokenizer.vocabulary_size(), max_predictions, seed=seed, dtype=mixed_precision,
            norm_first=norm_first, dropout=dropout, discriminator_weight=discriminator_weight,
            **({"embedding_dim": embedding_dim} if embedding_dim else {}),
        )
    if token_embeddings == "cooccurrence":
        _start_from_cooccurrence(backbone, tokenizer, embedding_corpus or corpus, seed)
    backbone.token_embedding.trainable = train_token_embeddings
    train = pretrainer.dataset(documents(corpus, "train"), preprocessor, batch_size=batch_size, seed=seed)
    validation = _held_out(pretrainer, corpus, preprocessor, batch_size, seed)
    compile_options = {}
    if distribution:
        compile_options["jit_compile"] = keras_lm.training.jit_compile_for(distribution)
    with distribution.scope() if distribution else contextlib.nullcontext():
        pretrainer.compile(
            optimizer=keras_lm.training.adamw(learning_rate, warmup=warmup, total=steps),
            **compile_options,
        )
    _stage(
        f"pretraining {type(backbone).__name__} of Bert('{size}')'s shape ({backbone.count_params():,} parameters, "
        f"{backbone.dtype_policy.name}) with {objective} on {_describe(corpus)}: "
        f"{steps} steps of {batch_size}x{sequence_length} tokens"
    )
    history = StepHistory()
    held_out = HeldOutCurve(validation, steps, evaluations)
    start = time.time()
    callbacks = [history, held_out, *progress_callbacks(steps)]
    if backup_dir:
        keras_lm.training.resumable_fit(
            pretrainer, train, backup_dir, epochs=1, steps_per_epoch=steps,
            save_every=max(1, steps // 10), callbacks=callbacks, shuffle=False, verbose=fit_verbosity(),
        )
    else:
        pretrainer.fit(
            train.repeat(), steps_per_epoch=steps, epochs=1, callbacks=callbacks, shuffle=False,
            verbose=fit_verbosity(),
        )
    seconds = time.time() - start - held_out.seconds
    _stage("evaluating on the held-out texts")
    before = _initial_validation(pretrainer, validation, seed)
    after = pretrainer.evaluate(validation, return_dict=True, verbose=0)
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
            "corpus": corpus_names(corpus),
            "objective": objective,
            **({"discriminator_weight": discriminator_weight,
                "generator_config": keras.saving.serialize_keras_object(pretrainer.generator.get_config())}
               if objective == "rtd" else {}),
            "norm_first": norm_first,
            "dropout": dropout,
            "embedding_dim": embedding_dim or backbone.hidden_dim,
            "backbone_class": type(backbone).__name__,
            "backbone_config": keras.saving.serialize_keras_object(backbone.get_config()),
            "parameters": int(backbone.count_params()),
            "precision": backbone.dtype_policy.name,
            "steps": steps,
            "batch_size": batch_size,
            "sequence_length": sequence_length,
            "learning_rate": learning_rate,
            "warmup": warmup,
            "token_embeddings": token_embeddings,
            **({"embedding_corpus": corpus_names(embedding_corpus or corpus)}
               if token_embeddings == "cooccurrence" else {}),
            "train_token_embeddings": train_token_embeddings,
            "seconds": round(seconds, 1),
            "tokens_per_second": round(steps * batch_size * sequence_length / seconds, 1),
            "train_loss_curve": history.losses,
            "train_curves": {k: v for k, v in history.values.items() if k != "loss"},
            "held_out_curve": held_out.points,
            "validation_before": {k: float(v) for k, v in before.items()},
            "validation_after": {k: float(v) for k, v in after.items()},
        },
    )
    return directory


#: Co-occurrence window (tokens each side) and L2 norm of the `token_embeddings="cooccurrence"` vectors,
#: chosen on the movie_snippets validation split (see applications/quickstart.yaml).
COOCCURRENCE_WINDOW = 5
COOCCURRENCE_NORM = 1.0


def _start_from_cooccurrence(backbone, tokenizer, corpus, seed: int) -> None:
    """Sets `backbone`'s token embeddings to PPMI + SVD vectors of `corpus`'s train splits."""
    _stage(f"token embeddings from co-occurrences in {_describe(corpus)} (PPMI + SVD)")
    start = time.time()
    rows = [row for batch in _texts(documents(corpus, "train")).batch(256).map(tokenizer)
            for row in batch.to_list()]
    table = backbone.token_embedding.embeddings
    special = [tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id, tokenizer.unk_id]
    vectors = keras_lm.pretraining.cooccurrence_embeddings(
        rows, tokenizer.vocabulary_size(), table.shape[1], window=COOCCURRENCE_WINDOW, exclude=special,
        norm=COOCCURRENCE_NORM, seed=seed, initial=keras.ops.convert_to_numpy(table),
    )
    table.assign(vectors.astype(table.dtype))
    _stage(f"  {sum(len(r) for r in rows):,} tokens, {time.time() - start:.0f} s")


#: Batches of validation text in the held-out pretraining figures (shared among the corpora).
HELD_OUT_BATCHES = 20


def _held_out(pretrainer, corpus, preprocessor, batch_size: int, seed: int) -> tf.data.Dataset:
    """Fixed held-out batches (the same masks on every pass) from the validation split of each
    corpus that has one; from the corpora's first training batches when none has one."""
    names = [name for name in corpus_names(corpus) if has_split(name, "validation")]
    if names:
        sources = [documents(name, "validation") for name in names]
    else:
        _stage("no corpus has a validation split: the held-out figures are measured on training text")
        sources = [documents(corpus, "train")]
    per_source = max(1, HELD_OUT_BATCHES // len(sources))
    parts = [
        pretrainer.dataset(source, preprocessor, batch_size=batch_size, shuffle=False, seed=seed)
        .take(per_source)
        for source in sources
    ]
    held_out = parts[0]
    for part in parts[1:]:
        held_out = held_out.concatenate(part)
    return held_out.cache()


class HeldOutCurve(keras.callbacks.Callback):
    """Measures the pretraining objectives on held-out batches `evaluations` times during `fit`.

    `points` holds `{"step", "loss", "mlm_accuracy", ...}` per measurement; `seconds` the time
    spent measuring. The training metrics' running means are left as they were.
    """

    def __init__(self, validation: tf.data.Dataset, steps: int, evaluations: int):
        super().__init__()
        self.validation = validation
        every = max(1, steps // max(1, evaluations))
        self.at_steps = set(range(every, steps + 1, every)) | {steps}
        self.points = []
        self.seconds = 0.0
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step in self.at_steps:
            start = time.time()
            self.points.append({"step": self._step, **_evaluate_keeping_metrics(self.model, self.validation)})
            self.seconds += time.time() - start


def _evaluate_keeping_metrics(model, dataset: tf.data.Dataset) -> dict:
    """Mean loss and metrics of `model` on `dataset`; its metric states are restored afterwards
    (Model.evaluate would reset the training metrics in the middle of an epoch)."""
    saved = [[variable.numpy() for variable in metric.variables] for metric in model.metrics]
    for metric in model.metrics:
        metric.reset_state()
    model.make_test_function()
    logs = {}
    for batch in dataset:
        logs = model.test_function(iter([batch]))
    values = {name: float(value) for name, value in logs.items()}
    for metric, state in zip(model.metrics, saved):
        for variable, value in zip(metric.variables, state):
            variable.assign(value)
    return values


def _initial_validation(trained, validation, seed) -> dict:
    """Validation metrics of an untrained pretrainer of `trained`'s shape (the starting point)."""
    keras.utils.set_random_seed(seed)
    untrained = type(trained).from_config(trained.get_config())
    untrained.compile(optimizer="adam")
    return untrained.evaluate(validation, return_dict=True, verbose=0)


def pretraining_models(objective: str, size: str, vocabulary_size: int, max_predictions: int, seed: int = 0,
                       discriminator_weight: float = 50.0, **encoder_options):
    """`(encoder, pretrainer)` for `objective` with the encoder of `Bert(size)`'s shape.

    "mlm" / "mlm+nsp": a `Bert` in a `BertPretrainer`. "rtd": an `Electra` discriminator of that
    shape (embeddings as wide as its blocks) and a generator `GENERATOR_FRACTION` as wide sharing
    its embeddings, in `ReplacedTokenDetection`.

    Example:
        >>> encoder, pretrainer = pretraining_models("rtd", "tiny", 1000, max_predictions=10)
        >>> type(encoder).__name__, pretrainer.generator.hidden_dim
        ('Electra', 32)
    """
    if objective != "rtd":
        backbone = keras_lm.applications.Bert(size, vocabulary_size=vocabulary_size, **encoder_options)
        return backbone, keras_lm.pretraining.BertPretrainer(
            backbone, max_predictions=max_predictions, next_sentence=objective == "mlm+nsp")
    shape = dict(BERT_SIZES[size])
    encoder_options.setdefault("embedding_dim", shape["hidden_dim"])
    discriminator = keras_lm.applications.Electra(
        None, vocabulary_size=vocabulary_size, **shape, **encoder_options)
    hidden = max(16, int(round(shape["hidden_dim"] * GENERATOR_FRACTION)))
    generator = discriminator.generator(
        size=None, num_layers=shape["num_layers"], hidden_dim=hidden, num_heads=max(1, hidden // 64),
        **{key: value for key, value in encoder_options.items() if key in ("norm_first", "dropout")},
    )
    return discriminator, keras_lm.pretraining.ReplacedTokenDetection(
        generator, discriminator, discriminator_weight=discriminator_weight,
        max_predictions=max_predictions, seed=seed)


def encoder_class(pretraining: dict):
    """The `keras_lm.applications` class of the pretrained encoder recorded in metrics.json."""
    name = pretraining.get("backbone_class", "Bert")
    if name not in ("Bert", "Electra"):
        raise ValueError(f"metrics.json records a {name} encoder; the recipes rebuild Bert and Electra.")
    return getattr(keras_lm.applications, name)


def _labelled(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`(text, label)` pairs, or `((text, text_pair), label)` for sentence pairs."""
    if "text_pair" in dataset.element_spec:
        return dataset.map(lambda example: ((example["text"], example["text_pair"]), example["label"]))
    return dataset.map(lambda example: (example["text"], example["label"]))


#: Without a validation file, every HELD_OUT_EVERY-th training example is held out for validation.
HELD_OUT_EVERY = 10


@dataclasses.dataclass
class FinetuningExamples:
    """The train, validation and test splits of `finetune` as `(text, label)` datasets.

    `label_names` are the class names by id (None for integer labels without names), `num_classes`
    the number of classes the data shows (None when it must be counted), `files` the files read
    (None for a dataset name) and `description` what metrics.json records about them.
    """

    splits: tuple
    label_names: tuple | None
    num_classes: int | None
    files: dict | None
    description: dict


def finetuning_examples(dataset: str, train: str | None, validation: str | None, test: str | None,
                        columns: dict) -> FinetuningExamples:
    """The labelled splits `finetune` trains, selects and reports on (see its docstring).

    `columns` maps "text", "label" and "text_pair" (None: single texts) to column or feature names.
    """
    options = {"text": columns["text"], "label": columns["label"], "text_pair": columns.get("text_pair")}
    if train is None:
        if validation or test:
            raise ValueError("`validation` and `test` files need a `train` file (--train) too.")
        return _dataset_examples(dataset, options)
    read = {"train": keras_lm.data.read_labelled(train, **options)}
    names = read["train"].label_names
    for split, path in (("validation", validation), ("test", test)):
        if path:
            read[split] = keras_lm.data.read_labelled(path, label_names=names, **options)
    sources = {"train": train, "validation": validation, "test": test}
    if "validation" not in read:
        _stage(f"no validation file: every {HELD_OUT_EVERY}th training example is held out for validation")
        read["train"], read["validation"] = _hold_out(read["train"])
        sources["validation"] = f"every {HELD_OUT_EVERY}th example of {train}"
    if "test" not in read:
        _stage("no test file: the test figures are measured on the validation examples")
        read["test"] = read["validation"]
        sources["test"] = f"the validation examples ({sources['validation']})"
    description = {
        **sources,
        "examples": {split: len(rows.texts) for split, rows in read.items()},
        "bad_rows": {split: [str(bad) for bad in rows.bad_rows] for split, rows in read.items() if rows.bad_rows},
        "label_names": None if names is None else list(names),
    }
    splits = tuple(_labelled(read[split].dataset()) for split in ("train", "validation", "test"))
    num_classes = len(names) if names is not None else max(rows.num_classes for rows in read.values())
    files = {split: path for split, path in (("train", train), ("validation", validation), ("test", test)) if path}
    return FinetuningExamples(splits, names, num_classes, files, description)


def _hold_out(rows):
    """`(kept, held out)`: every `HELD_OUT_EVERY`-th example of `rows` (a LabelledExamples) held out."""
    def select(keep):
        chosen = [i for i in range(len(rows.texts)) if ((i % HELD_OUT_EVERY) == HELD_OUT_EVERY - 1) != keep]
        return dataclasses.replace(
            rows, texts=[rows.texts[i] for i in chosen], labels=rows.labels[chosen],
            lines=[rows.lines[i] for i in chosen], bad_rows=rows.bad_rows if keep else [],
            text_pairs=None if rows.text_pairs is None else [rows.text_pairs[i] for i in chosen],
        )

    kept, held_out = select(True), select(False)
    if not held_out.texts:
        raise ValueError(f"'{rows.source}' has {len(rows.texts)} examples: too few to hold out validation examples; "
                         "pass a validation file (--validation).")
    return kept, held_out


def _dataset_examples(dataset: str, options: dict) -> FinetuningExamples:
    loaded = {split: keras_lm.data.load(dataset, split=split, **options) for split in ("train", "validation")}
    description = {"train": f"{dataset}:train", "validation": f"{dataset}:validation", "test": f"{dataset}:test"}
    if has_split(dataset, "test"):
        loaded["test"] = keras_lm.data.load(dataset, split="test", **options)
    else:
        _stage(f"'{dataset}' has no test split: the test figures are measured on its validation split")
        loaded["test"] = loaded["validation"]
        description["test"] = f"{dataset}:validation (no test split)"
    names = loaded["train"].label_names
    description["label_names"] = None if names is None else list(names)
    splits = tuple(_labelled(loaded[split]) for split in ("train", "validation", "test"))
    return FinetuningExamples(splits, names, None if names is None else len(names), None, description)


def _num_classes(examples: FinetuningExamples, num_classes: int | None) -> int:
    """`num_classes` checked against the data, or the number of classes the data shows."""
    found = examples.num_classes
    if found is None:  # integer labels without names: the largest id of any split + 1
        found = 1 + max(int(split.reduce(tf.constant(-1, tf.int64), lambda top, e: tf.maximum(
            top, tf.cast(e[1], tf.int64)))) for split in examples.splits)
    if num_classes is None:
        if found < 2:
            raise ValueError(f"The training data has {found} class: a classifier needs at least 2.")
        return found
    if examples.label_names is not None and num_classes != found:
        raise ValueError(f"num_classes is {num_classes} but the data names {found} classes "
                         f"({', '.join(examples.label_names)}); leave num_classes out to use them.")
    if num_classes < found:
        raise ValueError(f"num_classes is {num_classes} but the data has class ids up to {found - 1}.")
    return num_classes


#: Fine-tuning batches are formed within windows of this many batches of shuffled examples.
SORT_WINDOW = 16


def _sort_by_length(texts, labels):
    """The window's examples in order of length (of both texts for a sentence pair)."""
    parts = texts if isinstance(texts, tuple) else (texts,)
    order = tf.argsort(tf.add_n([tf.strings.length(part) for part in parts]), stable=True)
    ordered = tuple(tf.gather(part, order) for part in parts)
    return tf.data.Dataset.from_tensor_slices((ordered if isinstance(texts, tuple) else ordered[0],
                                               tf.gather(labels, order)))


def _with_batch_count(batches: tf.data.Dataset, examples: tf.data.Dataset, batch_size: int):
    count = int(examples.cardinality())
    if count < 0:
        return batches
    # Windows of whole batches give as many batches as plain batching.
    return batches.apply(tf.data.experimental.assert_cardinality(-(-count // batch_size)))


def training_batches(examples: tf.data.Dataset, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled `(text, label)` batches of texts of similar length, reshuffled every epoch.

    Examples are shuffled, cut into windows of `SORT_WINDOW` batches, sorted by length within a
    window, batched, and the batches shuffled: a batch is padded only to its own longest text
    (see `keras_lm.tasks.task.trim_padding`), so short texts no longer pay for a long neighbour.

    Example:
        >>> pairs = tf.data.Dataset.from_tensor_slices((["a b c", "a", "a b"], [1, 0, 1]))
        >>> sorted(len(texts) for texts, _ in training_batches(pairs, 2, seed=0))
        [1, 2]
    """
    shuffled = examples.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    batches = shuffled.batch(SORT_WINDOW * batch_size).flat_map(_sort_by_length).batch(batch_size)
    batches = batches.shuffle(4 * SORT_WINDOW, seed=seed, reshuffle_each_iteration=True)
    return _with_batch_count(batches, examples, batch_size)


def evaluation_batches(examples: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """`(text, label)` batches in order of length within windows (the order does not change a mean)."""
    batches = examples.batch(SORT_WINDOW * batch_size).flat_map(_sort_by_length).batch(batch_size)
    return _with_batch_count(batches, examples, batch_size)


class _SeedRuns:
    """Fine-tunes one compiled classifier from a fresh start for each seed, tracing its steps once.

    Compiling and tracing a train step costs as much as dozens of steps on a small model; every
    seed's run therefore reuses the same model and optimizer: its variables (weights and dropout
    seed states) are set to that seed's starting values and the optimizer's state (step count,
    moments) to zero, which is what a new model and a new optimizer would hold.
    """

    def __init__(self, classifier, learning_rate: float, steps: int, anchor=None):
        self.classifier = classifier
        self.anchor = anchor  # an attached keras_lm.training.continual.AnchoredPenalty, re-anchored per run
        classifier.compile(
            optimizer=keras_lm.training.adamw(learning_rate, warmup=max(1, steps // 10), total=steps)
        )
        classifier.optimizer.build(classifier.trainable_variables)

    def restart(self, values: list) -> None:
        """`values`: one array per variable of `classifier.variables` (see `_start_values`)."""
        variables = self.classifier.variables
        if len(values) != len(variables):
            raise ValueError(f"Expected {len(variables)} starting values, got {len(values)}.")
        for variable, value in zip(variables, values):
            variable.assign(value)
        if self.anchor is not None:  # at this run's starting values
            for anchor, variable in zip(self.anchor.anchors, self.anchor.variables):
                anchor.assign(tf.cast(variable, anchor.dtype))
        for variable in self.classifier.optimizer.variables:
            variable.assign(tf.zeros(variable.shape, variable.dtype))


def _finetune_run(runs: _SeedRuns, weights, name, seed, data, epochs, batch_size, learning_rate) -> dict:
    train, validation, test = data
    runs.restart(weights)
    classifier = runs.classifier
    steps = epochs * int(training_batches(train, batch_size, seed).cardinality())
    _stage(f"fine-tuning the {name} start, seed {seed}: {epochs} epochs ({steps} steps, "
           f"learning rate {learning_rate:g})")
    history = StepHistory()
    start = time.time()
    fit = classifier.fit(
        training_batches(train, batch_size, seed),
        validation_data=evaluation_batches(validation, batch_size),
        epochs=epochs,
        callbacks=[history],
        verbose=2,
    )
    seconds = time.time() - start
    test_metrics = classifier.evaluate(evaluation_batches(test, batch_size), return_dict=True, verbose=0)
    return {
        "seed": seed,
        "test_accuracy": float(test_metrics["accuracy"]),
        "test_loss": float(test_metrics["loss"]),
        "validation_accuracy": [float(x) for x in fit.history["val_accuracy"]],
        "train_loss_curve": history.losses,
        "steps": steps,
        "seconds": round(seconds, 1),
    }


def summarize_runs(runs: list, learning_rate: float, epochs: int) -> dict:
    """Mean, standard deviation (population), min and max over seeds of the test accuracy, and
    the mean final validation accuracy, next to every run."""
    test = np.array([run["test_accuracy"] for run in runs])
    validation = np.array([run["validation_accuracy"][-1] for run in runs])
    return {
        "learning_rate": learning_rate,
        "epochs": epochs,
        "seeds": [run["seed"] for run in runs],
        "test_accuracy": float(test.mean()),
        "test_accuracy_std": float(test.std()),
        "test_accuracy_min": float(test.min()),
        "test_accuracy_max": float(test.max()),
        "validation_accuracy_mean": float(validation.mean()),
        "runs": runs,
    }


def _batches_per_epoch(train: tf.data.Dataset, batch_size: int) -> int:
    examples = int(train.reduce(0, lambda count, _: count + 1).numpy())
    return -(-examples // batch_size)


def finetune(
    output: str,
    encoder: str | None = None,
    dataset: str = "movie_snippets",
    num_classes: int | None = None,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    compare_random_init: bool = True,
    max_train_examples: int | None = None,
    seed: int = 0,
    seeds: tuple[int, ...] | None = None,
    random_init_learning_rate: float | None = None,
    random_init_epochs: int | None = None,
    pooling: str = "cls",
    from_hf: str | None = None,
    transfer: str = "all",
    train: str | None = None,
    validation: str | None = None,
    test: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    l2_sp: float = 0.0,
) -> str:
    """Reloads the exported encoder trainably, fine-tunes a classifier per seed, exports serving.

    Each seed of `seeds` (default: just `seed`) fine-tunes from the exported encoder with a new
    head, its own data order and dropout; the test and validation accuracies of every run and
    their mean, std, min and max go to metrics.json. With `compare_random_init`, the same
    classifier is also trained from a randomly initialised encoder of the same shape and
    precision, for each seed, with its own `random_init_learning_rate` and `random_init_epochs`
    (default: the pretrained start's), so that each start can use the settings that suit it best
    on the validation split.

    The served model (OUTPUT/classifier.keras and OUTPUT/serving/1) is the pretrained start's
    run with the best final validation accuracy (the first seed on a tie). Returns the serving dir.

    `pooling` is what the classifier head reads ("cls": the pooler on [CLS]; "mean": the average of
    the token vectors). `from_hf` starts from a pretrained checkpoint folder instead of a pretraining
    run (Hugging Face, Google BERT or keras-hub preset, or the embedded name all-minilm-l6-v2): it is
    imported and exported to OUTPUT/encoder first (see `import_checkpoint`).

    `l2_sp` > 0 keeps the pretrained start near what pretraining taught: the loss gains
    `l2_sp / 2 * ||w - w0||^2` over the encoder's weights, `w0` their values at the start (L2-SP, Li
    et al. 2018; `keras_lm.training.continual.L2SP`). The random-init start has nothing to keep and
    trains without it.

    `transfer` is what the pretrained start takes from the export: "all" its weights, or
    "embeddings" only its embedding block (token, position and segment embeddings and their
    LayerNorm), the transformer blocks and pooler starting from new random weights drawn as the
    random-init start's are. After a short masked-LM pretraining the embeddings already carry
    lexical knowledge while the blocks are a worse start than random ones (see
    applications/quickstart.yaml).

    The examples are the `train`, `validation` and `test` splits of `dataset` (an embedded corpus or
    "tfds:NAME"), or your own CSV / TSV / JSON Lines files: `train` (required for files),
    `validation` (default: every 10th example of `train`, held out) and `test` (default: the
    validation examples, said so in metrics.json). `text_column`, `label_column` and
    `text_pair_column` (sentence pairs) name the columns or features; every unusable row is
    reported with its line number (see `keras_lm.data.read_labelled`). Class names become ids
    (sorted, from the training file) and the classifier keeps them: its serving export returns
    `label_name` next to `label`. `num_classes` defaults to the number of classes in the data.
    """
    _check_values(finetune, locals())
    if from_hf:
        if encoder:
            raise ValueError("Pass either `encoder` or `from_hf`, not both.")
        from keras_lm.recipes.checkpoint import import_checkpoint

        import_checkpoint(output, checkpoint=from_hf)
    encoder = encoder or os.path.join(output, ENCODER_EXPORT)
    serving_export = os.path.join(output, SERVING_EXPORT)
    sources = (encoder, os.path.join(output, "classifier.keras"), *(f for f in (train, validation, test) if f))
    check_export_target(serving_export, overwrite=True, kind="serving", protected=sources)
    seeds = list(seeds) if seeds else [seed]
    columns = {"text": text_column, "label": label_column, "text_pair": text_pair_column}
    examples = finetuning_examples(dataset, train, validation, test, columns)
    num_classes = _num_classes(examples, num_classes)
    os.makedirs(output, exist_ok=True)
    train, validation, test = examples.splits
    if max_train_examples:
        train = train.take(max_train_examples)
    train = train.cache()
    data = (train, validation.cache(), test.cache())
    per_epoch = _batches_per_epoch(train, batch_size)

    _stage(f"reloading the exported encoder {encoder} as a trainable Keras layer")
    keras.utils.set_random_seed(seeds[0])
    classifier = keras_lm.tasks.Classifier.from_saved_model(encoder, num_classes=num_classes, pooling=pooling,
                                                            label_names=examples.label_names)
    encoder_values = {id(variable): variable.numpy() for variable in classifier.backbone.variables}
    anchor = keras_lm.training.L2SP(classifier.backbone, alpha=l2_sp).attach() if l2_sp else None
    pretrained_runs = _SeedRuns(classifier, learning_rate, epochs * per_epoch, anchor)
    runs, served_weights, served_seed, served_accuracy = [], None, None, -1.0
    for run_seed in seeds:
        start_values = encoder_values
        if transfer == "embeddings":
            start_values = _with_new_blocks(classifier.backbone, encoder_values, output, run_seed, encoder)
        weights = _pretrained_start(classifier, start_values, run_seed)
        runs.append(_finetune_run(pretrained_runs, weights, "pretrained", run_seed, data, epochs,
                                  batch_size, learning_rate))
        if runs[-1]["validation_accuracy"][-1] > served_accuracy:
            served_accuracy, served_seed = runs[-1]["validation_accuracy"][-1], run_seed
            served_weights = classifier.get_weights()
    results = {"pretrained": summarize_runs(runs, learning_rate, epochs)}

    if compare_random_init:
        random_learning_rate = random_init_learning_rate or learning_rate
        random_epochs = random_init_epochs or epochs
        results["random_init"] = _random_init_runs(
            output, classifier, num_classes, seeds, data, random_epochs, batch_size,
            random_learning_rate, per_epoch, pooling, encoder=encoder,
        )
        results["difference"] = (
            results["pretrained"]["test_accuracy"] - results["random_init"]["test_accuracy"]
        )

    _update_metrics(
        output,
        "finetuning",
        {
            "dataset": dataset if examples.files is None else examples.files["train"],
            "data": examples.description,
            "epochs": epochs,
            "batch_size": batch_size,
            "pooling": pooling,
            "transfer": transfer,
            "l2_sp": l2_sp,
            "served": {
                "start": "pretrained",
                "seed": served_seed,
                "validation_accuracy": served_accuracy,
                "rule": "the pretrained run with the best final validation accuracy",
            },
            **results,
        },
    )
    if anchor is not None:
        anchor.detach()
    classifier.set_weights(served_weights)
    classifier.save(os.path.join(output, "classifier.keras"))
    # Replaces only a previous serving export (see keras_lm.export.files), never the sources.
    return keras_lm.export.serving(classifier, serving_export, overwrite=True, protected=sources)


def _new_encoder(output: str, seed: int, export: str | None = None):
    """A new random encoder of the pretrained one's configuration, for `seed`: as recorded in
    OUTPUT/metrics.json by the pretrain step, else in the manifest of the encoder `export`."""
    config = read_metrics(output).get("pretraining", {}).get("backbone_config")
    if config is None:
        exported = _exported_backbone_config(export)
        if exported is not None:
            keras.utils.set_random_seed(seed)
            return keras.saving.deserialize_keras_object(exported)
        raise ValueError(
            f"transfer='embeddings' needs the pretrained encoder's configuration in {output}/{METRICS_FILE} "
            "(written by the pretrain step) or in the encoder export's manifest; use transfer='all' for another "
            "encoder."
        )
    keras.utils.set_random_seed(seed)
    pretraining = read_metrics(output)["pretraining"]
    return encoder_class(pretraining).from_config(keras.saving.deserialize_keras_object(config))


def _exported_backbone_config(export: str | None) -> dict | None:
    """The backbone configuration an encoder export's manifest records (keras_lm.export.encoder), else None."""
    from keras_lm.tasks.saved_model import read_manifest

    if not export:
        return None
    try:
        return read_manifest(export).get("backbone")
    except (FileNotFoundError, ValueError):
        return None


def _with_new_blocks(encoder, encoder_values: dict, output: str, seed: int, export: str | None = None) -> dict:
    """`encoder_values` (by variable id) with every variable outside the embedding block replaced
    by a new random encoder's value for `seed`; variables are matched by name."""
    new_encoder = _new_encoder(output, seed, export)
    fresh = {variable.path.replace("/", "_"): variable.numpy() for variable in new_encoder.weights}
    values = dict(encoder_values)
    for variable in encoder.variables:
        if variable.name.startswith(EMBEDDING_VARIABLES) or variable.name == "seed_generator_state":
            continue
        if variable.name not in fresh or tuple(fresh[variable.name].shape) != tuple(variable.shape):
            raise ValueError(
                f"The exported encoder's variable '{variable.name}' {tuple(variable.shape)} has no "
                "counterpart in a new encoder of the pretrained configuration; use transfer='all'."
            )
        values[id(variable)] = fresh[variable.name]
    return values


def _pretrained_start(classifier, encoder_values: dict, seed: int) -> list:
    """The classifier's starting values for `seed`, one per variable of `classifier.variables`:
    the encoder's as exported (`encoder_values`, by variable id), the head's drawn by its
    initializers under `seed`, and new dropout seed states drawn from `seed`."""
    keras.utils.set_random_seed(seed)
    initializers = {}
    for layer in classifier.layers:
        for attribute in ("kernel", "bias"):
            if getattr(layer, attribute, None) is not None:
                initializers[id(getattr(layer, attribute))] = getattr(layer, f"{attribute}_initializer")
    values = []
    for variable in classifier.variables:
        if id(variable) in encoder_values:
            values.append(encoder_values[id(variable)])
        elif id(variable) in initializers:
            value = initializers[id(variable)](variable.shape, variable.dtype)
            values.append(keras.ops.convert_to_numpy(value))
        elif variable.name == "seed_generator_state":  # as a new SeedGenerator would start
            values.append(np.array([random.randint(1, 10**9), 0], dtype=variable.dtype))
        else:
            values.append(variable.numpy())
    return values


def _random_init_runs(output, pretrained, num_classes, seeds, data, epochs, batch_size, learning_rate,
                      per_epoch, pooling="cls", encoder: str | None = None) -> dict:
    """The random-init start: a new encoder of the pretrained one's architecture and precision
    (its configuration as pretrained, else as the `encoder` export's manifest records it), with new
    random weights for each seed. Its tokenizer is the run's vocabulary (OUTPUT/vocab.txt) when the
    run pretrained the encoder, else the export's own preprocessor."""
    metrics = read_metrics(output)
    pretraining = metrics.get("pretraining", {})
    exported_config = _exported_backbone_config(encoder)
    has_vocabulary = os.path.isfile(os.path.join(output, "vocab.txt"))
    if has_vocabulary and (pretraining or exported_config is None):
        tokenizer = _load_tokenizer(output, None)
        preprocessor = keras_lm.tokenizers.BertPreprocessor(
            tokenizer, sequence_length=pretrained.preprocessor.sequence_length
        )
    elif exported_config is None and "checkpoint" not in metrics:
        raise FileNotFoundError(
            f"The random-init comparison needs the encoder's shape: '{encoder}' records none in its manifest and "
            f"'{output}' holds no vocab.txt; export the encoder again with keras_lm.export.encoder, or pass "
            "compare_random_init=False (--no-compare-random-init)."
        )

    def new_classifier(seed):
        keras.utils.set_random_seed(seed)
        if "checkpoint" in metrics:  # an imported checkpoint: its shape and tokenizer, freshly initialised
            checkpoint = metrics["checkpoint"]
            backbone = keras_lm.applications.Bert(None, dtype=checkpoint["precision"], **checkpoint["shape"])
            return keras_lm.tasks.Classifier(backbone, num_classes=num_classes,
                                             preprocessor=pretrained.preprocessor, pooling=pooling)
        elif "backbone_config" in pretraining and has_vocabulary:  # the very architecture (and precision) pretrained
            config = keras.saving.deserialize_keras_object(pretraining["backbone_config"])
            backbone = encoder_class(pretraining).from_config(config)
        elif exported_config is not None:  # the architecture the export records, with the export's tokenizer
            backbone = keras.saving.deserialize_keras_object(exported_config)
            return keras_lm.tasks.Classifier(backbone, num_classes=num_classes,
                                             preprocessor=pretrained.preprocessor, pooling=pooling)
        else:
            backbone = keras_lm.applications.Bert(
                pretraining.get("size", "mini"),
                vocabulary_size=tokenizer.vocabulary_size(),
                dtype=pretraining.get("precision"),
            )
        return keras_lm.tasks.Classifier(backbone, num_classes=num_classes, preprocessor=preprocessor,
                                         pooling=pooling)

    classifier = new_classifier(seeds[0])
    random_runs = _SeedRuns(classifier, learning_rate, epochs * per_epoch)
    runs = []
    for run_seed in seeds:
        weights = [variable.numpy() for variable in new_classifier(run_seed).variables]  # that seed's start
        runs.append(_finetune_run(random_runs, weights, "random-init", run_seed, data, epochs,
                                  batch_size, learning_rate))
    return summarize_runs(runs, learning_rate, epochs)


SERVE_SCRIPT = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops used by the serving graph)
directory, texts = sys.argv[1], json.loads(sys.argv[2])
served = tf.saved_model.load(directory)
outputs = served.signatures["serving_default"](text=tf.constant(texts))
as_json = lambda v: [x.decode("utf-8") for x in v.tolist()] if v.dtype == object else v.tolist()
print(json.dumps({k: as_json(v.numpy()) for k, v in outputs.items()}))
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
    """Answers raw sentences from the serving export in a fresh Python process.

    The class names are the export's own (`label_name`, when the classifier has names), else `labels`.
    """
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
    names = answer.get("label_name") or [labels[label] if label < len(labels) else str(label)
                                         for label in answer["label"]]
    for text, name, probabilities in zip(sentences, names, answer["probabilities"]):
        rows.append({"text": text, "label": name, "probabilities": probabilities})
        print(f"   {name:>8}  p={max(probabilities):.3f}  {text}", flush=True)
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
