"""Translation workflows: a shared SentencePiece vocabulary, a Transformer trained with ``Seq2SeqLM``,
beam-search decoding scored by sacrebleu next to the copy-source baseline, and a RESULTS.md.

Their keyword arguments are the keys of the steps of ``applications/translation.yaml``. Files
under the output directory:

    OUTPUT/translator.keras               the trained Seq2SeqLM with its tokenizer (train_translation)
    OUTPUT/translations_SPLIT.jsonl       source, reference and output of every decoded verse
                                          (evaluate_translation)
    OUTPUT/metrics.json                   every figure: budget, losses, BLEU, copy-source BLEU
"""
from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lm
from keras_lm.applications.transformer import TRANSFORMER_SIZES, Transformer
from keras_lm.data.translation_metrics import copy_source_bleu, corpus_bleu
from keras_lm.recipes.workflows import StepHistory, _stage, _update_metrics, read_metrics
from keras_lm.tasks.seq2seq_lm import Seq2SeqLM
from keras_lm.training.optimizers import AdamW
from keras_lm.training.schedules import InverseSquareRootWarmup
from keras_lm.values import is_integer, is_number

MODEL_FILE = "translator.keras"
TRAINING_SECTION = "translation_training"
#: Sources are grouped by length (in characters) into batches of similar widths: less padding.
LENGTH_BOUNDARIES = (60, 90, 120, 150, 180, 220, 270, 330)
#: Verses shown in RESULTS.md.
EXAMPLES = 5


def translations_file(split: str) -> str:
    """The file name of the decoded verses of ``split`` in the output directory."""
    return f"translations_{split}.jsonl"


def evaluation_section(split: str) -> str:
    """The metrics.json section holding the scores of ``split``."""
    return f"translation_{split}"


# -- checks ------------------------------------------------------------------------------------------


def _check_positive_integers(**values) -> None:
    for name, value in values.items():
        if value is not None and (not is_integer(value) or value < 1):
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def _check_training_arguments(size, vocabulary_size, source_length, target_length, batch_size, steps, warmup,
                              learning_rate, label_smoothing, dropout, evaluations, max_train_examples) -> None:
    if size not in TRANSFORMER_SIZES:
        raise ValueError(f"`size` must be a Transformer size ({', '.join(TRANSFORMER_SIZES)}), got {size!r}.")
    _check_positive_integers(vocabulary_size=vocabulary_size, source_length=source_length, batch_size=batch_size,
                             steps=steps, warmup=warmup, evaluations=evaluations,
                             max_train_examples=max_train_examples)
    if not is_integer(target_length) or target_length < 2:
        raise ValueError(f"`target_length` must be an integer >= 2 (a token and the end token), got {target_length!r}.")
    if steps % evaluations:
        raise ValueError(f"`steps` ({steps}) must be a multiple of `evaluations` ({evaluations}): the validation "
                         "loss is measured every steps / evaluations steps.")
    if not is_number(learning_rate) or not 0 < learning_rate < float("inf"):
        raise ValueError(f"`learning_rate` must be a positive number, got {learning_rate!r}.")
    if not is_number(label_smoothing) or not 0 <= label_smoothing < 1:
        raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing!r}.")
    if not is_number(dropout) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")


def _language_pairs(corpus: str, source: str, target: str, split: str) -> tuple[list[str], list[str]]:
    """The ``(sources, targets)`` texts of a corpus split, in the corpus' order."""
    if source == target:
        raise ValueError(f"`source` and `target` are both {source!r}: choose two languages of '{corpus}'.")
    try:
        dataset = keras_lm.data.load(corpus, split=split)
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"Cannot read corpus '{corpus}' (split '{split}'): {error}") from None
    spec = dataset.element_spec
    languages = sorted(k for k, v in spec.items() if v.dtype == tf.string) if isinstance(spec, dict) else []
    for role, language in (("source", source), ("target", target)):
        if language not in languages:
            raise ValueError(
                f"`{role}` language {language!r} is not a text feature of corpus '{corpus}'; "
                f"its text features: {', '.join(languages) or 'none (not a parallel corpus)'}."
            )
    sources, targets = [], []
    for example in dataset.as_numpy_iterator():
        sources.append(example[source].decode("utf-8"))
        targets.append(example[target].decode("utf-8"))
    return sources, targets


