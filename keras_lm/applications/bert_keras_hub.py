"""Import of keras-hub ``BertBackbone`` weights into ``keras_lm.applications.Bert``.

Weight mapping (keras-hub -> keras_lm), per transformer layer ``i``::

    token_embedding/embeddings                     -> token_embedding/embeddings
    position_embedding/embeddings                  -> position_embedding/embeddings
    segment_embedding/embeddings                   -> segment_embedding/embeddings
    embeddings_layer_norm/{gamma,beta}             -> embeddings_layer_norm/{gamma,beta}
    self_attention_layer/{query,key,value}/kernel  [H, heads, head_dim] -> reshaped to
        [H, heads*head_dim] and concatenated (q|k|v)   -> self_attention/qkv/kernel [H, 3H]
    self_attention_layer/{query,key,value}/bias    [heads, head_dim] -> self_attention/qkv/bias [3H]
    self_attention_layer/attention_output/kernel   [heads, head_dim, H] -> self_attention/output/kernel [H, H]
    self_attention_layer/attention_output/bias     -> self_attention/output/bias
    self_attention_layer_norm                      -> self_attention_norm
    feedforward_intermediate_dense                 -> feed_forward/intermediate_dense
    feedforward_output_dense                       -> feed_forward/output_dense
    feedforward_layer_norm                         -> feed_forward_norm
    pooled_dense                                   -> pooler/dense
"""
from __future__ import annotations

import keras
import numpy as np


def _numpy(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _activation_name(function):
    name = getattr(function, "__name__", "")
    if name == "gelu_approximate":
        return "gelu_approximate"
    return keras.activations.serialize(function)


def bert_kwargs_from_keras_hub(backbone) -> dict:
    """Bert keyword arguments reproducing a keras-hub ``BertBackbone``'s architecture."""
    first_block = backbone.transformer_layers[0]
    return {
        "vocabulary_size": backbone.vocabulary_size,
        "num_layers": backbone.num_layers,
        "num_heads": backbone.num_heads,
        "hidden_dim": backbone.hidden_dim,
        "intermediate_dim": backbone.intermediate_dim,
        "dropout": backbone.dropout,
        "max_sequence_length": backbone.max_sequence_length,
        "num_segments": backbone.num_segments,
        "activation": _activation_name(first_block.activation),
        "layer_norm_epsilon": first_block.layer_norm_epsilon,
    }


def _assign(target, value: np.ndarray, path: str) -> None:
    if tuple(target.shape) != value.shape:
        raise ValueError(f"Cannot port {path}: shape {value.shape} does not fit {tuple(target.shape)}.")
    target.assign(value)


def _copy_dense(source, target, path: str) -> None:
    _assign(target.kernel, _numpy(source.kernel), path + "/kernel")
    _assign(target.bias, _numpy(source.bias), path + "/bias")


def _copy_layer_norm(source, target, path: str) -> None:
    _assign(target.gamma, _numpy(source.gamma), path + "/gamma")
    _assign(target.beta, _numpy(source.beta), path + "/beta")


def _copy_attention(source, target, path: str) -> None:
    hidden_dim = source._query_dense.kernel.shape[0]
    projections = (source._query_dense, source._key_dense, source._value_dense)
    kernel = np.concatenate([_numpy(p.kernel).reshape(hidden_dim, -1) for p in projections], axis=1)
    bias = np.concatenate([_numpy(p.bias).reshape(-1) for p in projections])
    _assign(target.qkv_dense.kernel, kernel, path + "/qkv/kernel")
    _assign(target.qkv_dense.bias, bias, path + "/qkv/bias")
    output_kernel = _numpy(source._output_dense.kernel)
    _assign(target.output_dense.kernel, output_kernel.reshape(-1, output_kernel.shape[-1]), path + "/output/kernel")
    _assign(target.output_dense.bias, _numpy(source._output_dense.bias), path + "/output/bias")


def copy_keras_hub_weights(backbone, bert) -> None:
    """Copy every weight of a keras-hub ``BertBackbone`` into a same-shaped keras_lm ``Bert``."""
    _assign(bert.token_embedding.embeddings, _numpy(backbone.token_embedding.embeddings), "token_embedding")
    _assign(bert.position_embedding.embeddings, _numpy(backbone.position_embedding.position_embeddings),
            "position_embedding")
    _assign(bert.segment_embedding.embeddings, _numpy(backbone.segment_embedding.embeddings), "segment_embedding")
    _copy_layer_norm(backbone.get_layer("embeddings_layer_norm"), bert.get_layer("embeddings_layer_norm"),
                     "embeddings_layer_norm")
    for i, (source, target) in enumerate(zip(backbone.transformer_layers, bert.transformer_layers)):
        path = f"transformer_layer_{i}"
        _copy_attention(source._self_attention_layer, target.self_attention, path + "/self_attention")
        _copy_layer_norm(source._self_attention_layer_norm, target.self_attention_norm,
                         path + "/self_attention_norm")
        _copy_dense(source._feedforward_intermediate_dense, target.feed_forward.intermediate_dense,
                    path + "/feed_forward/intermediate_dense")
        _copy_dense(source._feedforward_output_dense, target.feed_forward.output_dense,
                    path + "/feed_forward/output_dense")
        _copy_layer_norm(source._feedforward_layer_norm, target.feed_forward_norm,
                         path + "/feed_forward_norm")
    _copy_dense(backbone.pooled_dense, bert.pooler.dense, "pooler/dense")
