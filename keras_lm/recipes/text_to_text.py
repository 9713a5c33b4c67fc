"""Text-to-text classification with T5: a sentence in, its label word out (``"sentiment: ..."`` -> ``"positive"``).

The keyword arguments of these functions are the keys of ``applications/t5_movie_snippets.yaml``'s steps.
Files under the output directory:

    OUTPUT/spiece.model              the SentencePiece model trained on the train text (random / .keras starts)
    OUTPUT/span_corruption.keras     the span-corruption-pretrained T5 (pretrain_span_corruption)
    OUTPUT/predictions.json          every greedy answer, per seed and split, with the true labels
    OUTPUT/metrics.json              accuracies per seed, their mean and spread, the majority baseline
    OUTPUT/report.md, text_to_text.png   (text_to_text_report)
"""
from __future__ import annotations

import json
import os
import random
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lm
from keras_lm.applications.t5 import T5, T5_SIZES
from keras_lm.data.builders import EMBEDDED_BUILDERS
from keras_lm.recipes.report_files import write_report
from keras_lm.recipes.workflows import (
    SENTENCES_PER_DOCUMENT,
    StepHistory,
    _stage,
    _update_metrics,
    read_metrics,
    training_batches,
)
from keras_lm.tasks.seq2seq_hf import seq2seq_lm_from_hf
from keras_lm.tasks.seq2seq_lm import Seq2SeqLM
from keras_lm.tokenizers.sentence_piece import MODEL_FILE, SentencePiece
from keras_lm.values import is_integer, is_number

PREDICTIONS_FILE = "predictions.json"
PRETRAINED_FILE = "span_corruption.keras"
#: Sentinel tokens of the trained vocabularies (span corruption uses a few per row).
NUM_SENTINELS = 32
#: Sources decoded per ``generate`` call when measuring accuracy.
DECODE_BATCH = 128
DEFAULT_LABEL_WORDS = {0: "negative", 1: "positive"}


# --- checks -------------------------------------------------------------------------------------------

def _check_dataset(dataset: str) -> None:
    """One clear error for a name that is neither an embedded dataset nor a TFDS name."""
    if not isinstance(dataset, str) or not (dataset in EMBEDDED_BUILDERS or dataset.startswith("tfds:")):
        raise ValueError(f"Unknown dataset {dataset!r} for text-to-text classification: use a labelled embedded "
                         f"dataset (movie_snippets) or a 'tfds:NAME' whose examples have 'text' and 'label'.")


def _check_label_words(label_words: dict) -> dict:
    if not isinstance(label_words, dict) or len(label_words) < 2:
        raise ValueError(f"label_words must map every label to its word (at least two labels), got {label_words!r}.")
    words = {}
    for label, word in label_words.items():
        if not (is_integer(label) or (isinstance(label, str) and label.isdigit())):
            raise ValueError(f"label_words: the label {label!r} is not an integer class id.")
        if not isinstance(word, str):
            raise ValueError(f"label_words[{label!r}] must be a string, got {word!r}.")
        words[int(label)] = word
    if len(set(words.values())) != len(words):
        raise ValueError(f"label_words gives two labels the same word: {words}.")
    return words


def _label_tokens(tokenizer, words: dict) -> dict:
    """Token ids of each label word; one clear error for a word that tokenizes to nothing or like another."""
    tokens = {label: [int(t) for t in tokenizer(tf.constant(word)).numpy()] for label, word in words.items()}
    for label, ids in tokens.items():
        if not ids:
            raise ValueError(f"The label word {words[label]!r} (label {label}) tokenizes to nothing: give every label "
                             "a word made of text, e.g. label_words={0: 'negative', 1: 'positive'}.")
    seen = {}
    for label, ids in tokens.items():
        if tuple(ids) in seen:
            raise ValueError(f"The label words {words[seen[tuple(ids)]]!r} and {words[label]!r} tokenize to the same "
                             f"ids {ids}: choose words the vocabulary tells apart.")
        seen[tuple(ids)] = label
    return tokens


