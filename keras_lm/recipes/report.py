"""The run report: OUTPUT/report.md with the figures and OUTPUT/loss_curves.png."""
import os
import platform

from keras_lm.recipes.workflows import _stage, read_metrics


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finetuning = metrics.get("finetuning", {})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    curve = metrics.get("pretraining", {}).get("train_loss_curve", [])
    axes[0].plot(curve, alpha=0.3, color="C0")
    axes[0].plot(_smooth(curve), color="C0", label="train loss (MLM + NSP)")
    axes[0].set(title="Pretraining", xlabel="step", ylabel="loss")
    axes[0].legend()
    for i, name in enumerate(("pretrained", "random_init")):
        if name in finetuning:
            curve = finetuning[name]["train_loss_curve"]
            axes[1].plot(curve, alpha=0.2, color=f"C{i + 1}")
            axes[1].plot(_smooth(curve, 20), color=f"C{i + 1}", label=f"{name} start")
    axes[1].set(title="Fine-tuning (movie snippets)", xlabel="step", ylabel="loss")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(output: str) -> str:
    """Writes OUTPUT/report.md and OUTPUT/loss_curves.png from OUTPUT/metrics.json."""
    metrics = read_metrics(output)
    if not metrics:
        raise ValueError(f"No metrics in '{output}': run the pretrain/finetune steps first.")
    plot_loss_curves(metrics, os.path.join(output, "loss_curves.png"))
    lines = ["# keras_lm quickstart report", ""]
    lines.append(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}")
    lines.append("")
    if "vocabulary" in metrics:
        v = metrics["vocabulary"]
        lines.append(f"- WordPiece vocabulary: {v['size']} tokens, trained in {v['seconds']} s")
    if "pretraining" in metrics:
        p = metrics["pretraining"]
        before, after = p["validation_before"], p["validation_after"]
        lines += [
            f"- Pretraining: Bert('{p['size']}'), {p['parameters']:,} parameters, "
            f"{p.get('precision', 'float32')}, {p['steps']} steps "
            f"of {p['batch_size']}x{p['sequence_length']} in {p['seconds']} s "
            f"({p['tokens_per_second']:,.0f} tokens/s)",
            "",
            "| held-out works | loss | MLM accuracy | NSP accuracy |",
            "|---|---|---|---|",
        ]
        for name, values in (("untrained", before), ("pretrained", after)):
            lines.append(
                f"| {name} | {values.get('loss', float('nan')):.3f} | "
                f"{values.get('mlm_accuracy', float('nan')):.3f} | "
                f"{values.get('nsp_accuracy', float('nan')):.3f} |"
            )
        lines.append("")
    if "finetuning" in metrics:
        f = metrics["finetuning"]
        lines += [
            f"Fine-tuning on {f['dataset']} ({f['epochs']} epochs), test split:",
            "",
            "| start | test accuracy | test loss | seconds |",
            "|---|---|---|---|",
        ]
        for name in ("pretrained", "random_init"):
            if name in f:
                r = f[name]
                lines.append(
                    f"| {name} | {r['test_accuracy']:.4f} | {r['test_loss']:.4f} | {r['seconds']} |"
                )
        lines.append("")
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
