"""The benchmark table (markdown) and the machine it ran on."""
from __future__ import annotations

import os
import platform
import re

README_START = "<!-- bench:start -->"
METHOD = ("every system built and warmed up first (tracing excluded), then timed in {rounds}interleaved "
          "rounds in one process, order rotated each round; each figure is a system's best round (noise "
          "only ever slows a round down) with its median round in parentheses; ratios are of best rounds")
README_END = "<!-- bench:end -->"


MATMUL_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def machine_info(cpuinfo: str | None = None) -> dict:
    """The CPU model, core count, matmul-relevant ISA flags, memory, GPUs and library versions.

    Args:
        cpuinfo: the text of /proc/cpuinfo (read from the machine when None).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = set(re.findall(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)[0].split()) if "flags" in cpuinfo else set()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    try:
        memory_gib = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30)
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    import tensorflow as tf

    return {
        "cpu": names[0].strip() if names else (platform.processor() or platform.machine()),
        "cores": cores,
        "isa_flags": {flag: flag in flags for flag in MATMUL_ISA_FLAGS},
        "memory_gib": memory_gib,
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "versions": {name: _version(module) for name, module in
                     (("TensorFlow", "tensorflow"), ("Keras", "keras"), ("keras-hub", "keras_hub"),
                      ("torch", "torch"))},
    }


def machine_description(info: dict | None = None) -> str:
    """One line naming the machine: CPU, cores, ISA flags that set matmul speed, memory, GPUs, versions.

    Example:
        >>> machine_description()  # doctest: +SKIP
        'Intel(R) Xeon(R) Processor, 2 cores, avx2 avx512f avx512_bf16 (no amx_tile amx_bf16), 24 GiB, …'
    """
    info = info or machine_info()
    present = [flag for flag, on in info["isa_flags"].items() if on]
    absent = [flag for flag, on in info["isa_flags"].items() if not on]
    isa = " ".join(present) or "none of " + " ".join(MATMUL_ISA_FLAGS)
    if present and absent:
        isa += f" (no {' '.join(absent)})"
    memory = f", {info['memory_gib']} GiB" if info.get("memory_gib") else ""
    gpus = ", ".join(info["gpus"]) if info["gpus"] else "no GPU"
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items() if version)
    return f"{info['cpu']}, {info['cores']} cores, {isa}{memory}, {gpus}; {versions}"


def _number(value, digits=0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _best_median(best, median, digits=0) -> str:
    """`best (median)` of a figure timed in rounds."""
    if best is None:
        return "—"
    return _number(best, digits) + ("" if median is None else f" ({_number(median, digits)})")


def _ratio(a, b) -> str:
    return "—" if not a or not b else f"{a / b:.2f}×"


def _best_precision(runs: dict, library: str, key: str = "tokens_per_second"):
    values = [runs[f"{library}/{p}"][key] for p in ("float32", "mixed_bfloat16") if f"{library}/{p}" in runs]
    return max(values) if values else None


def targets(results: dict) -> list:
    """Every target the figures of `results` can be held against, each with its measured value.

    Returns a list of {"target", "measured", "threshold", "at_least", "reached"}; `measured` is None
    (and `reached` False) when the run lacks the figures (or generated tokens differ from keras-hub's).

    Example:
        >>> found = targets({"generation": {"batches": {"1": {"keras_lm_tokens_per_second": 210.0,
        ...     "keras_hub_tokens_per_second": 100.0, "same_tokens_as_keras_hub": True}}}})
        >>> found[0]["measured"], found[0]["reached"]
        (2.1, True)
    """
    found = []

    def add(name, measured, threshold, at_least=True):
        reached = measured is not None and (measured >= threshold if at_least else measured <= threshold)
        found.append({"target": name, "measured": measured, "threshold": threshold, "at_least": at_least,
                      "reached": bool(reached)})

    mlm = results.get("mlm")
    if mlm:
        runs = mlm["runs"]
        ours, hub = _best_precision(runs, "keras_lm"), _best_precision(runs, "keras_hub")
        add("MLM train tokens/s, best precision each: keras_lm ÷ keras-hub", ours / hub if ours and hub else None,
            1.3)
        for policy, peak in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
            add(f"keras_lm MLM model FLOP/s ÷ measured {peak} matmul peak",
                runs.get(f"keras_lm/{policy}", {}).get("fraction_of_peak"), 0.8)
    generation = results.get("generation")
    if generation:
        for batch, figures in generation["batches"].items():
            ours, hub = figures["keras_lm_tokens_per_second"], figures["keras_hub_tokens_per_second"]
            add(f"greedy generation tokens/s, batch {batch}: keras_lm ÷ keras-hub",
                ours / hub if ours and hub and figures["same_tokens_as_keras_hub"] else None, 2.0)
    packing = results.get("packing")
    if packing:
        ours = packing["keras_lm_packed"]["real_tokens_per_second"]
        hub = packing["keras_hub_padded"]["real_tokens_per_second"]
        add("non-padding tokens/s on Shakespeare: keras_lm packed ÷ keras-hub padded", ours / hub, 3.0)
        add("input pipeline batches/s ÷ model steps/s", packing["pipeline"]["ratio"], 10.0)
    serving = results.get("serving")
    if serving and "1" in serving["batches"]:
        figures = serving["batches"]["1"]
        add("serving p50 latency, batch 1: string in ÷ token ids in",
            figures["string_in"]["p50_ms"] / figures["bare_trimmed"]["p50_ms"], 1.15, at_least=False)
    return found


def format_targets(found: list) -> str:
    """A markdown table of `targets(...)`: measured value, wanted bound, reached / not reached."""
    rows = ["| target | measured | wanted | result |", "|---|---|---|---|"]
    for target in found:
        measured = "—" if target["measured"] is None else f"{target['measured']:.2f}"
        wanted = ("≥ " if target["at_least"] else "≤ ") + f"{target['threshold']:g}"
        rows.append(f"| {target['target']} | {measured} | {wanted} | "
                    f"{'reached' if target['reached'] else 'not reached'} |")
    return "\n".join(rows)


def seq2seq_rows(seq2seq: dict) -> list:
    """The (g) rows of a seq2seq section: greedy and beam decoding tokens/s per batch size.

    keras-hub's figure is its faster compilation (the row says which when both were timed); a
    system that could not run a case shows "—" and the row names its error; tokens that differ
    from keras-hub's are flagged like the (f) rows.
    """
    rows = []
    for batch, decodings in seq2seq["batches"].items():
        for decoding, figures in decodings.items():
            ours, hub = figures["keras_lm_tokens_per_second"], figures["keras_hub_tokens_per_second"]
            medians = figures.get("median_tokens_per_second", {})
            name = "greedy" if decoding == "greedy" else f"beam-{seq2seq['num_beams']}"
            notes = ["tokens differ!"] if figures.get("same_tokens_as_keras_hub") is False else []
            timed = [run for run in figures.get("keras_hub_runs", {}).values() if run["tokens_per_second"]]
            if len(timed) > 1 and figures.get("keras_hub_jit_compile") is not None:
                notes.append(f"keras-hub {'with' if figures['keras_hub_jit_compile'] else 'without'} XLA, its faster")
            notes += [f"{system} cannot run it: {error.replace('|', '/')}"
                      for system, error in figures.get("errors", {}).items()]
            rows.append(f"| (g) seq2seq {name} decoding tokens/s, batch {batch}"
                        f"{' (' + '; '.join(notes) + ')' if notes else ''} | "
                        f"{_best_median(ours, medians.get('keras_lm'), 1)} | "
                        f"{_best_median(hub, medians.get('keras_hub'), 1)} | — | {_ratio(ours, hub)} |")
    return rows


def format_table(results: dict) -> str:
    """The markdown table of a `run_benchmarks` result: machine, method, figures, targets, profile.

    Example:
        >>> format_table(json.load(open("runs/bench/bench.json")))  # doctest: +SKIP
    """
    rows = ["| benchmark | keras_lm | keras-hub | HF torch | keras_lm ÷ keras-hub |",
            "|---|---|---|---|---|"]
    mlm = results.get("mlm")
    if mlm:
        runs = mlm["runs"]

        def cell(name, key="tokens_per_second", digits=0):
            run = runs.get(name)
            return "—" if run is None else _best_median(run[key], run.get(f"median_{key}"), digits)

        def tps(name):
            return runs.get(name, {}).get("tokens_per_second")

        for policy in ("float32", "mixed_bfloat16"):
            ours, hub = tps(f"keras_lm/{policy}"), tps(f"keras_hub/{policy}")
            torch = cell("hf_torch/float32") if policy == "float32" else "—"
            rows.append(f"| (a) MLM train tokens/s, {policy} | {cell(f'keras_lm/{policy}')} | "
                        f"{cell(f'keras_hub/{policy}')} | {torch} | {_ratio(ours, hub)} |")
        for name in sorted(runs):
            if name.startswith("keras_lm_"):  # keras_lm with another attention kernel (timed on GPU/TPU)
                library, policy = name.split("/")
                kernel = library[len("keras_lm_"):]
                rows.append(f"| (a) MLM train tokens/s, {policy}, keras_lm with {kernel} attention | "
                            f"{cell(name)} | {cell(f'keras_hub/{policy}')} | — | "
                            f"{_ratio(tps(name), tps(f'keras_hub/{policy}'))} |")
        best_ours, best_hub = _best_precision(runs, "keras_lm"), _best_precision(runs, "keras_hub")
        rows.append(f"| (a) best precision each | {_number(best_ours)} | {_number(best_hub)} | "
                    f"{_number(tps('hf_torch/float32'))} | {_ratio(best_ours, best_hub)} |")
        for policy, peak_name in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
            ours = runs.get(f"keras_lm/{policy}", {}).get("fraction_of_peak")
            hub = runs.get(f"keras_hub/{policy}", {}).get("fraction_of_peak")
            peak = mlm["peak_gflops"][peak_name]
            median_peak = mlm.get("peak_median_gflops", {}).get(peak_name)
            rows.append(f"| (c) model FLOP/s ÷ matmul peak ({peak_name}, peak "
                        f"{_best_median(peak, median_peak)} GFLOP/s) | {_number(ours, 2)} | {_number(hub, 2)} | "
                        f"— | {_ratio(ours, hub)} |")
    packing = results.get("packing")
    if packing:
        ours, hub = packing["keras_lm_packed"], packing["keras_hub_padded"]
        fractions = packing["non_padding_fraction"]

        def real(run):
            median = run.get("median_seconds_per_step")
            return _best_median(run["real_tokens_per_second"],
                                run["real_tokens_per_second"] * run["seconds_per_step"] / median if median else None)

        rows.append(f"| (b) non-padding tokens/s on Shakespeare (packed {fractions['keras_lm_packed']:.0%} "
                    f"vs one line per row {fractions['keras_hub_padded']:.0%} real tokens) | "
                    f"{real(ours)} | {real(hub)} | — | "
                    f"{_ratio(ours['real_tokens_per_second'], hub['real_tokens_per_second'])} |")
        pipeline = packing["pipeline"]
        rows.append(f"| (e) input pipeline batches/s ÷ model steps/s | {_number(pipeline['batches_per_second'], 1)}"
                    f" ÷ {_number(pipeline['model_steps_per_second'], 2)} = {pipeline['ratio']:.1f}× | — | — | — |")
    generation = results.get("generation")
    if generation:
        for batch, figures in generation["batches"].items():
            ours, hub = figures["keras_lm_tokens_per_second"], figures["keras_hub_tokens_per_second"]
            medians = figures.get("median_tokens_per_second", {})
            same = "" if figures["same_tokens_as_keras_hub"] else " (tokens differ!)"
            if "keras_hub_jit_compile" in figures:
                same += (", keras-hub with XLA (its faster)" if figures["keras_hub_jit_compile"]
                         else ", keras-hub without XLA (its faster)")
            rows.append(f"| (f) greedy generation tokens/s, batch {batch}{same} | "
                        f"{_best_median(ours, medians.get('keras_lm'), 1)} | "
                        f"{_best_median(hub, medians.get('keras_hub'), 1)} | "
                        f"{_best_median(figures['hf_torch_tokens_per_second'], medians.get('hf_torch'), 1)} | "
                        f"{_ratio(ours, hub)} |")
            for weight_dtype, low in figures.get("low_precision", {}).items():
                xla = "XLA" if low["jit_compile"] else "no XLA"
                rows.append(f"| (f) greedy generation tokens/s, batch {batch}, keras_lm {weight_dtype} weights "
                            f"({xla}; {low['same_new_tokens_as_float32']:.0%} of new tokens as float32) | "
                            f"{_best_median(low['tokens_per_second'], low['median_tokens_per_second'], 1)} | "
                            f"{_best_median(hub, medians.get('keras_hub'), 1)} | "
                            f"{_best_median(figures['hf_torch_tokens_per_second'], medians.get('hf_torch'), 1)} | "
                            f"{_ratio(low['tokens_per_second'], hub)} |")
    seq2seq = results.get("seq2seq")
    if seq2seq:
        rows += seq2seq_rows(seq2seq)
    serving = results.get("serving")
    if serving:
        rows += ["", "| (d) serving latency, p50 / p99 ms | string in | token ids in (same tokens) | "
                 "token ids padded to full length | string ÷ token ids (p50) |",
                 "|---|---|---|---|---|"]
        for batch, figures in serving["batches"].items():
            s, bare, full = figures["string_in"], figures["bare_trimmed"], figures["bare_full_length"]
            rows.append(f"| batch {batch} | {s['p50_ms']:.1f} / {s['p99_ms']:.1f} | "
                        f"{bare['p50_ms']:.1f} / {bare['p99_ms']:.1f} | "
                        f"{full['p50_ms']:.1f} / {full['p99_ms']:.1f} | "
                        f"{_ratio(s['p50_ms'], bare['p50_ms'])} |")
    if len(rows) > 2 and rows[2] == "":
        rows = rows[3:]  # no throughput rows: the serving table alone
    if len(rows) == 2:
        rows = []  # profile only
    header = [f"Machine: {results['machine']} — {results['date']}"
              + (" (quick mode: tiny model, figures not meaningful)" if results.get("quick") else "")]
    rounds = sorted({section["rounds"] for section in (mlm, packing, generation, seq2seq)
                     if section and "rounds" in section})
    if rows:
        header.append("Method: " + METHOD.format(rounds=" / ".join(map(str, rounds)) + " " if rounds else "")
                      + ("; serving latencies are percentiles over requests alternating between the three "
                         "kinds" if serving else "") + ".")
    if mlm:
        kernel = mlm.get("attention_kernel")
        header.append(f"Model for (a)/(c): {mlm['config']}, {mlm['steps_per_round']} steps per round"
                      + (f"; keras_lm attention kernel: {kernel} (its \"auto\" choice on this machine)"
                         if kernel else "") + ".")
    if packing:
        header.append(f"Model for (b)/(e): {packing.get('config', 'the same, 8000-token vocabulary')}, "
                      f"{packing.get('steps_per_round', '?')} steps per round.")
    if generation:
        header.append(f"Model for (f): {generation['config']}, one generate call per round.")
    if seq2seq:
        lm_xla = {figures["keras_lm_jit_compile"] for decodings in seq2seq["batches"].values()
                  for figures in decodings.values()}
        lm_xla = "XLA" if lm_xla == {True} else "no XLA" if lm_xla == {False} else "XLA per batch size"
        hub_xla = sorted(set(seq2seq.get("keras_hub_jit_compile", [])))
        hub_xla = ("timed without and with XLA, its faster one counting" if hub_xla == [False, True]
                   else "with XLA" if hub_xla == [True] else "without XLA")
        header.append(f"Model for (g): {seq2seq['config']}, one generate call per round; tokens/s counts the "
                      f"new tokens of every row (not beams); keras_lm with its default compilation ({lm_xla}), "
                      f"keras-hub {hub_xla}.")
    if serving:
        header.append(f"Serving model for (d): {serving['model']}.")
    text = "\n".join(header) + ("\n\n" + "\n".join(rows) if rows else "")
    found = targets(results)
    if found:
        text += "\n\nTargets, measured in this run on this machine:\n\n" + format_targets(found)
    if results.get("profile"):
        from keras_lm.benchmarks.profile import format_profile

        text += "\n\n" + format_profile(results["profile"])
    return text


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
