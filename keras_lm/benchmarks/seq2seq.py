"""Seq2seq decoding throughput: keras_lm `Seq2SeqLM.generate` vs keras-hub `T5Seq2SeqLM.generate`.

A keras-hub ``T5Backbone`` gets random weights (every one of them, RMSNorm scales and the relative
position buckets too) and ``t5_from_keras_hub`` ports them into ``keras_lm.applications.T5``, so
both systems decode the same model. Both read token ids (no tokenizer is timed) and run without
stop tokens, so every row gets exactly ``new_tokens`` new tokens; tokens/s is ``batch * new_tokens``
divided by the seconds of one ``generate`` call (beams are not counted as extra tokens). Greedy
decoding and beam search (keras_lm ``sampler="beam"`` with no length penalty, keras-hub
``BeamSampler``) are timed in interleaved rounds; their tokens are compared (both searches keep the
``num_beams`` best prefixes by summed log-probability, so they agree unless two scores tie within
rounding). keras_lm decodes with its default compilation (XLA); keras-hub's default on a CPU is
no XLA, so it is timed both without and with XLA and its faster one counts. A case a system
cannot run is recorded with its error, never raised.

Weight mapping (keras-hub ``T5Backbone`` attributes -> keras_lm ``T5`` variables), per encoder
layer ``i`` and decoder layer ``j``; keras-hub's Dense kernels are ``[in, out]`` like keras_lm's::

    token_embedding.embeddings                        -> token_embedding/embeddings
    token_embedding.reverse_embeddings (v1.1, untied) -> lm_head/kernel
    {encoder,decoder}_transformer_layers[0].self_attention.relative_attention_bias
                                                      -> {encoder,decoder}_position_bias/embeddings
    encoder_transformer_layers[i].self_attention_layer_norm -> encoder_layer_i/self_attention_norm/scale
    encoder_transformer_layers[i].self_attention.{query,key,value}_projector
                                                      -> encoder_layer_i/self_attention/qkv (q|k|v)
    encoder_transformer_layers[i].self_attention.output_projector -> encoder_layer_i/self_attention/output
    decoder_transformer_layers[j].cross_attention_layer_norm -> decoder_layer_j/cross_attention_norm/scale
    decoder_transformer_layers[j].cross_attention.query_projector -> decoder_layer_j/cross_attention/query
    decoder_transformer_layers[j].cross_attention.{key,value}_projector
                                                      -> decoder_layer_j/cross_attention/key_value (k|v)
    decoder_transformer_layers[j].cross_attention.output_projector -> decoder_layer_j/cross_attention/output
    (decoder layers: self-attention as in the encoder)
    *_transformer_layers[k].layer_norm                -> *_layer_k/feed_forward_norm/scale
    *_transformer_layers[k].input_projector           -> *_layer_k/feed_forward/intermediate_dense (v1.0, ReLU)
    *_transformer_layers[k].{input,gate}_projector    -> *_layer_k/feed_forward/gate_up (v1.1, gate|up)
    *_transformer_layers[k].output_projector          -> *_layer_k/feed_forward/output_dense
    {encoder,decoder}_layer_norm                      -> {encoder,decoder}_final_norm/scale

keras-hub's T5 fixes 32 relative position buckets and a max distance of 128, T5's defaults.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_lm.benchmarks.timing import interleaved_rounds

#: The decodings timed per batch size: greedy, and beam search with `Seq2SeqConfig.num_beams`.
DECODINGS = ("greedy", "beam")


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig:
    """T5-small-like v1.0 (ReLU, tied) but CPU-sized: 4+4 layers, H512/A8, FF2048, vocab 32128."""

    variant: str = "v1.0"
    num_layers: int = 4
    hidden_dim: int = 512
    num_heads: int = 8
    intermediate_dim: int = 2048
    vocabulary_size: int = 32128
    source_length: int = 32
    new_tokens: int = 64
    batch_sizes: tuple = (1, 8)
    num_beams: int = 4
    rounds: int = 5
    keras_hub_jit_compile: tuple = (False, True)  # keras-hub timed both ways; its faster one counts

    @property
    def label(self) -> str:
        return (f"T5 {self.variant}-style {self.num_layers}+{self.num_layers}L/H{self.hidden_dim}/A{self.num_heads}/"
                f"FF{self.intermediate_dim}, vocab {self.vocabulary_size}, sources of up to {self.source_length} "
                f"tokens, {self.new_tokens} new tokens per row (no stop token), beam search with "
                f"{self.num_beams} beams")


#: A harness check: one batch size (3, which keras_lm pads to 4: its batch bucketing runs too), since
#: tracing (XLA for keras_lm) takes most of the time.
QUICK = Seq2SeqConfig(num_layers=1, hidden_dim=64, num_heads=2, intermediate_dim=128, vocabulary_size=1000,
                      source_length=16, new_tokens=16, batch_sizes=(3,), rounds=2)


def random_t5_backbone(config: Seq2SeqConfig, seed: int = 0, std: float = 0.2):
    """A keras-hub ``T5Backbone`` of ``config``'s shape with every weight drawn at random (``randomize_t5_weights``)."""
    import keras_hub

    from keras_lm.layers.utils import gelu_approximate

    v1_1 = config.variant == "v1.1"
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=config.vocabulary_size, num_layers=config.num_layers, num_heads=config.num_heads,
        hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim, dropout=0.0,
        activation=gelu_approximate if v1_1 else "relu", use_gated_activation=v1_1,
        tie_embedding_weights=not v1_1,
    )
    randomize_t5_weights(backbone, seed, std)
    return backbone


