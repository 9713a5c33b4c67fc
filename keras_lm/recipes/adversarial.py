"""Recipe step: fine-tuning with and without adversarial training (FGM, PGD) on the same budget.

    # applications/adversarial.yaml
    import_checkpoint: {checkpoint: all-minilm-l6-v2, sequence_length: 128}
    compare_adversarial: {methods: [none, fgm, pgd], epochs: 2}

Perturbations are added to the token embeddings inside keras_lm layers, so the start is rebuilt as
a keras_lm backbone: from the checkpoint that ``import_checkpoint`` recorded in OUTPUT/metrics.json,
or from OUTPUT/pretrainer.keras after ``pretrain`` (checked to give the export's outputs), or from a
``.keras`` file. Every method starts each seed from the same weights (encoder as exported, head
drawn from the seed) and runs the same steps with the same optimizer and batches. Writes
OUTPUT/metrics.json ("adversarial"), OUTPUT/adversarial.md and OUTPUT/adversarial.png.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

import keras_lm
from keras_lm.recipes.distillation import labelled_splits
from keras_lm.recipes.report_files import write_report
from keras_lm.recipes.workflows import (
    ENCODER_EXPORT,
    _batches_per_epoch,
    _finetune_run,
    _pretrained_start,
    _SeedRuns,
    _stage,
    _update_metrics,
    read_metrics,
    summarize_runs,
)
from keras_lm.training.adversarial import ADVERSARIAL_METHODS, adversarial_training, remove_adversarial_training

METHODS = ("none",) + ADVERSARIAL_METHODS
LABELS = {"none": "plain fine-tuning", "fgm": "FGM", "pgd": "PGD"}
REPORT = "adversarial.md"
FIGURE = "adversarial.png"
#: Largest difference allowed between the rebuilt backbone's and the export's outputs (bfloat16 imports).
START_TOLERANCE = 0.05


def _export_outputs(encoder: str, features: dict) -> np.ndarray:
    from keras_lm.tasks.saved_model import ENCODER_DIR, SavedModelEncoder

    return SavedModelEncoder(os.path.join(encoder, ENCODER_DIR), trainable=False)(features)["sequence_output"].numpy()


def _candidates(encoder: str):
    """``(description, build)`` for each source of keras_lm layers the run folder of ``encoder`` records."""
    from keras_lm.recipes.checkpoint import resolve_checkpoint
    from keras_lm.tasks.classifier import load_backbone_file

    run = os.path.dirname(os.path.abspath(encoder))
    checkpoint = read_metrics(run).get("checkpoint")
    if checkpoint:
        yield (f"the checkpoint {checkpoint['checkpoint']}",
               lambda: keras_lm.applications.Bert.from_checkpoint(resolve_checkpoint(checkpoint["checkpoint"]),
                                                                 dtype=checkpoint.get("precision")))
    pretrainer = os.path.join(run, "pretrainer.keras")
    if os.path.isfile(pretrainer):
        yield pretrainer, lambda: load_backbone_file(pretrainer)


def keras_start(output: str, encoder: str | None = None, vocabulary: str | None = None,
                sequence_length: int = 128) -> tuple:
    """``(backbone, preprocessor, description)``: the start as keras_lm layers.

    ``encoder`` is an encoder export (default OUTPUT/encoder; its run folder says where its layers
    come from, and the rebuilt backbone must reproduce the export's outputs) or a ``.keras`` file
    holding a backbone or a pretrainer (then tokenized with ``vocabulary``, default OUTPUT/vocab.txt).
    """
    from keras_lm.tasks.classifier import load_backbone_file
    from keras_lm.tasks.saved_model import PREPROCESS_DIR, SavedModelPreprocessor

    encoder = encoder or os.path.join(output, ENCODER_EXPORT)
    if encoder.endswith(".keras"):
        path = vocabulary or os.path.join(output, "vocab.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No vocabulary at '{path}' for the backbone {encoder}; pass `vocabulary`.")
        tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=path)
        preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=sequence_length)
        return load_backbone_file(encoder), preprocessor, encoder
    if not os.path.isdir(encoder):
        raise FileNotFoundError(f"No encoder export at '{encoder}'; run import_checkpoint or pretrain first, or pass "
                                "`encoder` (an export folder or a .keras file).")
    preprocessor = SavedModelPreprocessor(os.path.join(encoder, PREPROCESS_DIR))
    features = preprocessor(tf.constant(["A gripping, beautifully acted film.", "Dull and far too long."]))
    expected, tried = None, []
    for description, build in _candidates(encoder):
        expected = _export_outputs(encoder, features) if expected is None else expected
        backbone = build()
        got = np.asarray(backbone(features)["sequence_output"], dtype="float32")
        difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        if difference <= START_TOLERANCE * max(1.0, float(np.abs(expected).max())):
            return backbone, preprocessor, f"{encoder} (layers from {description})"
        tried.append(f"{description} (differs by {difference:.3g})")
    raise ValueError(
        f"Adversarial training needs the encoder exported at '{encoder}' as keras_lm layers, and its run folder "
        f"records no source that reproduces it ({'; '.join(tried) or 'neither a checkpoint nor pretrainer.keras'}). "
        "Pass `encoder` as a .keras backbone or pretrainer file."
    )


def compare_adversarial(
    output: str,
    encoder: str | None = None,
    vocabulary: str | None = None,
    methods: tuple[str, ...] = METHODS,
    dataset: str = "movie_snippets",
    num_classes: int = 2,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    epsilon: float | list = 1.0,
    alpha: float | None = None,
    steps: int = 3,
    pooling: str = "mean",
    sequence_length: int = 128,
    seeds: tuple[int, ...] = (0,),
    max_train_examples: int | None = None,
    results: str | None = None,
) -> dict:
    """Fine-tunes a classifier with each of ``methods`` ("none", "fgm", "pgd") on the same budget; reports all.

    Args:
        output: the run folder (OUTPUT/metrics.json, OUTPUT/adversarial.md, OUTPUT/adversarial.png).
        encoder: an encoder export (default OUTPUT/encoder) or a ``.keras`` backbone/pretrainer (see ``keras_start``).
        vocabulary: the vocab.txt for a ``.keras`` start (default OUTPUT/vocab.txt).
        methods: which trainings to compare; "none" is plain fine-tuning.
        epochs, batch_size, learning_rate: the budget of every method (AdamW, 10% warmup, linear decay).
        epsilon: the L2 radius of the perturbation per example, or a list of candidates: each method's
            radius is then chosen on the validation split (mean final validation accuracy over the seeds).
        alpha, steps: PGD's step size (None: ``2.5 * epsilon / steps``, as Madry et al.) and its steps.
        pooling: what the classifier head reads ("cls" or "mean").
        sequence_length: the preprocessor's length for a ``.keras`` start.
        seeds: one head and data order per seed, shared by the methods.
        max_train_examples: a prefix of the train split (for a quick check).
        results: a folder (e.g. applications/adversarial) to copy the markdown and the figure to.
    """
    methods, seeds = list(methods), list(seeds)
    epsilons = [float(value) for value in (epsilon if isinstance(epsilon, (list, tuple)) else [epsilon])]
    if not epsilons or any(value <= 0 for value in epsilons):
        raise ValueError(f"`epsilon` must be a radius > 0 or a list of them; got {epsilon!r}.")
    unknown = [method for method in methods if method not in METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"`methods` must list distinct methods among {', '.join(METHODS)}; got {methods}.")
    if not seeds:
        raise ValueError("`seeds` must list at least one seed.")
    os.makedirs(output, exist_ok=True)
    data = labelled_splits(dataset, max_train_examples)
    backbone, preprocessor, start = keras_start(output, encoder, vocabulary, sequence_length)
    _stage(f"starting every run from {start}")
    classifier = keras_lm.tasks.Classifier(backbone, num_classes=num_classes, preprocessor=preprocessor,
                                           pooling=pooling)
    encoder_values = {id(variable): variable.numpy() for variable in classifier.backbone.variables}
    total_steps = epochs * _batches_per_epoch(data[0], batch_size)
    seed_runs = _SeedRuns(classifier, learning_rate, total_steps)
    summaries = {}
    for method in methods:
        by_radius = {}
        for radius in [None] if method == "none" else epsilons:
            remove_adversarial_training(classifier)
            label = LABELS[method]
            if method != "none":
                step = alpha if alpha is not None else 2.5 * radius / steps
                adversarial_training(classifier, method, epsilon=radius, alpha=step,
                                     steps=steps if method == "pgd" else None)
                label = f"{label} (epsilon {radius:g})"
            runs = [_finetune_run(seed_runs, _pretrained_start(classifier, encoder_values, seed), label, seed,
                                  data, epochs, batch_size, learning_rate) for seed in seeds]
            by_radius[radius] = summarize_runs(runs, learning_rate, epochs)
        chosen = max(by_radius, key=lambda radius: by_radius[radius]["validation_accuracy_mean"])
        summaries[method] = {**by_radius[chosen], "epsilon": chosen}
        if method != "none":
            summaries[method]["validation_accuracy_by_epsilon"] = {
                f"{radius:g}": summary["validation_accuracy_mean"] for radius, summary in by_radius.items()}
            summaries[method]["test_accuracy_by_epsilon"] = {
                f"{radius:g}": summary["test_accuracy"] for radius, summary in by_radius.items()}
    remove_adversarial_training(classifier)
    figures = {
        "dataset": dataset,
        "start": start,
        "settings": {"epsilon": epsilons, "alpha": alpha, "steps": steps, "batch_size": batch_size,
                     "pooling": pooling, "steps_per_run": total_steps},
        "methods": summaries,
    }
    if "none" in summaries:
        figures["difference"] = {method: summaries[method]["test_accuracy"] - summaries["none"]["test_accuracy"]
                                 for method in summaries if method != "none"}
    _update_metrics(output, "adversarial", figures)
    write_adversarial_report(output, figures, results)
    return figures


def _plot(figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(12, 4))
    methods = list(figures["methods"])
    for i, method in enumerate(methods):
        for j, run in enumerate(figures["methods"][method]["runs"]):
            accuracy = run["validation_accuracy"]
            curves.plot(range(1, len(accuracy) + 1), accuracy, "o-", color=f"C{i}", alpha=0.9 if j == 0 else 0.4,
                        label=LABELS[method] if j == 0 else None)
    curves.set(title=f"Validation accuracy ({figures['dataset']})", xlabel="epoch", ylabel="accuracy")
    curves.xaxis.get_major_locator().set_params(integer=True)
    curves.legend()
    means = [figures["methods"][m]["test_accuracy"] for m in methods]
    errors = [figures["methods"][m]["test_accuracy_std"] for m in methods]
    drawn = bars.bar([LABELS[m] for m in methods], means, yerr=errors, color=[f"C{i}" for i in range(len(methods))])
    bars.bar_label(drawn, labels=[f"{value:.4f}" for value in means], label_type="center", color="white")
    low = min(means) - 3 * max(max(errors), 0.005)
    bars.set(title="Test accuracy (mean ± std over seeds)", ylabel="accuracy", ylim=(max(0.0, low), min(1.0, max(means) + 0.02)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _radii_text(settings: dict) -> str:
    radii = settings["epsilon"] if isinstance(settings["epsilon"], list) else [settings["epsilon"]]
    return ", ".join(f"{radius:g}" for radius in radii)


def _alpha_text(settings: dict) -> str:
    return "2.5 epsilon / steps" if settings["alpha"] is None else f"{settings['alpha']:g}"


def write_adversarial_report(output: str, figures: dict, results: str | None = None) -> str:
    """OUTPUT/adversarial.md and OUTPUT/adversarial.png from the figures of ``compare_adversarial``."""
    settings = figures["settings"]
    lines = [
        f"# Adversarial training on {figures['dataset']}",
        "",
        f"- Start: {figures['start']}; head on {settings['pooling']} pooling.",
        f"- Every method: the same {settings['steps_per_run']} steps of batch {settings['batch_size']} per seed, from the "
        "same weights. FGM: one step of radius epsilon (L2 per example) on the token embeddings; PGD: "
        f"{settings['steps']} steps of size {_alpha_text(settings)} inside the epsilon ball. Each method's epsilon was "
        f"chosen among {_radii_text(settings)} on the validation split (test accuracy shown for every candidate). "
        "Their training loss is clean + adversarial; each costs about 2x (FGM) and steps + 1 times (PGD) a plain step.",
        "",
        "| method | epsilon | test accuracy (mean ± std) | min-max | validation accuracy (mean, last epoch) | "
        "seconds per run |",
        "|---|---|---|---|---|---|",
    ]
    for method, r in figures["methods"].items():
        seconds = np.mean([run["seconds"] for run in r["runs"]])
        radius = "" if r.get("epsilon") is None else f"{r['epsilon']:g}"
        lines.append(f"| {LABELS[method]} | {radius} | {r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} | "
                     f"{r['test_accuracy_min']:.4f}-{r['test_accuracy_max']:.4f} | {r['validation_accuracy_mean']:.4f} | "
                     f"{seconds:.0f} |")
    candidates = [(method, r) for method, r in figures["methods"].items() if len(r.get("validation_accuracy_by_epsilon", ())) > 1]
    if candidates:
        lines += ["", "| method | epsilon | validation accuracy | test accuracy |", "|---|---|---|---|"]
        for method, r in candidates:
            for radius, value in r["validation_accuracy_by_epsilon"].items():
                lines.append(f"| {LABELS[method]} | {radius} | {value:.4f} | {r['test_accuracy_by_epsilon'][radius]:.4f} |")
    if figures.get("difference"):
        lines.append("")
    for method, difference in figures.get("difference", {}).items():
        lines.append(f"- {LABELS[method]} minus plain fine-tuning (mean test accuracy): {100 * difference:+.2f} points.")
    lines += ["", f"![validation and test accuracy]({FIGURE})"]
    os.makedirs(output, exist_ok=True)
    _plot(figures, os.path.join(output, FIGURE))
    return write_report(output, REPORT, lines, results, copies=(FIGURE,))
