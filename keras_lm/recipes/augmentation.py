"""Data augmentation compared on movie_snippets: no augmentation, token-level noise, back-translation.

The keyword arguments of ``compare_augmentation`` are the keys of ``applications/augmentation.yaml``.
Every transform fine-tunes the same start (an encoder export: a quickstart pretraining run or an
imported checkpoint) with the same budget (steps, batch size, learning rate, seeds); validation
accuracy is recorded every epoch, test accuracy at the end. Files under the output directory:

    OUTPUT/paraphrases.jsonl     the back-translation of every training sentence (reused when present)
    OUTPUT/metrics.json          section "augmentation": settings, every run, mean/std per transform
    OUTPUT/augmentation.md, OUTPUT/augmentation.png   the report and its figure
"""
from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lm
from keras_lm.data.augmentation import (
    BackTranslation,
    Compose,
    LocalSwap,
    RandomReplacement,
    TokenDropout,
    with_paraphrases,
)
from keras_lm.recipes.report_files import write_report
from keras_lm.recipes.workflows import (
    ENCODER_EXPORT,
    StepHistory,
    _SeedRuns,
    _check_values,
    _labelled,
    _pretrained_start,
    _stage,
    _update_metrics,
    evaluation_batches,
    summarize_runs,
    training_batches,
)
from keras_lm.tasks.classifier import CLASSIFIER_POOLINGS
from keras_lm.tasks.saved_model import read_manifest
from keras_lm.tasks.task import trim_padding
from keras_lm.values import is_integer, is_number

TRANSFORMS = ("none", "token_noise", "back_translation")
SECTION = "augmentation"
PARAPHRASES_FILE = "paraphrases.jsonl"
REPORT_FILE = "augmentation.md"
FIGURE_FILE = "augmentation.png"


def vocabulary_beside(encoder: str, vocabulary: str | None) -> str:
    """``vocabulary``, else the vocab.txt next to an encoder export (where pretrain and import_checkpoint
    write it), with a clear error when there is none."""
    path = vocabulary or os.path.join(os.path.dirname(os.path.normpath(encoder)), "vocab.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No WordPiece vocabulary at '{path}': token noise needs the encoder's vocabulary "
                                "(pretrain and import_checkpoint write OUTPUT/vocab.txt); pass `vocabulary`.")
    return path


def _check(transforms, rates: dict, forward_model, backward_model, num_beams, translation_batch_size,
           pooling) -> None:
    if pooling not in CLASSIFIER_POOLINGS:
        raise ValueError(f"`pooling` must be one of {', '.join(CLASSIFIER_POOLINGS)}, got {pooling!r}.")
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if not transforms or unknown or len(set(transforms)) != len(transforms):
        raise ValueError(f"`transforms` must list distinct names among {', '.join(TRANSFORMS)}; got {list(transforms)}.")
    for name, rate in rates.items():
        if not is_number(rate) or not 0 <= rate <= 1:
            raise ValueError(f"`{name}` must be a number in [0, 1], got {rate!r}.")
    if "token_noise" in transforms and not any(rates.values()):
        raise ValueError("token_noise with every rate 0 is no noise: give a positive dropout, replacement or swap rate.")
    if (forward_model is None) != (backward_model is None):
        raise ValueError("Back-translation needs both `forward_model` (e.g. English -> Spanish) and `backward_model` "
                         "(Spanish -> English), or neither.")
    for name, path in (("forward_model", forward_model), ("backward_model", backward_model)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"`{name}`: no .keras model at '{path}' (train one with "
                                    "applications/translation.yaml).")
    for name, value in (("num_beams", num_beams), ("translation_batch_size", translation_batch_size)):
        if not is_integer(value) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def token_noise(tokenizer, dropout_rate: float, replacement_rate: float, swap_rate: float, seed: int) -> Compose:
    """Replacement, then local swaps, then dropout (the ones with a positive rate), seeded."""
    transforms = []
    if replacement_rate:
        transforms.append(RandomReplacement.from_tokenizer(tokenizer, replacement_rate))
    if swap_rate:
        transforms.append(LocalSwap.from_tokenizer(tokenizer, swap_rate))
    if dropout_rate:
        transforms.append(TokenDropout.from_tokenizer(tokenizer, dropout_rate))
    return Compose(transforms, seed=seed)


