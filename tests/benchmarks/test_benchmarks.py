"""The benchmark harness runs end to end (quick mode) and renders its table into the README."""
import json

import pytest

from keras_lm.benchmarks import run_benchmarks
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


def test_generation_section_matches_keras_hub_tokens(tmp_path):
    results = run_benchmarks(str(tmp_path), sections=("generation",), quick=True)
    assert set(results["generation"]["batches"]) == {"1", "8"}
    for figures in results["generation"]["batches"].values():
        assert figures["same_tokens_as_keras_hub"]
    assert "(f) greedy generation tokens/s, batch 8" in format_table(results)


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