def _check_settings(size: str, variant: str, start: str, seeds, epochs: int, batch_size: int,
                    learning_rate: float) -> None:
    if variant not in T5_SIZES:
        raise ValueError(f"variant must be one of {', '.join(T5_SIZES)}, got {variant!r}.")
    if size not in T5_SIZES[variant]:
        raise ValueError(f"size must be one of {', '.join(T5_SIZES[variant])}, got {size!r}.")
    if start != "random" and not os.path.exists(start):
        raise FileNotFoundError(f"start={start!r} is neither 'random' nor an existing Hugging Face T5 directory or "
                                ".keras file.")
    if start != "random" and os.path.isfile(start) and not start.endswith(".keras"):
        raise ValueError(f"start={start!r}: a file start must be a .keras file (e.g. OUTPUT/{PRETRAINED_FILE}).")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must list distinct seeds, got {seeds!r}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not is_integer(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not is_number(learning_rate) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}.")


# --- data and vocabulary ------------------------------------------------------------------------------

def _labelled_texts(dataset: str, split: str, limit: int | None = None) -> tuple[list, list]:
    examples = keras_lm.data.load(dataset, split=split)
    if not {"text", "label"} <= set(examples.element_spec):
        raise ValueError(f"Dataset {dataset!r} ({split}) has no 'text' and 'label': it is not a labelled dataset.")
    if limit:
        examples = examples.take(limit)
    texts, labels = [], []
    for example in examples.map(lambda e: (e["text"], e["label"])).as_numpy_iterator():
        texts.append(example[0].decode("utf-8"))
        labels.append(int(example[1]))
    return texts, labels


def _corpus_lines(corpus: list) -> list:
    lines = []
    for name in corpus:
        for example in keras_lm.data.load(name, split="train").as_numpy_iterator():
            lines.extend(example["text"].decode("utf-8").splitlines())
    return lines


def sentence_piece(output: str, vocabulary_size: int, corpus: list, targets: list = ()) -> SentencePiece:
    """OUTPUT/spiece.model when a previous step trained it, else one trained on the task's training text.

    The training text is ``corpus``' train splits plus ``targets`` (one line each: the label word
    of every training example), so that each label word is one or a few frequent pieces.
    """
    path = os.path.join(output, MODEL_FILE)
    if os.path.isfile(path):
        tokenizer = SentencePiece(path, num_sentinels=NUM_SENTINELS)
        if tokenizer.vocabulary_size() != vocabulary_size:
            _stage(f"using the {tokenizer.vocabulary_size()}-token vocabulary already in {path}")
        return tokenizer
    _stage(f"training a {vocabulary_size}-token SentencePiece model on {' + '.join(corpus)} (train splits)"
           + (" and the training targets" if targets else ""))
    start = time.time()
    tokenizer = SentencePiece.train(_corpus_lines(corpus) + list(targets), vocabulary_size,
                                    num_sentinels=NUM_SENTINELS, seed=0)
    os.makedirs(output, exist_ok=True)
    tokenizer.save_model(path)
    _update_metrics(output, "sentence_piece", {"vocabulary_size": tokenizer.vocabulary_size(), "corpus": list(corpus),
                                               "with_targets": bool(targets), "num_sentinels": NUM_SENTINELS,
                                               "seconds": round(time.time() - start, 1)})
    return tokenizer


def _training_targets(dataset: str, words: dict, limit: int | None = None) -> list:
    """The label word of every training example of ``dataset`` (the targets the model learns to write)."""
    return [words[label] for label in _labelled_texts(dataset, "train", limit)[1] if label in words]


