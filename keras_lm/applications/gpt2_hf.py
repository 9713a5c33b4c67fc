"""Weight import into ``keras_lm.applications.Gpt2`` from transformers GPT-2 checkpoints and keras-hub.

Transformers (``GPT2LMHeadModel`` / ``GPT2Model``; names without the ``transformer.`` prefix; the
``Conv1D`` weights are already ``[in, out]``) -> keras_lm, per layer ``i``::

    wte.weight                      -> token_embedding/embeddings
    wpe.weight                      -> position_embedding/embeddings
    h.i.ln_1.{weight,bias}          -> transformer_layer_i/self_attention_norm/{gamma,beta}
    h.i.attn.c_attn.{weight,bias}   -> transformer_layer_i/self_attention/qkv (q|k|v, same layout)
    h.i.attn.c_proj.{weight,bias}   -> transformer_layer_i/self_attention/output
    h.i.ln_2                        -> transformer_layer_i/feed_forward_norm
    h.i.mlp.c_fc / h.i.mlp.c_proj   -> transformer_layer_i/feed_forward/{intermediate_dense,output_dense}
    ln_f                            -> final_norm
    lm_head.weight                  -> (tied to wte)

keras-hub ``GPT2Backbone``: the per-head query/key/value kernels ``[H, heads, head_dim]`` are
flattened and concatenated into ``qkv``; the output kernel ``[heads, head_dim, H]`` is flattened.
"""
from __future__ import annotations

import keras
import numpy as np

from keras_lm.applications.checkpoint_hf import WeightPorter, read_hf_checkpoint, strip_prefix

_ACTIVATIONS = {"gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate", "gelu": "gelu",
                "relu": "relu", "silu": "silu", "swish": "silu"}


def gpt2_kwargs_from_hf_config(config: dict) -> dict:
    """Gpt2 keyword arguments for a transformers ``GPT2Config`` (as a dict)."""
    if config.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"Not a GPT-2 checkpoint: model_type={config.get('model_type')!r}.")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if config.get(flag):
            raise ValueError(f"GPT-2 checkpoints with {flag}=True are not supported.")
    if config.get("scale_attn_weights", True) is False:
        raise ValueError("GPT-2 checkpoints with scale_attn_weights=False are not supported.")
    activation = config.get("activation_function", "gelu_new")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"Unsupported GPT-2 activation_function {activation!r}.")
    if config.get("tie_word_embeddings", True) is False:
        raise ValueError("Gpt2 ties its output projection to the token embedding; this checkpoint does not.")
    hidden = config["n_embd"]
    return {
        "vocabulary_size": config["vocab_size"],
        "num_layers": config["n_layer"],
        "num_heads": config["n_head"],
        "hidden_dim": hidden,
        "intermediate_dim": config.get("n_inner") or 4 * hidden,
        "max_sequence_length": config["n_positions"],
        "layer_norm_epsilon": config.get("layer_norm_epsilon", 1e-5),
        "activation": _ACTIVATIONS[activation],
        "dropout": config.get("resid_pdrop", 0.1),
    }


def _dense(porter: WeightPorter, dense, prefix: str) -> None:
    porter.assign(dense.kernel, porter.take(prefix + ".weight"), prefix + ".weight")
    porter.assign(dense.bias, porter.take(prefix + ".bias"), prefix + ".bias")


def _layer_norm(porter: WeightPorter, norm, prefix: str) -> None:
    porter.assign(norm.gamma, porter.take(prefix + ".weight"), prefix + ".weight")
    porter.assign(norm.beta, porter.take(prefix + ".bias"), prefix + ".bias")


def _ignored(name: str) -> bool:
    # Causal-mask buffers of old checkpoints; the tied head.
    return name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight"


