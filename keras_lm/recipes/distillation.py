"""Recipe step: distil a fine-tuned teacher into a small student, next to the same student trained alone.

    # applications/distillation.yaml
    import_checkpoint: {checkpoint: all-minilm-l6-v2, sequence_length: 128}
    distill: {teacher_epochs: 1, epochs: 3, temperature: 2.0, alpha: 0.5}

The teacher is a classifier fine-tuned from an encoder export (OUTPUT/encoder, written by
``import_checkpoint`` or ``pretrain``) or a ``.keras`` classifier. The student is
``Bert(student_size)`` on the teacher's vocabulary and preprocessor. For each seed the student
starts from the same random weights twice: trained on the labels alone, and distilled
(``keras_lm.training.distillation.Distiller``), with the same optimizer, schedule, batches and
epochs. Writes OUTPUT/metrics.json ("distillation"), OUTPUT/distillation.md and
OUTPUT/distillation.png.
"""
from __future__ import annotations

import os
import time

import keras

import keras_lm
from keras_lm.recipes.report_files import write_report
from keras_lm.recipes.workflows import (
    ENCODER_EXPORT,
    StepHistory,
    _batches_per_epoch,
    _labelled,
    _stage,
    _update_metrics,
    evaluation_batches,
    summarize_runs,
    training_batches,
)
from keras_lm.training.distillation import Distiller, check_student_layers, student_from_teacher

REPORT = "distillation.md"
FIGURE = "distillation.png"
STUDENT_RUNS = (("student", "student alone"), ("distilled", "distilled student"))


def labelled_splits(dataset: str, max_train_examples: int | None = None) -> tuple:
    """``(train, validation, test)`` datasets of ``(text, label)`` pairs, cached."""
    train = _labelled(keras_lm.data.load(dataset, split="train"))
    if max_train_examples:
        train = train.take(max_train_examples)
    return (train.cache(), _labelled(keras_lm.data.load(dataset, split="validation")).cache(),
            _labelled(keras_lm.data.load(dataset, split="test")).cache())


