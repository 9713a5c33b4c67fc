"""Weight import into ``keras_lm.applications.Llama`` from transformers Llama checkpoints.

Transformers (``LlamaForCausalLM`` / ``LlamaModel``; ``nn.Linear`` weights are ``[out, in]`` and
are transposed) -> keras_lm, per layer ``i`` (names without the ``model.`` prefix)::

    embed_tokens.weight                          -> token_embedding/embeddings
    layers.i.input_layernorm.weight              -> transformer_layer_i/self_attention_norm/scale
    layers.i.self_attn.{q,k,v}_proj.weight       -> transformer_layer_i/self_attention/qkv (q|k|v)
    layers.i.self_attn.o_proj.weight             -> transformer_layer_i/self_attention/output
    layers.i.post_attention_layernorm.weight     -> transformer_layer_i/feed_forward_norm/scale
    layers.i.mlp.{gate,up}_proj.weight           -> transformer_layer_i/feed_forward/gate_up (gate|up)
    layers.i.mlp.down_proj.weight                -> transformer_layer_i/feed_forward/down
    norm.weight                                  -> final_norm/scale
    lm_head.weight                               -> lm_head/kernel (unless tied)
"""
from __future__ import annotations

import numpy as np

from keras_lm.applications.checkpoint_hf import WeightPorter, read_hf_checkpoint, strip_prefix


def llama_kwargs_from_hf_config(config: dict) -> dict:
    """Llama keyword arguments for a transformers ``LlamaConfig`` (as a dict)."""
    if config.get("model_type", "llama") != "llama":
        raise ValueError(f"Not a Llama checkpoint: model_type={config.get('model_type')!r}.")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"Llama checkpoints with rope scaling {rope_type!r} are not supported.")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    if config.get("hidden_act", "silu") not in ("silu", "swish"):
        raise ValueError(f"Unsupported Llama hidden_act {config.get('hidden_act')!r}.")
    attention_bias, mlp_bias = bool(config.get("attention_bias", False)), bool(config.get("mlp_bias", False))
    if attention_bias != mlp_bias:
        raise ValueError("Llama checkpoints with attention_bias != mlp_bias are not supported.")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    return {
        "vocabulary_size": config["vocab_size"],
        "num_layers": config["num_hidden_layers"],
        "num_heads": heads,
        "num_key_value_heads": config.get("num_key_value_heads") or heads,
        "hidden_dim": hidden,
        "intermediate_dim": config["intermediate_size"],
        "head_dim": None if head_dim * heads == hidden else head_dim,
        "max_sequence_length": config.get("max_position_embeddings", 2048),
        "rope_max_wavelength": float(theta),
        "layer_norm_epsilon": config.get("rms_norm_eps", 1e-6),
        "use_bias": attention_bias,
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "dropout": float(config.get("attention_dropout", 0.0)),
    }


def _linear(porter: WeightPorter, names: list[str], dense) -> None:
    kernel = np.concatenate([porter.take(name + ".weight").T for name in names], axis=1)
    porter.assign(dense.kernel, kernel, names[0] + ".weight")
    if dense.use_bias:
        bias = np.concatenate([porter.take(name + ".bias") for name in names])
        porter.assign(dense.bias, bias, names[0] + ".bias")


def llama_from_hf(cls, source, config=None, dtype=None):
    """Build ``cls`` (a ``Llama``) from a transformers checkpoint source and copy its weights."""
    hf_config, state = read_hf_checkpoint(source, config)
    kwargs = llama_kwargs_from_hf_config(hf_config)
    model = cls(None, dtype=dtype, **kwargs)
    tied = kwargs["tie_word_embeddings"]
    porter = WeightPorter(
        strip_prefix(state, ("model.",)),
        ignore=lambda name: name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"),
    )
    porter.assign(model.token_embedding.embeddings, porter.take("embed_tokens.weight"), "embed_tokens.weight")
    for i, block in enumerate(model.transformer_layers):
        prefix = f"layers.{i}"
        porter.assign(block.self_attention_norm.scale, porter.take(prefix + ".input_layernorm.weight"),
                      prefix + ".input_layernorm.weight")
        attention = prefix + ".self_attn"
        _linear(porter, [f"{attention}.{p}_proj" for p in "qkv"], block.self_attention.qkv_dense)
        _linear(porter, [f"{attention}.o_proj"], block.self_attention.output_dense)
        porter.assign(block.feed_forward_norm.scale, porter.take(prefix + ".post_attention_layernorm.weight"),
                      prefix + ".post_attention_layernorm.weight")
        _linear(porter, [prefix + ".mlp.gate_proj", prefix + ".mlp.up_proj"], block.feed_forward.gate_up_dense)
        _linear(porter, [prefix + ".mlp.down_proj"], block.feed_forward.output_dense)
    porter.assign(model.final_norm.scale, porter.take("norm.weight"), "norm.weight")
    if not tied:
        porter.assign(model.lm_head.kernel, porter.take("lm_head.weight").T, "lm_head.weight")
    porter.finish()
    return model
