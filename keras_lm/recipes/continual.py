"""Continual learning on two real tasks in sequence: movie_snippets sentiment, then WordNet definitions.

The keyword arguments of ``continual`` are the keys of ``applications/continual.yaml``. One classifier
(an encoder export plus one head over the labels of both tasks: 0/1 negative/positive, 2/3 noun/verb
definition) learns task A, then task B with each method; the report shows how much task-A accuracy
is lost. Files under the output directory:

    OUTPUT/metrics.json          section "continual": settings, every run, the chosen strengths
    OUTPUT/continual.md, OUTPUT/continual.png   the report and its figure
"""
from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lm
from keras_lm.data.definitions import noun_verb_definitions
from keras_lm.recipes.report_files import write_report
from keras_lm.recipes.workflows import (
    ENCODER_EXPORT,
    _check_values,
    _labelled,
    _pretrained_start,
    _stage,
    _update_metrics,
    evaluation_batches,
    training_batches,
)
from keras_lm.tasks.classifier import CLASSIFIER_POOLINGS
from keras_lm.tasks.saved_model import read_manifest
from keras_lm.training.continual import EWC, L2SP, ReplayBuffer, fisher_information, variables_of
from keras_lm.values import is_integer, is_number

METHODS = ("none", "l2sp", "ewc", "replay")
#: What L2-SP and EWC anchor: every trainable variable of the classifier (the head is shared by both
#: tasks), or only the encoder's.
ANCHORED = ("model", "backbone")
SECTION = "continual"
REPORT_FILE = "continual.md"
FIGURE_FILE = "continual.png"
TASK_A = "movie_snippets"
TASK_B = "noun_verb_definitions"
#: Labels of task A are 0..1, of task B 2..3 (one head over both).
TASK_A_CLASSES = (0, 1)
TASK_B_CLASSES = (2, 3)


def _as_list(name: str, values, valid, message: str) -> list:
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if not values or not all(valid(v) for v in values):
        raise ValueError(f"`{name}` must be {message} (or a list of them), got {values!r}.")
    return values


def _check(methods, anchored, fisher_examples, replay_size, epochs_a, epochs_b, pooling) -> None:
    if pooling not in CLASSIFIER_POOLINGS:
        raise ValueError(f"`pooling` must be one of {', '.join(CLASSIFIER_POOLINGS)}, got {pooling!r}.")
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown or len(set(methods)) != len(methods):
        raise ValueError(f"`methods` must list distinct names among {', '.join(METHODS)}; got {list(methods)}.")
    if anchored not in ANCHORED:
        raise ValueError(f"`anchored` must be one of {', '.join(ANCHORED)}, got {anchored!r}.")
    for name, value in (("fisher_examples", fisher_examples), ("replay_size", replay_size), ("epochs_a", epochs_a),
                        ("epochs_b", epochs_b)):
        if not is_integer(value) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def task_data(max_train_a: int | None = None, max_train_b: int | None = None) -> dict:
    """``{"a": (train, validation, test), "b": (...)}`` of ``(text, label)`` examples; task B's labels
    shifted to 2/3 so that one head holds both tasks."""
    def movie(split):
        return _labelled(keras_lm.data.load(TASK_A, split=split))

    def definitions(split):
        return noun_verb_definitions(split).map(lambda e: (e["text"], e["label"] + TASK_B_CLASSES[0]))

    a = [movie(split) for split in ("train", "validation", "test")]
    b = [definitions(split) for split in ("train", "validation", "test")]
    if max_train_a:
        a[0] = a[0].take(max_train_a)
    if max_train_b:
        b[0] = b[0].take(max_train_b)
    return {"a": tuple(d.cache() for d in a), "b": tuple(d.cache() for d in b)}


def _count(dataset: tf.data.Dataset) -> int:
    return int(dataset.reduce(0, lambda n, _: n + 1).numpy())


