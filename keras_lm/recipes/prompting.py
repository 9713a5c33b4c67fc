"""Recipe step: zero-shot and k-shot classification by prompting, on a labelled sentence dataset.

    # applications/prompting.yaml
    prompting: {masked_lm: pretrainer.keras, shots: [0, 4, 16], draws: 3}

A masked LM answers cloze questions (``keras_lm.tasks.prompting.ClozeClassifier``: zero-shot, and
k-shot by PET fine-tuning on the k examples); a causal LM reads k demonstrations
(``InContextClassifier``: k = 0 is zero-shot). Every k > 0 is drawn ``draws`` times from the train
split (class-balanced), and each figure is the mean and spread over the draws, raw and with
contextual calibration, next to the majority-class baseline. Writes OUTPUT/prompting.md and the
``prompting`` section of OUTPUT/metrics.json.
"""
from __future__ import annotations

import os
import time

import numpy as np

import keras_lm
from keras_lm.recipes.workflows import _stage, _update_metrics

REPORT_FILE = "prompting.md"
ICL_TEMPLATE = "Review: {text}\nSentiment: {label}"
CLOZE_TEMPLATE = "{text} It was [MASK]."


def _resolve(source: str, output: str) -> str:
    """A path as given, else under OUTPUT, else an embedded checkpoint's folder."""
    if os.path.exists(source):
        return source
    inside = os.path.join(output, source)
    if os.path.exists(inside):
        return inside
    from keras_lm.recipes.checkpoint import resolve_checkpoint

    resolved = resolve_checkpoint(source)
    if not os.path.exists(resolved):
        raise FileNotFoundError(
            f"No model at '{source}' (nor '{inside}'): give a .keras file, a Hugging Face checkpoint folder or an "
            "embedded checkpoint name."
        )
    return resolved


def load_masked_lm(source: str, output: str, vocabulary: str | None = None, sequence_length: int = 128):
    """``(masked LM, BertPreprocessor)`` from a ``.keras`` pretraining file (with OUTPUT/vocab.txt or
    ``vocabulary``) or a Hugging Face BERT masked-LM checkpoint folder."""
    path = _resolve(source, output)
    if os.path.isdir(path):
        masked_lm = keras_lm.pretraining.MaskedLM.from_hf(path, max_predictions=1)
        return masked_lm, keras_lm.tokenizers.BertPreprocessor.from_hf(path, sequence_length=sequence_length)
    from keras_lm.tasks.classifier import load_keras_file

    model = load_keras_file(path)
    if not hasattr(model, "masked_lm_head"):
        raise ValueError(f"'{path}' holds a {type(model).__name__}, not a masked LM (MaskedLM / BertPretrainer).")
    vocabulary = vocabulary or os.path.join(os.path.dirname(path), "vocab.txt")
    if not os.path.isfile(vocabulary):
        raise FileNotFoundError(f"No vocabulary at '{vocabulary}' for '{path}': pass `vocabulary`.")
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary)
    return model, keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=sequence_length)


def load_causal_lm(source: str, output: str):
    """A ``CausalLM`` (with its tokenizer) from a ``.keras`` file, a Hugging Face GPT-2 / Llama folder, a
    Llama ``.gguf`` file (or a folder holding one), or an embedded checkpoint name such as
    ``"smollm2-135m-instruct"``."""
    path = _resolve(source, output)
    if str(path).lower().endswith(".gguf") or (
        os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json"))
        and any(name.lower().endswith(".gguf") for name in os.listdir(path))
    ):
        return keras_lm.tasks.CausalLM.from_gguf(path)
    if os.path.isdir(path):
        return keras_lm.tasks.CausalLM.from_hf(path)
    from keras_lm.tasks.classifier import load_keras_file

    model = load_keras_file(path)
    if not hasattr(model, "backbone") or not hasattr(model.backbone, "call_with_cache"):
        raise ValueError(f"'{path}' holds a {type(model).__name__}, not a CausalLM.")
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(f"The CausalLM in '{path}' has no tokenizer: save it as CausalLM(backbone, tokenizer).")
    return model


def _examples(dataset: str, split: str, limit: int | None = None) -> tuple:
    rows = keras_lm.data.load(dataset, split=split)
    if limit is not None:
        rows = rows.take(limit)
    texts, labels = [], []
    for row in rows:
        texts.append(row["text"].numpy().decode("utf-8"))
        labels.append(int(row["label"].numpy()))
    return texts, np.array(labels, "int32")