def _texts_and_labels(examples: tf.data.Dataset) -> tuple[list, list]:
    texts, labels = [], []
    for text, label in examples.as_numpy_iterator():
        texts.append(text.decode("utf-8"))
        labels.append(int(label))
    return texts, labels


def paraphrases_for(output: str, texts: list, forward_model: str, backward_model: str, num_beams: int,
                    batch_size: int) -> list:
    """The back-translation of every text: read from OUTPUT/paraphrases.jsonl when it holds these texts
    from these models, else generated (greedy, or beam search with ``num_beams``) and saved there."""
    path = os.path.join(output, PARAPHRASES_FILE)
    source = {"forward_model": os.path.abspath(forward_model), "backward_model": os.path.abspath(backward_model),
              "num_beams": num_beams}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            rows = [json.loads(line) for line in file]
        if rows and rows[0] == source and [row["text"] for row in rows[1:]] == texts:
            _stage(f"reusing the {len(texts)} paraphrases in {path}")
            return [row["paraphrase"] for row in rows[1:]]
    _stage(f"back-translating {len(texts)} training sentences ({os.path.basename(forward_model)} then "
           f"{os.path.basename(backward_model)}, {'greedy' if num_beams == 1 else f'beam {num_beams}'})")
    start = time.time()
    decoding = {"sampler": "greedy"} if num_beams == 1 else {"sampler": "beam", "num_beams": num_beams}
    back = BackTranslation(keras.saving.load_model(forward_model), keras.saving.load_model(backward_model),
                           batch_size=batch_size, **decoding)
    paraphrases = back.paraphrase(texts)
    _stage(f"  {time.time() - start:.0f} s")
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(source) + "\n")
        for text, paraphrase in zip(texts, paraphrases):
            file.write(json.dumps({"text": text, "paraphrase": paraphrase}, ensure_ascii=False) + "\n")
    return paraphrases


def _features(classifier, batches: tf.data.Dataset, noise=None) -> tf.data.Dataset:
    """Raw ``(texts, labels)`` batches as ``(features, labels)``, noised when asked, padding trimmed."""
    preprocessor = classifier.preprocessor
    data = batches.map(lambda texts, labels: (preprocessor(texts), labels))
    if noise is not None:
        data = data.map(noise)
    return data.map(lambda features, labels: (trim_padding(features), labels)).prefetch(tf.data.AUTOTUNE)


def _run(runs: _SeedRuns, weights, transform: str, seed: int, train, data, epochs, per_epoch, batch_size,
         noise) -> dict:
    _, validation, test = data
    runs.restart(weights)
    classifier = runs.classifier
    _stage(f"fine-tuning with augmentation '{transform}', seed {seed}: {epochs} x {per_epoch} steps")
    batches = _features(classifier, training_batches(train, batch_size, seed), noise).repeat()
    history = StepHistory()
    start = time.time()
    fit = classifier.fit(batches, steps_per_epoch=per_epoch, epochs=epochs, shuffle=False,
                         validation_data=_features(classifier, evaluation_batches(validation, batch_size)),
                         callbacks=[history], verbose=2)
    seconds = time.time() - start
    test_metrics = classifier.evaluate(evaluation_batches(test, batch_size), return_dict=True, verbose=0)
    return {
        "seed": seed,
        "test_accuracy": float(test_metrics["accuracy"]),
        "test_loss": float(test_metrics["loss"]),
        "validation_accuracy": [float(x) for x in fit.history["val_accuracy"]],
        "train_loss_curve": history.losses,
        "steps": epochs * per_epoch,
        "seconds": round(seconds, 1),
    }