def _length_bucketed(sources: list[str], targets: list[str], batch_size: int, seed: int | None) -> tf.data.Dataset:
    """Batches of ``(source, target)`` strings grouped by source length; shuffled with ``seed`` (None: in order)."""
    data = tf.data.Dataset.from_tensor_slices((sources, targets))
    if seed is not None:
        data = data.shuffle(len(sources), seed=seed, reshuffle_each_iteration=True)
    return data.bucket_by_sequence_length(
        lambda source, target: tf.strings.length(source),
        bucket_boundaries=list(LENGTH_BOUNDARIES),
        bucket_batch_sizes=[batch_size] * (len(LENGTH_BOUNDARIES) + 1),
    )


def _token_counts(tokenizer, texts: list[str]) -> np.ndarray:
    lengths = []
    for start in range(0, len(texts), 1024):
        ids = tokenizer(tf.constant(texts[start: start + 1024]))
        lengths.extend(ids.row_lengths().numpy().tolist())
    return np.asarray(lengths)


# -- training ----------------------------------------------------------------------------------------


def train_translation(
    output: str,
    corpus: str = "bible_en_es",
    source: str = "en",
    target: str = "es",
    size: str = "small",
    vocabulary_size: int = 8000,
    source_length: int = 96,
    target_length: int = 96,
    batch_size: int = 64,
    steps: int = 2000,
    warmup: int = 400,
    learning_rate: float = 1e-3,
    label_smoothing: float = 0.1,
    dropout: float = 0.1,
    evaluations: int = 5,
    seed: int = 0,
    max_train_examples: int | None = None,
    validation_bleu_examples: int = 300,
    mixed_precision: str | None = "auto",
) -> str:
    """Trains ``Transformer(size)`` to translate ``source`` into ``target`` on the corpus' train split.

    A SentencePiece vocabulary of ``vocabulary_size`` ids (no sentinels, case kept) is trained on
    the train split's texts of both languages and shared by source, target and output layer.
    ``Seq2SeqLM`` trains with label smoothing, Adam (beta_2 0.98, as in "Attention Is All You
    Need") and ``InverseSquareRootWarmup(learning_rate, warmup)`` for ``steps`` batches of
    ``batch_size`` pairs grouped by length. Sources keep their first ``source_length`` tokens,
    targets their first ``target_length - 1`` (the truncated pairs are counted). The validation
    loss is measured ``evaluations`` times; at the end ``validation_bleu_examples`` validation
    verses (spread evenly over the split; 0: none) are translated greedily and scored, the
    figure to compare settings by. ``max_train_examples`` keeps a seeded sample of the train split.
    ``mixed_precision="auto"`` trains in mixed_bfloat16 where bfloat16 is native.

    Writes OUTPUT/translator.keras (returned) and the ``translation_training`` section of
    OUTPUT/metrics.json (budget, wall time, per-step loss, validation losses).

    Example:
        >>> train_translation("runs/translation", size="tiny", steps=30)  # doctest: +SKIP
        'runs/translation/translator.keras'
    """
    _check_training_arguments(size, vocabulary_size, source_length, target_length, batch_size, steps, warmup,
                              learning_rate, label_smoothing, dropout, evaluations, max_train_examples)
    if not is_integer(validation_bleu_examples) or validation_bleu_examples < 0:
        raise ValueError(f"`validation_bleu_examples` must be an integer >= 0, got {validation_bleu_examples!r}.")
    mixed_precision = keras_lm.training.resolve_precision(mixed_precision)
    train_sources, train_targets = _language_pairs(corpus, source, target, "train")
    validation_sources, validation_targets = _language_pairs(corpus, source, target, "validation")
    if max_train_examples is not None and max_train_examples < len(train_sources):
        chosen = sorted(np.random.default_rng(seed).choice(len(train_sources), max_train_examples, replace=False))
        train_sources = [train_sources[i] for i in chosen]
        train_targets = [train_targets[i] for i in chosen]
    os.makedirs(output, exist_ok=True)
    keras.utils.set_random_seed(seed)

    _stage(f"training a {vocabulary_size}-id SentencePiece vocabulary on '{corpus}' train ({source} + {target})")
    tokenizer = keras_lm.tokenizers.SentencePiece.train(
        train_sources + train_targets, vocabulary_size=vocabulary_size, num_sentinels=0, seed=seed
    )
    source_tokens = _token_counts(tokenizer, train_sources)
    target_tokens = _token_counts(tokenizer, train_targets)
    truncated = {"sources": int(np.sum(source_tokens > source_length)),
                 "targets": int(np.sum(target_tokens > target_length - 1))}
    print(f"   {len(train_sources):,} train pairs; tokens per verse {source}: mean {source_tokens.mean():.1f}, "
          f"max {source_tokens.max()}; {target}: mean {target_tokens.mean():.1f}, max {target_tokens.max()}; "
          f"truncated: {truncated['sources']} sources, {truncated['targets']} targets", flush=True)

    backbone = Transformer(size, vocabulary_size=tokenizer.vocabulary_size(), dropout=dropout, dtype=mixed_precision)
    model = Seq2SeqLM(backbone, tokenizer, source_length=source_length, target_length=target_length,
                      label_smoothing=label_smoothing)
    schedule = InverseSquareRootWarmup(learning_rate, warmup)
    model.compile(optimizer=AdamW(learning_rate=schedule, weight_decay=0.0, beta_1=0.9, beta_2=0.98, epsilon=1e-9,
                                  clipnorm=1.0))
    train = model.dataset(_length_bucketed(train_sources, train_targets, batch_size, seed)).repeat()
    validation = model.dataset(_length_bucketed(validation_sources, validation_targets, batch_size, None)).cache()

    _stage(f"training Transformer('{size}') ({backbone.count_params():,} parameters, {mixed_precision or 'float32'}) "
           f"{source}->{target}: {steps} steps of {batch_size} pairs, validation loss {evaluations} times")
    history = StepHistory()
    start = time.time()
    fit = model.fit(train, steps_per_epoch=steps // evaluations, epochs=evaluations, validation_data=validation,
                    callbacks=[history], verbose=1)
    seconds = time.time() - start
    every = steps // evaluations
    validation_losses = [{"step": every * (i + 1), "loss": float(loss)}
                         for i, loss in enumerate(fit.history["val_loss"])]
    validation_accuracies = [float(accuracy) for accuracy in fit.history["val_accuracy"]]
    path = os.path.join(output, MODEL_FILE)
    model.save(path)
    validation_bleu = _validation_bleu(model, validation_sources, validation_targets, validation_bleu_examples,
                                       batch_size)
    pairs_seen = steps * batch_size
    _update_metrics(output, TRAINING_SECTION, {
        "corpus": corpus, "source": source, "target": target, "size": size,
        "parameters": int(backbone.count_params()), "precision": mixed_precision or "float32",
        "vocabulary_size": int(tokenizer.vocabulary_size()), "source_length": source_length,
        "target_length": target_length, "batch_size": batch_size, "steps": steps, "warmup": warmup,
        "learning_rate": learning_rate, "label_smoothing": label_smoothing, "dropout": dropout, "seed": seed,
        "train_pairs": len(train_sources), "epochs": round(pairs_seen / len(train_sources), 2),
        "truncated": truncated,
        "mean_tokens": {source: round(float(source_tokens.mean()), 1), target: round(float(target_tokens.mean()), 1)},
        # Each pair holds its source tokens and its target tokens + the end token (on average).
        "tokens_seen": int(round(pairs_seen * (source_tokens.mean() + target_tokens.mean() + 1))),
        "seconds": round(seconds, 1),
        "train_loss_curve": history.losses,
        "validation_loss": validation_losses,
        "validation_token_accuracy": validation_accuracies,
        "validation_greedy_bleu": validation_bleu,
    })
    _stage(f"trained in {seconds:.0f} s; validation loss {validation_losses[-1]['loss']:.3f}; saved {path}")
    return path