def _schedule(learning_rate: float, steps: int):
    return keras_lm.training.adamw(learning_rate, warmup=max(1, steps // 10), total=steps)


def _fit(model, data, epochs: int, batch_size: int, seed: int, name: str) -> dict:
    """Fits ``model`` (a classifier or a distiller) and evaluates it on the test split."""
    train, validation, test = data
    history = StepHistory()
    start = time.time()
    fit = model.fit(training_batches(train, batch_size, seed), validation_data=evaluation_batches(validation, batch_size),
                    epochs=epochs, callbacks=[history], verbose=2)
    seconds = time.time() - start
    test_metrics = model.evaluate(evaluation_batches(test, batch_size), return_dict=True, verbose=0)
    _stage(f"{name}, seed {seed}: test accuracy {test_metrics['accuracy']:.4f} ({seconds:.0f} s)")
    run = {
        "seed": seed,
        "test_accuracy": float(test_metrics["accuracy"]),
        "validation_accuracy": [float(value) for value in fit.history["val_accuracy"]],
        "train_loss_curve": history.losses,
        "seconds": round(seconds, 1),
    }
    if "val_distillation_loss" in fit.history:
        run["validation_distillation_loss"] = [float(value) for value in fit.history["val_distillation_loss"]]
        run["test_distillation_loss"] = float(test_metrics["distillation_loss"])
    return run


def load_teacher(output: str, teacher: str | None, encoder: str | None, num_classes: int, data: tuple,
                 epochs: int, batch_size: int, learning_rate: float, pooling: str, seed: int):
    """``(teacher classifier, its figures)``: a ``.keras`` classifier, or one fine-tuned from an encoder export."""
    from keras_lm.tasks.classifier import load_keras_file

    if teacher:
        _stage(f"loading the teacher {teacher}")
        model = load_keras_file(teacher)
        if getattr(model, "preprocessor", None) is None:
            raise ValueError(f"The teacher '{teacher}' has no preprocessor; the student needs its tokenization. "
                             "Save the classifier with its preprocessor.")
        model.compile()
        test = model.evaluate(evaluation_batches(data[2], batch_size), return_dict=True, verbose=0)
        return model, {"source": teacher, "test_accuracy": float(test["accuracy"])}
    encoder = encoder or os.path.join(output, ENCODER_EXPORT)
    _stage(f"fine-tuning the teacher from the encoder export {encoder}: {epochs} epoch(s)")
    keras.utils.set_random_seed(seed)
    model = keras_lm.tasks.Classifier.from_saved_model(encoder, num_classes=num_classes, pooling=pooling)
    model.compile(optimizer=_schedule(learning_rate, epochs * _batches_per_epoch(data[0], batch_size)))
    run = _fit(model, data, epochs, batch_size, seed, "teacher")
    return model, {"source": encoder, "epochs": epochs, "learning_rate": learning_rate, "pooling": pooling, **run}


def _vocabulary_size(output: str, teacher, vocabulary: str | None) -> int:
    """The teacher's vocabulary size: from its tokenizer, else from the vocabulary file of the run."""
    tokenizer = getattr(teacher.preprocessor, "tokenizer", None)
    if tokenizer is not None:
        return int(tokenizer.vocabulary_size())
    path = vocabulary or os.path.join(output, "vocab.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No vocabulary at '{path}' to size the student's embeddings; pass `vocabulary` "
                                "(the teacher's vocab.txt).")
    with open(path, encoding="utf-8") as file:
        return sum(1 for line in file if line.strip("\n"))


def distill(
    output: str,
    teacher: str | None = None,
    encoder: str | None = None,
    vocabulary: str | None = None,
    student_size: str = "tiny",
    student_layers: list | None = None,
    dataset: str = "movie_snippets",
    num_classes: int = 2,
    teacher_epochs: int = 1,
    teacher_learning_rate: float = 1e-4,
    teacher_pooling: str = "mean",
    epochs: int = 3,
    batch_size: int = 32,
    learning_rate: float = 5e-4,
    temperature: float = 2.0,
    alpha: float = 0.5,
    hidden_weight: float = 0.0,
    seeds: tuple[int, ...] = (0,),
    max_train_examples: int | None = None,
    results: str | None = None,
) -> dict:
    """Trains ``Bert(student_size)`` with and without distillation from a teacher, same budget; reports both.

    Args:
        output: the run folder (OUTPUT/metrics.json, OUTPUT/distillation.md, OUTPUT/distillation.png).
        teacher: a ``.keras`` classifier (with its preprocessor) to distil; default: fine-tune one.
        encoder: the encoder export the teacher is fine-tuned from (default OUTPUT/encoder).
        vocabulary: the teacher's vocab.txt when its preprocessor is a SavedModel (default OUTPUT/vocab.txt).
        student_size: a ``Bert`` size for a randomly initialized student.
        student_layers: instead, blocks of the teacher's checkpoint (the encoder export, rebuilt as keras_lm
            layers) that start a student of the teacher's width, e.g. [0, 2, 4] (DistilBERT's initialization,
            ``keras_lm.training.distillation.student_from_teacher``).
        teacher_epochs, teacher_learning_rate, teacher_pooling: the teacher's fine-tuning.
        epochs, batch_size, learning_rate: the budget of both students (AdamW, 10% warmup, linear decay).
        temperature, alpha, hidden_weight: the ``Distiller``'s settings.
        seeds: one student start (and data order) per seed; both students of a seed share it.
        max_train_examples: a prefix of the train split (for a quick check).
        results: a folder (e.g. applications/distillation) to copy the markdown and the figure to.
    """
    from keras_lm.applications.bert import BERT_SIZES

    if student_layers is None and student_size not in BERT_SIZES:
        raise ValueError(f"`student_size` must be one of {', '.join(BERT_SIZES)}, got {student_size!r}.")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("`seeds` must list at least one seed.")
    os.makedirs(output, exist_ok=True)
    data = labelled_splits(dataset, max_train_examples)
    teacher_model, teacher_figures = load_teacher(output, teacher, encoder, num_classes, data, teacher_epochs,
                                                  batch_size, teacher_learning_rate, teacher_pooling, seeds[0])
    size = _vocabulary_size(output, teacher_model, vocabulary)
    checkpoint = None
    if student_layers is not None:
        from keras_lm.tasks.saved_model import rebuild_encoder

        checkpoint = rebuild_encoder(encoder or os.path.join(output, ENCODER_EXPORT))
        check_student_layers(student_layers, checkpoint.num_layers)  # before any training
    steps = epochs * _batches_per_epoch(data[0], batch_size)
    runs = {name: [] for name, _ in STUDENT_RUNS}
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        if checkpoint is None:
            backbone = keras_lm.applications.Bert(student_size, vocabulary_size=size)
            described = f"Bert('{student_size}')"
        else:
            backbone = student_from_teacher(checkpoint, student_layers)
            described = f"blocks {list(student_layers)} of the teacher's checkpoint"
        student = keras_lm.tasks.Classifier(backbone, num_classes=num_classes, preprocessor=teacher_model.preprocessor)
        start = [variable.numpy() for variable in student.variables]
        _stage(f"student alone, seed {seed}: {described}, {epochs} epoch(s) ({steps} steps)")
        student.compile(optimizer=_schedule(learning_rate, steps))
        runs["student"].append(_fit(student, data, epochs, batch_size, seed, "student alone"))
        for variable, value in zip(student.variables, start):
            variable.assign(value)
        _stage(f"distilled student, seed {seed}: T={temperature:g}, alpha={alpha:g}, hidden_weight={hidden_weight:g}")
        distiller = Distiller(student, teacher_model, temperature=temperature, alpha=alpha, hidden_weight=hidden_weight)
        distiller.compile(optimizer=_schedule(learning_rate, steps))
        runs["distilled"].append(_fit(distiller, data, epochs, batch_size, seed, "distilled student"))
    figures = {
        "dataset": dataset,
        "teacher": teacher_figures,
        "student_size": student_size,
        "student_model": described,
        "student_parameters": int(student.count_params()),
        "teacher_parameters": int(teacher_model.count_params()),
        "settings": {"temperature": temperature, "alpha": alpha, "hidden_weight": hidden_weight,
                     "batch_size": batch_size, "steps": steps},
        **{name: summarize_runs(runs[name], learning_rate, epochs) for name, _ in STUDENT_RUNS},
    }
    figures["difference"] = figures["distilled"]["test_accuracy"] - figures["student"]["test_accuracy"]
    _update_metrics(output, "distillation", figures)
    write_distillation_report(output, figures, results)
    return figures


def _plot(figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (name, label) in enumerate(STUDENT_RUNS):
        for j, run in enumerate(figures[name]["runs"]):
            accuracy = run["validation_accuracy"]
            accuracy_axis.plot(range(1, len(accuracy) + 1), accuracy, "o-", color=f"C{i}", alpha=0.9 if j == 0 else 0.4,
                               label=label if j == 0 else None)
            if run.get("validation_distillation_loss"):
                curve = run["validation_distillation_loss"]
                loss_axis.plot(range(1, len(curve) + 1), curve, "o-", color=f"C{i}", alpha=0.9 if j == 0 else 0.4,
                               label="distilled student" if j == 0 else None)
    teacher = figures["teacher"]
    if teacher.get("validation_accuracy"):
        accuracy_axis.axhline(teacher["validation_accuracy"][-1], color="grey", linestyle=":", label="teacher")
    accuracy_axis.set(title=f"Validation accuracy ({figures['dataset']})", xlabel="epoch", ylabel="accuracy")
    accuracy_axis.xaxis.get_major_locator().set_params(integer=True)
    accuracy_axis.legend()
    loss_axis.set(title="Validation T^2 * KL(teacher || student)", xlabel="epoch", ylabel="distillation loss")
    loss_axis.xaxis.get_major_locator().set_params(integer=True)
    if loss_axis.lines:
        loss_axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_distillation_report(output: str, figures: dict, results: str | None = None) -> str:
    """OUTPUT/distillation.md and OUTPUT/distillation.png from the figures of ``distill``."""
    settings, teacher = figures["settings"], figures["teacher"]
    lines = [
        f"# Knowledge distillation on {figures['dataset']}",
        "",
        f"- Teacher: {teacher['source']} ({figures['teacher_parameters']:,} weights), test accuracy "
        f"{teacher['test_accuracy']:.4f}.",
        f"- Student: {figures.get('student_model', repr(figures['student_size']))} ({figures['student_parameters']:,} weights) "
        f"on the teacher's vocabulary; both students of a seed start from the same weights and see the same {settings['steps']} steps "
        f"of batch {settings['batch_size']}.",
        f"- Distillation: temperature {settings['temperature']:g}, alpha {settings['alpha']:g} (hard-label weight), "
        f"hidden-state weight {settings['hidden_weight']:g}.",
        "",
        "| student | test accuracy (mean ± std) | min-max | validation accuracy (mean, last epoch) | seeds |",
        "|---|---|---|---|---|",
    ]
    for name, label in STUDENT_RUNS:
        r = figures[name]
        lines.append(f"| {label} | {r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} | "
                     f"{r['test_accuracy_min']:.4f}-{r['test_accuracy_max']:.4f} | {r['validation_accuracy_mean']:.4f} | "
                     f"{r['seeds']} |")
    lines += ["", f"Distilled minus alone (mean test accuracy): {100 * figures['difference']:+.2f} points.", "",
              f"![validation curves]({FIGURE})"]
    os.makedirs(output, exist_ok=True)
    _plot(figures, os.path.join(output, FIGURE))
    return write_report(output, REPORT, lines, results, copies=(FIGURE,))