def new_t5(**kwargs) -> T5:
    """A random ``T5`` whose query projections are drawn as T5 draws them.

    T5 does not scale its attention scores by ``head_dim ** -0.5``; its initialization scales the
    query projections instead (Mesh TensorFlow; transformers' ``T5PreTrainedModel``: query std
    ``(hidden_dim * head_dim) ** -0.5``, the others ``hidden_dim ** -0.5``). Without it the scores
    of a new model are ``head_dim ** 0.5`` times too large, the attention starts saturated and
    training from scratch barely moves.
    """
    model = T5.from_config(kwargs.pop("config")) if "config" in kwargs else T5(**kwargs)
    for block in [*model.encoder_layers, *model.decoder_layers]:
        attentions = [block.self_attention] + ([block.cross_attention] if getattr(block, "cross_attention", None)
                                               is not None else [])
        for attention in attentions:
            query_width = attention.num_heads * attention._head_dim
            dense = getattr(attention, "query_dense", None) or attention.qkv_dense
            kernel = dense.kernel.numpy()
            kernel[:, :query_width] *= attention._head_dim ** -0.5
            dense.kernel.assign(kernel)
    return model


def set_seed(seed: int, tokenizer) -> None:
    """``keras.utils.set_random_seed(seed)``, then a new SentencePiece kernel for ``tokenizer``.

    ``tf.random.set_seed`` clears TensorFlow's eager kernel cache, which destroys the resource of a
    tf-text SentencePiece kernel created before it (later calls fail with "Resource ...
    SentencepieceOp ... does not exist"); setting the model again creates a new one.
    """
    keras.utils.set_random_seed(seed)
    tokenizer.set_proto(tokenizer.base_proto)


# --- span-corruption pretraining ----------------------------------------------------------------------