def _validation_bleu(model, sources: list[str], references: list[str], count: int, batch_size: int) -> dict | None:
    """Greedy BLEU and copy-source BLEU of ``count`` validation verses spread evenly over the split."""
    if not count:
        return None
    chosen = _spread(len(sources), count)
    sources, references = [sources[i] for i in chosen], [references[i] for i in chosen]
    _stage(f"translating {len(sources)} validation verses greedily")
    start = time.time()
    hypotheses = _decode(model, sources, batch_size, num_beams=1, length_penalty=0.0)
    scores = {"examples": len(sources), "bleu": corpus_bleu(hypotheses, references),
              "copy_source_bleu": copy_source_bleu(sources, references),
              "decode_seconds": round(time.time() - start, 1)}
    print(f"   validation greedy BLEU {scores['bleu']:.2f} (copy-source {scores['copy_source_bleu']:.2f})", flush=True)
    return scores


def _spread(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when ``count >= total``)."""
    if count >= total:
        return list(range(total))
    if count == 1:
        return [0]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


# -- evaluation --------------------------------------------------------------------------------------


def _decode(model, sources: list[str], batch_size: int, num_beams: int, length_penalty: float) -> list[str]:
    """Translations of ``sources``, decoded in batches of similar lengths, in the input order."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outputs = [None] * len(sources)
    sampler = "greedy" if num_beams == 1 else "beam"
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        texts = model.generate([sources[i] for i in chunk], sampler=sampler, num_beams=num_beams,
                               length_penalty=length_penalty)
        for i, text in zip(chunk, texts):
            outputs[i] = text
        print(f"   decoded {min(start + batch_size, len(order))}/{len(order)}", flush=True)
    return outputs


