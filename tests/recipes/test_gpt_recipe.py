"""The GPT pretraining recipe at toy scale through the CLI, then `keras-lm generate`."""
import json
import os
import subprocess
import sys

import pytest

from keras_lm.recipes import load_recipe
from keras_lm.recipes.gpt import generate_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "applications", "gpt_pretrain.yaml")


def _cli(*arguments, timeout=600):
    return subprocess.run([sys.executable, "-m", "keras_lm.cli", *arguments], capture_output=True, text=True,
                          timeout=timeout)


def test_recipe_keys_are_the_workflow_arguments():
    recipe = load_recipe(RECIPE)
    assert list(recipe) == ["train_byte_pair", "pretrain_causal_lm", "generate"]


@pytest.mark.slow  # long: run with -m slow
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


BAD_GENERATION_ARGUMENTS = [
    ({"top_k": -5}, r"top_k must be an integer >= 0 \(0 keeps every token\), got -5"),
    ({"top_k": 2.5}, "top_k must be an integer >= 0"),
    ({"temperature": float("nan")}, "temperature must be a finite number >= 0 .*got nan"),
    ({"temperature": float("inf")}, "temperature must be a finite number >= 0"),
    ({"temperature": -0.5}, "temperature must be a finite number >= 0"),
    ({"top_p": 0.0}, r"top_p must be a number in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be a number in \(0, 1\]"),
    ({"top_p": float("nan")}, r"top_p must be a number in \(0, 1\]"),
    ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
    ({"max_new_tokens": -3}, "max_new_tokens must be an integer >= 1"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer >= 1"),
    ({"seed": 1.5}, "seed must be a 64-bit integer"),
    ({"seed": 2**64}, "seed must be a 64-bit integer"),
]


@pytest.mark.parametrize("arguments, message", BAD_GENERATION_ARGUMENTS,
                         ids=[f"{k}={v}" for arguments, _ in BAD_GENERATION_ARGUMENTS for k, v in arguments.items()])
def test_generate_text_rejects_bad_sampling_arguments_before_loading(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_text(str(tmp_path / "missing"), ["My lord,"], **arguments)


def test_generate_text_names_a_path_that_holds_no_model(tmp_path):
    expected = "Expected a generation serving export .* or a .keras file holding a CausalLM"
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=f"No such file or directory: '{missing}'. {expected}"):
        generate_text(missing, ["My lord,"])
    with pytest.raises(FileNotFoundError):  # still a FileNotFoundError too, as it was
        generate_text(missing, ["My lord,"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"'{empty}' is a directory without a saved_model.pb. {expected}"):
        generate_text(str(empty), ["My lord,"])
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    with pytest.raises(ValueError, match=f"'{notes}' is not a .keras file. {expected}"):
        generate_text(str(notes), ["My lord,"])


def test_keras_lm_generate_answers_bad_input_with_one_line(tmp_path, capsys):
    from keras_lm.cli import main

    empty = tmp_path / "EMPTY_DIR"
    empty.mkdir()
    for arguments, message in (
        (["--model", str(empty)], f"'{empty}' is a directory without a saved_model.pb"),
        (["--model", str(tmp_path / "missing")], "No such file or directory"),
        (["--model", str(empty), "--top-k", "-5", "--temperature", "1"], "top_k must be an integer >= 0"),
        (["--model", str(empty), "--temperature", "nan"], "temperature must be a finite number >= 0"),
    ):
        assert main(["generate", *arguments, "My lord,"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and captured.err.startswith("keras-lm: error: ") and message in captured.err


def test_generate_text_from_a_keras_file_caps_top_k_at_the_vocabulary(tmp_path):
    import keras_hub
    import numpy as np

    import keras_lm

    backbone = keras_lm.applications.Gpt2("tiny", vocabulary_size=256, hidden_dim=16, num_heads=2,
                                          max_sequence_length=32)
    rng = np.random.default_rng(0)
    for weight in backbone.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
    lm = keras_lm.tasks.CausalLM(backbone, keras_hub.tokenizers.ByteTokenizer(lowercase=False))
    path = str(tmp_path / "lm.keras")
    lm.save(path)
    sampled = generate_text(path, ["My lord,"], max_new_tokens=4, temperature=1.0, top_k=1000, seed=3)  # k > 256
    assert isinstance(sampled[0], str) and sampled[0]
