"""Greedy generation throughput: keras_lm `CausalLM.generate` vs keras-hub `GPT2CausalLM.generate`.

Both carry the same random weights (keras_lm imports keras-hub's backbone), decode greedily without
stop tokens, and must produce the same tokens; HF transformers `GPT2LMHeadModel.generate` on torch runs
too when installed (its own random weights: speed only). Every weight of the keras-hub backbone is
drawn at random (biases and LayerNorm gammas/betas too, see `randomize_weights`), so the token check
fails if any weight is mapped wrongly.

keras_lm also decodes with low-precision weights (`CausalLM.generate(weight_dtype="bfloat16" | "int8")`,
each with its default `jit_compile`), timed in the same interleaved rounds; their tokens are compared
with keras_lm's float32 tokens (the fraction of identical new tokens).
"""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

from keras_lm.benchmarks.timing import interleaved_rounds


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """GPT-2-style 6L/H512/A8, vocab 50257, 128 new tokens after a 32-token prompt."""

    num_layers: int = 6
    hidden_dim: int = 512
    num_heads: int = 8
    vocabulary_size: int = 50257
    prompt_length: int = 32
    new_tokens: int = 128
    batch_sizes: tuple = (1, 8)
    rounds: int = 5
    weight_dtypes: tuple = ("bfloat16", "int8")  # low-precision keras_lm rows beside float32

    @property
    def label(self) -> str:
        return (f"GPT-2-style {self.num_layers}L/H{self.hidden_dim}/A{self.num_heads}, vocab "
                f"{self.vocabulary_size}, prompt {self.prompt_length}, {self.new_tokens} new tokens, greedy")


QUICK = GenerationConfig(num_layers=2, hidden_dim=64, num_heads=2, vocabulary_size=1000,
                         prompt_length=8, new_tokens=16, rounds=2)


def _torch_generator(config: GenerationConfig):
    """A function prompts -> greedy HF transformers `GPT2LMHeadModel` generation (None without torch)."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=config.vocabulary_size, n_embd=config.hidden_dim, n_layer=config.num_layers,
        n_head=config.num_heads, n_positions=1024, bos_token_id=config.vocabulary_size - 1,
        eos_token_id=config.vocabulary_size - 1)).eval()

    def generate(prompts: np.ndarray):
        ids = torch.from_numpy(prompts.astype("int64"))
        with torch.no_grad():
            return model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=config.new_tokens, min_new_tokens=config.new_tokens,
                                  pad_token_id=0)

    return generate


def randomize_weights(backbone, seed: int = 0, std: float = 0.2) -> None:
    """Draws every weight of ``backbone`` from N(0, std), LayerNorm gammas from N(1, std).

    A default-initialized backbone has zero biases and LayerNorms at gamma=1, beta=0, under which a
    swapped or dropped bias or norm in a weight import would still give the same tokens.
    """
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        center = 1.0 if weight.path.endswith("gamma") else 0.0
        weight.assign((center + std * rng.standard_normal(weight.shape)).astype(weight.dtype))


def random_gpt2_backbone(config: GenerationConfig, seed: int = 0):
    """A keras-hub ``GPT2Backbone`` of ``config``'s shape with every weight random."""
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=config.vocabulary_size, num_layers=config.num_layers,
        num_heads=config.num_heads, hidden_dim=config.hidden_dim,
        intermediate_dim=4 * config.hidden_dim, max_sequence_length=1024,
    )
    randomize_weights(backbone, seed)
    return backbone


def _same_fraction(tokens, reference, prompt_length: int) -> float:
    """The fraction of generated positions where ``tokens`` equal ``reference`` (prompts excluded)."""
    tokens, reference = np.asarray(tokens)[:, prompt_length:], np.asarray(reference)[:, prompt_length:]
    return float(np.mean(tokens == reference))


