"""The GPT pretraining recipe at toy scale through the CLI, then `keras-lm generate`."""
import json
import os
import subprocess
import sys

from keras_lm.recipes import load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "applications", "gpt_pretrain.yaml")


def _cli(*arguments, timeout=600):
    return subprocess.run([sys.executable, "-m", "keras_lm.cli", *arguments], capture_output=True, text=True,
                          timeout=timeout)


def test_recipe_keys_are_the_workflow_arguments():
    recipe = load_recipe(RECIPE)
    assert list(recipe) == ["train_byte_pair", "pretrain_causal_lm", "generate"]


def test_miniature_gpt_pretraining_through_the_cli(tmp_path):
    output = tmp_path / "run"
    overrides = [
        "train_byte_pair.vocabulary_size=400",
        "pretrain_causal_lm.steps=4",
        "pretrain_causal_lm.warmup=1",
        "pretrain_causal_lm.sequence_length=32",
        "pretrain_causal_lm.batch_size=4",
        "pretrain_causal_lm.eval_batches=2",
        "generate.max_new_tokens=6",
        "generate.temperature=0",  # greedy, so that `keras-lm generate` below must give the same text
    ]
    command = ["run", RECIPE, "--output", str(output)]
    for override in overrides:
        command += ["--set", override]
    process = _cli(*command, timeout=900)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    for artefact in ("byte_pair/vocab.json", "byte_pair/merges.txt", "causal_lm.keras", "serving/1/saved_model.pb"):
        assert (output / artefact).exists(), artefact
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["byte_pair"]["size"] == 400
    pretraining = metrics["causal_lm_pretraining"]
    assert len(pretraining["train_loss_curve"]) == 4
    # An untrained model is near uniform over 400 tokens; 4 steps already lower held-out perplexity.
    assert 200 < pretraining["validation_perplexity_before"] < 800
    assert pretraining["validation_perplexity_after"] < pretraining["validation_perplexity_before"]
    samples = metrics["generation"]["samples"]
    assert [s["prompt"] for s in samples] == ["To be, or not to be", "ROMEO. ", "My lord,"]
    assert all(isinstance(s["text"], str) and s["text"] for s in samples)

    generated = _cli("generate", "--model", str(output / "serving" / "1"), "--max-new-tokens", "6", "My lord,")
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert generated.stdout.splitlines()[-1] == "My lord," + samples[2]["text"]
    sampled = [_cli("generate", "--model", str(output / "serving" / "1"), "--max-new-tokens", "6", "--temperature",
                    "1.5", "--top-k", "50", "--seed", "7", "My lord,") for _ in range(2)]
    assert all(s.returncode == 0 for s in sampled), sampled[0].stderr[-3000:]
    assert sampled[0].stdout.splitlines()[-1] == sampled[1].stdout.splitlines()[-1]  # same seed, same text
    too_long = _cli("generate", "--model", str(output / "serving" / "1"), "--max-new-tokens", "32", "My lord,")
    assert too_long.returncode == 2 and "max_new_tokens must be in [0, 32)" in too_long.stderr
    assert "Traceback" not in too_long.stderr
