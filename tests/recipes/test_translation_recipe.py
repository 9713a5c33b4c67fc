"""The translation recipe in miniature on the real Bible corpus, through the recipe runner."""
import json
import os
import re

import pytest

from keras_lm.recipes import RecipeError, load_recipe, run_recipe
from keras_lm.recipes import translation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "applications", "translation.yaml")
TEST_VERSES = 20

MINIATURE = {
    "train_translation.size": "tiny",
    "train_translation.vocabulary_size": 1000,
    "train_translation.steps": 30,
    "train_translation.warmup": 10,
    "train_translation.evaluations": 1,
    "train_translation.batch_size": 32,
    "train_translation.source_length": 48,
    "train_translation.target_length": 48,
    "train_translation.max_train_examples": 500,
    "train_translation.validation_bleu_examples": 20,
    "evaluate_translation.max_examples": TEST_VERSES,
}


def test_recipe_keys_are_the_translation_steps():
    recipe = load_recipe(RECIPE)
    assert list(recipe) == ["train_translation", "evaluate_translation", "translation_report"]
    assert recipe["evaluate_translation"]["split"] == "test"
    assert recipe["evaluate_translation"]["num_beams"] == 4


def _figure(text: str, pattern: str) -> float:
    found = re.search(pattern, text)
    assert found, pattern
    return float(found.group(1))


@pytest.mark.slow  # long: run with -m slow
def test_miniature_recipe_end_to_end(tmp_path):
    import keras
    import sacrebleu

    import keras_lm
    from keras_lm.tasks.seq2seq_lm import Seq2SeqLM

    output, results = tmp_path / "run", tmp_path / "report" / "RESULTS.md"
    run_recipe(RECIPE, str(output), {**MINIATURE, "translation_report.results": str(results)})

    metrics = json.loads((output / "metrics.json").read_text())
    training = metrics["translation_training"]
    assert training["steps"] == 30 and training["train_pairs"] == 500 and training["vocabulary_size"] == 1000
    losses = training["train_loss_curve"]
    assert len(losses) == 30
    # From about log(1000) = 6.9 the loss falls on real verse pairs within 30 steps.
    assert sum(losses[:5]) / 5 > sum(losses[-5:]) / 5 + 0.5
    assert training["truncated"]["sources"] > 0  # 48 tokens cut some verses (counted)
    assert training["validation_greedy_bleu"]["examples"] == 20
    assert training["validation_greedy_bleu"]["copy_source_bleu"] > 0

    # The decoded verses are the first test verses, in order, with their references.
    rows = translation.read_translations(str(output), "test")
    verses = list(keras_lm.data.load("bible_en_es", split="test").take(TEST_VERSES).as_numpy_iterator())
    assert [r["source"] for r in rows] == [v["en"].decode() for v in verses]
    assert [r["reference"] for r in rows] == [v["es"].decode() for v in verses]

    # RESULTS.md's figures are sacrebleu's on the written outputs (detokenized, 13a).
    report = results.read_text()
    bleu = sacrebleu.corpus_bleu([r["output"] for r in rows], [[r["reference"] for r in rows]]).score
    copy = sacrebleu.corpus_bleu([r["source"] for r in rows], [[r["reference"] for r in rows]]).score
    assert _figure(report, r"4 beams, length penalty 0\.6 \| \*\*([0-9.]+)\*\*") == round(bleu, 2)
    assert _figure(report, r"copy the source \(baseline\) \| ([0-9.]+) \|") == round(copy, 2)
    assert copy > 0  # names and numbers shared by the two languages
    assert metrics["translation_test"]["bleu"] == pytest.approx(bleu)
    assert "30 steps of 32 pairs" in report and "Machine: " in report and "cores" in report
    png = results.parent / "translation_loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    model = keras.saving.load_model(output / "translator.keras")
    assert isinstance(model, Seq2SeqLM) and model.tokenizer.vocabulary_size() == 1000


BAD_TRAINING = [
    ({"size": "huge"}, "`size` must be a Transformer size"),
    ({"corpus": "no_such_corpus"}, "Cannot read corpus 'no_such_corpus'"),
    ({"source": "fr"}, "`source` language 'fr' is not a text feature of corpus 'bible_en_es'; its text features: "
                       "book, en, es"),
    ({"target": "en"}, "`source` and `target` are both 'en'"),
    ({"steps": 0}, "`steps` must be an integer >= 1"),
    ({"steps": 10, "evaluations": 3}, r"`steps` \(10\) must be a multiple of `evaluations` \(3\)"),
    ({"target_length": 1}, "`target_length` must be an integer >= 2"),
    ({"validation_bleu_examples": -1}, "`validation_bleu_examples` must be an integer >= 0"),
]


@pytest.mark.parametrize("arguments, message", BAD_TRAINING)
def test_bad_training_arguments_fail_before_any_work(tmp_path, arguments, message):
    output = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        translation.train_translation(str(output), **arguments)
    assert not output.exists()


def test_the_runner_refuses_a_bad_recipe_before_running(tmp_path):
    with pytest.raises(RecipeError, match="train_translation.steps must be at least 1"):
        run_recipe(RECIPE, str(tmp_path / "run"), {"train_translation.steps": 0})
    with pytest.raises(RecipeError, match="unknown key 'train_translation.layers'"):
        run_recipe(RECIPE, str(tmp_path / "run"), {"train_translation.layers": 2})
    assert not (tmp_path / "run").exists()


def test_evaluation_without_a_trained_model_names_the_missing_step(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the train_translation step first"):
        translation.evaluate_translation(str(tmp_path))
    with pytest.raises(ValueError, match="`split` must be train, validation or test"):
        translation.evaluate_translation(str(tmp_path), split="dev")
