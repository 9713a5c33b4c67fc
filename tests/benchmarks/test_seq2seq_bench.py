"""The seq2seq decoding bench: keras-hub T5 weights ported into keras_lm T5, the quick section, its table rows."""
import dataclasses

import numpy as np
import pytest

from keras_lm.benchmarks import run_benchmarks, seq2seq
from keras_lm.benchmarks.table import format_table

TINY = dataclasses.replace(seq2seq.QUICK, num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
                           vocabulary_size=300)


def _features(rng, batch=3, source=9, target=7):
    """Random token ids with padded rows in both the source and the target."""
    source_mask = np.arange(source)[None, :] < np.array([[source], [5], [2]])[:batch]
    target_mask = np.arange(target)[None, :] < np.array([[target], [4], [1]])[:batch]
    return {
        "encoder_token_ids": np.where(source_mask, rng.integers(1, TINY.vocabulary_size, (batch, source)), 0),
        "encoder_padding_mask": source_mask.astype("int32"),
        "decoder_token_ids": np.where(target_mask, rng.integers(1, TINY.vocabulary_size, (batch, target)), 0),
        "decoder_padding_mask": target_mask.astype("int32"),
    }


@pytest.mark.parametrize("variant", ["v1.0", "v1.1"])
def test_keras_hub_t5_weights_ported_into_keras_lm_give_the_same_logits(variant):
    import keras_hub

    hub_backbone = seq2seq.random_t5_backbone(dataclasses.replace(TINY, variant=variant), seed=3)
    for weight in hub_backbone.weights:  # nothing left at its default: a swapped norm or bias table shows
        values = np.asarray(weight)
        center = 1.0 if "layer_norm" in weight.path else 0.0
        assert np.abs(values - center).mean() > 0.1, weight.path
    ours = seq2seq.t5_from_keras_hub(hub_backbone)
    assert (ours.variant, ours.num_layers, ours.hidden_dim, ours.vocabulary_size) == (variant, 2, 32, 300)
    assert (ours.lm_head is None) == (variant == "v1.0")
    reference = keras_hub.models.T5Seq2SeqLM(backbone=hub_backbone, preprocessor=None)
    features = _features(np.random.default_rng(0))
    expected_logits = np.asarray(reference(features))
    expected_encoder = np.asarray(hub_backbone(features)["encoder_sequence_output"])
    outputs = ours(features)
    logits = np.asarray(ours.logits(outputs["decoder_sequence_output"]))
    assert logits.shape == expected_logits.shape == (3, 7, 300)
    assert np.abs(expected_logits).max() > 0.5  # logits that can tell a wrong weight from a right one
    real = features["decoder_padding_mask"].astype(bool)
    np.testing.assert_allclose(logits[real], expected_logits[real], atol=1e-4, rtol=0)
    source = features["encoder_padding_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(outputs["encoder_sequence_output"])[source], expected_encoder[source],
                               atol=1e-4, rtol=0)


def test_a_keras_hub_t5_that_is_neither_v1_0_nor_v1_1_is_refused_by_name():
    import keras_hub

    gated_exact_gelu = keras_hub.models.T5Backbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
                                                   intermediate_dim=16, activation="gelu",
                                                   use_gated_activation=True, tie_embedding_weights=False)
    with pytest.raises(ValueError, match=r"activation 'gelu', use_gated_activation=True .* neither T5 v1\.0"):
        seq2seq.t5_from_keras_hub(gated_exact_gelu)


