"""Where a keras_lm BERT masked-LM training step's time goes on this machine, by op category.

The TensorFlow profiler traces a few compiled train steps; every TF op event of the trace (``name:Type``
on the executor threads) is charged its self time and put into a category by its type and name scope
(matmul, softmax, LayerNorm, GELU, dropout, optimizer update, casts, …). Shares are of the summed op time
(ops on the two inter-op threads may overlap, and the executor may idle between them, so the summed op
time is reported beside the wall time of a step). Only host (CPU) planes are read: on a GPU the kernels
live in the device planes and this table would show their launches only.

Example:
    >>> op_category("gradient_tape/bert/layer_0/feed_forward_layer_norm/mul", "Mul")
    'LayerNorm'
    >>> op_category("bert/layer_0/self_attention/qkv/Tensordot/MatMul", "_MklMatMul")
    'matmul'
    >>> op_category("adam_w/Cast_12", "Cast")
    'optimizer update'
"""
from __future__ import annotations

import collections
import glob
import os
import re
import shutil
import time

import keras
import tensorflow as tf

from keras_lm.benchmarks.timing import dtype_policy, train_steps

CATEGORIES = ("matmul", "bias add", "softmax / cross-entropy", "LayerNorm", "GELU", "dropout",
              "optimizer update", "casts", "gathers / scatters", "transposes / copies", "other")

# Events on the executor threads that stand for a whole function or control-flow region, not an op.
_CALL_TYPES = {"StatefulPartitionedCall", "PartitionedCall", "While", "StatelessWhile", "If",
               "StatelessIf", "_Arg", "_Retval", "NoOp", "Const", "_Recv", "_Send"}
_COPY_TYPES = {"Transpose", "_MklTranspose", "ConjugateTranspose", "ConcatV2", "Concat", "Split", "SplitV",
               "Pack", "Unpack", "Reshape", "_MklReshape", "Pad", "PadV2", "Tile", "Slice", "StridedSlice",
               "StridedSliceGrad", "BroadcastTo", "Identity", "Squeeze", "ExpandDims", "ZerosLike", "Fill"}
_OP_EVENT = re.compile(r"^(?P<name>[^:\s][^:]*):(?P<type>[A-Za-z_][\w]*)$")


def op_category(name: str, op_type: str) -> str:
    """The category of one TF op from its full name (with name scopes) and its type."""
    scope, kind = name.lower(), op_type.lower()
    if "matmul" in kind or "einsum" in kind or kind.startswith("conv"):
        return "matmul"
    if re.search(r"adam|optimizer|sgd|adafactor|rmsprop", scope) or kind.startswith(("resourceapply", "apply")):
        return "optimizer update"  # its own casts (step count to float) included
    if kind in ("cast", "_mklcast"):
        return "casts"
    if "dropout" in scope or kind.startswith(("statelessrandom", "randomuniform", "randomstandard")):
        return "dropout"
    if "softmax" in kind or "softmax" in scope or "crossentropy" in scope or "cross_entropy" in scope:
        return "softmax / cross-entropy"
    if re.search(r"(norm|normalization|moments)(_\d+)?(/|$)", scope) or "norm" in kind:
        return "LayerNorm"
    if "gelu" in scope or "gelu" in kind or kind in ("erf", "erfc", "tanh", "tanhgrad"):
        return "GELU"
    if kind.startswith("biasadd"):
        return "bias add"
    if "gather" in kind or "scatter" in kind or "segmentsum" in kind:
        return "gathers / scatters"
    if op_type in _COPY_TYPES:
        return "transposes / copies"
    return "other"


