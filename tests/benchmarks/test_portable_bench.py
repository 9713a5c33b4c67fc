"""(h) portable vs tf-text string-in serving latency: the quick run through the CLI gives every figure."""
import json

import pytest


@pytest.mark.slow  # builds, exports and times four SavedModels (about a minute of CPU): run with -m slow
def test_portable_section_through_the_cli_times_both_exports_for_both_tokenizers(tmp_path):
    from keras_lm.cli import main

    assert main(["bench", "--output", str(tmp_path), "--sections", "portable", "--quick"]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    section = results["portable"]
    assert set(section["tokenizers"]) == {"word_piece", "byte_pair"}
    for kind, figures_by_batch in section["tokenizers"].items():
        assert set(figures_by_batch["batches"]) == {"1", "32"}
        for figures in figures_by_batch["batches"].values():
            for export in ("tf_text", "portable"):
                assert 0 < figures[export]["best_ms"] <= figures[export]["p50_ms"] <= figures[export]["p99_ms"]
            ratio = figures["portable"]["p50_ms"] / figures["tf_text"]["p50_ms"]
            assert abs(figures["portable_over_tf_text"] - ratio) < 1e-9
    table = (tmp_path / "bench.md").read_text()
    assert table.startswith(f"Machine: {results['machine']}")
    byte_pair_32 = section["tokenizers"]["byte_pair"]["batches"]["32"]
    row = [line for line in table.splitlines() if line.startswith("| byte-level BPE (RoBERTa-style), batch 32 |")]
    assert row and row[0].endswith(f"| {byte_pair_32['portable_over_tf_text']:.2f} |")
