"""The benchmark harness runs end to end (quick mode) and renders its table into the README."""
import dataclasses
import json

import numpy as np
import pytest

from keras_lm.benchmarks import generation, run_benchmarks
from keras_lm.benchmarks.mlm import MlmConfig, training_flops_per_token
from keras_lm.benchmarks.table import format_table, update_readme


def test_flops_per_token_matches_the_hand_count_for_bert_l4_h512():
    # 4 blocks x 2 x (4h^2 + 2hi) + attention 4 x 2 x 2 x T x h, MLM head on 20/128 positions, x3.
    assert training_flops_per_token(MlmConfig()) == pytest.approx(93.3e6, rel=0.01)


def test_serving_section_through_the_cli_writes_json_and_a_readme_table(tmp_path):
    from keras_lm.cli import main

    assert main(["bench", "--output", str(tmp_path), "--sections", "serving", "--quick"]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    for batch in ("1", "32"):
        figures = results["serving"]["batches"][batch]
        for kind in ("string_in", "bare_trimmed", "bare_full_length"):
            assert 0 < figures[kind]["p50_ms"] <= figures[kind]["p99_ms"]
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nold\n<!-- bench:end -->\nrest\n")
    update_readme(str(readme), format_table(results))
    text = readme.read_text()
    assert "old" not in text and "| batch 1 |" in text and text.endswith("<!-- bench:end -->\nrest\n")


def test_generation_tokens_match_keras_hub_with_every_weight_random():
    import keras_hub

    config = dataclasses.replace(generation.QUICK, batch_sizes=(3,))  # one batch: compiling dominates
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=config.vocabulary_size, num_layers=config.num_layers, num_heads=config.num_heads,
        hidden_dim=config.hidden_dim, intermediate_dim=4 * config.hidden_dim, max_sequence_length=1024)
    rng = np.random.default_rng(7)
    for weight in backbone.weights:  # biases and LayerNorm gammas/betas too: a swapped norm changes tokens
        center = 1.0 if weight.path.endswith("gamma") else 0.0
        weight.assign(center + 0.2 * rng.normal(size=weight.shape).astype("float32"))
    results = generation.generation_throughput(config, lambda message: None, hub_backbone=backbone,
                                               include_torch=False)
    assert set(results["batches"]) == {"3"}
    for figures in results["batches"].values():
        assert figures["same_tokens_as_keras_hub"]
        assert figures["hf_torch_tokens_per_second"] is None
    table = format_table({"machine": "test", "date": "today", "quick": True, "generation": results})
    assert "(f) greedy generation tokens/s, batch 3" in table


def test_the_benchmark_backbone_is_random_everywhere():
    backbone = generation.random_gpt2_backbone(generation.QUICK, seed=1)
    for weight in backbone.weights:
        values = np.asarray(weight)
        center = 1.0 if weight.path.endswith("gamma") else 0.0
        assert 0.1 < np.abs(values - center).mean() < 0.3, weight.path  # no default 0 or 1 left


@pytest.mark.slow
def test_every_section_runs_in_quick_mode(tmp_path):
    results = run_benchmarks(str(tmp_path), quick=True)
    runs = results["mlm"]["runs"]
    for name in ("keras_lm/float32", "keras_hub/float32", "keras_lm/mixed_bfloat16"):
        assert runs[name]["tokens_per_second"] > 0 and 0 < runs[name]["fraction_of_peak"] < 2
    assert results["packing"]["non_padding_fraction"]["keras_lm_packed"] > 0.9
    assert results["packing"]["pipeline"]["ratio"] > 0
    for figures in results["generation"]["batches"].values():
        assert figures["same_tokens_as_keras_hub"]
        assert figures["keras_lm_tokens_per_second"] > 0 and figures["keras_hub_tokens_per_second"] > 0