@pytest.mark.slow  # long: run with -m slow
def test_quick_seq2seq_section_times_greedy_and_beam_with_the_same_tokens(tmp_path):
    results = run_benchmarks(str(tmp_path), sections=["seq2seq"], quick=True)
    section = results["seq2seq"]
    assert section["rounds"] == 2 and section["num_beams"] == 4 and set(section["batches"]) == {"3"}
    table = (tmp_path / "bench.md").read_text()
    assert table.startswith(f"Machine: {results['machine']}") and "2 interleaved rounds in one process" in table
    assert f"Model for (g): {seq2seq.QUICK.label}, one generate call per round" in table
    assert "keras_lm with its default compilation (XLA)" in table
    for decoding, name in (("greedy", "greedy"), ("beam", "beam-4")):
        figures = section["batches"]["3"][decoding]
        assert figures["errors"] == {}, figures["errors"]
        # keras_lm (batch padded to 4, XLA) and keras-hub pick the same tokens on the ported weights.
        assert figures["same_tokens_as_keras_hub"] is True, decoding
        runs = figures["keras_hub_runs"]
        assert set(runs) == {"xla" if jit else "no_xla" for jit in seq2seq.QUICK.keras_hub_jit_compile}
        for run in runs.values():
            assert run["tokens_per_second"] >= run["median_tokens_per_second"] > 0 and run["same_tokens_as_keras_lm"]
        fastest = max(runs, key=lambda kind: runs[kind]["tokens_per_second"])
        assert figures["keras_hub_tokens_per_second"] == runs[fastest]["tokens_per_second"]
        assert figures["keras_hub_jit_compile"] == (fastest == "xla")
        ours, hub = figures["keras_lm_tokens_per_second"], figures["keras_hub_tokens_per_second"]
        medians = figures["median_tokens_per_second"]
        assert ours >= medians["keras_lm"] > 0 and hub >= medians["keras_hub"] > 0  # best round vs median round
        assert medians["keras_hub"] == runs[fastest]["median_tokens_per_second"]
        (row,) = [line for line in table.splitlines() if line.startswith(f"| (g) seq2seq {name} decoding")]
        assert row.startswith(f"| (g) seq2seq {name} decoding tokens/s, batch 3")
        assert row.endswith(f" | {ours:,.1f} ({medians['keras_lm']:,.1f}) | {hub:,.1f} ({medians['keras_hub']:,.1f}) "
                            f"| — | {ours / hub:.2f}× |"), row


def test_a_case_keras_hub_cannot_run_is_a_dash_and_a_note_and_differing_tokens_are_flagged():
    def figures(ours, hub, same, errors, hub_xla=None, runs=None):
        return {"keras_lm_tokens_per_second": ours, "keras_hub_tokens_per_second": hub,
                "median_tokens_per_second": {"keras_lm": ours and ours / 2, "keras_hub": hub and hub / 2},
                "same_tokens_as_keras_hub": same, "keras_lm_jit_compile": True, "keras_hub_jit_compile": hub_xla,
                "keras_hub_runs": runs or {}, "errors": errors}

    def run(tokens_per_second):
        return {"tokens_per_second": tokens_per_second, "median_tokens_per_second": tokens_per_second,
                "same_tokens_as_keras_lm": True}

    results = {"machine": "a test machine", "date": "today", "seq2seq": {
        "config": "T5", "rounds": 5, "num_beams": 4, "keras_hub_jit_compile": [False, True], "batches": {"8": {
            "greedy": figures(300.0, 100.0, False, {}, True, {"no_xla": run(40.0), "xla": run(100.0)}),
            "beam": figures(120.0, None, None, {"keras-hub without XLA": "ValueError: no | beams",
                                                "keras-hub with XLA": "TypeError: x"},
                            None, {"no_xla": run(None), "xla": run(None)})}}}}
    table = format_table(results)
    assert "5 interleaved rounds" in table
    assert "keras_lm with its default compilation (XLA), keras-hub timed without and with XLA" in table
    assert ("| (g) seq2seq greedy decoding tokens/s, batch 8 (tokens differ!; keras-hub with XLA, its faster) | "
            "300.0 (150.0) | 100.0 (50.0) | — | 3.00× |") in table
    assert ("| (g) seq2seq beam-4 decoding tokens/s, batch 8 (keras-hub without XLA cannot run it: ValueError: "
            "no / beams; keras-hub with XLA cannot run it: TypeError: x) | 120.0 (60.0) | — | — | — |") in table
