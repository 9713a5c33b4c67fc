"""Weight import into ``keras_lm.applications.T5`` from transformers T5 checkpoints.

Transformers (``T5ForConditionalGeneration``; ``nn.Linear`` weights are ``[out, in]`` and are
transposed) -> keras_lm, per encoder layer ``i`` (``encoder.block.i.``) and decoder layer ``j``
(``decoder.block.j.``)::

    shared.weight                                   -> token_embedding/embeddings
    encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight
                                                    -> encoder_position_bias/embeddings (same for decoder)
    encoder.block.i.layer.0.layer_norm.weight       -> encoder_layer_i/self_attention_norm/scale
    encoder.block.i.layer.0.SelfAttention.{q,k,v}   -> encoder_layer_i/self_attention/qkv (q|k|v)
    encoder.block.i.layer.0.SelfAttention.o         -> encoder_layer_i/self_attention/output
    encoder.block.i.layer.1.layer_norm.weight       -> encoder_layer_i/feed_forward_norm/scale
    encoder.block.i.layer.1.DenseReluDense.wi       -> encoder_layer_i/feed_forward/intermediate_dense (v1.0)
    encoder.block.i.layer.1.DenseReluDense.wi_{0,1} -> encoder_layer_i/feed_forward/gate_up (v1.1, gate|up)
    encoder.block.i.layer.1.DenseReluDense.wo       -> encoder_layer_i/feed_forward/output_dense
    decoder.block.j.layer.0 (as above)              -> decoder_layer_j/self_attention*
    decoder.block.j.layer.1.layer_norm.weight       -> decoder_layer_j/cross_attention_norm/scale
    decoder.block.j.layer.1.EncDecAttention.q       -> decoder_layer_j/cross_attention/query
    decoder.block.j.layer.1.EncDecAttention.{k,v}   -> decoder_layer_j/cross_attention/key_value (k|v)
    decoder.block.j.layer.1.EncDecAttention.o       -> decoder_layer_j/cross_attention/output
    decoder.block.j.layer.2.*                       -> decoder_layer_j/feed_forward*
    {encoder,decoder}.final_layer_norm.weight       -> {encoder,decoder}_final_norm/scale
    lm_head.weight                                  -> lm_head/kernel (v1.1; v1.0 ties it to shared)
"""
from __future__ import annotations

import numpy as np

from keras_lm.applications.checkpoint_hf import CheckpointError, WeightPorter, read_hf_checkpoint

