"""Recipe step: parameter-efficient fine-tuning methods next to full fine-tuning, on the same budget.

    # applications/peft.yaml
    import_checkpoint: {checkpoint: all-minilm-l6-v2, sequence_length: 128}
    compare_peft: {epochs: 2, seeds: [0, 1]}

The start is an encoder export (``import_checkpoint`` or ``pretrain`` writes OUTPUT/encoder), rebuilt
as keras_lm layers with the exported values (``keras_lm.tasks.saved_model.rebuild_encoder``). Every
method fine-tunes a new ``Classifier`` from those same values with the same data, batches, epochs,
AdamW schedule and seeds; only the method and its learning rate differ. Each method's learning
rate is chosen on the validation split (mean final validation accuracy over the seeds) among its
candidates; the test accuracy is reported for the chosen one. Writes OUTPUT/metrics.json ("peft"),
OUTPUT/peft.md and OUTPUT/peft.png.
"""
from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lm
from keras_lm import peft
from keras_lm.recipes.report_files import write_report
from keras_lm.recipes.workflows import (
    ENCODER_EXPORT,
    _check_values,
    _labelled,
    _stage,
    _update_metrics,
    evaluation_batches,
    training_batches,
)
from keras_lm.tasks.task import trim_padding

METHODS = ("full", "llrd", "freeze_embeddings", "freeze_bottom", "linear_probe", "bitfit", "lora", "adapters",
           "prompt")
#: Learning rates tried per method (the best on validation is reported). Full fine-tuning moves every
#: weight and wants a small rate; methods that train few new weights want larger ones.
DEFAULT_LEARNING_RATES = {
    "full": (5e-5, 1e-4, 2e-4),
    "llrd": (1e-4, 2e-4, 5e-4),
    "freeze_embeddings": (5e-5, 1e-4, 2e-4),
    "freeze_bottom": (1e-4, 2e-4, 5e-4),
    "linear_probe": (1e-3, 3e-3, 1e-2),
    "bitfit": (1e-3, 3e-3, 1e-2),
    "lora": (5e-4, 1e-3, 2e-3),
    "adapters": (5e-4, 1e-3, 2e-3),
    "prompt": (3e-3, 1e-2, 3e-2),
}
DESCRIPTIONS = {
    "full": "full fine-tuning",
    "llrd": "full, layer-wise learning-rate decay",
    "freeze_embeddings": "embeddings frozen",
    "freeze_bottom": "embeddings + bottom blocks frozen",
    "linear_probe": "head only (all but head frozen)",
    "bitfit": "BitFit (biases only)",
    "lora": "LoRA",
    "adapters": "bottleneck adapters",
    "prompt": "prompt tuning",
}
REPORT = "peft.md"
FIGURE = "peft.png"


def _learning_rates(methods, learning_rates) -> dict:
    chosen = {}
    for method in methods:
        value = (learning_rates or {}).get(method, DEFAULT_LEARNING_RATES[method])
        values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else list(value)
        if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in values):
            raise ValueError(f"`learning_rates.{method}` must be a positive number or a list of them, got {value!r}.")
        chosen[method] = [float(v) for v in values]
    return chosen


def _check_arguments(methods, learning_rates, options) -> None:
    if isinstance(methods, str) or not methods:
        raise ValueError(f"`methods` must list methods from {', '.join(METHODS)}, got {methods!r}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown PEFT method {unknown[0]!r}; use methods from {', '.join(METHODS)}.")
    if len(set(methods)) != len(methods):
        raise ValueError(f"`methods` repeats a method: {list(methods)}.")
    extra = sorted(set(learning_rates or {}) - set(methods))
    if extra:
        raise ValueError(f"`learning_rates` names {extra[0]!r}, which is not in `methods` ({', '.join(methods)}).")
    for name in ("lora_rank", "bottleneck_dim", "num_prompts"):
        if options[name] < 1:
            raise ValueError(f"`{name}` must be at least 1, got {options[name]}.")
    poolings = keras_lm.tasks.classifier.CLASSIFIER_POOLINGS
    if options["pooling"] not in poolings:
        raise ValueError(f"`pooling` must be one of {', '.join(poolings)}, got {options['pooling']!r}.")
    if not 0 < options["layer_decay"] <= 1:
        raise ValueError(f"`layer_decay` must be in (0, 1], got {options['layer_decay']}.")


