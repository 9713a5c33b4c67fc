"""Weight import into ``keras_lm.applications.Bert`` (and its pretraining heads) from BERT checkpoints.

Every BERT checkpoint format is first turned into ``BertWeights``: numpy arrays under transformers'
names, without a model prefix, in transformers' orientation (``nn.Linear`` weights ``[out, in]``).
Transformers checkpoints (``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining``,
``BertForSequenceClassification``, sentence-embedding checkpoints, with or without the ``bert.``
prefix, old ``LayerNorm.gamma/beta`` names) are read here; the original Google TF checkpoints in
``bert_checkpoints``. Mapping (transformers -> keras_lm), per layer ``i``::

    embeddings.word_embeddings.weight              -> token_embedding/embeddings
    embeddings.position_embeddings.weight          -> position_embedding/embeddings
    embeddings.token_type_embeddings.weight        -> segment_embedding/embeddings
    embeddings.LayerNorm.{weight,bias}             -> embeddings_layer_norm/{gamma,beta}
    encoder.layer.i.attention.self.{query,key,value}.{weight,bias}
                                                   -> transformer_layer_i/self_attention/qkv
                                                      (kernel [H, 3H] = q.T | k.T | v.T)
    encoder.layer.i.attention.output.dense         -> transformer_layer_i/self_attention/output
    encoder.layer.i.attention.output.LayerNorm     -> transformer_layer_i/self_attention_norm
    encoder.layer.i.intermediate.dense             -> transformer_layer_i/feed_forward/intermediate_dense
    encoder.layer.i.output.dense                   -> transformer_layer_i/feed_forward/output_dense
    encoder.layer.i.output.LayerNorm               -> transformer_layer_i/feed_forward_norm
    pooler.dense                                   -> pooler/dense (kept at init when absent)
    cls.predictions.transform.dense                -> masked_lm_head/transform_dense
    cls.predictions.transform.LayerNorm            -> masked_lm_head/transform_layer_norm
    cls.predictions.bias                           -> masked_lm_head/output_bias
    cls.predictions.decoder.weight                 -> (tied to the token embedding; checked equal)
    cls.seq_relationship.{weight,bias}             -> next_sentence_head/dense (same class order:
                                                      0 = B follows A, 1 = B is random)

Other heads (``classifier.*``, ``qa_outputs.*``) are ignored by the backbone.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import numpy as np

from keras_lm.applications.bert import BERT_SIZES
from keras_lm.applications.checkpoint_hf import CheckpointError, read_hf_checkpoint

logger = logging.getLogger(__name__)

BERT_TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json")
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                  "relu": "relu"}
_BACKBONE_ROOTS = ("embeddings.", "encoder.", "pooler.")
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_ANCHOR = "embeddings.word_embeddings.weight"
_MASKED_LM_HEAD = ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
                   "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias")
_NEXT_SENTENCE_HEAD = ("cls.seq_relationship.weight", "cls.seq_relationship.bias")


@dataclasses.dataclass
class BertWeights:
    """A BERT checkpoint in one canonical form, whatever format it came from.

    Attributes:
        encoder_kwargs: ``keras_lm.applications.Bert`` keyword arguments of its architecture.
        state: arrays under transformers' names in transformers' orientation, backbone names
            without a model prefix (``embeddings.*``, ``encoder.layer.N.*``, ``pooler.*``), heads as in
            ``BertForPreTraining`` (``cls.predictions.*``, ``cls.seq_relationship.*``) or as found.
        source: what was read, for messages (``"the transformers checkpoint 'dir'"``).
        source_name: a canonical name -> that tensor's name in the source.
        stored_transposed: a canonical name -> whether the source stores it transposed
            (Google kernels are ``[in, out]``), so messages quote the source's own shapes.
        importer: the ``Bert`` constructor that reads this format, for messages.
    """

    encoder_kwargs: dict
    state: dict
    source: str
    importer: str = "Bert.from_hf"
    source_name: Callable[[str], str] = lambda name: name
    stored_transposed: Callable[[str], bool] = lambda name: False

    @property
    def has_masked_lm_head(self) -> bool:
        return _MASKED_LM_HEAD[0] in self.state

    @property
    def has_next_sentence_head(self) -> bool:
        return _NEXT_SENTENCE_HEAD[0] in self.state

    def describe_model(self) -> str:
        kwargs = self.encoder_kwargs
        return (f"a {kwargs['num_layers']}-layer BERT with hidden size {kwargs['hidden_dim']}, intermediate size "
                f"{kwargs['intermediate_dim']}, vocabulary {kwargs['vocabulary_size']}, "
                f"{kwargs['max_sequence_length']} positions and {kwargs['num_segments']} segment types")


def encoder_kwargs_from_bert_config(config: dict, activations: dict, layer_norm_epsilon: float,
                                    config_file: str) -> dict:
    """Bert keyword arguments from a BERT config dict (transformers' or Google's ``bert_config.json``)."""
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    missing = [key for key in required if key not in config]
    if missing:
        raise CheckpointError(f"{config_file} lacks {', '.join(missing)}: it does not describe a BERT model.")
    activation = config.get("hidden_act", "gelu")
    if activation not in activations:
        raise CheckpointError(f"{config_file} has hidden_act={activation!r}; supported: "
                              f"{', '.join(map(repr, activations))}.")
    return {
        "vocabulary_size": int(config["vocab_size"]),
        "num_layers": int(config["num_hidden_layers"]),
        "num_heads": int(config["num_attention_heads"]),
        "hidden_dim": int(config["hidden_size"]),
        "intermediate_dim": int(config["intermediate_size"]),
        "dropout": float(config.get("hidden_dropout_prob", 0.1)),
        "max_sequence_length": int(config.get("max_position_embeddings", 512)),
        "num_segments": int(config.get("type_vocab_size", 2)),
        "activation": activations[activation],
        "layer_norm_epsilon": float(layer_norm_epsilon),
    }


def bert_kwargs_from_hf_config(config: dict) -> dict:
    """Bert keyword arguments for a transformers ``BertConfig`` (as a dict).

    ``hidden_act`` ``"gelu"`` is the exact erf GELU; ``"gelu_new"``/``"gelu_pytorch_tanh"`` the tanh form.
    Relative position embeddings and decoder/cross-attention configurations are refused.
    """
    model_type = config.get("model_type", "bert")
    if model_type != "bert":
        raise CheckpointError(f"Not a BERT checkpoint: config.json has model_type={model_type!r} (Bert.from_hf "
                              "reads model_type 'bert').")
    position_embedding_type = config.get("position_embedding_type", "absolute")
    unsupported = []
    if position_embedding_type != "absolute":
        unsupported.append(f"position_embedding_type={position_embedding_type!r} (only 'absolute')")
    unsupported += [f"{flag}=True (Bert is an encoder)" for flag in ("is_decoder", "add_cross_attention")
                    if config.get(flag)]
    if unsupported:
        raise CheckpointError(f"This BERT checkpoint cannot be imported: config.json has {'; '.join(unsupported)}.")
    return encoder_kwargs_from_bert_config(config, HF_ACTIVATIONS, config.get("layer_norm_eps", 1e-12),
                                           "config.json")


def _canonical_name(name: str) -> str:
    if name.endswith("LayerNorm.gamma"):
        return name[: -len("gamma")] + "weight"
    if name.endswith("LayerNorm.beta"):
        return name[: -len("beta")] + "bias"
    return name


def canonical_bert_state(state: dict, source: str) -> tuple[dict, Callable[[str], str]]:
    """``(canonical state, canonical name -> name in state)`` for a transformers BERT state dict.

    The backbone prefix (``bert.``, or none) is found from the word-embedding table; the names of
    old checkpoints (``LayerNorm.gamma/beta``) become ``LayerNorm.weight/bias``.
    """
    anchors = sorted(name for name in state
                     if name.endswith(_ANCHOR) and (name == _ANCHOR or name[: -len(_ANCHOR)].endswith(".")))
    if len(anchors) != 1:
        examples = ", ".join(repr(name) for name in list(state)[:4])
        found = f"found {len(state)} tensors such as {examples}" if state else "it holds no tensors"
        raise CheckpointError(
            f"{source} is not a BERT checkpoint layout: expected one 'embeddings.word_embeddings.weight' "
            f"(BertModel) or 'bert.embeddings.word_embeddings.weight' (BertForMaskedLM, BertForPreTraining, "
            f"BertForSequenceClassification, ...), but {found}."
        )
    prefix = anchors[0][: -len(_ANCHOR)]
    old_names = any(name.endswith(("LayerNorm.gamma", "LayerNorm.beta")) for name in state)
    canonical = {}
    for name, value in state.items():
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
        elif prefix and name.startswith(_BACKBONE_ROOTS):
            name = "unprefixed:" + name  # a backbone name outside the prefix: reported as not understood
        canonical[_canonical_name(name)] = value

    def source_name(name: str) -> str:
        if name.startswith("unprefixed:"):
            return name[len("unprefixed:"):]
        if old_names and name.endswith("LayerNorm.weight"):
            name = name[: -len("weight")] + "gamma"
        elif old_names and name.endswith("LayerNorm.bias"):
            name = name[: -len("bias")] + "beta"
        return prefix + name if name.startswith(_BACKBONE_ROOTS) else name

    return canonical, source_name


def read_bert_hf(source, config=None) -> BertWeights:
    """``BertWeights`` of a transformers BERT checkpoint (directory, model, state dict or hub name)."""
    hf_config, state = read_hf_checkpoint(source, config, tokenizer_files=BERT_TOKENIZER_FILES)
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        description = f"the transformers checkpoint '{source}'"
    elif isinstance(source, dict):
        description = "the state dict"
    else:
        description = f"the {type(source).__name__} model"
    kwargs = bert_kwargs_from_hf_config(hf_config)
    canonical, source_name = canonical_bert_state(state, description)
    return BertWeights(kwargs, canonical, description, "Bert.from_hf", source_name)


class _Porter:
    """Copies canonical arrays into variables, naming the source tensor in every error."""

    def __init__(self, weights: BertWeights):
        self.weights = weights
        self.used = set()

    def take(self, name: str) -> np.ndarray:
        if name not in self.weights.state:
            raise CheckpointError(
                f"{self.weights.source} has no '{self.weights.source_name(name)}' "
                f"({self.weights.describe_model()} needs it)."
            )
        self.used.add(name)
        return self.weights.state[name]

    def _check_shape(self, name: str, value: np.ndarray, needed: tuple) -> None:
        if tuple(value.shape) == tuple(needed):
            return
        shape, needed = tuple(value.shape), tuple(needed)
        if self.weights.stored_transposed(name):
            shape, needed = shape[::-1], needed[::-1]
        raise CheckpointError(
            f"'{self.weights.source_name(name)}' in {self.weights.source} has shape {shape}, but "
            f"{self.weights.describe_model()} needs {needed}: the tensors do not match the config."
        )

    def array(self, variable, name: str) -> None:
        """A table or vector copied as is."""
        value = self.take(name)
        self._check_shape(name, value, tuple(variable.shape))
        variable.assign(value.astype(np.float32))

    def dense(self, layer, name: str) -> None:
        """``name.weight`` ``[out, in]`` (transposed) and ``name.bias`` into a Dense layer."""
        kernel = self.take(name + ".weight")
        self._check_shape(name + ".weight", kernel, tuple(layer.kernel.shape)[::-1])
        layer.kernel.assign(kernel.T.astype(np.float32))
        self.array(layer.bias, name + ".bias")

    def layer_norm(self, layer, name: str) -> None:
        self.array(layer.gamma, name + ".weight")
        self.array(layer.beta, name + ".bias")

    def fused_dense(self, layer, names: list[str]) -> None:
        """Several ``[out_k, in]`` projections concatenated along the output axis of one Dense layer."""
        width = tuple(layer.kernel.shape)[1] // len(names)
        kernels, biases = [], []
        for name in names:
            kernel, bias = self.take(name + ".weight"), self.take(name + ".bias")
            self._check_shape(name + ".weight", kernel, (width, layer.kernel.shape[0]))
            self._check_shape(name + ".bias", bias, (width,))
            kernels.append(kernel.T)
            biases.append(bias)
        layer.kernel.assign(np.concatenate(kernels, axis=1).astype(np.float32))
        layer.bias.assign(np.concatenate(biases).astype(np.float32))

    def check_all_backbone_weights_used(self) -> None:
        unused = sorted(name for name in self.weights.state
                        if name.startswith((*_BACKBONE_ROOTS, "unprefixed:")) and name not in self.used
                        and name not in _BUFFERS)
        if unused:
            shown = ", ".join(repr(self.weights.source_name(name)) for name in unused[:6])
            raise CheckpointError(
                f"{self.weights.source} holds backbone tensors that {self.weights.describe_model()} has no "
                f"place for: {shown}{' ...' if len(unused) > 6 else ''}. Is the config the checkpoint's own?"
            )


def _size_name(kwargs: dict) -> str | None:
    shape = {key: kwargs[key] for key in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")}
    return next((name for name, table in BERT_SIZES.items() if dict(table) == shape), None)


def copy_transformer_blocks(porter, model) -> None:
    """Copies transformers' ``encoder.layer.N.*`` tensors (BERT, RoBERTa, ELECTRA) into ``model``'s blocks."""
    for i, block in enumerate(model.transformer_layers):
        prefix = f"encoder.layer.{i}"
        attention = prefix + ".attention"
        porter.fused_dense(block.self_attention.qkv_dense, [f"{attention}.self.{p}" for p in ("query", "key", "value")])
        porter.dense(block.self_attention.output_dense, attention + ".output.dense")
        porter.layer_norm(block.self_attention_norm, attention + ".output.LayerNorm")
        porter.dense(block.feed_forward.intermediate_dense, prefix + ".intermediate.dense")
        porter.dense(block.feed_forward.output_dense, prefix + ".output.dense")
        porter.layer_norm(block.feed_forward_norm, prefix + ".output.LayerNorm")


def bert_from_weights(cls, weights: BertWeights, dtype=None):
    """A new ``cls`` (a ``Bert``) holding the backbone weights of ``weights``; nothing is returned
    half-loaded. Without a pooler in the checkpoint the pooler keeps its initialization: the result's
    ``untrained_layers`` is then ``("pooler",)`` (else ``()``) and a warning is logged."""
    kwargs = weights.encoder_kwargs
    model = cls(_size_name(kwargs), dtype=dtype, **kwargs)
    porter = _Porter(weights)
    porter.array(model.token_embedding.embeddings, "embeddings.word_embeddings.weight")
    porter.array(model.position_embedding.embeddings, "embeddings.position_embeddings.weight")
    porter.array(model.segment_embedding.embeddings, "embeddings.token_type_embeddings.weight")
    porter.layer_norm(model.get_layer("embeddings_layer_norm"), "embeddings.LayerNorm")
    copy_transformer_blocks(porter, model)
    untrained = ()
    if "pooler.dense.weight" in weights.state or "pooler.dense.bias" in weights.state:
        porter.dense(model.pooler.dense, "pooler.dense")
    else:
        untrained = ("pooler",)
        logger.warning("%s has no pooler (pooler.dense): the pooler keeps its random initialization, so "
                       "pooled_output is untrained until fine-tuned.", weights.source)
    porter.check_all_backbone_weights_used()
    model.untrained_layers = untrained
    return model


def bert_from_hf(cls, source, config=None, dtype=None):
    """Build ``cls`` (a ``Bert``) from a transformers BERT checkpoint source and copy its weights."""
    return bert_from_weights(cls, read_bert_hf(source, config), dtype=dtype)


def check_pretraining_heads(weights: BertWeights, owner: str, next_sentence: bool = False) -> None:
    """One clear error, before anything is built, when ``weights`` lacks a head ``owner`` imports."""
    fresh = f"{owner}({weights.importer}(...))"
    if not weights.has_masked_lm_head:
        raise CheckpointError(
            f"{weights.source} has no masked-LM head ('{weights.source_name(_MASKED_LM_HEAD[0])}'): it is a "
            f"backbone-only or fine-tuned checkpoint. For a freshly initialized head on its encoder use {fresh}."
        )
    if next_sentence and not weights.has_next_sentence_head:
        raise CheckpointError(
            f"{weights.source} has no next-sentence head ('{weights.source_name(_NEXT_SENTENCE_HEAD[0])}'; "
            f"a BertForMaskedLM checkpoint?). Pass next_sentence=False for masked LM only, or use {fresh} "
            "for fresh heads."
        )


def copy_masked_lm_head(weights: BertWeights, head, token_embedding) -> None:
    """Copy ``cls.predictions.*`` into a ``keras_lm.layers.MaskedLMHead`` tied to ``token_embedding``.

    The output projection is the token embedding; a checkpoint whose ``cls.predictions.decoder.weight``
    differs from its word embeddings (an untied head) is refused.
    """
    check_pretraining_heads(weights, type(head).__name__)
    porter = _Porter(weights)
    decoder = weights.state.get("cls.predictions.decoder.weight")
    if decoder is not None:
        embeddings = np.asarray(token_embedding.embeddings)
        if decoder.shape != embeddings.shape or not np.array_equal(decoder.astype(np.float32), embeddings):
            raise CheckpointError(
                f"'{weights.source_name('cls.predictions.decoder.weight')}' in {weights.source} differs from the "
                "word embeddings: its masked-LM output layer is not tied to them, and keras_lm's MaskedLMHead "
                "always is. Import the backbone alone (Bert.from_hf) and train a fresh head."
            )
    porter.dense(head.transform_dense, "cls.predictions.transform.dense")
    porter.layer_norm(head.transform_layer_norm, "cls.predictions.transform.LayerNorm")
    bias_name = "cls.predictions.bias" if "cls.predictions.bias" in weights.state else "cls.predictions.decoder.bias"
    porter.array(head.output_bias, bias_name)


def copy_next_sentence_head(weights: BertWeights, head) -> None:
    """Copy ``cls.seq_relationship`` into a ``keras_lm.layers.NextSentenceHead``.

    Both use BERT's class order (0: the second segment follows the first; 1: it is random), so the
    two rows are copied in order.
    """
    check_pretraining_heads(weights, type(head).__name__, next_sentence=True)
    _Porter(weights).dense(head.dense, "cls.seq_relationship")