def generation_throughput(config: GenerationConfig, log, hub_backbone=None, include_torch: bool = True) -> dict:
    """Greedy tokens/s of keras_lm and keras-hub (and HF torch) plus whether their tokens agree.

    Per batch size, the systems are warmed up (their first call also gives the tokens compared) and
    then timed in `config.rounds` interleaved rounds of one `generate` call each (best round counts).

    Args:
        config: the model shape and the prompt/batch sizes.
        log: a ``print``-like progress function.
        hub_backbone: the keras-hub ``GPT2Backbone`` to compare (keras_lm imports its weights);
            defaults to ``random_gpt2_backbone(config)``. Its shape must match ``config``.
        include_torch: also time HF transformers when installed.
    """
    import keras_hub

    import keras_lm
    from keras_lm.tasks.causal_lm import default_jit_compile

    keras.utils.set_random_seed(0)
    if hub_backbone is None:
        hub_backbone = random_gpt2_backbone(config)
    # keras-hub's own default ("auto") decodes without XLA on a CPU: it is timed both ways and its
    # faster one counts, so the ratio compares keras_lm with keras-hub at its best.
    hub = keras_hub.models.GPT2CausalLM(backbone=hub_backbone, preprocessor=None)
    hub.compile(sampler="greedy")
    hub_xla = keras_hub.models.GPT2CausalLM(backbone=hub_backbone, preprocessor=None)
    hub_xla.compile(sampler="greedy", jit_compile=True)
    ours = keras_lm.tasks.CausalLM(keras_lm.applications.Gpt2.from_keras_hub(hub_backbone))
    torch_generate = None
    if include_torch:
        log("(f) building HF transformers torch GPT2LMHeadModel (when installed)")
        torch_generate = _torch_generator(config)
    rng = np.random.default_rng(0)
    results = {"config": config.label, "rounds": config.rounds, "batches": {}}
    for batch in config.batch_sizes:
        prompts = rng.integers(1, config.vocabulary_size, (batch, config.prompt_length)).astype("int32")
        total = config.prompt_length + config.new_tokens
        hub_inputs = {
            "token_ids": np.pad(prompts, ((0, 0), (0, config.new_tokens))),
            "padding_mask": np.arange(total)[None, :].repeat(batch, 0) < config.prompt_length,
        }
        outputs = {}
        systems = {
            "keras_lm": lambda: outputs.__setitem__("keras_lm", ours.generate(
                prompts, max_new_tokens=config.new_tokens)),
            "keras_hub": lambda: outputs.__setitem__("keras_hub", hub.generate(
                hub_inputs, stop_token_ids=None)),
            "keras_hub_xla": lambda: outputs.__setitem__("keras_hub_xla", hub_xla.generate(
                hub_inputs, stop_token_ids=None)),
        }
        for weight_dtype in config.weight_dtypes:
            name = f"keras_lm/{weight_dtype}"
            systems[name] = lambda name=name, weight_dtype=weight_dtype: outputs.__setitem__(name, ours.generate(
                prompts, max_new_tokens=config.new_tokens, weight_dtype=weight_dtype))
        if torch_generate is not None:
            systems["hf_torch"] = lambda: torch_generate(prompts)
        log(f"(f) generation, batch {batch}: warm-up, then {config.rounds} interleaved rounds")
        rounds = interleaved_rounds(systems, config.rounds,
                                    log=lambda message: log(f"(f) batch {batch}, {message}"))
        same = all(np.array_equal(np.asarray(outputs["keras_lm"])[:, :total],
                                  np.asarray(outputs[name]["token_ids"])) for name in ("keras_hub", "keras_hub_xla"))
        new = batch * config.new_tokens

        def rate(name, key="best_seconds"):
            return new / rounds[name][key] if name in rounds else None

        hub_xla_faster = rate("keras_hub_xla") > rate("keras_hub")
        results["batches"][str(batch)] = {
            "keras_lm_tokens_per_second": rate("keras_lm"),
            "keras_hub_tokens_per_second": rate("keras_hub_xla" if hub_xla_faster else "keras_hub"),
            "keras_hub_jit_compile": bool(hub_xla_faster),
            "keras_hub_runs": {"no_xla": rate("keras_hub"), "xla": rate("keras_hub_xla")},
            "hf_torch_tokens_per_second": rate("hf_torch"),
            "median_tokens_per_second": {
                **{name: rate(name, "median_seconds") for name in rounds},
                "keras_hub": rate("keras_hub_xla" if hub_xla_faster else "keras_hub", "median_seconds"),
            },
            "same_tokens_as_keras_hub": same,
            "low_precision": {
                weight_dtype: {
                    "tokens_per_second": rate(f"keras_lm/{weight_dtype}"),
                    "median_tokens_per_second": rate(f"keras_lm/{weight_dtype}", "median_seconds"),
                    "jit_compile": default_jit_compile(batch, weight_dtype),
                    "same_new_tokens_as_float32": _same_fraction(outputs[f"keras_lm/{weight_dtype}"],
                                                                 outputs["keras_lm"], config.prompt_length),
                }
                for weight_dtype in config.weight_dtypes
            },
        }
    return results