def randomize_t5_weights(backbone, seed: int = 0, std: float = 0.2, embedding_std: float = 1.0) -> None:
    """Draws every weight of a keras-hub ``T5Backbone``.

    Kernels and relative position buckets from N(0, std), RMSNorm scales from N(1, std) (at their
    default 1 a swapped norm in a weight port would go unnoticed), the token embedding (and an
    untied output projection) from N(0, embedding_std), keras-hub's own scale for T5 embeddings:
    with T5's ``hidden_dim ** -0.5`` output rescale a smaller one leaves next-token logits so
    close that greedy choices hinge on rounding.
    """
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        center = 1.0 if _is_norm_scale(weight) else 0.0
        scale = embedding_std if weight.path.startswith("token_embedding/") else std
        weight.assign((center + scale * rng.standard_normal(weight.shape)).astype(weight.dtype))


def _is_norm_scale(weight) -> bool:
    return "layer_norm" in weight.path and weight.path.endswith("weight")


def _activation_name(function) -> str:
    return getattr(function, "__name__", str(function))


def t5_kwargs_from_keras_hub(backbone) -> dict:
    """``keras_lm.applications.T5`` keyword arguments (``variant`` included) for a keras-hub ``T5Backbone``.

    Raises:
        ValueError: the backbone is neither T5 v1.0 (ReLU, not gated, tied) nor v1.1 (tanh-GELU,
            gated, untied), or its heads have another width than ``key_value_dim``.
    """
    activation = _activation_name(backbone.activation)
    found = (activation, bool(backbone.use_gated_activation), bool(backbone.tie_embedding_weights))
    variants = {("relu", False, True): "v1.0", ("gelu_approximate", True, False): "v1.1"}
    if found not in variants:
        raise ValueError(
            f"keras-hub T5Backbone with activation {activation!r}, use_gated_activation={found[1]} and "
            f"tie_embedding_weights={found[2]} is neither T5 v1.0 (relu, not gated, tied) nor v1.1 "
            "(keras_lm.layers.utils.gelu_approximate, gated, untied); build the keras-hub backbone as one of them."
        )
    return {
        "variant": variants[found],
        "vocabulary_size": backbone.vocabulary_size,
        "num_layers": backbone.num_layers,
        "num_heads": backbone.num_heads,
        "hidden_dim": backbone.hidden_dim,
        "head_dim": backbone.key_value_dim or backbone.hidden_dim // backbone.num_heads,
        "intermediate_dim": backbone.intermediate_dim,
        "layer_norm_epsilon": backbone.layer_norm_epsilon,
        "dropout": float(backbone.dropout),
    }