def pretrain_span_corruption(
    output: str,
    corpus: tuple = ("movie_snippets", "shakespeare"),
    size: str = "tiny",
    variant: str = "v1.1",
    vocabulary_size: int = 2000,
    vocabulary_corpus: tuple = ("movie_snippets",),
    inputs_length: int = 64,
    batch_size: int = 32,
    steps: int = 500,
    learning_rate: float = 1e-3,
    dropout: float = 0.0,
    shape: dict | None = None,
    seed: int = 0,
    dataset: str = "movie_snippets",
    label_words: dict | None = None,
) -> str:
    """Pretrains a T5 with span corruption (15% noise, mean span 3) on the train splits of ``corpus``.

    Writes OUTPUT/span_corruption.keras (the SpanCorruption model; ``finetune_text_to_text`` starts
    from it with ``start=OUTPUT/span_corruption.keras``) and OUTPUT/spiece.model; returns the former.
    ``shape`` overrides the size's shape (``num_layers``, ``hidden_dim``, ...). The vocabulary
    (unless OUTPUT/spiece.model exists) is the fine-tuning task's: ``vocabulary_corpus`` and the
    label words (``label_words``) of ``dataset``'s training examples.
    """
    _check_settings(size, variant, "random", [seed], steps, batch_size, learning_rate)
    _check_dataset(dataset)
    words = _check_label_words(DEFAULT_LABEL_WORDS if label_words is None else label_words)
    tokenizer = sentence_piece(output, vocabulary_size, list(vocabulary_corpus), _training_targets(dataset, words))
    set_seed(seed, tokenizer)
    backbone = new_t5(size=size, variant=variant, vocabulary_size=tokenizer.vocabulary_size(), dropout=dropout,
                      **(shape or {}))
    model = keras_lm.pretraining.SpanCorruption(backbone)
    documents = [_documents(name) for name in corpus]
    mixed = documents[0]
    for part in documents[1:]:
        mixed = mixed.concatenate(part)
    train = model.dataset(mixed, tokenizer, inputs_length=inputs_length, batch_size=batch_size, seed=seed,
                          sentinel_ids=tokenizer.sentinel_ids, eos_id=tokenizer.eos_id)
    model.compile(optimizer=keras_lm.training.adamw(learning_rate, warmup=max(1, steps // 10), total=steps))
    _stage(f"span-corruption pretraining of T5('{size}', {variant}) ({backbone.count_params():,} parameters) on "
           f"{' + '.join(corpus)}: {steps} steps of {batch_size} rows of {inputs_length} tokens")
    history = StepHistory()
    start = time.time()
    model.fit(train.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[history], verbose=2)
    path = os.path.join(output, PRETRAINED_FILE)
    model.save(path)
    _update_metrics(output, "span_corruption", {
        "size": size, "variant": variant, "shape": shape or {}, "corpus": list(corpus), "steps": steps,
        "batch_size": batch_size, "inputs_length": inputs_length, "learning_rate": learning_rate,
        "parameters": int(backbone.count_params()), "seconds": round(time.time() - start, 1),
        "train_loss_curve": history.losses, "train_accuracy_curve": history.values.get("accuracy", []),
    })
    return path


def _documents(name: str) -> tf.data.Dataset:
    examples = keras_lm.data.load(name, split="train")
    if "label" in examples.element_spec:  # one sentence per example: documents of consecutive sentences
        texts = examples.map(lambda e: e["text"]).batch(SENTENCES_PER_DOCUMENT)
        return texts.map(lambda lines: {"text": tf.strings.reduce_join(lines, separator="\n")})
    return examples.map(lambda e: {"text": e["text"]})


# --- fine-tuning -------------------------------------------------------------------------------------

def _start_model(output, start, size, variant, shape, vocabulary_size, vocabulary_corpus, targets, dropout,
                 source_length, target_length) -> tuple[Seq2SeqLM, str]:
    """The model to fine-tune and a description of its start."""
    if start == "random":
        tokenizer = sentence_piece(output, vocabulary_size, list(vocabulary_corpus), targets)
        backbone = new_t5(size=size, variant=variant, vocabulary_size=tokenizer.vocabulary_size(), dropout=dropout,
                          **(shape or {}))
        return Seq2SeqLM(backbone, tokenizer, source_length=source_length, target_length=target_length,
                         source_end_token=True), f"random T5('{size}', {variant})"
    if os.path.isdir(start):
        model = seq2seq_lm_from_hf(start, source_length=source_length, target_length=target_length)
        return model, f"the Hugging Face checkpoint {start}"
    loaded = keras.saving.load_model(start)
    backbone = getattr(loaded, "backbone", loaded)
    if not isinstance(backbone, keras_lm.models.EncoderDecoder):
        raise ValueError(f"start={start!r} holds a {type(backbone).__name__}, not a T5 (an EncoderDecoder backbone "
                         "or a model with one, such as the span-corruption pretrainer).")
    spiece = os.path.join(os.path.dirname(os.path.abspath(start)), MODEL_FILE)
    if not os.path.isfile(spiece):
        raise FileNotFoundError(f"start={start!r}: no {MODEL_FILE} next to it (the vocabulary it was trained with).")
    tokenizer = SentencePiece(spiece, num_sentinels=NUM_SENTINELS)
    return Seq2SeqLM(backbone, tokenizer, source_length=source_length, target_length=target_length,
                     source_end_token=True), f"the span-corruption-pretrained {start}"


class _SeedStarts:
    """One compiled model fine-tuned from each seed's start; its train and generate functions are traced once."""

    def __init__(self, model: Seq2SeqLM, random_start: bool, learning_rate: float, steps: int):
        self.model = model
        self.random_start = random_start
        self.initial = [v.numpy() for v in model.backbone.variables]
        model.compile(optimizer=keras_lm.training.adamw(learning_rate, warmup=max(1, steps // 10), total=steps))
        model.optimizer.build(model.trainable_variables)

    def restart(self, seed: int) -> None:
        set_seed(seed, self.model.tokenizer)
        values = self.initial
        if self.random_start:  # a new random T5 of the same configuration, drawn under this seed
            values = [v.numpy() for v in new_t5(config=self.model.backbone.get_config()).variables]
        variables = self.model.backbone.variables
        if [tuple(v.shape) for v in variables] != [tuple(np.shape(v)) for v in values]:
            raise ValueError("The new start's variables do not match the model's (a T5 of another shape).")
        for variable, value in zip(variables, values):
            if variable.name == "seed_generator_state":  # dropout: a new seed state, as a new model draws
                value = np.array([random.randint(1, 10**9), 0], dtype=variable.dtype)
            variable.assign(value)
        for variable in self.model.optimizer.variables:
            variable.assign(tf.zeros(variable.shape, variable.dtype))


def predict_labels(model: Seq2SeqLM, sources: list, max_new_tokens: int) -> list:
    """Greedy answers for ``sources``, decoded in batches of sources of similar length."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    answers = [None] * len(sources)
    for begin in range(0, len(order), DECODE_BATCH):
        chunk = order[begin: begin + DECODE_BATCH]
        outputs = model.generate([sources[i] for i in chunk], max_new_tokens=max_new_tokens, sampler="greedy")
        for i, answer in zip(chunk, outputs):
            answers[i] = answer
    return answers


def accuracy_of(predictions: list, labels: list, words: dict) -> float:
    """Share of answers that are exactly the right label word (any other answer is wrong)."""
    return float(np.mean([prediction == words[label] for prediction, label in zip(predictions, labels)]))


def majority_baseline(train_labels: list, labels: list) -> float:
    """Accuracy of always answering the most frequent training label."""
    majority = np.bincount(train_labels).argmax()
    return float(np.mean(np.asarray(labels) == majority))


def finetune_text_to_text(
    output: str,
    dataset: str = "movie_snippets",
    size: str = "tiny",
    variant: str = "v1.1",
    start: str = "random",
    label_words: dict | None = None,
    prefix: str = "sentiment: ",
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seeds: tuple = (0, 1, 2),
    shape: dict | None = None,
    dropout: float = 0.1,
    vocabulary_size: int = 2000,
    vocabulary_corpus: tuple = ("movie_snippets",),
    source_length: int = 64,
    max_train_examples: int | None = None,
    max_eval_examples: int | None = None,
) -> dict:
    """Fine-tunes T5 to answer each sentence's label word; accuracy of the greedy answers per seed.

    Sources are ``prefix + text``, targets ``label_words[label]``. The accuracy counts an answer
    right only when the greedy-decoded string is exactly the right label word. Each seed of
    ``seeds`` fine-tunes from its own start (``start="random"``: a new random T5 drawn under the
    seed; else the same pretrained weights) with its own data order and dropout; validation and
    test accuracies per seed, their mean and spread, and the majority-class baseline go to
    OUTPUT/metrics.json (``text_to_text``), every answer to OUTPUT/predictions.json.

    Args:
        start: ``"random"``, a Hugging Face T5 checkpoint directory (its own tokenizer), or a
            ``.keras`` file of a span-corruption-pretrained T5 with ``spiece.model`` beside it.
        size, variant, shape, dropout: the random start's T5 (``shape`` overrides the size's shape);
            a pretrained start keeps its own.
        label_words: ``{label: word}``; default ``{0: "negative", 1: "positive"}``.
        vocabulary_size, vocabulary_corpus: the SentencePiece model trained for a random start
            (unless OUTPUT/spiece.model exists), on the corpora's train splits and the label word of
            every training example (so that each label word is a frequent piece).
        source_length: tokens of a source kept (``</s>`` included).
        max_train_examples, max_eval_examples: use only the first examples of the train split, of
            the validation and test splits (for quick runs; the figures then say so).
    """
    began = time.time()
    words = _check_label_words(DEFAULT_LABEL_WORDS if label_words is None else label_words)
    _check_dataset(dataset)
    seeds = list(seeds)
    _check_settings(size, variant, start, seeds, epochs, batch_size, learning_rate)
    os.makedirs(output, exist_ok=True)
    train_texts, train_labels = _labelled_texts(dataset, "train", max_train_examples)
    splits = {split: _labelled_texts(dataset, split, max_eval_examples) for split in ("validation", "test")}
    unknown = sorted({label for _, labels in [(None, train_labels), *splits.values()] for label in labels} - set(words))
    if unknown:
        raise ValueError(f"label_words has no word for the labels {unknown} of {dataset!r}: give every label a word.")

    targets = _training_targets(dataset, words)  # of the whole train split: the same vocabulary for any limit
    model, described = _start_model(output, start, size, variant, shape, vocabulary_size, vocabulary_corpus, targets,
                                    dropout, source_length, target_length=2)
    tokens = _label_tokens(model.tokenizer, words)
    target_length = max(len(ids) for ids in tokens.values()) + 1  # the word and </s>
    model = Seq2SeqLM(model.backbone, model.tokenizer, source_length=source_length, target_length=target_length,
                      decoder_start_token_id=model.decoder_start_token_id, end_token_id=model.end_token_id,
                      source_end_token=True)
    pairs = tf.data.Dataset.from_tensor_slices(([prefix + t for t in train_texts], [words[l] for l in train_labels]))
    steps_per_epoch = -(-len(train_texts) // batch_size)
    runs_of = _SeedStarts(model, start == "random", learning_rate, epochs * steps_per_epoch)
    sources = {split: [prefix + t for t in texts] for split, (texts, _) in splits.items()}

    runs, predictions = [], {}
    for seed in seeds:
        runs_of.restart(seed)
        _stage(f"fine-tuning {described} ({model.backbone.count_params():,} parameters), seed {seed}: {epochs} "
               f"epoch(s) of {steps_per_epoch} steps, learning rate {learning_rate:g}")
        history = StepHistory()
        fit_start = time.time()
        model.fit(model.dataset(training_batches(pairs, batch_size, seed)), epochs=epochs, callbacks=[history],
                  verbose=2)
        seconds = time.time() - fit_start
        run = {"seed": seed, "train_seconds": round(seconds, 1), "train_loss_curve": history.losses}
        predictions[str(seed)] = {}
        for split, (_, labels) in splits.items():
            answers = predict_labels(model, sources[split], target_length)
            predictions[str(seed)][split] = answers
            run[f"{split}_accuracy"] = accuracy_of(answers, labels, words)
            run[f"{split}_not_a_label_word"] = int(sum(answer not in words.values() for answer in answers))
        _stage(f"  seed {seed}: validation accuracy {run['validation_accuracy']:.4f}, test {run['test_accuracy']:.4f}")
        runs.append(run)

    with open(os.path.join(output, PREDICTIONS_FILE), "w") as file:
        json.dump({"label_words": {str(k): v for k, v in words.items()}, "prefix": prefix,
                   "labels": {split: labels for split, (_, labels) in splits.items()},
                   "predictions": predictions}, file)
    figures = {
        "dataset": dataset, "start": start, "described_start": described, "variant": model.backbone.variant,
        "size": model.backbone.size if start == "random" else None, "shape": shape or {},
        "parameters": int(model.backbone.count_params()), "vocabulary_size": int(model.tokenizer.vocabulary_size()),
        "label_words": {str(k): v for k, v in words.items()}, "prefix": prefix, "epochs": epochs,
        "batch_size": batch_size, "learning_rate": learning_rate, "dropout": dropout, "source_length": source_length,
        "train_examples": len(train_texts),
        "evaluation_examples": {split: len(labels) for split, (_, labels) in splits.items()}, "seeds": seeds, "runs": runs,
        "majority_baseline": {split: majority_baseline(train_labels, labels) for split, (_, labels) in splits.items()},
    }
    for split in splits:
        values = np.array([run[f"{split}_accuracy"] for run in runs])
        figures[split] = {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                          "max": float(values.max())}
    figures["seconds"] = round(time.time() - began, 1)
    _update_metrics(output, "text_to_text", figures)
    _stage(f"text-to-text accuracy: validation {figures['validation']['mean']:.4f} ± {figures['validation']['std']:.4f}, "
           f"test {figures['test']['mean']:.4f} ± {figures['test']['std']:.4f} (majority class "
           f"{figures['majority_baseline']['test']:.4f}); {figures['seconds']:.0f} s")
    return figures


# --- report ------------------------------------------------------------------------------------------

def _plot(runs: list, pretraining: dict | None, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if pretraining else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    for i, run in enumerate(runs):
        axes[0, 0].plot(run["train_loss_curve"], alpha=0.6, color=f"C{i}", label=f"seed {run['seed']}")
    axes[0, 0].set(title="Text-to-text fine-tuning", xlabel="step", ylabel="train loss (per target token)",
                   yscale="log")
    axes[0, 0].legend()
    if pretraining:
        axes[0, 1].plot(pretraining["train_loss_curve"], color="C3")
        axes[0, 1].set(title="Span-corruption pretraining", xlabel="step", ylabel="train loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _shape_text(shape: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in shape.items())


def text_to_text_report(output: str, results: str | None = None, notes: tuple = ()) -> str:
    """Writes OUTPUT/report.md and OUTPUT/text_to_text.png from the text_to_text figures.

    With ``results`` (e.g. applications/t5_movie_snippets) the report, the PNG and metrics.json
    are copied there. ``notes`` are lines added to the report (e.g. the settings tried on validation).
    """
    import platform
    
    from keras_lm.recipes.checkpoint import _processor

    metrics = read_metrics(output)
    if "text_to_text" not in metrics:
        raise ValueError(f"No text-to-text figures in '{output}': run finetune_text_to_text first.")
    figures = metrics["text_to_text"]
    pretraining = metrics.get("span_corruption")
    words = figures["label_words"]
    lines = [
        "# T5 text-to-text classification",
        "",
        f"Machine: {_processor()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}.",
        "",
        f"- Task: {figures['dataset']}; source `{figures['prefix']}<sentence>`, target the label word "
        f"({', '.join(f'{k}: {v!r}' for k, v in words.items())}). An answer counts as right only when the greedy "
        "decoded string is exactly the right label word. Evaluated on "
        f"{figures['evaluation_examples']['validation']} validation and {figures['evaluation_examples']['test']} test "
        "sentences.",
        f"- Model: {figures['described_start']}"
        + (f" with the shape {_shape_text(figures['shape'])}" if figures["shape"] else "")
        + f", {figures['parameters']:,} parameters, SentencePiece vocabulary of {figures['vocabulary_size']}.",
        f"- Fine-tuning: {figures['train_examples']} training examples, {figures['epochs']} epoch(s), batch "
        f"{figures['batch_size']}, learning rate {figures['learning_rate']:g} (AdamW, warmup 10%, linear decay), "
        f"dropout {figures['dropout']}, seeds {figures['seeds']}; {figures['seconds']:.0f} s for the whole step. "
        "Settings were chosen on the validation split; the test split is only reported.",
    ]
    if pretraining:
        lines.append(f"- Span-corruption pretraining first: {pretraining['steps']} steps of {pretraining['batch_size']} "
                     f"rows of {pretraining['inputs_length']} tokens on {' + '.join(pretraining['corpus'])}, "
                     f"{pretraining['seconds']:.0f} s.")
    lines += ["", "| seed | validation accuracy | test accuracy | answers that are no label word (val / test) | train s |",
              "|---|---|---|---|---|"]
    for run in figures["runs"]:
        lines.append(f"| {run['seed']} | {run['validation_accuracy']:.4f} | {run['test_accuracy']:.4f} | "
                     f"{run['validation_not_a_label_word']} / {run['test_not_a_label_word']} | {run['train_seconds']} |")
    validation, test, baseline = figures["validation"], figures["test"], figures["majority_baseline"]
    lines += [
        "",
        f"Test accuracy **{test['mean']:.4f} ± {test['std']:.4f}** (mean ± std over {len(figures['runs'])} seeds; min "
        f"{test['min']:.4f}, max {test['max']:.4f}); validation {validation['mean']:.4f} ± {validation['std']:.4f}. "
        f"Always answering the majority training class scores {baseline['test']:.4f} on test "
        f"({baseline['validation']:.4f} on validation).",
        "",
    ]
    if notes:
        lines += ["Settings tried (validation accuracy, mean over the seeds run):", ""]
        lines += [f"- {note}" for note in notes]
        lines.append("")
    _plot(figures["runs"], pretraining, os.path.join(output, "text_to_text.png"))
    lines.append("![training loss](text_to_text.png)")
    return write_report(output, "report.md", lines, results, copies=("text_to_text.png", "metrics.json"))
