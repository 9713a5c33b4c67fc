"""The benchmark harness: interleaved timing rounds, each section's quick run, the table, the profile."""
import dataclasses
import json
import time

import numpy as np
import pytest

from keras_lm.benchmarks import generation, run_benchmarks
from keras_lm.benchmarks.mlm import MLM_SYSTEMS, MlmConfig, training_flops_per_token
from keras_lm.benchmarks.profile import CATEGORIES, op_category, op_self_times
from keras_lm.benchmarks.table import format_table, machine_description, machine_info, targets, update_readme
from keras_lm.benchmarks.timing import interleaved_rounds


def _target(found, prefix):
    (match,) = [t for t in found if t["target"].startswith(prefix)]
    return match


def _table_row(table, target):
    (row,) = [line for line in table.splitlines() if line.startswith(f"| {target['target']} |")]
    return row


def test_flops_per_token_matches_the_hand_count_for_bert_l4_h512():
    # 4 blocks x 2 x (4h^2 + 2hi) + attention 4 x 2 x 2 x T x h, MLM head on 20/128 positions, x3.
    assert training_flops_per_token(MlmConfig()) == pytest.approx(93.3e6, rel=0.01)


def test_every_round_calls_every_sleeping_system_once_in_rotated_order():
    calls = []

    def sleeper(name, seconds):
        def run():
            calls.append(name)
            time.sleep(seconds)
        return run

    sleeps = {"a": 0.003, "b": 0.001, "c": 0.002}
    rounds = interleaved_rounds({name: sleeper(name, s) for name, s in sleeps.items()}, rounds=4, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up, untimed
    timed = [calls[3 + 3 * i:6 + 3 * i] for i in range(4)]
    assert timed == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    for name, seconds in sleeps.items():
        times = rounds[name]["round_seconds"]
        assert len(times) == 4 and min(times) >= seconds  # time.sleep never returns early
        assert rounds[name]["best_seconds"] == min(times)
        assert rounds[name]["median_seconds"] == pytest.approx(float(np.median(times)))


def test_best_of_rounds_is_the_fastest_round_of_a_drifting_system():
    now = [0.0]

    def taking(durations):  # round i "takes" durations[i] seconds on the clock below
        remaining = iter(durations)

        def run():
            now[0] += next(remaining)
        return run

    rounds = interleaved_rounds({"steady": taking([9.0, 1.0, 1.0, 1.0]),
                                 "drifting": taking([9.0, 3.0, 0.5, 2.0])},
                                rounds=3, warmup=1, clock=lambda: now[0])
    assert rounds["drifting"]["round_seconds"] == [3.0, 0.5, 2.0]
    assert rounds["drifting"]["best_seconds"] == 0.5 and rounds["drifting"]["median_seconds"] == 2.0
    assert rounds["steady"]["best_seconds"] == rounds["steady"]["median_seconds"] == 1.0
    with pytest.raises(ValueError, match="rounds >= 1"):
        interleaved_rounds({"steady": lambda: None}, rounds=0)


def test_machine_line_names_the_cpu_cores_and_the_matmul_isa_flags():
    cpuinfo = ("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
               "processor\t: 1\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    info = machine_info(cpuinfo)
    assert info["cpu"] == "AMD EPYC 9B14"
    assert info["isa_flags"] == {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_tile": False,
                                 "amx_bf16": False}
    line = machine_description(info)
    assert line.startswith(f"AMD EPYC 9B14, {info['cores']} cores, avx2 avx512f avx512_bf16 (no amx_tile amx_bf16)")
    assert "TensorFlow 2." in line and "Keras 3." in line


def test_targets_are_reached_or_not_from_the_numbers():
    def run(tokens_per_second, fraction):
        return {"tokens_per_second": tokens_per_second, "median_tokens_per_second": tokens_per_second / 2,
                "fraction_of_peak": fraction}

    results = {
        "machine": "a test machine", "date": "today",
        "mlm": {"config": "BERT", "rounds": 5, "steps_per_round": 10, "attention_kernel": "fused",
                "peak_gflops": {"float32": 200.0, "bfloat16": 400.0},
                "runs": {"keras_lm/float32": run(1000.0, 0.85), "keras_hub/float32": run(1000.0, 0.85),
                         "keras_lm_explicit/float32": run(800.0, 0.7),
                         "keras_lm/mixed_bfloat16": run(1400.0, 0.6), "keras_hub/mixed_bfloat16": run(1100.0, 0.5)}},
        "generation": {"config": "GPT", "rounds": 5, "batches": {
            "1": {"keras_lm_tokens_per_second": 210.0, "keras_hub_tokens_per_second": 100.0,
                  "hf_torch_tokens_per_second": None, "same_tokens_as_keras_hub": True},
            "8": {"keras_lm_tokens_per_second": 900.0, "keras_hub_tokens_per_second": 100.0,
                  "hf_torch_tokens_per_second": None, "same_tokens_as_keras_hub": False}}},
        "serving": {"model": "Bert", "batches": {"1": {
            kind: {"p50_ms": p50, "p99_ms": 2 * p50} for kind, p50 in
            (("string_in", 5.5), ("bare_trimmed", 5.0), ("bare_full_length", 9.0))}}},
    }
    found = targets(results)
    mlm = _target(found, "MLM train tokens/s")
    assert mlm["measured"] == pytest.approx(1400 / 1100) and not mlm["reached"]  # 1.27 < 1.3
    assert _target(found, "keras_lm MLM model FLOP/s ÷ measured float32")["reached"]  # 0.85 >= 0.8
    assert not _target(found, "keras_lm MLM model FLOP/s ÷ measured bfloat16")["reached"]
    assert _target(found, "greedy generation tokens/s, batch 1")["reached"]  # 2.1x
    batch_8 = _target(found, "greedy generation tokens/s, batch 8")  # 9x, but the tokens differ
    assert batch_8["measured"] is None and not batch_8["reached"]
    assert _target(found, "serving p50 latency")["reached"]  # 1.10 <= 1.15
    table = format_table(results)
    assert table.startswith("Machine: a test machine — today\nMethod: ")
    assert "5 interleaved rounds" in table and "best round" in table
    assert "| (a) MLM train tokens/s, mixed_bfloat16 | 1,400 (700) | 1,100 (550) | — | 1.27× |" in table
    # On a GPU the bench also times keras_lm with the other attention kernel and names "auto"'s choice.
    assert "| (a) MLM train tokens/s, float32, keras_lm with explicit attention | 800 (400) | 1,000 (500) | — | 0.80× |" in table
    assert 'keras_lm attention kernel: fused (its "auto" choice on this machine)' in table
    assert mlm["measured"] == pytest.approx(1400 / 1100)  # the best is still the default kernel's
    assert _table_row(table, mlm).endswith("| 1.27 | ≥ 1.3 | not reached |")
    assert _table_row(table, _target(found, "serving p50")).endswith("| 1.10 | ≤ 1.15 | reached |")


@pytest.fixture(scope="module")
def quick_mlm_and_profile(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    return run_benchmarks(str(output), sections=["mlm", "profile"], quick=True), output


@pytest.mark.slow  # long: run with -m slow
def test_quick_mlm_section_gives_every_figure_of_the_table(quick_mlm_and_profile):
    results, output = quick_mlm_and_profile
    mlm = results["mlm"]
    assert mlm["rounds"] == 2 and set(mlm["runs"]) == set(MLM_SYSTEMS) | {"hf_torch/float32"}
    for name, run in mlm["runs"].items():
        assert run["tokens_per_second"] >= run["median_tokens_per_second"] > 0, name  # best round vs median
        if name != "hf_torch/float32":
            assert run["fraction_of_peak"] == pytest.approx(
                run["model_gflops"] / mlm["peak_gflops"]["bfloat16" if "bfloat16" in name else "float32"])
    for dtype in ("float32", "bfloat16"):
        assert mlm["peak_gflops"][dtype] >= mlm["peak_median_gflops"][dtype] > 0
    table = (output / "bench.md").read_text()
    assert table.startswith(f"Machine: {results['machine']}")
    assert results["machine"] == machine_description(results["machine_info"])
    assert "2 interleaved rounds in one process" in table
    assert mlm["attention_kernel"] == "explicit"  # "auto" on a CPU; no other kernel is timed here
    assert 'keras_lm attention kernel: explicit (its "auto" choice on this machine)' in table
    found = targets(results)
    best = {lib: max(mlm["runs"][f"{lib}/{p}"]["tokens_per_second"] for p in ("float32", "mixed_bfloat16"))
            for lib in ("keras_lm", "keras_hub")}
    speedup = _target(found, "MLM train tokens/s")
    assert speedup["measured"] == pytest.approx(best["keras_lm"] / best["keras_hub"])
    assert speedup["reached"] == (speedup["measured"] >= 1.3)
    fp32 = _target(found, "keras_lm MLM model FLOP/s ÷ measured float32")
    assert fp32["reached"] == (mlm["runs"]["keras_lm/float32"]["fraction_of_peak"] >= 0.8)
    for target in found:
        assert _table_row(table, target).endswith("| reached |" if target["reached"] else "| not reached |")


def test_quick_profile_puts_real_ops_into_categories_summing_to_100(quick_mlm_and_profile):
    results, output = quick_mlm_and_profile
    for policy, figures in results["profile"]["policies"].items():
        shares = {category: figures["categories"][category]["percent"] for category in CATEGORIES}
        assert sum(shares.values()) == pytest.approx(100.0)
        for category in ("matmul", "softmax / cross-entropy", "LayerNorm", "GELU", "dropout", "optimizer update",
                         "gathers / scatters"):
            assert shares[category] > 0, (policy, category)
        assert shares["other"] < 50, policy
        assert figures["wall_ms_per_step"] > 0 and figures["op_ms_per_step"] > 0
    assert results["profile"]["policies"]["mixed_bfloat16"]["categories"]["casts"]["percent"] > 0
    # The op names of the real trace: each kind lands where it belongs.
    (trace,) = (output / "profile_trace" / "float32").glob("plugins/profile/*/*.xplane.pb")
    ops = op_self_times(str(trace))
    assert all(seconds >= 0 for seconds in ops.values())
    placed = {(op_type, op_category(name, op_type)) for name, op_type in ops}
    # The matmul kernels' op type depends on the CPU (_MklMatMul on AVX-512 machines, other names elsewhere).
    matmuls = {(op_type, category) for op_type, category in placed if "MatMul" in op_type}
    assert matmuls and all(category == "matmul" for _, category in matmuls), matmuls
    for op_type, category in (("StatelessRandomUniformV2", "dropout"),
                              ("TanhGrad", "GELU"), ("SquaredDifference", "LayerNorm"),
                              ("GatherV2", "gathers / scatters"), ("BiasAddGrad", "bias add")):
        assert (op_type, category) in placed, op_type
    adam = [(name, t) for name, t in ops if "adam" in name.lower()]
    assert adam and all(op_category(name, t) == "optimizer update" for name, t in adam)
    profile_md = (output / "profile.md").read_text()
    assert profile_md.startswith(f"Machine: {results['machine']}") and "| optimizer update |" in profile_md


@pytest.mark.slow  # long: run with -m slow
def test_serving_section_through_the_cli_writes_json_and_a_readme_table(tmp_path):
    from keras_lm.cli import main

    assert main(["bench", "--output", str(tmp_path), "--sections", "serving", "--quick"]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    for batch in ("1", "32"):
        figures = results["serving"]["batches"][batch]
        for kind in ("string_in", "bare_trimmed", "bare_full_length"):
            assert 0 < figures[kind]["best_ms"] <= figures[kind]["p50_ms"] <= figures[kind]["p99_ms"]
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nold\n<!-- bench:end -->\nrest\n")
    update_readme(str(readme), format_table(results))
    text = readme.read_text()
    assert "old" not in text and "| batch 1 |" in text and text.endswith("<!-- bench:end -->\nrest\n")
    assert f"Machine: {results['machine']}" in text and "serving latencies are percentiles" in text
    serving = _target(targets(results), "serving p50 latency, batch 1")
    assert _table_row(text, serving).endswith("| reached |" if serving["reached"] else "| not reached |")


@pytest.mark.slow  # long: run with -m slow
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
    assert results["rounds"] == 2 and set(results["batches"]) == {"3"}
    for figures in results["batches"].values():
        assert figures["same_tokens_as_keras_hub"]
        assert figures["hf_torch_tokens_per_second"] is None
        for name in ("keras_lm", "keras_hub"):
            assert figures[f"{name}_tokens_per_second"] >= figures["median_tokens_per_second"][name] > 0
        # keras-hub is timed without and with XLA (its default on a CPU is without); its faster counts.
        runs = figures["keras_hub_runs"]
        assert figures["keras_hub_tokens_per_second"] == max(runs["no_xla"], runs["xla"])
        assert figures["keras_hub_jit_compile"] == (runs["xla"] > runs["no_xla"])
        assert set(figures["low_precision"]) == {"bfloat16", "int8"}
        for weight_dtype, low in figures["low_precision"].items():
            assert low["tokens_per_second"] >= low["median_tokens_per_second"] > 0
            assert 0 <= low["same_new_tokens_as_float32"] <= 1
            assert low["jit_compile"] == (weight_dtype == "int8")  # batch 3: bfloat16 runs without XLA
    table = format_table({"machine": "test", "date": "today", "quick": True, "generation": results})
    assert "(f) greedy generation tokens/s, batch 3" in table and "2 interleaved rounds" in table
    which = "with" if results["batches"]["3"]["keras_hub_jit_compile"] else "without"
    assert f"(f) greedy generation tokens/s, batch 3, keras-hub {which} XLA (its faster) |" in table
    low = results["batches"]["3"]["low_precision"]["int8"]
    assert (f"| (f) greedy generation tokens/s, batch 3, keras_lm int8 weights (XLA; "
            f"{low['same_new_tokens_as_float32']:.0%} of new tokens as float32) |") in table
    speedup = _target(targets({"generation": results}), "greedy generation tokens/s, batch 3")
    ours, hub = (results["batches"]["3"][f"{n}_tokens_per_second"] for n in ("keras_lm", "keras_hub"))
    assert speedup["measured"] == pytest.approx(ours / hub) and speedup["reached"] == (ours / hub >= 2)


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
    for name in ("keras_lm_packed", "keras_hub_padded"):
        assert results["packing"][name]["seconds_per_step"] <= results["packing"][name]["median_seconds_per_step"]
    for figures in results["generation"]["batches"].values():
        assert figures["same_tokens_as_keras_hub"]
        assert figures["keras_lm_tokens_per_second"] > 0 and figures["keras_hub_tokens_per_second"] > 0
    assert (tmp_path / "profile.md").exists() and "Targets, measured" in (tmp_path / "bench.md").read_text()