def evaluate_translation(
    output: str,
    split: str = "test",
    num_beams: int = 4,
    length_penalty: float = 0.6,
    max_examples: int | None = None,
    batch_size: int = 32,
) -> dict:
    """Translates the split's sources with OUTPUT/translator.keras and scores them with sacrebleu.

    Beam search with ``num_beams`` beams and the GNMT ``length_penalty`` (``num_beams=1`` decodes
    greedily). BLEU is sacrebleu's corpus BLEU of the detokenized outputs; the copy-source BLEU
    scores the untranslated sources against the same references. ``max_examples`` keeps the
    split's first verses. Writes OUTPUT/translations_SPLIT.jsonl and the ``translation_SPLIT``
    section of metrics.json; returns that section.

    Example:
        >>> evaluate_translation("runs/translation", split="validation", num_beams=1)  # doctest: +SKIP
    """
    if split not in ("train", "validation", "test"):
        raise ValueError(f"`split` must be train, validation or test, got {split!r}.")
    _check_positive_integers(num_beams=num_beams, max_examples=max_examples, batch_size=batch_size)
    if not is_number(length_penalty) or not np.isfinite(length_penalty):
        raise ValueError(f"`length_penalty` must be a finite number, got {length_penalty!r}.")
    training = read_metrics(output).get(TRAINING_SECTION)
    path = os.path.join(output, MODEL_FILE)
    if training is None or not os.path.isfile(path):
        raise FileNotFoundError(f"No trained translator in '{output}' ({MODEL_FILE} and its metrics.json section); "
                                "run the train_translation step first.")
    sources, references = _language_pairs(training["corpus"], training["source"], training["target"], split)
    if max_examples is not None:
        sources, references = sources[:max_examples], references[:max_examples]
    model = keras.saving.load_model(path)
    decoding = f"beam search ({num_beams} beams, length penalty {length_penalty})" if num_beams > 1 else "greedy"
    _stage(f"translating {len(sources)} {split} verses with {decoding}")
    start = time.time()
    hypotheses = _decode(model, sources, batch_size, num_beams, length_penalty)
    seconds = time.time() - start
    with open(os.path.join(output, translations_file(split)), "w", encoding="utf-8") as file:
        for source_text, reference, hypothesis in zip(sources, references, hypotheses):
            file.write(json.dumps({"source": source_text, "reference": reference, "output": hypothesis},
                                  ensure_ascii=False) + "\n")
    scores = {
        "split": split, "examples": len(sources), "num_beams": num_beams,
        "length_penalty": length_penalty if num_beams > 1 else None,
        "bleu": corpus_bleu(hypotheses, references),
        "copy_source_bleu": copy_source_bleu(sources, references),
        "decode_seconds": round(seconds, 1),
        "translations": translations_file(split),
    }
    _update_metrics(output, evaluation_section(split), scores)
    _stage(f"{split} BLEU {scores['bleu']:.2f} (copy-source {scores['copy_source_bleu']:.2f}) in {seconds:.0f} s")
    return scores


# -- report ------------------------------------------------------------------------------------------