def gpt2_from_hf(cls, source, config=None, dtype=None):
    """Build ``cls`` (a ``Gpt2``) from a transformers checkpoint source and copy its weights."""
    hf_config, state = read_hf_checkpoint(source, config)
    kwargs = gpt2_kwargs_from_hf_config(hf_config)
    from keras_lm.applications.gpt2 import gpt2_size_name

    shape = {key: kwargs[key] for key in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")}
    model = cls(gpt2_size_name(shape), dtype=dtype, **kwargs)
    porter = WeightPorter(strip_prefix(state, ("transformer.",)), ignore=_ignored)
    porter.assign(model.token_embedding.embeddings, porter.take("wte.weight"), "wte.weight")
    porter.assign(model.position_embedding.embeddings, porter.take("wpe.weight"), "wpe.weight")
    for i, block in enumerate(model.transformer_layers):
        prefix = f"h.{i}"
        _layer_norm(porter, block.self_attention_norm, prefix + ".ln_1")
        _dense(porter, block.self_attention.qkv_dense, prefix + ".attn.c_attn")
        _dense(porter, block.self_attention.output_dense, prefix + ".attn.c_proj")
        _layer_norm(porter, block.feed_forward_norm, prefix + ".ln_2")
        _dense(porter, block.feed_forward.intermediate_dense, prefix + ".mlp.c_fc")
        _dense(porter, block.feed_forward.output_dense, prefix + ".mlp.c_proj")
    _layer_norm(porter, model.final_norm, "ln_f")
    porter.finish()
    return model


def _numpy(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable))


def gpt2_from_keras_hub(cls, backbone, dtype=None):
    """Build ``cls`` (a ``Gpt2``) from a ``keras_hub.models.GPT2Backbone`` and copy its weights."""
    first = backbone.transformer_layers[0]
    kwargs = {
        "vocabulary_size": backbone.vocabulary_size,
        "num_layers": backbone.num_layers,
        "num_heads": backbone.num_heads,
        "hidden_dim": backbone.hidden_dim,
        "intermediate_dim": backbone.intermediate_dim,
        "max_sequence_length": backbone.max_sequence_length,
        "dropout": backbone.dropout,
        "layer_norm_epsilon": first.layer_norm_epsilon,
    }
    from keras_lm.applications.gpt2 import gpt2_size_name

    shape = {key: kwargs[key] for key in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")}
    model = cls(gpt2_size_name(shape), dtype=dtype or backbone.dtype_policy, **kwargs)
    assign = WeightPorter.assign
    assign(model.token_embedding.embeddings, _numpy(backbone.token_embedding.embeddings), "token_embedding")
    assign(model.position_embedding.embeddings, _numpy(backbone.position_embedding.position_embeddings),
           "position_embedding")
    for i, (source, target) in enumerate(zip(backbone.transformer_layers, model.transformer_layers)):
        path = f"transformer_layer_{i}"
        attention = source._self_attention_layer
        projections = (attention._query_dense, attention._key_dense, attention._value_dense)
        hidden = kwargs["hidden_dim"]
        assign(target.self_attention.qkv_dense.kernel,
               np.concatenate([_numpy(p.kernel).reshape(hidden, -1) for p in projections], axis=1), path + "/qkv")
        assign(target.self_attention.qkv_dense.bias,
               np.concatenate([_numpy(p.bias).reshape(-1) for p in projections]), path + "/qkv_bias")
        assign(target.self_attention.output_dense.kernel,
               _numpy(attention._output_dense.kernel).reshape(-1, hidden), path + "/output")
        assign(target.self_attention.output_dense.bias, _numpy(attention._output_dense.bias), path + "/output_bias")
        for norm_source, norm_target in ((source._self_attention_layer_norm, target.self_attention_norm),
                                         (source._feedforward_layer_norm, target.feed_forward_norm)):
            assign(norm_target.gamma, _numpy(norm_source.gamma), path + "/norm")
            assign(norm_target.beta, _numpy(norm_source.beta), path + "/norm")
        for dense_source, dense_target in (
            (source._feedforward_intermediate_dense, target.feed_forward.intermediate_dense),
            (source._feedforward_output_dense, target.feed_forward.output_dense),
        ):
            assign(dense_target.kernel, _numpy(dense_source.kernel), path + "/feed_forward")
            assign(dense_target.bias, _numpy(dense_source.bias), path + "/feed_forward")
    assign(model.final_norm.gamma, _numpy(backbone.layer_norm.gamma), "final_norm")
    assign(model.final_norm.beta, _numpy(backbone.layer_norm.beta), "final_norm")
    return model
