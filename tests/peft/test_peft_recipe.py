"""The compare_peft recipe step: its arguments (and applications/peft.yaml's), the cut to a shorter
sequence length (equal to packing at that length), and a miniature end-to-end run (slow)."""
import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import yaml

import keras_lm
from keras_lm.recipes.peft import METHODS, _cut, compare_peft
from keras_lm.recipes.runner import check_arguments

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "applications" / "peft.yaml"


def test_the_recipe_file_passes_the_argument_checks():
    recipe = yaml.safe_load(RECIPE.read_text())
    assert set(recipe) == {"import_checkpoint", "compare_peft"}
    check_arguments(compare_peft, recipe["compare_peft"], lambda key: f"compare_peft.{key}")
    assert set(recipe["compare_peft"]["methods"]) == set(METHODS)
    assert set(recipe["compare_peft"]["learning_rates"]) == set(METHODS)


def test_cutting_packed_rows_equals_packing_at_the_shorter_length(movie_vocabulary, movie_sentences):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    texts = tf.constant([text for text, _ in movie_sentences[:32]])
    long = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=48)(texts)
    short = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=12)(texts)
    cut = _cut(12, tokenizer.sep_id)(long)
    assert int(tf.reduce_sum(tf.cast(long["padding_mask"][:, 12:], tf.int32))) > 0  # some rows were cut
    for key in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(np.asarray(cut[key]), np.asarray(short[key]), err_msg=key)


@pytest.mark.parametrize("arguments, message", [
    ({"methods": ["full", "qlora"]}, "Unknown PEFT method 'qlora'"),
    ({"methods": ["lora", "lora"]}, "repeats a method"),
    ({"methods": ["lora"], "learning_rates": {"full": 1e-4}}, "names 'full', which is not in `methods`"),
    ({"methods": ["lora"], "learning_rates": {"lora": [1e-3, -1.0]}}, r"`learning_rates.lora` must be a positive"),
    ({"layer_decay": 0.0}, r"`layer_decay` must be in \(0, 1\]"),
    ({"pooling": "max"}, "`pooling` must be one of cls, mean"),
    ({"epochs": 0}, "`epochs` must be at least 1"),
])
def test_bad_arguments_fail_before_any_work(arguments, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        compare_peft(str(tmp_path), **arguments)
    assert not os.path.exists(tmp_path / "metrics.json")


def test_a_missing_encoder_export_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="No encoder export at .*run import_checkpoint or pretrain"):
        compare_peft(str(tmp_path), methods=["lora"])


@pytest.mark.slow
def test_every_method_runs_end_to_end_on_a_miniature_budget(small_bert, movie_vocabulary, tmp_path):
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=movie_vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=48)
    output = tmp_path / "run"
    keras_lm.export.encoder(small_bert(max_sequence_length=128), preprocessor, str(output / "encoder"))
    rates = {method: 1e-3 for method in METHODS}
    rates["prompt"] = [1e-2, 3e-2]
    report = compare_peft(str(output), epochs=1, batch_size=16, max_train_examples=64, seeds=[0],
                          learning_rates=rates, sequence_length=32, num_prompts=4, bottleneck_dim=8, lora_rank=4,
                          results=str(tmp_path / "results"))
    section = json.loads((output / "metrics.json").read_text())["peft"]
    assert list(section["methods"]) == list(METHODS) and section["steps"] == 4
    counts = {name: figure["trainable_parameters"] for name, figure in section["methods"].items()}
    assert counts["full"] == counts["llrd"] == section["methods"]["full"]["parameters"]
    assert counts["linear_probe"] == 64 * 2 + 2 and counts["bitfit"] == 1410 and counts["prompt"] == 4 * 64 + 130
    assert counts["linear_probe"] < counts["prompt"] < counts["bitfit"] < counts["lora"] < counts["full"]
    assert len(section["methods"]["prompt"]["runs"]) == 2
    assert section["methods"]["prompt"]["learning_rate"] in (1e-2, 3e-2)
    for figure in section["methods"].values():
        assert 0.0 <= figure["test_accuracy"] <= 1.0
    text = pathlib.Path(report).read_text()
    assert "| LoRA | 6,274 |" in text and "majority class" in text
    assert sorted(os.listdir(tmp_path / "results")) == ["peft.md", "peft.png"]