def read_translations(output: str, split: str) -> list[dict]:
    """The ``{"source", "reference", "output"}`` rows ``evaluate_translation`` wrote for ``split``."""
    with open(os.path.join(output, translations_file(split)), encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def plot_translation_losses(training: dict, path: str) -> None:
    """The per-step training loss (smoothed) and the validation losses, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(training["train_loss_curve"], dtype=float)
    window = max(1, min(50, len(losses) // 20))
    smoothed = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, axis = plt.subplots(figsize=(7, 4))
    axis.plot(np.arange(1, len(losses) + 1), losses, color="0.8", linewidth=0.6, label="train (per step)")
    axis.plot(np.arange(window, len(losses) + 1), smoothed, label=f"train (mean of {window} steps)")
    axis.plot([v["step"] for v in training["validation_loss"]], [v["loss"] for v in training["validation_loss"]],
              "o-", label="validation")
    axis.set_xlabel("step")
    axis.set_ylabel(f"label-smoothed cross-entropy ({training['label_smoothing']})")
    axis.set_title(f"Transformer('{training['size']}') {training['source']}->{training['target']}")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _example_rows(rows: list[dict], count: int) -> list[dict]:
    """``count`` verses spread evenly over the split (its first, its last and between)."""
    return [rows[i] for i in _spread(len(rows), count)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def translation_report(output: str, results: str = "applications/translation/RESULTS.md", split: str = "test") -> str:
    """Writes ``results`` (RESULTS.md): BLEU and copy-source BLEU on ``split``, the budget, the machine,
    the loss curve (``translation_loss.png`` beside it) and a few translated verses. Returns its path."""
    from keras_lm.benchmarks.table import machine_description

    metrics = read_metrics(output)
    training, scores = metrics.get(TRAINING_SECTION), metrics.get(evaluation_section(split))
    if training is None or scores is None:
        raise FileNotFoundError(f"'{output}/metrics.json' lacks the training or the {split} scores; run "
                                "train_translation and evaluate_translation first.")
    directory = os.path.dirname(os.path.abspath(results))
    os.makedirs(directory, exist_ok=True)
    plot_translation_losses(training, os.path.join(directory, "translation_loss.png"))
    rows = read_translations(output, split)
    hours = training["seconds"] / 3600
    decoding = (f"beam search, {scores['num_beams']} beams, length penalty {scores['length_penalty']}"
                if scores["num_beams"] > 1 else "greedy")
    lines = [
        f"# Translation {training['source']} → {training['target']}: '{training['corpus']}'",
        "",
        "Produced by `keras-lm run applications/translation.yaml --output OUTPUT` (the settings, and how each "
        "was chosen, are in the comments of that file). Settings are compared on the validation split (its "
        f"loss and greedy BLEU, below); the {split} split is decoded once, with the recipe's settings.",
        "",
        f"| {split} split ({scores['examples']:,} verses) | sacrebleu BLEU (13a, detokenized) |",
        "|---|---|",
        f"| Transformer('{training['size']}'), {decoding} | **{scores['bleu']:.2f}** |",
        f"| copy the source (baseline) | {scores['copy_source_bleu']:.2f} |",
        f"| difference | {scores['bleu'] - scores['copy_source_bleu']:+.2f} |",
    ]
    validation = training.get("validation_greedy_bleu")
    if validation:
        lines += ["", f"Validation split, {validation['examples']:,} verses spread over it, greedy decoding (the "
                      f"figure settings are compared by): BLEU {validation['bleu']:.2f}, copy-source "
                      f"{validation['copy_source_bleu']:.2f}."]
    lines += [
        "",
        "## Budget",
        "",
        f"- Model: Transformer('{training['size']}'), {training['parameters']:,} parameters, "
        f"{training['precision']}; shared SentencePiece vocabulary of {training['vocabulary_size']:,} ids "
        f"trained on the train split ({training['train_pairs']:,} pairs, both languages).",
        f"- Training: {training['steps']:,} steps of {training['batch_size']} pairs "
        f"({training['epochs']} epochs, ≈ {training['tokens_seen']:,} source + target tokens), Adam with "
        f"inverse-square-root warmup (peak {training['learning_rate']} at step {training['warmup']}), label "
        f"smoothing {training['label_smoothing']}, dropout {training['dropout']}, seed {training['seed']}.",
        f"- Lengths: sources truncated to {training['source_length']} tokens ({training['truncated']['sources']} "
        f"train verses were longer), targets to {training['target_length'] - 1} "
        f"({training['truncated']['targets']} longer); mean tokens per verse "
        + ", ".join(f"{k} {v}" for k, v in training["mean_tokens"].items()) + ".",
        f"- Wall time measured: training {training['seconds']:,.0f} s ({hours:.2f} h, with the validation-loss "
        f"passes), decoding the "
        f"{scores['examples']:,} {split} verses {scores['decode_seconds']:,.0f} s.",
        f"- Machine: {machine_description()}.",
        "",
        "![training and validation loss](translation_loss.png)",
        "",
        f"Validation loss: " + ", ".join(f"{v['loss']:.3f} (step {v['step']})" for v in training["validation_loss"])
        + ".",
        "",
        f"## Examples ({split} split)",
        "",
        "| source | reference | output |",
        "|---|---|---|",
    ]
    lines += [f"| {_cell(r['source'])} | {_cell(r['reference'])} | {_cell(r['output'])} |"
              for r in _example_rows(rows, EXAMPLES)]
    with open(results, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    _stage(f"wrote {results}")
    return results