def _kernels(*denses) -> np.ndarray:
    return np.concatenate([np.asarray(keras.ops.convert_to_numpy(d.kernel)) for d in denses], axis=1)


def _weight_pairs(hub, model) -> list:
    """``[(keras_lm variable, value, [keras-hub variables it comes from])]`` for every weight."""
    pairs = []

    def add(target, sources, value=None):
        if value is None:
            (source,) = sources
            value = np.asarray(keras.ops.convert_to_numpy(source))
        pairs.append((target, value, list(sources)))

    def dense(target, *sources):
        add(target.kernel, [s.kernel for s in sources], _kernels(*sources))

    embedding = hub.token_embedding
    add(model.token_embedding.embeddings, [embedding.embeddings])
    if model.lm_head is not None:
        add(model.lm_head.kernel, [embedding.reverse_embeddings])
    for stack in ("encoder", "decoder"):
        hub_layers = getattr(hub, f"{stack}_transformer_layers")
        ours = getattr(model, f"{stack}_layers")
        add(getattr(model, f"{stack}_positions").embeddings, [hub_layers[0].self_attention.relative_attention_bias])
        for hub_layer, block in zip(hub_layers, ours):
            attention = hub_layer.self_attention
            add(block.self_attention_norm.scale, [hub_layer.self_attention_layer_norm.weight])
            dense(block.self_attention.qkv_dense, attention.query_projector, attention.key_projector,
                  attention.value_projector)
            dense(block.self_attention.output_dense, attention.output_projector)
            if stack == "decoder":
                cross = hub_layer.cross_attention
                add(block.cross_attention_norm.scale, [hub_layer.cross_attention_layer_norm.weight])
                dense(block.cross_attention.query_dense, cross.query_projector)
                dense(block.cross_attention.key_value_dense, cross.key_projector, cross.value_projector)
                dense(block.cross_attention.output_dense, cross.output_projector)
            add(block.feed_forward_norm.scale, [hub_layer.layer_norm.weight])
            feed_forward = block.feed_forward
            if feed_forward.gated:
                dense(feed_forward.gate_up_dense, hub_layer.input_projector, hub_layer.gate_projector)
            else:
                dense(feed_forward.intermediate_dense, hub_layer.input_projector)
            dense(feed_forward.output_dense, hub_layer.output_projector)
        add(getattr(model, f"{stack}_final_norm").scale, [getattr(hub, f"{stack}_layer_norm").weight])
    return pairs


def t5_from_keras_hub(backbone, dtype=None):
    """A ``keras_lm.applications.T5`` carrying the weights of a keras-hub ``T5Backbone``.

    The model is built and filled apart and returned only when every keras-hub weight has found
    its place (see the module docstring for the mapping).

    Args:
        backbone: a built keras-hub ``T5Backbone`` (v1.0 or v1.1, see ``t5_kwargs_from_keras_hub``).
        dtype: dtype policy of the new model.

    Example:
        >>> hub = random_t5_backbone(QUICK)  # doctest: +SKIP
        >>> t5_from_keras_hub(hub).variant  # doctest: +SKIP
        'v1.0'
    """
    from keras_lm.applications.t5 import T5

    model = T5(None, dtype=dtype, **t5_kwargs_from_keras_hub(backbone))
    pairs = _weight_pairs(backbone, model)
    for target, value, sources in pairs:
        if tuple(target.shape) != value.shape:
            raise ValueError(f"Cannot port keras-hub {sources[0].path}: shape {value.shape} does not fit "
                             f"keras_lm {target.path} {tuple(target.shape)}.")
    used = {id(source) for _, _, sources in pairs for source in sources}
    unused = [weight.path for weight in backbone.weights if id(weight) not in used]
    if unused:
        raise ValueError(f"keras-hub T5Backbone weights with no place in keras_lm T5: {', '.join(unused[:8])}.")
    for target, value, _ in pairs:
        target.assign(value.astype(target.dtype))
    return model