def op_self_times(xplane_path: str) -> dict:
    """(op name, op type) -> total self seconds of every TF op event in one profiler ``.xplane.pb``.

    Function-call and control-flow events are skipped; an op event nested in another op event on the
    same thread is subtracted from its parent, so no time is counted twice.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(xplane_path, "rb") as f:
        space.ParseFromString(f.read())
    times = collections.defaultdict(float)
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            events = []
            for event in line.events:
                match = _OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if not match or match["type"].startswith("__") or match["type"] in _CALL_TYPES:
                    continue
                name = match["name"].removeprefix("StatefulPartitionedCall/")
                events.append((event.offset_ps, event.offset_ps + event.duration_ps, name, match["type"]))
            events.sort(key=lambda e: (e[0], -e[1]))
            stack = []  # (end, key) of the enclosing op events
            for start, end, name, op_type in events:
                while stack and stack[-1][0] <= start:
                    stack.pop()
                if stack:
                    times[stack[-1][1]] -= (end - start) / 1e12
                times[(name, op_type)] += (end - start) / 1e12
                stack.append((end, (name, op_type)))
    return dict(times)


def aggregate(op_times: dict) -> dict:
    """Category -> {"seconds", "percent", "op_types": [largest op types]} from `op_self_times`."""
    seconds = collections.defaultdict(float)
    by_type = collections.defaultdict(collections.Counter)
    for (name, op_type), value in op_times.items():
        category = op_category(name, op_type)
        seconds[category] += value
        by_type[category][op_type] += value
    total = sum(seconds.values())
    if total <= 0:
        raise ValueError("The profile holds no TF op events: was the step run between profiler start and stop?")
    return {category: {"seconds": seconds[category], "percent": 100.0 * seconds[category] / total,
                       "op_types": [t for t, _ in by_type[category].most_common(3)]}
            for category in CATEGORIES}


def _profile_steps(run, steps_per_call: int, trace_dir: str) -> tuple[float, str]:
    shutil.rmtree(trace_dir, ignore_errors=True)
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0,
                                                       device_tracer_level=1)
    tf.profiler.experimental.start(trace_dir, options=options)
    try:
        start = time.perf_counter()
        run()
        wall = (time.perf_counter() - start) / steps_per_call
    finally:
        tf.profiler.experimental.stop()
    paths = sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.xplane.pb")))
    if not paths:
        raise RuntimeError(f"The TF profiler wrote no .xplane.pb under {trace_dir}.")
    return wall, paths[-1]


def profile_training_step(config, log, trace_dir: str, steps: int = 3,
                          policies=("float32", "mixed_bfloat16")) -> dict:
    """Profiles `steps` keras_lm MaskedLM train steps of `config` (an `MlmConfig`) per dtype policy.

    Returns {"config", "steps", "policies": {policy: {"wall_ms_per_step", "op_ms_per_step",
    "categories": aggregate(...)}}}; the traces stay under ``trace_dir/<policy>`` for TensorBoard.
    """
    from keras_lm.benchmarks import mlm

    batch = mlm.synthetic_batch(config)
    results = {"config": config.label, "steps": steps, "policies": {}}
    for policy in policies:
        log(f"(p) profiling {steps} keras_lm masked LM train steps, {policy}")
        keras.utils.set_random_seed(0)
        with dtype_policy(policy):
            model = mlm.keras_lm_model(config)
        run = train_steps(model, mlm._keras_lm_batch(batch), steps, config.warmup_steps)
        run()  # untimed: the first call after tracing still fills caches
        wall, path = _profile_steps(run, steps, os.path.join(trace_dir, policy))
        op_times = op_self_times(path)
        results["policies"][policy] = {
            "wall_ms_per_step": 1e3 * wall,
            "op_ms_per_step": 1e3 * sum(op_times.values()) / steps,
            "categories": aggregate(op_times),
        }
    return results


def format_profile(profile: dict) -> str:
    """A markdown table: % of summed TF op time per category and precision."""
    policies = list(profile["policies"])
    rows = ["| where a keras_lm MLM train step's time goes | " + " | ".join(f"{p} %" for p in policies)
            + " | largest op types |",
            "|---|" + "---|" * len(policies) + "---|"]
    for category in CATEGORIES:
        shares = [profile["policies"][p]["categories"][category]["percent"] for p in policies]
        types = []
        for p in policies:
            types += [t for t in profile["policies"][p]["categories"][category]["op_types"] if t not in types]
        rows.append(f"| {category} | " + " | ".join(f"{share:.1f}" for share in shares)
                    + f" | {', '.join(types[:4])} |")
    steps = "; ".join(f"{p}: {profile['policies'][p]['wall_ms_per_step']:,.0f} ms wall, "
                      f"{profile['policies'][p]['op_ms_per_step']:,.0f} ms of TF ops" for p in policies)
    return (f"TF profiler, {profile['steps']} train steps of {profile['config']}; shares of the TF op time "
            f"summed over threads (per step: {steps}).\n\n" + "\n".join(rows))
