"""Recipe steps that start from a pretrained checkpoint instead of pretraining one.

    # applications/finetune_checkpoint.yaml
    import_checkpoint: {checkpoint: all-minilm-l6-v2, sequence_length: 128}
    finetune: {epochs: 2, learning_rate: 5.0e-5, compare_random_init: false}
    serve: {}

`import_checkpoint` writes the same files `pretrain` does (OUTPUT/encoder, OUTPUT/vocab.txt), so every
later step (finetune, serve, export) works unchanged.
"""
from __future__ import annotations

import os
import shutil
import time

import keras_lm
from keras_lm.export.files import check_export_target
from keras_lm.recipes.workflows import ENCODER_EXPORT, _check_values, _stage, _update_metrics


CHECKPOINT_SHAPE_KEYS = ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
                         "max_sequence_length", "num_segments", "activation", "layer_norm_epsilon")


def resolve_checkpoint(checkpoint: str) -> str:
    """A checkpoint folder for ``checkpoint``: an embedded checkpoint name (fetched once through the
    package index, see ``keras_lm.data.checkpoints``) or a folder path."""
    from keras_lm.data.checkpoints import checkpoint_dir, is_embedded_checkpoint

    if is_embedded_checkpoint(checkpoint) and not os.path.exists(checkpoint):
        return os.fspath(checkpoint_dir(checkpoint))
    return checkpoint


def import_checkpoint(
    output: str,
    checkpoint: str = "all-minilm-l6-v2",
    sequence_length: int = 128,
    mixed_precision: str | None = "auto",
) -> str:
    """Imports a BERT-family checkpoint with its tokenizer and exports it as OUTPUT/encoder.

    `checkpoint` is a Hugging Face checkpoint folder (config.json + weights + vocab.txt /
    tokenizer.json), a Google BERT folder (bert_config.json + bert_model.ckpt.*), a keras-hub preset
    folder, or the name of an embedded checkpoint (`all-minilm-l6-v2`, fetched once through the
    package index). `mixed_precision` is the dtype policy of the imported model ("auto": bfloat16
    where it is native). Writes OUTPUT/vocab.txt too, so the other steps find the vocabulary.
    Returns the encoder export folder.
    """
    _check_values(import_checkpoint, locals())
    directory = resolve_checkpoint(checkpoint)
    encoder_export = os.path.join(output, ENCODER_EXPORT)
    check_export_target(encoder_export, overwrite=True, kind="encoder", protected=(directory,))
    precision = keras_lm.training.resolve_precision(mixed_precision, None)
    _stage(f"importing the checkpoint {checkpoint} ({directory})")
    start = time.time()
    backbone = keras_lm.applications.Bert.from_checkpoint(directory, dtype=precision)
    preprocessor = keras_lm.tokenizers.BertPreprocessor.from_hf(directory, sequence_length=sequence_length)
    seconds = time.time() - start
    os.makedirs(output, exist_ok=True)
    preprocessor.tokenizer.save_vocabulary(os.path.join(output, "vocab.txt"))
    _stage(f"exporting it as a TF-Hub-style encoder to {encoder_export}")
    exported = keras_lm.export.encoder(backbone, preprocessor, encoder_export, overwrite=True,
                                       protected=(directory,))
    _update_metrics(
        output,
        "checkpoint",
        {
            "checkpoint": checkpoint,
            "shape": {key: backbone.get_config()[key] for key in CHECKPOINT_SHAPE_KEYS},
            "parameters": int(backbone.count_params()),
            "num_layers": backbone.num_layers,
            "hidden_dim": backbone.hidden_dim,
            "vocabulary_size": int(preprocessor.tokenizer.vocabulary_size()),
            "precision": backbone.dtype_policy.name,
            "import_seconds": round(seconds, 1),
        },
    )
    return exported


