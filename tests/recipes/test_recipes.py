"""Recipes and the keras-lm command."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from keras_lm.recipes import RecipeError, load_recipe, validate_recipe

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
    ],
)
def test_bad_recipes_name_the_problem(recipe, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(")):
        validate_recipe(recipe)


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