_ACTIVATIONS = {"relu": "relu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                "gelu": "gelu"}


def t5_kwargs_from_hf_config(config: dict, has_separate_lm_head: bool) -> dict:
    """T5 keyword arguments (``variant`` included) for a transformers ``T5Config`` (as a dict)."""
    if config.get("model_type", "t5") != "t5":
        raise CheckpointError(f"Not a T5 checkpoint: model_type={config.get('model_type')!r}.")
    projection = config.get("feed_forward_proj", "relu")
    gated = projection.startswith("gated-")
    activation = config.get("dense_act_fn") or projection.split("-")[-1]
    if projection == "gated-gelu":
        activation = "gelu_new"  # transformers' reading of T5 v1.1's "gated-gelu"
    # transformers >= 5 stores whether the decoder output is rescaled; older configs say it with tying.
    scale = config.get("scale_decoder_outputs")
    if scale is None:
        scale = config.get("tie_word_embeddings", True) is not False
    variant = "v1.1" if gated else "v1.0"
    expected = {"v1.0": ("relu", True, True), "v1.1": ("gelu_new", False, False)}[variant]
    found = (activation, not has_separate_lm_head, bool(scale))
    if _ACTIVATIONS.get(found[0]) != _ACTIVATIONS[expected[0]] or found[1:] != expected[1:]:
        raise CheckpointError(
            f"T5 checkpoint with feed_forward_proj={projection!r}, activation {activation!r}, "
            f"{'tied' if found[1] else 'separate'} lm_head and decoder output rescale {found[2]} is neither T5 "
            "v1.0 (relu, tied, rescaled) nor v1.1 (gated-gelu, separate lm_head, not rescaled); build a "
            "keras_lm.models.EncoderDecoder for it."
        )
    heads, hidden = config["num_heads"], config["d_model"]
    head_dim = config.get("d_kv") or hidden // heads
    return {
        "variant": variant,
        "vocabulary_size": config["vocab_size"],
        "num_layers": config["num_layers"],
        "num_decoder_layers": config.get("num_decoder_layers") or config["num_layers"],
        "num_heads": heads,
        "hidden_dim": hidden,
        "head_dim": head_dim,
        "intermediate_dim": config["d_ff"],
        "num_buckets": config.get("relative_attention_num_buckets", 32),
        "max_distance": config.get("relative_attention_max_distance", 128),
        "layer_norm_epsilon": config.get("layer_norm_epsilon", 1e-6),
        "dropout": float(config.get("dropout_rate", 0.1)),
    }


def _linear(porter: WeightPorter, names: list[str], dense) -> None:
    kernel = np.concatenate([porter.take(name + ".weight").T for name in names], axis=1)
    porter.assign(dense.kernel, kernel, names[0] + ".weight")


def _norm(porter: WeightPorter, name: str, norm) -> None:
    porter.assign(norm.scale, porter.take(name), name)


def _feed_forward(porter: WeightPorter, prefix: str, feed_forward) -> None:
    if feed_forward.gated:
        _linear(porter, [prefix + ".wi_0", prefix + ".wi_1"], feed_forward.gate_up_dense)
    else:
        _linear(porter, [prefix + ".wi"], feed_forward.intermediate_dense)
    _linear(porter, [prefix + ".wo"], feed_forward.output_dense)


def _separate_lm_head(state: dict) -> bool:
    head, shared = state.get("lm_head.weight"), state.get("shared.weight")
    return head is not None and not (shared is not None and np.array_equal(head, shared))


def t5_from_hf(cls, source, config=None, dtype=None):
    """Build ``cls`` (a ``T5``) from a transformers checkpoint source and copy its weights."""
    hf_config, state = read_hf_checkpoint(source, config)
    separate_head = _separate_lm_head(state)
    try:
        kwargs = t5_kwargs_from_hf_config(hf_config, separate_head)
    except KeyError as error:
        raise CheckpointError(f"The T5 config has no {error.args[0]!r}.") from None
    model = cls(None, dtype=dtype, **kwargs)
    shared = state.get("shared.weight")

    def is_copy_of_shared(name):  # older files repeat the shared table per stack
        return shared is not None and np.array_equal(state[name], shared)

    porter = WeightPorter(
        state,
        ignore=lambda name: (
            name == "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"  # unused by T5
            or (name == "lm_head.weight" and not separate_head)
            or (name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight") and is_copy_of_shared(name))
        ),
    )
    porter.assign(model.token_embedding.embeddings, porter.take("shared.weight"), "shared.weight")
    for stack, blocks, positions in (("encoder", model.encoder_layers, model.encoder_positions),
                                     ("decoder", model.decoder_layers, model.decoder_positions)):
        bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        porter.assign(positions.embeddings, porter.take(bias), bias)
        for i, block in enumerate(blocks):
            prefix = f"{stack}.block.{i}.layer"
            _norm(porter, f"{prefix}.0.layer_norm.weight", block.self_attention_norm)
            attention = f"{prefix}.0.SelfAttention"
            _linear(porter, [f"{attention}.{p}" for p in "qkv"], block.self_attention.qkv_dense)
            _linear(porter, [f"{attention}.o"], block.self_attention.output_dense)
            feed_forward_index = 1
            if stack == "decoder":
                _norm(porter, f"{prefix}.1.layer_norm.weight", block.cross_attention_norm)
                cross = f"{prefix}.1.EncDecAttention"
                _linear(porter, [f"{cross}.q"], block.cross_attention.query_dense)
                _linear(porter, [f"{cross}.k", f"{cross}.v"], block.cross_attention.key_value_dense)
                _linear(porter, [f"{cross}.o"], block.cross_attention.output_dense)
                feed_forward_index = 2
            _norm(porter, f"{prefix}.{feed_forward_index}.layer_norm.weight", block.feed_forward_norm)
            _feed_forward(porter, f"{prefix}.{feed_forward_index}.DenseReluDense", block.feed_forward)
        _norm(porter, f"{stack}.final_layer_norm.weight", getattr(model, f"{stack}_final_norm"))
    if separate_head:
        porter.assign(model.lm_head.kernel, porter.take("lm_head.weight").T, "lm_head.weight")
    porter.finish()
    return model