def _sources(config: Seq2SeqConfig, batch: int, rng) -> tuple:
    """``(token ids, padding mask)`` ``[batch, source_length]``: row 0 full, the others 1/2 to full length."""
    lengths = rng.integers(max(1, config.source_length // 2), config.source_length + 1, batch)
    lengths[0] = config.source_length
    mask = np.arange(config.source_length)[None, :] < lengths[:, None]
    ids = rng.integers(2, config.vocabulary_size, (batch, config.source_length))
    return np.where(mask, ids, 0).astype("int32"), mask.astype("int32")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _hub_name(jit_compile: bool, decoding: str) -> str:
    return f"keras_hub{'_xla' if jit_compile else ''}/{decoding}"


def seq2seq_throughput(config: Seq2SeqConfig, log, hub_backbone=None) -> dict:
    """Greedy and beam-search decoding tokens/s of keras_lm and keras-hub on one T5, and whether tokens agree.

    Per batch size every system runs once (tracing; the tokens compared come from this call),
    then all are timed in ``config.rounds`` interleaved rounds of one ``generate`` call each.
    keras_lm decodes with its default compilation; keras-hub with each ``jit_compile`` of
    ``config.keras_hub_jit_compile`` (its own default, "auto", is no XLA on a CPU), and its faster
    one counts.

    Args:
        config: the model shape, source/target lengths, batch sizes and beams.
        log: a ``print``-like progress function.
        hub_backbone: the keras-hub ``T5Backbone`` to compare (keras_lm ports its weights);
            defaults to ``random_t5_backbone(config)``.

    Returns:
        ``{"config", "rounds", "num_beams", "keras_hub_jit_compile" (the compilations timed),
        "batches": {batch: {decoding: figures}}}`` with, per
        decoding, ``keras_lm_tokens_per_second`` and ``keras_hub_tokens_per_second`` (best round;
        keras-hub's faster compilation; None when no run succeeded), ``median_tokens_per_second``,
        ``keras_lm_jit_compile``, ``keras_hub_jit_compile`` (of the figure), ``keras_hub_runs``
        (``"xla"`` / ``"no_xla"`` -> tokens/s, median, same tokens), ``same_tokens_as_keras_hub``
        (every keras-hub run that ran gave keras_lm's tokens; None if none ran) and ``errors``
        (system -> message).
    """
    import keras_hub

    from keras_lm.tasks.causal_lm import default_jit_compile
    from keras_lm.tasks.seq2seq_lm import Seq2SeqLM

    keras.utils.set_random_seed(0)
    if hub_backbone is None:
        log("(g) building keras-hub T5Backbone with random weights")
        hub_backbone = random_t5_backbone(config)
    hub = {}
    for jit_compile in config.keras_hub_jit_compile:
        for decoding in DECODINGS:
            task = keras_hub.models.T5Seq2SeqLM(backbone=hub_backbone, preprocessor=None)
            task.compile(sampler="greedy" if decoding == "greedy" else
                         keras_hub.samplers.BeamSampler(num_beams=config.num_beams), jit_compile=bool(jit_compile))
            hub[_hub_name(jit_compile, decoding)] = task
    ours = Seq2SeqLM(t5_from_keras_hub(hub_backbone), source_length=config.source_length,
                     target_length=config.new_tokens + 1, decoder_start_token_id=0, end_token_id=None)
    decode_options = {"greedy": {"sampler": "greedy"},
                      "beam": {"sampler": "beam", "num_beams": config.num_beams, "length_penalty": 0.0}}
    rng = np.random.default_rng(0)
    results = {"config": config.label, "rounds": config.rounds, "num_beams": config.num_beams,
               "keras_hub_jit_compile": [bool(j) for j in config.keras_hub_jit_compile], "batches": {}}
    for batch in config.batch_sizes:
        source_ids, source_mask = _sources(config, batch, rng)
        sources = {"encoder_token_ids": source_ids, "encoder_padding_mask": source_mask}
        width = config.new_tokens + 1  # the decoder start token, then the new tokens
        hub_inputs = {**sources, "decoder_token_ids": np.zeros((batch, width), "int32"),
                      "decoder_padding_mask": np.arange(width)[None, :].repeat(batch, 0) < 1}
        outputs, errors, systems = {}, {}, {}
        for decoding in DECODINGS:
            systems[f"keras_lm/{decoding}"] = (
                lambda decoding=decoding: np.asarray(ours.generate(
                    sources, max_new_tokens=config.new_tokens, stop_token_ids=[], **decode_options[decoding])))
        for name, task in hub.items():
            systems[name] = (lambda task=task: np.asarray(task.generate(
                hub_inputs, stop_token_ids=None)["decoder_token_ids"])[:, 1:])
        log(f"(g) seq2seq, batch {batch}: first call of each system (tracing), then {config.rounds} "
            "interleaved rounds")
        for name in list(systems):
            try:
                outputs[name] = systems[name]()
            except Exception as error:  # a case a system cannot run is a row entry, not a crash
                errors[name] = _first_line(error)
                log(f"(g) batch {batch}: {name} failed: {errors[name]}")
                del systems[name]
        rounds = interleaved_rounds(systems, config.rounds, warmup=0,
                                    log=lambda message: log(f"(g) batch {batch}, {message}")) if systems else {}
        new = batch * config.new_tokens

        def rate(name, key="best_seconds"):
            return new / rounds[name][key] if name in rounds else None

        def same_tokens(name):
            ours_tokens, theirs = outputs.get(f"keras_lm/{name.split('/')[1]}"), outputs.get(name)
            if ours_tokens is None or theirs is None:
                return None
            return bool(ours_tokens.shape == theirs.shape and np.array_equal(ours_tokens, theirs))

        figures = {}
        for decoding in DECODINGS:
            lm = f"keras_lm/{decoding}"
            hub_runs = {("xla" if jit_compile else "no_xla"): _hub_name(jit_compile, decoding)
                        for jit_compile in config.keras_hub_jit_compile}
            ran = [name for name in hub_runs.values() if name in rounds]
            fastest = max(ran, key=rate) if ran else None
            agreement = [same_tokens(name) for name in ran]
            figures[decoding] = {
                "keras_lm_tokens_per_second": rate(lm),
                "keras_hub_tokens_per_second": rate(fastest) if fastest else None,
                "median_tokens_per_second": {"keras_lm": rate(lm, "median_seconds"),
                                             "keras_hub": rate(fastest, "median_seconds") if fastest else None},
                "keras_lm_jit_compile": default_jit_compile(batch),
                "keras_hub_jit_compile": None if fastest is None else "_xla/" in fastest,
                "keras_hub_runs": {
                    kind: {"tokens_per_second": rate(name), "median_tokens_per_second": rate(name, "median_seconds"),
                           "same_tokens_as_keras_lm": same_tokens(name)}
                    for kind, name in hub_runs.items()
                },
                "same_tokens_as_keras_hub": None if None in agreement or not agreement else all(agreement),
                "errors": {_system_label(name): message for name, message in errors.items()
                           if name.endswith(f"/{decoding}")},
            }
        results["batches"][str(batch)] = figures
    return results


def _system_label(name: str) -> str:
    """``"keras_hub_xla/beam"`` -> ``"keras-hub with XLA"``; ``"keras_lm/greedy"`` -> ``"keras_lm"``."""
    system = name.split("/")[0]
    if system.startswith("keras_hub"):
        return "keras-hub with XLA" if system.endswith("_xla") else "keras-hub without XLA"
    return system
