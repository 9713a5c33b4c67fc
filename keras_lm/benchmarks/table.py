"""The benchmark table (markdown) and the machine it ran on."""
from __future__ import annotations

import os
import platform
import re

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = re.findall(r"model name\s*:\s*(.+)", f.read())
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    import keras
    import tensorflow as tf

    return f"{cpu}, {os.cpu_count()} cores{memory}; TensorFlow {tf.__version__}, Keras {keras.__version__}"


def _number(value, digits=0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(a, b) -> str:
    return "—" if not a or not b else f"{a / b:.2f}×"


def format_table(results: dict) -> str:
    rows = ["| benchmark | keras_lm | keras-hub | HF torch | keras_lm ÷ other | target |",
            "|---|---|---|---|---|---|"]
    mlm = results.get("mlm")
    if mlm:
        runs = mlm["runs"]

        def tps(name):
            return runs.get(name, {}).get("tokens_per_second")

        torch = tps("hf_torch/float32")
        for policy in ("float32", "mixed_bfloat16"):
            ours, hub = tps(f"keras_lm/{policy}"), tps(f"keras_hub/{policy}")
            rows.append(f"| (a) MLM train tokens/s, {policy} | {_number(ours)} | {_number(hub)} | "
                        f"{_number(torch) if policy == 'float32' else '—'} | {_ratio(ours, hub)} | |")
        best_ours = max(tps("keras_lm/float32") or 0, tps("keras_lm/mixed_bfloat16") or 0)
        best_hub = max(tps("keras_hub/float32") or 0, tps("keras_hub/mixed_bfloat16") or 0)
        rows.append(f"| (a) best precision each | {_number(best_ours)} | {_number(best_hub)} | "
                    f"{_number(torch)} | {_ratio(best_ours, best_hub)} | ≥ 1.6× |")
        for policy, peak_name in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
            ours = runs.get(f"keras_lm/{policy}", {}).get("fraction_of_peak")
            hub = runs.get(f"keras_hub/{policy}", {}).get("fraction_of_peak")
            peak = mlm["peak_gflops"][peak_name]
            rows.append(f"| (c) model FLOP/s ÷ matmul peak ({peak_name}, peak {peak:,.0f} GFLOP/s) | "
                        f"{_number(ours, 2)} | {_number(hub, 2)} | — | {_ratio(ours, hub)} | ≥ 0.75 |")
    packing = results.get("packing")
    if packing:
        ours = packing["keras_lm_packed"]["real_tokens_per_second"]
        hub = packing["keras_hub_padded"]["real_tokens_per_second"]
        fractions = packing["non_padding_fraction"]
        rows.append(f"| (b) non-padding tokens/s on Shakespeare (packed {fractions['keras_lm_packed']:.0%} "
                    f"vs one line per row {fractions['keras_hub_padded']:.0%} real tokens) | "
                    f"{_number(ours)} | {_number(hub)} | — | {_ratio(ours, hub)} | ≥ 3× |")
        pipeline = packing["pipeline"]
        rows.append(f"| (e) input pipeline batches/s ÷ model steps/s | {_number(pipeline['batches_per_second'], 1)}"
                    f" ÷ {_number(pipeline['model_steps_per_second'], 2)} | — | — | "
                    f"{pipeline['ratio']:.1f}× | ≥ 10× |")
    generation = results.get("generation")
    if generation:
        for batch, figures in generation["batches"].items():
            ours, hub = figures["keras_lm_tokens_per_second"], figures["keras_hub_tokens_per_second"]
            same = "" if figures["same_tokens_as_keras_hub"] else " (tokens differ!)"
            rows.append(f"| (f) greedy generation tokens/s, batch {batch}{same} | {_number(ours, 1)} | "
                        f"{_number(hub, 1)} | {_number(figures['hf_torch_tokens_per_second'], 1)} | "
                        f"{_ratio(ours, hub)} | ≥ 2× |")
    serving = results.get("serving")
    if serving:
        rows += ["", "| (d) serving latency, p50 / p99 ms | string in | token ids in (same tokens) | "
                 "token ids padded to full length | string ÷ token ids (p50) | target |",
                 "|---|---|---|---|---|---|"]
        for batch, figures in serving["batches"].items():
            s, bare, full = figures["string_in"], figures["bare_trimmed"], figures["bare_full_length"]
            rows.append(f"| batch {batch} | {s['p50_ms']:.1f} / {s['p99_ms']:.1f} | "
                        f"{bare['p50_ms']:.1f} / {bare['p99_ms']:.1f} | "
                        f"{full['p50_ms']:.1f} / {full['p99_ms']:.1f} | "
                        f"{_ratio(s['p50_ms'], bare['p50_ms'])} | {'≤ 1.15×' if batch == '1' else ''} |")
    if len(rows) > 2 and rows[2] == "":
        rows = rows[3:]  # no throughput rows: the serving table alone
    header = [f"Machine: {results['machine']} — {results['date']}"
              + (" (quick mode: tiny model, figures not meaningful)" if results.get("quick") else "")]
    if mlm:
        header.append(f"Model for (a)/(c): {mlm['config']}; (b) same model with an 8000-token vocabulary.")
    if generation:
        header.append(f"Model for (f): {generation['config']}.")
    if serving:
        header.append(f"Serving model for (d): {serving['model']}.")
    return "\n".join(header) + "\n\n" + "\n".join(rows)


def update_readme(readme: str, table: str) -> None:
    """Replaces the text between the bench markers of `readme` with `table`."""
    with open(readme) as f:
        text = f.read()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} … {README_END} markers.")
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    with open(readme, "w") as f:
        f.write(text[:start] + "\n" + table + "\n" + text[end:])