def compare_augmentation(
    output: str,
    encoder: str | None = None,
    vocabulary: str | None = None,
    transforms: tuple = TRANSFORMS,
    dataset: str = "movie_snippets",
    dropout_rate: float = 0.1,
    replacement_rate: float = 0.1,
    swap_rate: float = 0.1,
    forward_model: str | None = None,
    backward_model: str | None = None,
    num_beams: int = 1,
    translation_batch_size: int = 64,
    max_train_examples: int | None = None,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    pooling: str = "cls",
    seeds: tuple = (0,),
    results: str | None = None,
) -> dict:
    """Fine-tunes a classifier on ``dataset`` with each augmentation of ``transforms``, same budget each.

    - ``"none"``: the training sentences as they are;
    - ``"token_noise"``: every training batch, after the preprocessor, passes through random
      replacement (``replacement_rate``), local swaps (``swap_rate``) and token dropout
      (``dropout_rate``) of ``keras_lm.data.augmentation``, new noise every epoch (special tokens and
      padding untouched). The vocabulary is ``vocabulary`` or the vocab.txt beside ``encoder``;
    - ``"back_translation"``: each training sentence plus its paraphrase through ``forward_model`` then
      ``backward_model`` (two ``Seq2SeqLM`` ``.keras`` files, e.g. English -> Spanish and Spanish ->
      English from ``applications/translation.yaml``), label carried. Skipped (and said so in the
      report) when no model is given.

    Every run starts from ``encoder`` (default OUTPUT/encoder) with a new head, for each seed, and
    trains ``epochs`` x (training sentences / ``batch_size``) steps, also with back-translation's
    larger set (it then sees each example fewer times): the budget is the same for every transform.
    ``max_train_examples`` keeps the first training sentences (a low-resource setting, where
    augmentation is expected to matter most). Returns the ``augmentation`` section of metrics.json.

    Example:
        >>> compare_augmentation("runs/quickstart", transforms=("none", "token_noise"))  # doctest: +SKIP
    """
    _check_values(compare_augmentation, locals())
    rates = {"dropout_rate": dropout_rate, "replacement_rate": replacement_rate, "swap_rate": swap_rate}
    transforms = tuple(transforms)
    _check(transforms, rates, forward_model, backward_model, num_beams, translation_batch_size, pooling)
    encoder = encoder or os.path.join(output, ENCODER_EXPORT)
    read_manifest(encoder)  # an encoder export, before any work
    tokenizer = None
    if "token_noise" in transforms:
        tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=vocabulary_beside(encoder, vocabulary))
    skipped = {}
    if "back_translation" in transforms and forward_model is None:
        skipped["back_translation"] = "no translation model was given (forward_model, backward_model)"
        _stage("back-translation skipped: no translation model was given (forward_model, backward_model)")
        transforms = tuple(t for t in transforms if t != "back_translation")
    if not transforms:
        raise ValueError("Nothing to compare: the only transform asked for was back-translation, without models.")
    os.makedirs(output, exist_ok=True)

    train = _labelled(keras_lm.data.load(dataset, split="train"))
    if max_train_examples:
        train = train.take(max_train_examples)
    train = train.cache()
    validation = _labelled(keras_lm.data.load(dataset, split="validation")).cache()
    test = _labelled(keras_lm.data.load(dataset, split="test")).cache()
    texts, labels = _texts_and_labels(train)
    per_epoch = -(-len(texts) // batch_size)
    training_sets = {"none": train, "token_noise": train}
    added = {}
    if "back_translation" in transforms:
        paraphrases = paraphrases_for(output, texts, forward_model, backward_model, num_beams,
                                      translation_batch_size)
        training_sets["back_translation"] = with_paraphrases(train, paraphrases).cache()
        added["back_translation"] = int(training_sets["back_translation"].reduce(0, lambda n, _: n + 1)) - len(texts)
        _stage(f"  {added['back_translation']} paraphrases differ from their sentence and are added")

    _stage(f"reloading the exported encoder {encoder} as a trainable Keras layer")
    seeds = list(seeds)
    keras.utils.set_random_seed(seeds[0])
    classifier = keras_lm.tasks.Classifier.from_saved_model(encoder, num_classes=2, pooling=pooling)
    encoder_values = {id(variable): variable.numpy() for variable in classifier.backbone.variables}
    runs = _SeedRuns(classifier, learning_rate, epochs * per_epoch)
    results_by_transform = {}
    for transform in transforms:
        transform_runs = []
        for seed in seeds:
            weights = _pretrained_start(classifier, encoder_values, seed)
            noise = (token_noise(tokenizer, dropout_rate, replacement_rate, swap_rate, seed)
                     if transform == "token_noise" else None)
            transform_runs.append(_run(runs, weights, transform, seed, training_sets[transform],
                                       (train, validation, test), epochs, per_epoch, batch_size, noise))
        results_by_transform[transform] = summarize_runs(transform_runs, learning_rate, epochs)
        _stage(f"'{transform}': test accuracy {results_by_transform[transform]['test_accuracy']:.4f}")

    section = {
        "dataset": dataset, "encoder": encoder, "train_examples": len(texts), "epochs": epochs,
        "steps": epochs * per_epoch, "batch_size": batch_size, "learning_rate": learning_rate, "pooling": pooling,
        "seeds": seeds, "token_noise": rates,
        "back_translation": ({"forward_model": forward_model, "backward_model": backward_model,
                              "num_beams": num_beams, "added_examples": added.get("back_translation")}
                             if forward_model else None),
        "skipped": skipped, "transforms": results_by_transform,
        "majority_baseline": _majority(labels, test),
    }
    _update_metrics(output, SECTION, section)
    write_augmentation_report(output, section, results)
    return section


def _majority(train_labels: list, test: tf.data.Dataset) -> float:
    majority = int(np.bincount(train_labels).argmax())
    test_labels = np.array([int(label) for _, label in test.as_numpy_iterator()])
    return float((test_labels == majority).mean())


def _plot(section: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(section["transforms"])
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(10, 4))
    means = [section["transforms"][n]["test_accuracy"] for n in names]
    spreads = [section["transforms"][n]["test_accuracy_std"] for n in names]
    bars.bar(names, means, yerr=spreads, color=[f"C{i}" for i in range(len(names))], capsize=4)
    bars.axhline(section["majority_baseline"], color="gray", linestyle="--", label="majority class")
    low = min(means + [section["majority_baseline"]])
    bars.set(title=f"{section['dataset']} test accuracy ({len(section['seeds'])} seed(s))", ylabel="accuracy",
             ylim=(max(0.0, low - 0.05), min(1.0, max(means) + 0.05)))
    bars.legend()
    for i, name in enumerate(names):
        for j, run in enumerate(section["transforms"][name]["runs"]):
            curves.plot(range(1, len(run["validation_accuracy"]) + 1), run["validation_accuracy"], marker="o",
                        color=f"C{i}", alpha=0.8, label=name if j == 0 else None)
    curves.set(title="validation accuracy", xlabel="epoch", ylabel="accuracy",
               xticks=range(1, section["epochs"] + 1))
    curves.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_augmentation_report(output: str, section: dict, results: str | None = None) -> str:
    """OUTPUT/augmentation.md and OUTPUT/augmentation.png from the section; copied to ``results`` when given."""
    
    rates = section["token_noise"]
    lines = [
        f"# Data augmentation on {section['dataset']}",
        "",
        f"Same start ({section['encoder']}), same budget for every transform: {section['steps']} steps of "
        f"{section['batch_size']} ({section['epochs']} epoch(s) of the {section['train_examples']} training "
        f"sentences), learning rate {section['learning_rate']:g}, pooling {section['pooling']}, seeds "
        f"{section['seeds']}. Settings are chosen on validation; test is only reported.",
        "",
        f"- token_noise: random replacement {rates['replacement_rate']}, local swap {rates['swap_rate']}, token "
        f"dropout {rates['dropout_rate']} (special tokens and padding untouched), new noise every epoch.",
    ]
    back = section.get("back_translation")
    if back:
        lines.append(f"- back_translation: {back['forward_model']} then {back['backward_model']} "
                     f"({'greedy' if back['num_beams'] == 1 else 'beam ' + str(back['num_beams'])}); "
                     f"{back['added_examples']} paraphrases added (empty or unchanged ones left out).")
    for name, reason in section.get("skipped", {}).items():
        lines.append(f"- {name}: not run, {reason}.")
    lines += ["", "| transform | test accuracy (mean ± std) | min-max | validation accuracy (mean, last epoch) |",
              "|---|---|---|---|"]
    for name, result in section["transforms"].items():
        lines.append(f"| {name} | {result['test_accuracy']:.4f} ± {result['test_accuracy_std']:.4f} | "
                     f"{result['test_accuracy_min']:.4f}-{result['test_accuracy_max']:.4f} | "
                     f"{result['validation_accuracy_mean']:.4f} |")
    lines += ["", f"Majority class: {section['majority_baseline']:.4f} test accuracy.", "",
              f"![augmentation]({FIGURE_FILE})"]
    _plot(section, os.path.join(output, FIGURE_FILE))
    return write_report(output, REPORT_FILE, lines, results, copies=(FIGURE_FILE,))
