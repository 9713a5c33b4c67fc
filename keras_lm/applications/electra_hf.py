"""Weight import into ``Electra`` / ``ElectraGenerator`` (and their pretraining heads) from transformers.

ELECTRA's encoder is BERT's (``bert_hf`` maps it, see there) with an embedding width of its own
(``embedding_size``) and, when that differs from ``hidden_size``, a projection. Names after the
``electra.`` prefix (transformers -> keras_lm)::

    embeddings.{word,position,token_type}_embeddings, embeddings.LayerNorm     -> as for BERT
    embeddings_project.{weight,bias}                   -> embedding_projection (kernel transposed)
    encoder.layer.i.*                                  -> transformer_layer_i (as for BERT)
    discriminator_predictions.dense                    -> replaced_token_head/dense
    discriminator_predictions.dense_prediction         -> replaced_token_head/prediction
    generator_predictions.dense                        -> masked_lm_head/transform_dense
    generator_predictions.LayerNorm                    -> masked_lm_head/transform_layer_norm
    generator_lm_head.bias                             -> masked_lm_head/output_bias
    generator_lm_head.weight                           -> (tied to the word embeddings; checked equal)

ELECTRA has no pooler: an imported model's pooler keeps its initialization (``untrained_layers``),
unless the weights carry a ``pooler.dense`` (``keras_lm.tasks.hf_heads`` renames the first-token dense
layer of a classification head to it: ``classifier.dense``, ``sequence_summary.summary``). Other heads
(``classifier.*``, ``qa_outputs.*``) are ignored here.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from keras_lm.applications.bert_hf import (
    BERT_TOKENIZER_FILES,
    HF_ACTIVATIONS,
    BertWeights,
    _Porter,
    canonical_bert_state,
    copy_transformer_blocks,
    encoder_kwargs_from_bert_config,
)
from keras_lm.applications.checkpoint_hf import CheckpointError, read_hf_checkpoint

_ANCHOR = "embeddings.word_embeddings.weight"
_BACKBONE_ROOTS = ("embeddings.", "embeddings_project.", "encoder.")
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_SHARED_EMBEDDINGS = ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                      "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                      "embeddings.LayerNorm.bias")
DISCRIMINATOR_HEAD = ("discriminator_predictions.dense", "discriminator_predictions.dense_prediction")
GENERATOR_HEAD = ("generator_predictions.dense", "generator_predictions.LayerNorm", "generator_lm_head")


@dataclasses.dataclass
class ElectraWeights(BertWeights):
    """An ELECTRA checkpoint as canonical arrays (see ``bert_hf.BertWeights``)."""

    importer: str = "Electra.from_hf"

    def has_head(self, head: tuple) -> bool:
        return f"{head[0]}.weight" in self.state

    def describe_model(self) -> str:
        kwargs = self.encoder_kwargs
        return (f"a {kwargs['num_layers']}-layer ELECTRA with hidden size {kwargs['hidden_dim']}, embedding size "
                f"{kwargs['embedding_dim']}, intermediate size {kwargs['intermediate_dim']}, vocabulary "
                f"{kwargs['vocabulary_size']}, {kwargs['max_sequence_length']} positions and "
                f"{kwargs['num_segments']} segment types")


def electra_kwargs_from_hf_config(config: dict) -> dict:
    """Encoder keyword arguments for a transformers ``ElectraConfig`` (as a dict).

    ``embedding_size`` defaults to 128 as in transformers; relative positions and decoder
    configurations are refused.
    """
    model_type = config.get("model_type", "electra")
    if model_type != "electra":
        raise CheckpointError(f"Not an ELECTRA checkpoint: config.json has model_type={model_type!r} "
                              "(Electra.from_hf reads model_type 'electra'; BERT: Bert.from_hf).")
    unsupported = []
    position_embedding_type = config.get("position_embedding_type", "absolute")
    if position_embedding_type != "absolute":
        unsupported.append(f"position_embedding_type={position_embedding_type!r} (only 'absolute')")
    unsupported += [f"{flag}=True (ELECTRA is an encoder)" for flag in ("is_decoder", "add_cross_attention")
                    if config.get(flag)]
    if unsupported:
        raise CheckpointError(f"This ELECTRA checkpoint cannot be imported: config.json has "
                              f"{'; '.join(unsupported)}.")
    kwargs = encoder_kwargs_from_bert_config(config, HF_ACTIVATIONS, config.get("layer_norm_eps", 1e-12),
                                             "config.json")
    kwargs["embedding_dim"] = int(config.get("embedding_size", 128))
    return kwargs


def _describe_source(source) -> str:
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return f"the transformers checkpoint '{source}'"
    if isinstance(source, dict):
        return "the state dict"
    return f"the {type(source).__name__} model"


def read_electra_hf(source, config=None, description: str | None = None) -> ElectraWeights:
    """``ElectraWeights`` of a transformers ELECTRA checkpoint (directory, model, state dict or hub name).

    ``description`` names the checkpoint in messages (default: from ``source``).
    """
    hf_config, state = read_hf_checkpoint(source, config, tokenizer_files=BERT_TOKENIZER_FILES)
    description = description or _describe_source(source)
    kwargs = electra_kwargs_from_hf_config(hf_config)
    anchors = [name for name in state
               if name.endswith(_ANCHOR) and (name == _ANCHOR or name[: -len(_ANCHOR)].endswith("."))]
    if len(anchors) != 1:
        examples = ", ".join(repr(name) for name in list(state)[:4])
        found = f"found {len(state)} tensors such as {examples}" if state else "it holds no tensors"
        raise CheckpointError(
            f"{description} is not an ELECTRA checkpoint layout: expected one 'embeddings.word_embeddings.weight' "
            f"(ElectraModel) or 'electra.embeddings.word_embeddings.weight' (ElectraForPreTraining, "
            f"ElectraForMaskedLM, ElectraForSequenceClassification, ...), but {found}."
        )
    prefix = anchors[0][: -len(_ANCHOR)]
    canonical, bert_source_name = canonical_bert_state(state, description)

    def source_name(name: str) -> str:
        return prefix + name if name.startswith("embeddings_project.") else bert_source_name(name)

    return ElectraWeights(kwargs, canonical, description, "Electra.from_hf", source_name)


def _check_all_backbone_weights_used(porter: _Porter) -> None:
    weights = porter.weights
    unused = sorted(name for name in weights.state
                    if name.startswith((*_BACKBONE_ROOTS, "pooler.", "unprefixed:")) and name not in porter.used
                    and name not in _BUFFERS)
    if unused:
        shown = ", ".join(repr(weights.source_name(name)) for name in unused[:6])
        raise CheckpointError(
            f"{weights.source} holds encoder tensors that {weights.describe_model()} has no place for: "
            f"{shown}{' ...' if len(unused) > 6 else ''}. Is the config the checkpoint's own?"
        )


def _check_shared_embeddings(weights: ElectraWeights, discriminator) -> None:
    """The checkpoint's embedding tensors equal the discriminator's ones the generator will share."""
    layers = {
        "embeddings.word_embeddings.weight": discriminator.token_embedding.embeddings,
        "embeddings.position_embeddings.weight": discriminator.position_embedding.embeddings,
        "embeddings.token_type_embeddings.weight": discriminator.segment_embedding.embeddings,
        "embeddings.LayerNorm.weight": discriminator.get_layer("embeddings_layer_norm").gamma,
        "embeddings.LayerNorm.bias": discriminator.get_layer("embeddings_layer_norm").beta,
    }
    porter = _Porter(weights)
    for name, variable in layers.items():
        value = porter.take(name)
        shared = np.asarray(variable)
        if value.shape != shared.shape or not np.allclose(value.astype(np.float32), shared, atol=1e-6):
            raise CheckpointError(
                f"'{weights.source_name(name)}' in {weights.source} differs from the discriminator's: the "
                "generator shares the discriminator's embeddings, so both checkpoints must hold the same ones "
                "(import it without `discriminator=` for a generator of its own)."
            )


def electra_from_weights(cls, weights: ElectraWeights, dtype=None, discriminator=None):
    """A new ``cls`` (``Electra`` or ``ElectraGenerator``) holding the encoder weights of ``weights``;
    nothing is returned half-loaded. With ``discriminator`` (generators only) the embeddings are
    shared and checked equal instead of copied."""
    kwargs = dict(weights.encoder_kwargs)
    size = _size_name(cls, kwargs)
    if discriminator is not None:
        for key in ("vocabulary_size", "embedding_dim", "max_sequence_length", "num_segments"):
            mine = getattr(discriminator, key) or (discriminator.hidden_dim if key == "embedding_dim" else None)
            if kwargs[key] != mine:
                raise CheckpointError(
                    f"{weights.source} has {key}={kwargs[key]} but the discriminator has {mine}: a generator "
                    "that shares its embeddings needs the same.")
        _check_shared_embeddings(weights, discriminator)
        for key in ("vocabulary_size", "embedding_dim", "max_sequence_length", "num_segments",
                    "layer_norm_epsilon"):
            kwargs.pop(key)
        model = cls(size, discriminator=discriminator, **({"dtype": dtype} if dtype else {}), **kwargs)
    else:
        model = cls(size, dtype=dtype, **kwargs)
    porter = _Porter(weights)
    if discriminator is None:
        porter.array(model.token_embedding.embeddings, "embeddings.word_embeddings.weight")
        porter.array(model.position_embedding.embeddings, "embeddings.position_embeddings.weight")
        porter.array(model.segment_embedding.embeddings, "embeddings.token_type_embeddings.weight")
        porter.layer_norm(model.get_layer("embeddings_layer_norm"), "embeddings.LayerNorm")
    else:
        porter.used.update(_SHARED_EMBEDDINGS)
    if model.embedding_dim not in (None, model.hidden_dim):
        porter.dense(model.get_layer("embedding_projection"), "embeddings_project")
    copy_transformer_blocks(porter, model)
    untrained = ("pooler",)
    if "pooler.dense.weight" in weights.state or "pooler.dense.bias" in weights.state:
        porter.dense(model.pooler.dense, "pooler.dense")
        untrained = ()
    _check_all_backbone_weights_used(porter)
    model.untrained_layers = untrained
    return model


def _size_name(cls, kwargs: dict) -> str | None:
    keys = ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", "embedding_dim")
    shape = {key: kwargs[key] for key in keys}
    return next((name for name, table in cls.sizes.items() if dict(table) == shape), None)


def electra_from_hf(cls, source, config=None, dtype=None, discriminator=None):
    """Build ``cls`` from a transformers ELECTRA checkpoint source and copy its encoder weights."""
    return electra_from_weights(cls, read_electra_hf(source, config), dtype=dtype, discriminator=discriminator)


def check_head(weights: ElectraWeights, head: tuple, owner: str) -> None:
    """One clear error, before anything is built, when ``weights`` lacks a pretraining head."""
    if weights.has_head(head):
        return
    kind = ("replaced-token-detection head (an ElectraForPreTraining checkpoint)" if head == DISCRIMINATOR_HEAD
            else "generator head (an ElectraForMaskedLM checkpoint)")
    raise CheckpointError(
        f"{weights.source} has no {kind}: '{weights.source_name(head[0] + '.weight')}' is missing. For fresh "
        f"heads on its encoder build {owner} from Electra.from_hf / ElectraGenerator.from_hf."
    )


def copy_discriminator_head(weights: ElectraWeights, head) -> None:
    """``discriminator_predictions.*`` into a ``keras_lm.layers.ReplacedTokenDetectionHead``."""
    check_head(weights, DISCRIMINATOR_HEAD, type(head).__name__)
    porter = _Porter(weights)
    porter.dense(head.dense, "discriminator_predictions.dense")
    porter.dense(head.prediction, "discriminator_predictions.dense_prediction")


def copy_generator_head(weights: ElectraWeights, head, token_embedding) -> None:
    """``generator_predictions.*`` and ``generator_lm_head.bias`` into a ``MaskedLMHead`` tied to
    ``token_embedding``; a ``generator_lm_head.weight`` that differs from the embeddings is refused."""
    check_head(weights, GENERATOR_HEAD, type(head).__name__)
    porter = _Porter(weights)
    decoder = weights.state.get("generator_lm_head.weight")
    if decoder is not None:
        embeddings = np.asarray(token_embedding.embeddings)
        if decoder.shape != embeddings.shape or not np.allclose(decoder.astype(np.float32), embeddings, atol=1e-6):
            raise CheckpointError(
                f"'{weights.source_name('generator_lm_head.weight')}' in {weights.source} differs from the word "
                "embeddings: its output layer is not tied to them, and keras_lm's MaskedLMHead always is."
            )
    porter.dense(head.transform_dense, "generator_predictions.dense")
    porter.layer_norm(head.transform_layer_norm, "generator_predictions.LayerNorm")
    porter.array(head.output_bias, "generator_lm_head.bias")


def sequence_summary_activation(config: dict, source: str) -> str:
    """The activation of ``ElectraForMultipleChoice``'s ``sequence_summary`` (a Keras name), after
    checking that the summary is the one ``keras_lm``'s pooler computes: a projection of the first token.

    Raises:
        CheckpointError: another ``summary_type``, no projection (``summary_use_proj``), a projection to
            the labels or an activation keras_lm does not have; the message names the config key.
    """
    problems = []
    if config.get("summary_type", "first") != "first":
        problems.append(f"summary_type={config.get('summary_type')!r} (only 'first')")
    if not config.get("summary_use_proj", True):
        problems.append("summary_use_proj=False (the pooler is a projection)")
    if config.get("summary_proj_to_labels"):
        problems.append("summary_proj_to_labels=True (the pooler keeps the hidden size)")
    activation = config.get("summary_activation")
    activations = {**HF_ACTIVATIONS, "tanh": "tanh", None: "linear"}
    if activation not in activations:
        problems.append(f"summary_activation={activation!r} (supported: "
                        f"{', '.join(repr(name) for name in activations if name is not None)} or none)")
    if problems:
        raise CheckpointError(f"The ElectraForMultipleChoice head of {source} cannot be imported: config.json has "
                              f"{'; '.join(problems)}.")
    return activations[activation]
