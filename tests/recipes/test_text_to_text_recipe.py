"""The T5 text-to-text recipe in miniature, end to end on movie_snippets: metrics, predictions and report agree,
the training loss falls on the real data, and bad settings fail with one clear error before any training."""
import json

import numpy as np
import pytest
import yaml

import keras_lm
from keras_lm.recipes import runner
from keras_lm.recipes.text_to_text import finetune_text_to_text, pretrain_span_corruption, text_to_text_report

SHAPE = {"num_layers": 1, "hidden_dim": 32, "num_heads": 2, "head_dim": 16, "intermediate_dim": 64}
WORDS = {0: "negative", 1: "positive"}


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    """Runs a miniature recipe once: 96 training sentences, two seeds, 48 validation and test sentences."""
    directory = tmp_path_factory.mktemp("text_to_text")
    recipe = {
        "finetune_text_to_text": {"dataset": "movie_snippets", "size": "tiny", "variant": "v1.1", "start": "random",
                                  "label_words": WORDS, "epochs": 3, "batch_size": 16, "learning_rate": 0.003,
                                  "seeds": [0, 1], "shape": SHAPE, "dropout": 0.0, "vocabulary_size": 500,
                                  "source_length": 32, "max_train_examples": 96, "max_eval_examples": 48},
        "text_to_text_report": {"results": str(directory / "results"), "notes": ["a note on the settings"]},
    }
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    output = directory / "run"
    runner.run_recipe(str(path), str(output))
    return output, directory / "results"


def test_metrics_predictions_and_report_agree(miniature):
    output, results = miniature
    figures = json.loads((output / "metrics.json").read_text())["text_to_text"]
    written = json.loads((output / "predictions.json").read_text())
    assert figures["train_examples"] == 96 and figures["evaluation_examples"] == {"validation": 48, "test": 48}
    assert written["label_words"] == {"0": "negative", "1": "positive"} and written["prefix"] == "sentiment: "
    for split in ("validation", "test"):
        labels = written["labels"][split]
        expected = [int(e["label"]) for e in keras_lm.data.load("movie_snippets", split=split).take(48)]
        assert labels == expected
        accuracies = []
        for run in figures["runs"]:
            answers = written["predictions"][str(run["seed"])][split]
            assert len(answers) == 48 and all(isinstance(a, str) for a in answers)
            accuracy = np.mean([answer == WORDS[label] for answer, label in zip(answers, labels)])
            assert run[f"{split}_accuracy"] == pytest.approx(accuracy)
            assert run[f"{split}_not_a_label_word"] == sum(a not in WORDS.values() for a in answers)
            accuracies.append(accuracy)
        assert figures[split]["mean"] == pytest.approx(np.mean(accuracies))
        assert figures[split]["std"] == pytest.approx(np.std(accuracies))
        train = [int(e["label"]) for e in keras_lm.data.load("movie_snippets", split="train").take(96)]
        majority = np.bincount(train).argmax()
        assert figures["majority_baseline"][split] == pytest.approx(np.mean(np.array(labels) == majority))
    assert [run["seed"] for run in figures["runs"]] == [0, 1]
    report = (output / "report.md").read_text()
    assert f"{figures['test']['mean']:.4f} ± {figures['test']['std']:.4f}" in report
    assert f"{figures['majority_baseline']['test']:.4f}" in report and "- a note on the settings" in report
    assert (output / "text_to_text.png").stat().st_size > 1000
    for name in ("report.md", "text_to_text.png", "metrics.json"):
        assert (results / name).read_bytes() == (output / name).read_bytes()


def test_training_loss_falls_on_the_real_data(miniature):
    output, _ = miniature
    figures = json.loads((output / "metrics.json").read_text())["text_to_text"]
    for run in figures["runs"]:
        losses = run["train_loss_curve"]
        assert len(losses) == 3 * 6  # 3 epochs of 96 / 16 batches
        assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses
    # The two seeds start from different random weights: different curves.
    assert figures["runs"][0]["train_loss_curve"][0] != figures["runs"][1]["train_loss_curve"][0]