def _cut(length: int, sep_id: int):
    """Cuts packed single-segment rows to ``length`` tokens, ending a cut row with [SEP] as packing would."""

    def cut(features):
        if features["token_ids"].shape[1] is not None and features["token_ids"].shape[1] <= length:
            return features
        was_cut = tf.reduce_any(tf.not_equal(tf.cast(features["padding_mask"], tf.int32)[:, length:], 0), axis=1)
        cut_features = {name: value[:, :length] for name, value in features.items()}
        ids = cut_features["token_ids"]
        last = tf.where(was_cut, tf.cast(sep_id, ids.dtype), ids[:, -1])
        cut_features["token_ids"] = tf.concat([ids[:, :-1], last[:, None]], axis=1)
        return cut_features

    return cut


class _Data:
    """Tokenized train/validation/test batches: the export's preprocessor, cut to ``sequence_length``."""

    def __init__(self, preprocessor, dataset, batch_size, max_train_examples, sequence_length):
        self.batch_size = batch_size
        sep_id = int(preprocessor(tf.constant([""]))["token_ids"][0, 1])
        cut = _cut(sequence_length, sep_id)
        self._featurize = lambda texts, labels: (trim_padding(cut(preprocessor(texts))), labels)
        train = _labelled(keras_lm.data.load(dataset, split="train"))
        if max_train_examples:
            train = train.take(max_train_examples)
        self.train_texts = train.cache()
        self.train_size = int(self.train_texts.reduce(0, lambda count, _: count + 1))
        self.validation = self._batches(_labelled(keras_lm.data.load(dataset, split="validation")))
        self.test = self._batches(_labelled(keras_lm.data.load(dataset, split="test")))
        labels = np.concatenate([y.numpy() for _, y in self.test])
        self.majority = float(np.bincount(labels).max() / len(labels))

    def _batches(self, examples):
        return evaluation_batches(examples, self.batch_size).map(self._featurize).cache()

    def train(self, seed: int):
        return training_batches(self.train_texts, self.batch_size, seed).map(
            self._featurize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def steps_per_epoch(self) -> int:
        return -(-self.train_size // self.batch_size)


def _fresh_backbone(template):
    backbone = type(template).from_config(template.get_config())
    peft.adapters.copy_weights(template, backbone)
    return backbone


def _prepare(method: str, classifier, options: dict):
    """The model to train for ``method`` (the classifier itself or a new one around it)."""
    if method in ("full", "llrd"):
        return classifier
    if method == "freeze_embeddings":
        return peft.freeze(classifier, "embeddings")
    if method == "freeze_bottom":
        return peft.freeze(classifier, "bottom_k", k=options["freeze_layers"])
    if method == "linear_probe":
        return peft.freeze(classifier, "all_but_head")
    if method == "bitfit":
        return peft.bitfit(classifier)
    if method == "lora":
        return peft.lora(classifier, rank=options["lora_rank"])
    if method == "adapters":
        return peft.add_adapters(classifier, bottleneck_dim=options["bottleneck_dim"])
    return peft.prompt_tuning(classifier, num_prompts=options["num_prompts"])


def _run(method, template, data, learning_rate, seed, epochs, num_classes, pooling, options) -> dict:
    keras.utils.set_random_seed(seed)
    classifier = keras_lm.tasks.Classifier(_fresh_backbone(template), num_classes, pooling=pooling)
    model = _prepare(method, classifier, options)
    steps = epochs * data.steps_per_epoch()
    optimizer = keras_lm.training.adamw(learning_rate, warmup=max(1, steps // 10), total=steps)
    if method == "llrd":
        optimizer = peft.layerwise_decay(optimizer, model, decay=options["layer_decay"])
    model.compile(optimizer=optimizer)
    trainable = peft.trainable_parameter_count(model)
    _stage(f"{method}: learning rate {learning_rate:g}, seed {seed}: {steps} steps, {trainable:,} trainable "
           f"of {model.count_params():,} parameters")
    start = time.time()
    history = model.fit(data.train(seed), validation_data=data.validation, epochs=epochs, shuffle=False, verbose=2)
    seconds = time.time() - start
    test = model.evaluate(data.test, return_dict=True, verbose=0)
    run = {
        "learning_rate": learning_rate,
        "seed": seed,
        "validation_accuracy": [float(x) for x in history.history["val_accuracy"]],
        "test_accuracy": float(test["accuracy"]),
        "seconds": round(seconds, 1),
        "trainable_parameters": trainable,
        "parameters": int(model.count_params()),
    }
    keras.backend.clear_session()
    return run


def _summary(runs: list, learning_rates: list) -> dict:
    """Each learning rate's mean final validation accuracy; the chosen one's test figures."""
    by_rate = {}
    for rate in learning_rates:
        at = [run for run in runs if run["learning_rate"] == rate]
        by_rate[rate] = float(np.mean([run["validation_accuracy"][-1] for run in at]))
    chosen = max(learning_rates, key=lambda rate: (by_rate[rate], -learning_rates.index(rate)))
    picked = [run for run in runs if run["learning_rate"] == chosen]
    test = np.array([run["test_accuracy"] for run in picked])
    return {
        "learning_rate": chosen,
        "validation_accuracy_by_learning_rate": {f"{rate:g}": value for rate, value in by_rate.items()},
        "validation_accuracy": by_rate[chosen],
        "test_accuracy": float(test.mean()),
        "test_accuracy_std": float(test.std()),
        "seconds": float(np.mean([run["seconds"] for run in picked])),
        "trainable_parameters": picked[0]["trainable_parameters"],
        "parameters": picked[0]["parameters"],
        "runs": runs,
    }


def compare_peft(
    output: str,
    encoder: str | None = None,
    methods: tuple[str, ...] = METHODS,
    dataset: str = "movie_snippets",
    num_classes: int = 2,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rates: dict | None = None,
    seeds: tuple[int, ...] = (0,),
    max_train_examples: int | None = None,
    sequence_length: int | None = None,
    pooling: str = "cls",
    lora_rank: int = 8,
    bottleneck_dim: int = 64,
    num_prompts: int = 20,
    freeze_layers: int | None = None,
    layer_decay: float = 0.8,
    results: str | None = None,
) -> str:
    """Fine-tunes a classifier from the encoder export with each PEFT method on the same budget.

    Args:
        output: the run folder (metrics.json, peft.md, peft.png).
        encoder: an encoder export (default OUTPUT/encoder, written by ``import_checkpoint`` or
            ``pretrain``; point it at any other run's ``encoder`` folder).
        methods: from ``METHODS``: ``full`` fine-tuning, ``llrd`` (full with layer-wise learning-rate
            decay ``layer_decay``), ``freeze_embeddings``, ``freeze_bottom`` (embeddings and the lowest
            ``freeze_layers`` blocks; default half the blocks), ``linear_probe`` (head only),
            ``bitfit``, ``lora`` (rank ``lora_rank``), ``adapters`` (``bottleneck_dim``), ``prompt``
            (``num_prompts`` soft prompts).
        learning_rates: per method, a rate or a list of candidates (default
            ``DEFAULT_LEARNING_RATES``); the best on validation is reported.
        epochs, batch_size, seeds, max_train_examples: the budget, the same for every method.
        sequence_length: tokens per text; None: the export's packing length (a shorter one cuts
            the packed rows, ending them with [SEP]).
        pooling: what the head reads ("cls" or "mean").
        results: a folder (e.g. applications/peft) where peft.md and peft.png are copied.

    Returns:
        The path of OUTPUT/peft.md.
    """
    _check_values(compare_peft, locals())
    options = {"lora_rank": lora_rank, "bottleneck_dim": bottleneck_dim, "num_prompts": num_prompts,
               "layer_decay": layer_decay, "freeze_layers": freeze_layers}
    _check_arguments(methods, learning_rates, {**options, "pooling": pooling})
    rates = _learning_rates(methods, learning_rates)
    encoder = encoder or os.path.join(output, ENCODER_EXPORT)
    if not os.path.isdir(encoder):
        raise FileNotFoundError(f"No encoder export at '{encoder}'; run import_checkpoint or pretrain first, or "
                                "pass `encoder` (a keras_lm.export.encoder folder).")
    from keras_lm.tasks.saved_model import PREPROCESS_DIR, SavedModelPreprocessor, rebuild_encoder

    _stage(f"rebuilding the encoder exported at {encoder} as keras_lm layers")
    template = rebuild_encoder(encoder)
    preprocessor = SavedModelPreprocessor(os.path.join(encoder, PREPROCESS_DIR))
    length = sequence_length or preprocessor.sequence_length
    if length > preprocessor.sequence_length:
        raise ValueError(f"`sequence_length` {length} exceeds the export's packing length "
                         f"{preprocessor.sequence_length}; export the encoder with a longer sequence_length.")
    if options["freeze_layers"] is None:
        options["freeze_layers"] = max(1, template.num_layers // 2)
    elif not 0 <= options["freeze_layers"] <= template.num_layers:
        raise ValueError(f"`freeze_layers` must be in [0, {template.num_layers}], got {freeze_layers}.")
    data = _Data(preprocessor, dataset, batch_size, max_train_examples, length)
    os.makedirs(output, exist_ok=True)
    figures = {}
    for method in methods:
        runs = [_run(method, template, data, rate, seed, epochs, num_classes, pooling, options)
                for rate in rates[method] for seed in seeds]
        figures[method] = _summary(runs, rates[method])
        _stage(f"{method}: learning rate {figures[method]['learning_rate']:g} chosen on validation; test accuracy "
               f"{figures[method]['test_accuracy']:.4f}")
    section = {
        "encoder": os.path.abspath(encoder),
        "dataset": dataset,
        "epochs": epochs,
        "batch_size": batch_size,
        "train_examples": data.train_size,
        "steps": epochs * data.steps_per_epoch(),
        "sequence_length": length,
        "pooling": pooling,
        "seeds": list(seeds),
        "options": options,
        "majority_class_test_accuracy": data.majority,
        "methods": figures,
    }
    _update_metrics(output, "peft", section)
    return _write_report(output, section, results)


def _write_report(output: str, section: dict, results: str | None = None) -> str:
    methods = section["methods"]
    lines = [
        "# Parameter-efficient fine-tuning on the same budget",
        "",
        f"Start: the encoder export {section['encoder']}. Data: {section['dataset']}, {section['train_examples']} "
        f"training texts, {section['epochs']} epoch(s) of batches of {section['batch_size']} "
        f"({section['steps']} AdamW steps, linear warmup and decay), {section['sequence_length']} tokens, pooling "
        f"{section['pooling']}, seeds {section['seeds']}. Each method's learning rate was chosen on the validation "
        "split; the test accuracy is the mean ± std over the seeds at that rate.",
        "",
        "| method | trainable parameters | share | learning rate | validation accuracy | test accuracy | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, figure in methods.items():
        share = figure["trainable_parameters"] / figure["parameters"]
        lines.append(
            f"| {DESCRIPTIONS[name]} | {figure['trainable_parameters']:,} | {100 * share:.2f}% | "
            f"{figure['learning_rate']:g} | {figure['validation_accuracy']:.4f} | {figure['test_accuracy']:.4f} ± "
            f"{figure['test_accuracy_std']:.4f} | {figure['seconds']:.0f} |")
    lines += ["", f"Always answering the majority class scores {section['majority_class_test_accuracy']:.4f} on test.",
              "", f"![test accuracy against trainable parameters]({FIGURE})"]
    _plot(section, os.path.join(output, FIGURE))
    return write_report(output, REPORT, lines, results, copies=(FIGURE,))


def _plot(section: dict, path: str) -> None:
    """Left: test accuracy per method (bars, ± std over seeds); right: against trainable parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(section["methods"])
    figures = [section["methods"][name] for name in names]
    accuracy = [figure["test_accuracy"] for figure in figures]
    spread = [figure["test_accuracy_std"] for figure in figures]
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 2.5))
    positions = np.arange(len(names))
    bars.barh(positions, accuracy, xerr=spread, color="tab:blue", alpha=0.8, capsize=3)
    bars.set_yticks(positions, [DESCRIPTIONS[name] for name in names], fontsize=8)
    bars.invert_yaxis()
    majority = section["majority_class_test_accuracy"]
    bars.axvline(majority, color="grey", linestyle="--", label="majority class")
    low = min(accuracy + [majority]) - 0.05
    bars.set_xlim(max(0.0, low), min(1.0, max(a + s for a, s in zip(accuracy, spread)) + 0.02))
    bars.set_xlabel(f"{section['dataset']} test accuracy")
    bars.legend(loc="lower right", fontsize=8)
    for index, (name, figure) in enumerate(zip(names, figures)):
        scatter.errorbar(figure["trainable_parameters"], figure["test_accuracy"], yerr=figure["test_accuracy_std"],
                         fmt="os^vD<>ph"[index % 9], capsize=3, label=DESCRIPTIONS[name])
    scatter.axhline(majority, color="grey", linestyle="--")
    scatter.set_xscale("log")
    scatter.set_xlabel("trainable parameters (log scale)")
    scatter.set_ylabel("test accuracy")
    scatter.legend(fontsize=7, loc="best")
    fig.suptitle(f"Same budget for every method: {section['epochs']} epoch(s), {section['steps']} steps, "
                 f"seeds {section['seeds']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