def draw_shots(labels: np.ndarray, shots: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``shots`` examples, as class-balanced as ``shots`` allows, in random order."""
    per_class = [shots // num_classes + (1 if c < shots % num_classes else 0) for c in rng.permutation(num_classes)]
    chosen = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in enumerate(per_class) if n]
    return rng.permutation(np.concatenate(chosen)) if chosen else np.zeros((0,), "int64")


def _summary(values: list) -> dict:
    values = np.asarray(values, "float64")
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4),
            "min": round(float(values.min()), 4), "max": round(float(values.max()), 4),
            "runs": [round(float(v), 4) for v in values]}


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(scores).argmax(-1) == labels).mean())


def _cloze_rows(masked_lm, preprocessor, template, verbalizer, test, train, shots, draws, seed, fit_steps,
                learning_rate, batch_size, calibrate) -> list:
    import keras

    from keras_lm.tasks.prompting import ClozeClassifier

    cloze = ClozeClassifier(masked_lm, preprocessor, template=template, verbalizer=verbalizer)
    start_weights = cloze.get_weights()
    test_texts, test_labels = test
    test_features = cloze.preprocess_data(test_texts, batch_size=64).cache()  # tokenized once
    rows = []
    for k in shots:
        raw, calibrated, seconds = [], [], time.time()
        for draw in range(1 if k == 0 else draws):
            cloze.set_weights(start_weights)
            if k:
                chosen = draw_shots(train[1], k, len(cloze.label_names), np.random.default_rng(seed + 1000 * k + draw))
                keras.utils.set_random_seed(seed + draw)
                cloze.compile(optimizer=keras_lm.training.adamw(learning_rate, warmup=0, total=fit_steps))
                data = cloze.preprocess_data([train[0][i] for i in chosen], train[1][chosen],
                                             batch_size=min(batch_size, k), shuffle=False)
                data = data.cache().shuffle(k, seed=seed + draw, reshuffle_each_iteration=True).repeat()
                cloze.fit(data, steps_per_epoch=fit_steps, epochs=1, shuffle=False, verbose=0)
            raw.append(_accuracy(cloze.predict(test_features, verbose=0), test_labels))
            if calibrate:
                cloze.calibrate()
                calibrated.append(_accuracy(cloze.predict(test_features, verbose=0), test_labels))
                cloze.calibrate(())
            _stage(f"cloze, {k} shots, draw {draw}: accuracy {raw[-1]:.4f}"
                   + (f", calibrated {calibrated[-1]:.4f}" if calibrate else ""))
        rows.append({"method": "cloze" if k == 0 else "cloze + PET fine-tuning", "shots": k,
                     "accuracy": _summary(raw), "calibrated": _summary(calibrated) if calibrated else None,
                     "seconds": round(time.time() - seconds, 1)})
    cloze.set_weights(start_weights)
    return rows


def _in_context_rows(causal_lm, template, label_words, test, train, shots, draws, seed, calibrate,
                     batch_size) -> list:
    from keras_lm.tasks.prompting import InContextClassifier

    test_texts, test_labels = test
    rows = []
    for k in shots:
        raw, calibrated, used, seconds = [], [], [], time.time()
        for draw in range(1 if k == 0 else draws):
            chosen = draw_shots(train[1], k, len(label_words), np.random.default_rng(seed + 1000 * k + draw))
            examples = [(train[0][i], int(train[1][i])) for i in chosen]
            icl = InContextClassifier(causal_lm, template=template, label_words=label_words, examples=examples,
                                      batch_size=batch_size)
            used.append(icl.shots_used)
            raw.append(_accuracy(icl.scores(test_texts), test_labels))
            if calibrate:
                icl.calibrate()
                calibrated.append(_accuracy(icl.scores(test_texts), test_labels))
            _stage(f"in-context, {k} shots ({icl.shots_used} fit the context), draw {draw}: accuracy {raw[-1]:.4f}"
                   + (f", calibrated {calibrated[-1]:.4f}" if calibrate else ""))
        rows.append({"method": "in-context", "shots": k, "shots_used": used, "accuracy": _summary(raw),
                     "calibrated": _summary(calibrated) if calibrated else None,
                     "seconds": round(time.time() - seconds, 1)})
    return rows


def prompting(
    output: str,
    masked_lm: str | None = None,
    causal_lm: str | None = None,
    vocabulary: str | None = None,
    dataset: str = "movie_snippets",
    split: str = "test",
    max_examples: int | None = None,
    shots: tuple = (0, 4, 16),
    draws: int = 3,
    seed: int = 0,
    template: str = CLOZE_TEMPLATE,
    verbalizer: dict | None = None,
    sequence_length: int = 128,
    fit_steps: int = 30,
    learning_rate: float = 1e-5,
    batch_size: int = 4,
    in_context_template: str = ICL_TEMPLATE,
    label_words: dict | None = None,
    in_context_batch_size: int = 8,
    calibrate: bool = True,
) -> dict:
    """Zero-shot and k-shot accuracy by prompting a masked LM and/or a causal LM.

    `masked_lm`: a `.keras` file of a masked-LM pretraining run (the quickstart's `pretrainer.keras`;
    its vocabulary is `vocabulary` or the `vocab.txt` beside it) or a Hugging Face BERT checkpoint
    folder with its masked-LM head. `causal_lm`: a `.keras` CausalLM (with its tokenizer) or a
    Hugging Face GPT-2 / Llama folder. Relative paths are looked up as given, then under OUTPUT.
    `shots` lists the k to report; each k > 0 is drawn `draws` times (class-balanced) from the
    train split. Cloze k-shot fine-tunes the masked LM on the k examples for `fit_steps` steps of
    `batch_size` at `learning_rate` (AdamW, linear decay), PET-style; in-context k-shot puts them
    in the prompt. Accuracy is measured on `split` (the first `max_examples` when given); choose
    templates and words on "validation", report on "test". Returns the metrics section.
    """
    if masked_lm is None and causal_lm is None:
        raise ValueError("prompting needs `masked_lm`, `causal_lm` or both.")
    shots = tuple(int(k) for k in shots)
    if not shots or any(k < 0 for k in shots):
        raise ValueError(f"`shots` must list numbers of examples >= 0, got {list(shots)}.")
    for name, value in (("draws", draws), ("fit_steps", fit_steps), ("batch_size", batch_size),
                        ("in_context_batch_size", in_context_batch_size), ("sequence_length", sequence_length)):
        if value < 1:
            raise ValueError(f"`{name}` must be at least 1, got {value}.")
    verbalizer = verbalizer or {"negative": ["bad"], "positive": ["good"]}
    label_words = label_words or {"negative": "negative", "positive": "positive"}
    os.makedirs(output, exist_ok=True)
    _stage(f"reading {dataset} ({split} to evaluate, train for the shots)")
    test = _examples(dataset, split, max_examples)
    train = _examples(dataset, "train")
    majority = float((test[1] == np.bincount(train[1]).argmax()).mean())
    results = {"dataset": dataset, "split": split, "examples": int(len(test[1])), "majority_baseline": majority,
               "draws": draws, "seed": seed, "models": []}
    if masked_lm is not None:
        _stage(f"loading the masked LM {masked_lm}")
        model, preprocessor = load_masked_lm(masked_lm, output, vocabulary, sequence_length)
        rows = _cloze_rows(model, preprocessor, template, verbalizer, test, train, shots, draws, seed, fit_steps,
                           learning_rate, batch_size, calibrate)
        results["models"].append({"model": masked_lm, "kind": "masked LM", "template": template,
                                  "verbalizer": verbalizer, "fit_steps": fit_steps, "learning_rate": learning_rate,
                                  "batch_size": batch_size, "rows": rows})
    if causal_lm is not None:
        _stage(f"loading the causal LM {causal_lm}")
        model = load_causal_lm(causal_lm, output)
        rows = _in_context_rows(model, in_context_template, label_words, test, train, shots, draws, seed, calibrate,
                                in_context_batch_size)
        results["models"].append({"model": causal_lm, "kind": "causal LM", "template": in_context_template,
                                  "label_words": label_words, "rows": rows})
    _update_metrics(output, "prompting", results)
    with open(os.path.join(output, REPORT_FILE), "w", encoding="utf-8") as file:
        file.write(prompting_markdown(results))
    _stage(f"prompting figures in {os.path.join(output, REPORT_FILE)}")
    return results


def _figure(summary) -> str:
    if not summary:
        return "—"
    if len(summary["runs"]) == 1:
        return f"{summary['mean']:.4f}"
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} ({summary['min']:.4f}–{summary['max']:.4f})"


def prompting_markdown(results: dict) -> str:
    """The report table: one row per model, method and k."""
    lines = [
        f"# Prompting on {results['dataset']} ({results['split']} split, {results['examples']} examples)",
        "",
        f"Majority class: {results['majority_baseline']:.4f}. k > 0: mean ± std (min–max) over "
        f"{results['draws']} class-balanced draws of k training examples.",
        "",
        "| model | method | k | accuracy | calibrated | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for model in results["models"]:
        for row in model["rows"]:
            lines.append(f"| {model['model']} ({model['kind']}) | {row['method']} | {row['shots']} | "
                         f"{_figure(row['accuracy'])} | {_figure(row['calibrated'])} | {row['seconds']} |")
    lines.append("")
    for model in results["models"]:
        words = model.get("verbalizer") or model.get("label_words")
        lines.append(f"- {model['model']}: template `{model['template']!r}`, words {words}")
    return "\n".join(lines) + "\n"
