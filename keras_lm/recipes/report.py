"""The run report: OUTPUT/report.md with the figures and OUTPUT/loss_curves.png.

Fine-tuning figures are shown as mean ± standard deviation (and min-max) over the seeds, with
each seed's value; `report(tried=...)` adds a "what was tried" table read from a YAML file of
options and their validation figures (see `read_tried`).
"""
import os
import platform

import yaml

from keras_lm.recipes.workflows import _stage, _update_metrics, read_metrics

STARTS = (("pretrained", "pretrained"), ("random_init", "random init"))
#: Columns of a "what was tried" entry, in table order (see `read_tried`).
TRIED_FIELDS = ("lever", "option", "pretrained_validation", "random_init_validation", "note")


def _smooth(values, window=10):
    if len(values) < window:
        return values
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss_curves(metrics: dict, path: str) -> None:
    """Pretraining losses and held-out accuracies, fine-tuning losses and validation accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pretraining = metrics.get("pretraining", {})
    finetuning = metrics.get("finetuning", {})
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    _plot_pretraining_losses(axes[0][0], pretraining)
    _plot_held_out(axes[0][1], pretraining)
    _plot_finetuning_losses(axes[1][0], finetuning)
    _plot_validation_accuracy(axes[1][1], finetuning)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_pretraining_losses(axis, pretraining: dict) -> None:
    curves = pretraining.get("train_curves", {})
    named = [(name, curves[name]) for name in ("mlm_loss", "nsp_loss", "rtd_loss") if curves.get(name)]
    if not named and pretraining.get("train_loss_curve"):
        named = [("loss", pretraining["train_loss_curve"])]
    window = max(10, len(named[0][1]) // 50) if named else 10
    for i, (name, curve) in enumerate(named):
        steps = range(1, len(curve) + 1)
        axis.plot(steps, curve, alpha=0.2, color=f"C{i}")
        axis.plot(steps, _smooth(curve, window), color=f"C{i}", label=f"train {name.split('_')[0].upper()} loss")
    axis.set(title=f"Pretraining ({pretraining.get('objective', 'mlm+nsp')})", xlabel="step", ylabel="loss")
    if named:
        axis.legend()


def _plot_held_out(axis, pretraining: dict) -> None:
    points = pretraining.get("held_out_curve", [])
    curves = pretraining.get("train_curves", {})
    names = ("mlm_accuracy", "nsp_accuracy", "rtd_accuracy", "rtd_replaced_accuracy")
    for i, name in enumerate(names):
        label = name.replace("_", " ").upper().replace("ACCURACY", "accuracy").replace("REPLACED", "replaced")
        if points and name in points[0]:
            axis.plot([p["step"] for p in points], [p[name] for p in points], "o-", color=f"C{i}",
                      label=f"held-out {label}")
        if curves.get(name):
            window = max(10, len(curves[name]) // 50)
            steps = range(1, len(curves[name]) + 1)
            axis.plot(steps, _smooth(curves[name], window), color=f"C{i}", alpha=0.4, label=f"train {label}")
    if "nsp_accuracy" in (points[0] if points else {}):
        axis.axhline(0.5, color="grey", linestyle=":", label="chance (NSP)")
    axis.set(title="Pretraining accuracy", xlabel="step", ylabel="accuracy")
    if points or curves:
        axis.legend()


def _plot_finetuning_losses(axis, finetuning: dict) -> None:
    for i, (name, label) in enumerate(STARTS):
        for j, run in enumerate(_runs(finetuning, name)):
            curve = run["train_loss_curve"]
            axis.plot(_smooth(curve, 50), color=f"C{i + 2}", alpha=0.8 if j == 0 else 0.35,
                      label=f"{label} start" if j == 0 else None)
    axis.set(title=f"Fine-tuning on {finetuning.get('dataset', '?')}: training loss (each seed)",
             xlabel="step", ylabel="loss (smoothed)")
    if finetuning:
        axis.legend()


def _plot_validation_accuracy(axis, finetuning: dict) -> None:
    for i, (name, label) in enumerate(STARTS):
        for j, run in enumerate(_runs(finetuning, name)):
            accuracy = run["validation_accuracy"]
            axis.plot(range(1, len(accuracy) + 1), accuracy, "o-", color=f"C{i + 2}",
                      alpha=0.8 if j == 0 else 0.4, label=f"{label} start" if j == 0 else None)
    axis.set(title="Fine-tuning: validation accuracy (each seed)", xlabel="epoch", ylabel="accuracy")
    axis.xaxis.get_major_locator().set_params(integer=True)
    if finetuning:
        axis.legend()


def _runs(finetuning: dict, name: str) -> list:
    """The runs of one start; a single-run section written by an older version counts as one run."""
    section = finetuning.get(name)
    if not section:
        return []
    if "runs" in section:
        return section["runs"]
    return [{"seed": 0, "validation_accuracy": section.get("validation_accuracy", []),
             "train_loss_curve": section.get("train_loss_curve", []),
             "test_accuracy": section["test_accuracy"]}]


def read_tried(tried: str | list) -> list:
    """The options tried: a list of mappings with the keys of `TRIED_FIELDS` (and `chosen`), or
    the path of a YAML file holding one.

    `pretrained_validation` and `random_init_validation` are validation accuracies (numbers, or
    null when that start was not run); `chosen: true` marks what the recipe uses.

    Example:
        >>> read_tried([{"lever": "epochs", "option": "3", "random_init_validation": 0.77}])[0]["option"]
        '3'
    """
    source = "report.tried"
    entries = tried
    if isinstance(tried, str):
        if not os.path.isfile(tried):
            raise FileNotFoundError(f"No 'what was tried' file at '{tried}' (report.tried).")
        with open(tried) as f:
            entries, source = yaml.safe_load(f), f"'{tried}'"
    problem = tried_problem(entries)
    if problem:
        raise ValueError(f"{source} {problem}")
    return [dict(entry) for entry in entries]


def tried_problem(entries) -> str | None:
    """What is wrong with a list of "what was tried" entries, or None."""
    if not isinstance(entries, (list, tuple)) or not all(isinstance(e, dict) for e in entries):
        return f"must be a list of mappings with keys {', '.join(TRIED_FIELDS)}."
    for number, entry in enumerate(entries, start=1):
        unknown = set(entry) - set(TRIED_FIELDS) - {"chosen"}
        if unknown or not {"lever", "option"} <= set(entry):
            return (
                f"entry {number} needs 'lever' and 'option' and may have "
                f"{', '.join(TRIED_FIELDS[2:])}, chosen; got {sorted(entry)}."
            )
    return None


def _accuracy(value) -> str:
    return "" if value is None else (f"{value:.4f}" if isinstance(value, (int, float)) else str(value))


def _tried_lines(entries: list) -> list:
    lines = [
        "## What was tried (validation split; the test split was not used to choose)",
        "",
        "Validation accuracy after fine-tuning, as recorded in the recipe (report.tried); "
        "**bold** = what the recipe uses.",
        "",
        "| lever | option | pretrained start | random-init start | note |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        cells = [str(entry["lever"]), str(entry["option"]),
                 _accuracy(entry.get("pretrained_validation")),
                 _accuracy(entry.get("random_init_validation")), str(entry.get("note", ""))]
        if entry.get("chosen"):
            cells[1] = f"**{cells[1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _pretraining_lines(metrics: dict) -> list:
    lines = []
    if "vocabulary" in metrics:
        v = metrics["vocabulary"]
        corpus = " + ".join(v.get("corpus", [])) or "?"
        lines.append(f"- WordPiece vocabulary: {v['size']} tokens from {corpus}, trained in {v['seconds']} s")
    if "pretraining" not in metrics:
        return lines + [""]
    p = metrics["pretraining"]
    before, after = p["validation_before"], p["validation_after"]
    corpus = " + ".join(p.get("corpus", [])) or "?"
    lines += [
        f"- Pretraining: {p.get('backbone_class', 'Bert')} of Bert('{p['size']}')'s shape, {p['parameters']:,} parameters, "
        f"{p.get('precision', 'float32')}, objective {p.get('objective', 'mlm+nsp')} on {corpus} "
        f"(train splits), {p['steps']} steps of {p['batch_size']}x{p['sequence_length']} in "
        f"{p['seconds']} s ({p['tokens_per_second']:,.0f} tokens/s)",
    ]
    if p.get("token_embeddings") == "cooccurrence":
        lines.append(
            "- Token embeddings started from PPMI + SVD vectors of co-occurrences in "
            f"{' + '.join(p.get('embedding_corpus', [])) or '?'} (train splits)"
            + ("; kept fixed during masked LM" if p.get("train_token_embeddings") is False else "")
        )
    if p.get("objective") == "rtd":
        columns = (("generator MLM accuracy", "mlm_accuracy"), ("replaced-token detection accuracy", "rtd_accuracy"),
                   ("accuracy on replaced tokens", "rtd_replaced_accuracy"))
    else:
        columns = (("MLM accuracy", "mlm_accuracy"), ("NSP accuracy", "nsp_accuracy"))
    lines += [
        "",
        f"| held-out text (validation splits) | loss | {' | '.join(title for title, _ in columns)} |",
        "|---|---|" + "---|" * len(columns),
    ]
    for name, values in (("untrained", before), ("pretrained", after)):
        cells = [f"{values[key]:.3f}" if key in values else "no such objective" for _, key in columns]
        lines.append(f"| {name} | {values.get('loss', float('nan')):.3f} | {' | '.join(cells)} |")
    return lines + [""]


def _finetuning_lines(f: dict) -> list:
    lines = [
        f"## Fine-tuning on {f['dataset']}: test accuracy over {len(_runs(f, 'pretrained'))} seeds",
        "",
        "| start | test accuracy (mean ± std) | min-max | validation accuracy (mean) | learning rate | epochs |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in STARTS:
        if name not in f:
            continue
        r, runs = f[name], _runs(f, name)
        tests = [run["test_accuracy"] for run in runs]
        std = r.get("test_accuracy_std", 0.0)
        validation = r.get("validation_accuracy_mean")
        lines.append(
            f"| {label} | {r['test_accuracy']:.4f} ± {std:.4f} | {min(tests):.4f}-{max(tests):.4f} | "
            f"{_accuracy(validation)} | {r.get('learning_rate', '')} | {r.get('epochs', f.get('epochs', ''))} |"
        )
    if "difference" in f:
        lines += ["", f"Pretrained minus random init (mean test accuracy): {100 * f['difference']:+.2f} points."]
    lines += ["", "| seed | pretrained test | pretrained validation | random-init test | random-init validation |",
              "|---|---|---|---|---|"]
    by_seed = {}
    for name, _ in STARTS:
        for run in _runs(f, name):
            by_seed.setdefault(run["seed"], {})[name] = run
    for seed, runs in sorted(by_seed.items()):
        cells = [str(seed)]
        for name, _ in STARTS:
            run = runs.get(name)
            cells += [_accuracy(run and run["test_accuracy"]),
                      _accuracy(run and (run["validation_accuracy"] or [None])[-1])]
        lines.append("| " + " | ".join(cells) + " |")
    served = f.get("served")
    if served:
        lines += ["", f"Served model: the {served['start']} start, seed {served['seed']} "
                      f"({served['rule']}: {served['validation_accuracy']:.4f})."]
    return lines + [""]


def report(output: str, tried: str | list | None = None) -> str:
    """Writes OUTPUT/report.md and OUTPUT/loss_curves.png from OUTPUT/metrics.json.

    `tried`: the options tried and their validation figures, as a list or a YAML file (see
    `read_tried`); its table goes into the report and its entries into metrics.json
    (`what_was_tried`).
    """
    metrics = read_metrics(output)
    if not metrics:
        raise ValueError(f"No metrics in '{output}': run the pretrain/finetune steps first.")
    entries = read_tried(tried) if tried else None
    if entries is not None:
        _update_metrics(output, "what_was_tried", entries)
    plot_loss_curves(metrics, os.path.join(output, "loss_curves.png"))
    lines = ["# keras_lm quickstart report", ""]
    lines.append(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}")
    lines.append("")
    if "finetuning" in metrics:
        lines += _finetuning_lines(metrics["finetuning"])
    lines += ["## Pretraining", ""] + _pretraining_lines(metrics)
    if entries is not None:
        lines += _tried_lines(entries)
    if "serving" in metrics:
        lines += ["Answers from the serving SavedModel, loaded in a fresh process:", ""]
        for row in metrics["serving"]["answers"]:
            lines.append(f"- {row['label']} ({max(row['probabilities']):.3f}): {row['text']}")
        lines.append("")
    lines.append("![loss curves](loss_curves.png)")
    path = os.path.join(output, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    _stage(f"report written to {path}")
    print("\n".join(lines[:-1]))
    return path