def test_clear_errors_before_training(miniature, capsys):
    output, _ = miniature  # holds the trained spiece.model: no vocabulary training here
    settings = dict(shape=SHAPE, max_train_examples=16, max_eval_examples=16, seeds=[0], source_length=32)
    for words, message in (({0: "", 1: "positive"}, r"label word '' \(label 0\) tokenizes to nothing"),
                           ({0: "   ", 1: "positive"}, r"label word '   ' \(label 0\) tokenizes to nothing"),
                           ({0: "negative", 1: "negative"}, r"the same word"),
                           ({1: "positive", 2: "other"}, r"no word for the labels \[0\]")):
        with pytest.raises(ValueError, match=message):
            finetune_text_to_text(str(output), label_words=words, **settings)
    with pytest.raises(ValueError, match=r"Unknown dataset 'movie_snipets'.*movie_snippets"):
        finetune_text_to_text(str(output), dataset="movie_snipets", **settings)
    with pytest.raises(ValueError, match=r"size must be one of tiny, mini, small, base, got 'huge'"):
        finetune_text_to_text(str(output), size="huge", **settings)
    with pytest.raises(FileNotFoundError, match=r"start='nowhere' is neither 'random' nor"):
        finetune_text_to_text(str(output), start="nowhere", **settings)
    assert "fine-tuning" not in capsys.readouterr().out  # nothing was trained
    with pytest.raises(runner.RecipeError, match=r"finetune_text_to_text.epochs must be at least 1"):
        runner.validate_recipe({"finetune_text_to_text": {"epochs": 0}})
    with pytest.raises(runner.RecipeError, match=r"unknown key 'finetune_text_to_text.labels'"):
        runner.validate_recipe({"finetune_text_to_text": {"labels": {0: "a"}}})


def _answers_are_scored(output, seeds):
    figures = json.loads((output / "metrics.json").read_text())["text_to_text"]
    written = json.loads((output / "predictions.json").read_text())
    for run in figures["runs"]:
        for split in ("validation", "test"):
            answers, labels = written["predictions"][str(run["seed"])][split], written["labels"][split]
            assert run[f"{split}_accuracy"] == pytest.approx(np.mean([a == WORDS[l] for a, l in zip(answers, labels)]))
    assert [run["seed"] for run in figures["runs"]] == seeds
    return figures


@pytest.mark.slow
def test_span_corruption_pretraining_then_fine_tuning(miniature, tmp_path):
    output, _ = miniature
    run = tmp_path / "pretrained"
    run.mkdir()
    (run / "spiece.model").write_bytes((output / "spiece.model").read_bytes())  # the vocabulary of the miniature
    path = pretrain_span_corruption(str(run), corpus=["movie_snippets"], shape=SHAPE, inputs_length=32, batch_size=8,
                                    steps=4)
    assert path == str(run / "span_corruption.keras")
    pretraining = json.loads((run / "metrics.json").read_text())["span_corruption"]
    assert len(pretraining["train_loss_curve"]) == 4 and all(np.isfinite(pretraining["train_loss_curve"]))
    figures = finetune_text_to_text(str(run), start=path, shape=SHAPE, epochs=1, batch_size=16, seeds=[3],
                                    max_train_examples=32, max_eval_examples=16, source_length=32)
    assert figures["described_start"] == f"the span-corruption-pretrained {path}"
    assert figures["parameters"] == pretraining["parameters"]
    _answers_are_scored(run, [3])
    text_to_text_report(str(run))
    assert "Span-corruption pretraining first: 4 steps" in (run / "report.md").read_text()


@pytest.mark.slow
def test_fine_tuning_from_a_hugging_face_t5(miniature, tmp_path):
    import transformers

    output, _ = miniature
    checkpoint = tmp_path / "hf"
    checkpoint.mkdir()
    (checkpoint / "spiece.model").write_bytes((output / "spiece.model").read_bytes())
    tokenizer = transformers.T5Tokenizer.from_pretrained(str(checkpoint), extra_ids=32)
    tokenizer.save_pretrained(str(checkpoint))
    config = transformers.T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
                                   feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    transformers.T5ForConditionalGeneration(config).save_pretrained(str(checkpoint))
    run = tmp_path / "run"
    figures = finetune_text_to_text(str(run), start=str(checkpoint), epochs=1, batch_size=16, seeds=[0],
                                    max_train_examples=32, max_eval_examples=16, source_length=32)
    assert figures["described_start"] == f"the Hugging Face checkpoint {checkpoint}"
    assert figures["vocabulary_size"] == len(tokenizer) and not (run / "spiece.model").exists()
    _answers_are_scored(run, [0])
