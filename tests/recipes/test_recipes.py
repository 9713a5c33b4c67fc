"""Recipes and the keras-lm command."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from keras_lm.recipes import RecipeError, load_recipe, run_recipe, validate_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shipped_recipes_are_valid():
    folder = os.path.join(ROOT, "applications")
    recipes = [f for f in os.listdir(folder) if f.endswith(".yaml")]
    assert "quickstart.yaml" in recipes
    for name in recipes:
        load_recipe(os.path.join(folder, name))


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"pretrain": {"size": "mini", "stpes": 3}}, "unknown key 'pretrain.stpes'"),
        ({"pretrian": {"size": "mini"}}, "unknown step 'pretrian'"),
        ({"finetune": ["epochs", 2]}, "step 'finetune' must map"),
        ({"pretrain": {"output": "x"}}, "unknown key 'pretrain.output'"),
        # Values of the wrong type or range fail before any work, naming step.key, type and value.
        ({"train_vocabulary": {"lowercase": "false"}},
         "train_vocabulary.lowercase must be true or false, got 'false' (str)"),
        ({"train_vocabulary": {"vocabulary_size": "lots"}},
         "train_vocabulary.vocabulary_size must be an integer, got 'lots' (str)"),
        ({"pretrain": {"steps": True}}, "pretrain.steps must be an integer, got True (bool)"),
        ({"pretrain": {"steps": 2.5}}, "pretrain.steps must be an integer, got 2.5 (float)"),
        ({"pretrain": {"learning_rate": "fast"}}, "pretrain.learning_rate must be a number, got 'fast'"),
        ({"pretrain": {"strategy": 3}}, "pretrain.strategy must be a string (or null), got 3 (int)"),
        ({"pretrain": {"size": "huge"}}, "pretrain.size must be one of tiny, mini"),
        ({"pretrain": {"steps": -5}}, "pretrain.steps must be at least 1, got -5"),
        ({"finetune": {"max_train_examples": 0}}, "finetune.max_train_examples must be at least 1"),
        ({"serve": {"sentences": "one sentence"}}, "serve.sentences must be a list, got 'one sentence'"),
        ({"pretrain_causal_lm": {"batch_size": "16"}}, "pretrain_causal_lm.batch_size must be an integer"),
    ],
)
def test_bad_recipes_name_the_problem(recipe, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        validate_recipe(recipe)


def test_values_of_the_right_type_are_accepted():
    validate_recipe({
        "train_vocabulary": {"lowercase": False, "vocabulary_size": 100},
        "pretrain": {"learning_rate": 1, "vocabulary": None, "strategy": "one_device", "size": "tiny"},
        "finetune": {"max_train_examples": None, "compare_random_init": True},
        "serve": {"sentences": ["a", "b"], "labels": ["n", "p"]},
    })


def test_a_bad_override_fails_before_any_work(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"train_vocabulary": {"vocabulary_size": 100}, "pretrain": {"steps": 2}}))
    output = tmp_path / "run"
    with pytest.raises(RecipeError, match="pretrain.steps must be an integer, got 'many'"):
        run_recipe(str(recipe), str(output), {"pretrain.steps": "many"})
    assert not output.exists()  # the vocabulary step did not start


def test_cli_reports_a_bad_key_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"pretrain": {"size": "mini", "batch": 3}}))
    process = subprocess.run(
        [sys.executable, "-m", "keras_lm.cli", "run", str(path), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2
    assert "unknown key 'pretrain.batch'" in process.stderr
    assert "Traceback" not in process.stderr


def test_miniature_quickstart_through_the_cli(tmp_path):
    """The quickstart recipe end to end at toy scale: every artefact and figure is produced."""
    output = tmp_path / "run"
    overrides = [
        "train_vocabulary.vocabulary_size=1000",
        "pretrain.size=tiny",
        "pretrain.steps=6",
        "pretrain.warmup=2",
        "pretrain.sequence_length=32",
        "pretrain.batch_size=8",
        "finetune.epochs=1",
        "finetune.max_train_examples=256",
    ]
    command = [sys.executable, "-m", "keras_lm.cli", "run", os.path.join(ROOT, "applications", "quickstart.yaml"), "--output", str(output)]
    for override in overrides:
        command += ["--set", override]
    process = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    for artefact in ("vocab.txt", "pretrainer.keras", "encoder/keras_lm.json", "classifier.keras",
                     "serving/1/saved_model.pb", "report.md", "loss_curves.png"):
        assert (output / artefact).exists(), artefact
    metrics = json.loads((output / "metrics.json").read_text())
    assert len(metrics["pretraining"]["train_loss_curve"]) == 6
    for start in ("pretrained", "random_init"):
        assert 0.0 <= metrics["finetuning"][start]["test_accuracy"] <= 1.0
    answers = metrics["serving"]["answers"]
    assert len(answers) == 3 and {a["label"] for a in answers} <= {"negative", "positive"}
    report = (output / "report.md").read_text()
    assert "test accuracy" in report and "random_init" in report
    _assert_classifier_started_from_the_pretrained_encoder(output, metrics)


def _token_embedding(model, vocabulary_size):
    """The one [vocabulary, hidden] weight of an encoder (its token embedding), as numpy."""
    found = [w.numpy() for w in model.weights if len(w.shape) == 2 and w.shape[0] == vocabulary_size]
    assert len(found) == 1, [w.name for w in model.weights]
    return found[0]


def _assert_classifier_started_from_the_pretrained_encoder(output, metrics):
    import keras
    import numpy as np

    from keras_lm.tasks import SavedModelEncoder

    backbone = keras.saving.load_model(str(output / "pretrainer.keras")).backbone
    size = backbone.vocabulary_size
    pretrained = _token_embedding(backbone, size)
    exported = _token_embedding(SavedModelEncoder(str(output / "encoder" / "encoder")), size)
    np.testing.assert_array_equal(exported, pretrained)  # the export carries the trained weights
    fine_tuned = _token_embedding(keras.saving.load_model(str(output / "classifier.keras")).backbone, size)
    # One Adam step moves a weight by at most lr * (1 - beta_1) / sqrt(1 - beta_2) (Kingma & Ba, 2.1;
    # lr 1e-4 is the finetune default): fine-tuning from the pretrained encoder stays within that of
    # it, while any other start (a random init has std 0.02) is orders of magnitude further away.
    steps = len(metrics["finetuning"]["pretrained"]["train_loss_curve"])
    assert 0 < steps <= 10
    bound = 1.2 * steps * 1e-4 * (1 - 0.9) / np.sqrt(1 - 0.999)
    drift = np.abs(fine_tuned - pretrained).max()
    assert 0 < drift <= bound, (drift, bound)