def _processor() -> str:
    """The CPU model name (from /proc/cpuinfo where there is one), else the architecture."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _majority_baseline(dataset: str) -> float:
    """Test accuracy of always answering the most frequent training label."""
    import numpy as np

    train = np.array([int(x) for x in keras_lm.data.load(dataset, split="train").map(lambda e: e["label"])])
    test = np.array([int(x) for x in keras_lm.data.load(dataset, split="test").map(lambda e: e["label"])])
    return float((test == np.bincount(train).argmax()).mean())


def _plot_fine_tuning(runs: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 4))
    for i, run in enumerate(runs):
        axis.plot(run["train_loss_curve"], alpha=0.6, color=f"C{i}", label=f"seed {run['seed']}")
    axis.set(title="Fine-tuning from the checkpoint", xlabel="step", ylabel="train loss")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def checkpoint_report(output: str, results: str | None = None) -> str:
    """Writes OUTPUT/report.md and OUTPUT/fine_tuning.png for a run that started from a checkpoint.

    With `results` (a folder, e.g. applications/finetune_checkpoint), the report and the PNG are
    copied there too, next to the recipe that produced them.
    """
    import platform

    from keras_lm.recipes.workflows import read_metrics

    metrics = read_metrics(output)
    if "checkpoint" not in metrics or "finetuning" not in metrics:
        raise ValueError(f"No checkpoint fine-tuning figures in '{output}': run import_checkpoint and finetune first.")
    checkpoint, tuning = metrics["checkpoint"], metrics["finetuning"]
    pretrained = tuning["pretrained"]
    lines = [
        "# Fine-tuning from a pretrained checkpoint",
        "",
        f"Machine: {_processor()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}.",
        "",
        f"- Checkpoint: {checkpoint['checkpoint']}: {checkpoint['num_layers']} layers, hidden {checkpoint['hidden_dim']}, "
        f"{checkpoint['parameters']:,} weights, vocabulary {checkpoint['vocabulary_size']}, {checkpoint['precision']}; "
        f"imported in {checkpoint['import_seconds']} s.",
        f"- Fine-tuning on {tuning['dataset']}: {pretrained['epochs']} epoch(s), batch {tuning.get('batch_size', '?')}, "
        f"learning rate {pretrained['learning_rate']:g}, pooling {tuning.get('pooling', 'cls')}, seeds "
        f"{pretrained['seeds']}; no setting was chosen by its test figure.",
        "",
        "| seed | validation accuracy | test accuracy | seconds |",
        "|---|---|---|---|",
    ]
    for run in pretrained["runs"]:
        lines.append(f"| {run['seed']} | {run['validation_accuracy'][-1]:.4f} | {run['test_accuracy']:.4f} | {run['seconds']} |")
    lines += [
        "",
        f"Test accuracy {pretrained['test_accuracy']:.4f} ± {pretrained['test_accuracy_std']:.4f} (mean ± std over "
        f"{len(pretrained['runs'])} seeds; min {pretrained['test_accuracy_min']:.4f}, max "
        f"{pretrained['test_accuracy_max']:.4f}); always answering the majority class scores "
        f"{_majority_baseline(tuning['dataset']):.4f}.",
        "",
    ]
    if "serving" in metrics:
        lines += ["Answers of the serving SavedModel, loaded in a fresh process:", ""]
        for row in metrics["serving"]["answers"]:
            lines.append(f"- {row['label']} ({max(row['probabilities']):.3f}): {row['text']}")
        lines.append("")
    _plot_fine_tuning(pretrained["runs"], os.path.join(output, "fine_tuning.png"))
    lines.append("![fine-tuning loss](fine_tuning.png)")
    path = os.path.join(output, "report.md")
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")
    _stage(f"report written to {path}")
    print("\n".join(lines[:-1]))
    if results:
        copy_report(output, results)
        _stage(f"report copied to {results}")
    return path


def copy_report(output: str, destination: str) -> str:
    """Copies OUTPUT/report.md and its PNGs next to a recipe (e.g. applications/finetune_checkpoint/)."""
    os.makedirs(destination, exist_ok=True)
    for name in os.listdir(output):
        if name == "report.md" or name.endswith(".png"):
            shutil.copy2(os.path.join(output, name), os.path.join(destination, name))
    return destination