def accuracies(classifier, examples: tf.data.Dataset, classes: tuple, batch_size: int) -> dict:
    """``task``: the argmax among the task's own classes (the task is known, as when each task has its
    head); ``all``: the argmax over every class of both tasks (the task is not known)."""
    batches = evaluation_batches(examples, batch_size)
    logits = classifier.predict(batches, verbose=0)
    labels = np.concatenate([label for _, label in batches.as_numpy_iterator()])
    within = np.asarray(classes)[np.argmax(logits[:, list(classes)], axis=-1)]
    return {"task": float(np.mean(within == labels)), "all": float(np.mean(np.argmax(logits, -1) == labels))}


def _compile(classifier, learning_rate: float, steps: int) -> None:
    classifier.compile(optimizer=keras_lm.training.adamw(learning_rate, warmup=max(1, steps // 10), total=steps))


def _fit(classifier, examples, epochs: int, per_epoch: int, batch_size: int, seed: int) -> list:
    batches = training_batches(examples, batch_size, seed).repeat()
    history = classifier.fit(batches, steps_per_epoch=per_epoch, epochs=epochs, verbose=2)
    return [float(loss) for loss in history.history["loss"]]


def _evaluate(classifier, data: dict, batch_size: int) -> dict:
    return {
        "a_validation": accuracies(classifier, data["a"][1], TASK_A_CLASSES, batch_size),
        "a_test": accuracies(classifier, data["a"][2], TASK_A_CLASSES, batch_size),
        "b_validation": accuracies(classifier, data["b"][1], TASK_B_CLASSES, batch_size),
        "b_test": accuracies(classifier, data["b"][2], TASK_B_CLASSES, batch_size),
    }


def continual(
    output: str,
    encoder: str | None = None,
    methods: tuple = METHODS,
    epochs_a: int = 1,
    epochs_b: int = 1,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    max_train_examples_a: int | None = None,
    max_train_examples_b: int | None = None,
    l2sp_alpha: float | tuple = 0.1,
    ewc_strength: float | tuple = 1000.0,
    fisher_examples: int = 512,
    replay_ratio: float | tuple = 0.2,
    replay_size: int = 1000,
    anchored: str = "model",
    pooling: str = "cls",
    seed: int = 0,
    results: str | None = None,
) -> dict:
    """Task A (movie_snippets), then task B (WordNet noun/verb definitions) with each continual method.

    One ``Classifier`` reloaded from ``encoder`` (default OUTPUT/encoder) with a head over the four
    labels trains ``epochs_a`` epochs on task A; its task-A accuracy is measured. From those weights,
    each method then trains ``epochs_b`` x (task-B sentences / ``batch_size``) steps on task B (the
    same budget for every method):

    - ``"none"``: plain fine-tuning on task B;
    - ``"l2sp"``: + ``alpha / 2 * ||w - w_A||^2`` (``keras_lm.training.continual.L2SP``);
    - ``"ewc"``: + ``strength / 2 * sum(F (w - w_A)^2)``, ``F`` the empirical diagonal Fisher of the
      task-A model on ``fisher_examples`` task-A training sentences (``EWC``);
    - ``"replay"``: a reservoir sample of ``replay_size`` task-A training sentences is mixed into the
      task-B stream, a fraction ``replay_ratio`` of the examples (``ReplayBuffer``).

    ``anchored`` is what the penalties hold: ``"model"`` every trainable variable (the head is
    shared by the tasks) or ``"backbone"`` the encoder's. A strength given as a list is tried
    value by value; the one with the best mean of task-A and task-B validation accuracy after task
    B is reported (test figures are never used to choose). Accuracy is "task" accuracy (argmax
    among the task's own labels) and, in the report too, over all four labels.
    Returns the ``continual`` section of metrics.json.

    Example:
        >>> continual("runs/minilm", methods=("none", "ewc"), max_train_examples_b=2000)  # doctest: +SKIP
    """
    _check_values(continual, locals())
    methods = tuple(methods)
    _check(methods, anchored, fisher_examples, replay_size, epochs_a, epochs_b, pooling)
    settings = {
        "l2sp": _as_list("l2sp_alpha", l2sp_alpha, lambda v: is_number(v) and v >= 0, "a number >= 0"),
        "ewc": _as_list("ewc_strength", ewc_strength, lambda v: is_number(v) and v >= 0, "a number >= 0"),
        "replay": _as_list("replay_ratio", replay_ratio, lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)"),
        "none": [None],
    }
    encoder = encoder or os.path.join(output, ENCODER_EXPORT)
    read_manifest(encoder)  # an encoder export, before any work
    os.makedirs(output, exist_ok=True)
    data = task_data(max_train_examples_a, max_train_examples_b)
    sizes = {task: [_count(d) for d in data[task]] for task in ("a", "b")}
    per_epoch_a = -(-sizes["a"][0] // batch_size)
    per_epoch_b = -(-sizes["b"][0] // batch_size)

    _stage(f"reloading the exported encoder {encoder} with a head over both tasks' labels")
    keras.utils.set_random_seed(seed)
    classifier = keras_lm.tasks.Classifier.from_saved_model(encoder, num_classes=4, pooling=pooling)
    encoder_values = {id(variable): variable.numpy() for variable in classifier.backbone.variables}
    for variable, value in zip(classifier.variables, _pretrained_start(classifier, encoder_values, seed)):
        variable.assign(value)
    _stage(f"task A ({TASK_A}): {epochs_a} x {per_epoch_a} steps of {batch_size}")
    start = time.time()
    _compile(classifier, learning_rate, epochs_a * per_epoch_a)
    losses_a = _fit(classifier, data["a"][0], epochs_a, per_epoch_a, batch_size, seed)
    after_a = {"seconds": round(time.time() - start, 1), "train_loss": losses_a,
               **_evaluate(classifier, data, batch_size)}
    _stage(f"after task A: task-A test accuracy {after_a['a_test']['task']:.4f}")
    weights_a = [variable.numpy() for variable in classifier.variables]
    anchored_variables = classifier.trainable_variables if anchored == "model" else classifier.backbone

    fisher = None
    if "ewc" in methods:
        _stage(f"diagonal Fisher of the task-A model on {fisher_examples} task-A training sentences")
        start = time.time()
        variables = variables_of(anchored_variables)
        fisher = (variables, fisher_information(classifier, data["a"][0].batch(batch_size), variables=variables,
                                                num_examples=fisher_examples))
        fisher_seconds = round(time.time() - start, 1)
    buffer = None
    if "replay" in methods:
        buffer = ReplayBuffer(replay_size, seed=seed)
        buffer.add(data["a"][0])

    runs = {}
    for method in methods:
        runs[method] = []
        for value in settings[method]:
            for variable, saved in zip(classifier.variables, weights_a):
                variable.assign(saved)
            keras.utils.set_random_seed(seed)
            described = method if value is None else f"{method} {value:g}"
            _stage(f"task B ({TASK_B}) with {described}: {epochs_b} x {per_epoch_b} steps of {batch_size}")
            penalty = None
            if method == "l2sp":
                penalty = L2SP(anchored_variables, alpha=value)
            elif method == "ewc":
                penalty = EWC(fisher[0], fisher[1], strength=value)
            train_b = data["b"][0]
            if method == "replay":
                train_b = buffer.mix(train_b, value, seed=seed)
            start = time.time()
            if penalty is not None:
                penalty.attach()
            try:
                _compile(classifier, learning_rate, epochs_b * per_epoch_b)
                losses = _fit(classifier, train_b, epochs_b, per_epoch_b, batch_size, seed)
            finally:
                if penalty is not None:
                    penalty.detach()
            run = {"value": value, "seconds": round(time.time() - start, 1), "train_loss": losses,
                   **_evaluate(classifier, data, batch_size)}
            run["selection"] = (run["a_validation"]["task"] + run["b_validation"]["task"]) / 2
            _stage(f"  task-A test {run['a_test']['task']:.4f} (was {after_a['a_test']['task']:.4f}), "
                   f"task-B test {run['b_test']['task']:.4f}")
            runs[method].append(run)

    chosen = {method: max(method_runs, key=lambda r: r["selection"]) for method, method_runs in runs.items()}
    section = {
        "task_a": TASK_A, "task_b": TASK_B, "encoder": encoder, "pooling": pooling, "seed": seed,
        "examples": {"a": dict(zip(("train", "validation", "test"), sizes["a"])),
                     "b": dict(zip(("train", "validation", "test"), sizes["b"]))},
        "batch_size": batch_size, "learning_rate": learning_rate, "epochs_a": epochs_a, "epochs_b": epochs_b,
        "steps_a": epochs_a * per_epoch_a, "steps_b": epochs_b * per_epoch_b, "anchored": anchored,
        "fisher_examples": fisher_examples if fisher else None,
        "fisher_seconds": fisher_seconds if fisher else None,
        "replay_size": replay_size if buffer else None,
        "after_a": after_a, "runs": runs,
        "chosen": {method: run["value"] for method, run in chosen.items()},
        "selection_rule": "the best mean of task-A and task-B validation accuracy (task labels) after task B",
    }
    _update_metrics(output, SECTION, section)
    write_continual_report(output, section, results)
    return section


def _plot(section: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(section["chosen"])
    chosen = {m: next(r for r in section["runs"][m] if r["value"] == section["chosen"][m]) for m in methods}
    positions = np.arange(len(methods))
    fig, axis = plt.subplots(figsize=(8, 4))
    axis.axhline(section["after_a"]["a_test"]["task"], color="gray", linestyle="--", label="task A after A")
    axis.bar(positions - 0.2, [chosen[m]["a_test"]["task"] for m in methods], width=0.4, label="task A after B")
    axis.bar(positions + 0.2, [chosen[m]["b_test"]["task"] for m in methods], width=0.4, label="task B after B")
    axis.set_xticks(positions, [m if chosen[m]["value"] is None else f"{m} ({chosen[m]['value']:g})"
                                for m in methods])
    axis.set(title=f"{section['task_a']} then {section['task_b']}: test accuracy", ylabel="accuracy",
             ylim=(0.4, 1.0))
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_continual_report(output: str, section: dict, results: str | None = None) -> str:
    """OUTPUT/continual.md and OUTPUT/continual.png from the section; copied to ``results`` when given."""
    
    after_a = section["after_a"]
    examples = section["examples"]
    lines = [
        f"# Continual learning: {section['task_a']}, then {section['task_b']}",
        "",
        f"One classifier from {section['encoder']} with a head over both tasks' labels; task A for "
        f"{section['steps_a']} steps, then task B for {section['steps_b']} steps with each method (batch "
        f"{section['batch_size']}, learning rate {section['learning_rate']:g}, seed {section['seed']}). "
        f"Task A: {examples['a']['train']} training / {examples['a']['test']} test sentences; task B: "
        f"{examples['b']['train']} / {examples['b']['test']} definitions (balanced noun / verb). Penalties anchor "
        f"{'every trainable variable' if section['anchored'] == 'model' else 'the encoder'} at the task-A weights.",
        "",
        f"After task A: task-A test accuracy **{after_a['a_test']['task']:.4f}** (task-B test "
        f"{after_a['b_test']['task']:.4f} before any task-B training).",
        "",
        "| method | task A after B (test) | change | task B (test) | task A, all 4 labels | task B, all 4 labels | "
        "validation mean | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, runs in section["runs"].items():
        for run in runs:
            name = method if run["value"] is None else f"{method} {run['value']:g}"
            if len(runs) > 1 and run["value"] == section["chosen"][method]:
                name = f"**{name}**"
            change = run["a_test"]["task"] - after_a["a_test"]["task"]
            lines.append(f"| {name} | {run['a_test']['task']:.4f} | {100 * change:+.1f} pts | "
                         f"{run['b_test']['task']:.4f} | {run['a_test']['all']:.4f} | {run['b_test']['all']:.4f} | "
                         f"{run['selection']:.4f} | {run['seconds']} |")
    lines += [
        "",
        "Task accuracy is the argmax among the task's own two labels; \"all 4 labels\" takes the argmax over both "
        "tasks' labels; change is task-A test accuracy after B minus after A (negative: forgotten)."
        f" Where a strength was tried at several values, **bold** marks the one chosen by "
        f"{section['selection_rule']}.",
        "",
        f"![continual]({FIGURE_FILE})",
    ]
    _plot(section, os.path.join(output, FIGURE_FILE))
    return write_report(output, REPORT_FILE, lines, results, copies=(FIGURE_FILE,))
