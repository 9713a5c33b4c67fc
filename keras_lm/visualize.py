"""Attention maps of keras_lm models as labelled PNG heatmaps.

``attention(model, text, layer=, head=)`` draws one head (query tokens down, key tokens across),
``attention_grid(model, text)`` every head of one layer or of every layer, and
``attention_probabilities`` returns the numbers behind them. ``model`` is an ``Encoder`` or a
``Decoder`` backbone (``Bert``, ``Roberta``, ``Electra``, ``Gpt2``, ``Llama``, ...) or a model that
wraps one in ``.backbone`` (``Classifier``, ``CausalLM``, ``MaskedLM``, ...). The probabilities come
from the model's own attention layers (``MultiHeadAttention(..., return_attention_scores=True)``) on
the very inputs each block receives; padding is left out of the pictures.

Example:
    >>> import keras_hub, keras_lm
    >>> lm = keras_lm.tasks.CausalLM(keras_lm.applications.Gpt2("tiny", vocabulary_size=256),
    ...                              keras_hub.tokenizers.ByteTokenizer())
    >>> maps = attention_probabilities(lm, "To be", layer=0)
    >>> maps.tokens, maps.probabilities.shape
    (['t', 'o', ' ', 'b', 'e'], (1, 2, 5, 5))
    >>> attention(lm, "To be", layer=0, head=1, path="/tmp/attention.png")  # doctest: +SKIP
    '/tmp/attention.png'
"""
from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

#: Heatmap geometry in inches: each token takes a cell; the margin holds the tick labels and title.
CELL_INCHES = 0.3
MARGIN_INCHES = 1.6
MINIMUM_INCHES = 4.0
COLORBAR_INCHES = 1.0
#: Grid geometry: each head's map is a square of at least this many inches.
GRID_CELL_INCHES = 2.0
GRID_MARGIN_INCHES = (1.4, 1.6)  # (width, height) of the labels and title around the grid


@dataclasses.dataclass(frozen=True)
class AttentionMaps:
    """Attention probabilities of one text over its real (non-padding) tokens.

    Attributes:
        tokens: the token strings, in order (queries and keys alike).
        probabilities: float32 ``[len(layers), num_heads, T, T]``; row ``t`` of a head is how query
            ``t`` spreads its attention over the keys; each row sums to 1.
        layers: the layer index of each entry of the first axis.
    """

    tokens: list
    probabilities: np.ndarray
    layers: tuple


def heatmap_inches(num_tokens: int) -> tuple:
    """``(width, height)`` in inches of ``attention``'s figure for ``num_tokens`` tokens."""
    side = max(MINIMUM_INCHES, MARGIN_INCHES + CELL_INCHES * num_tokens)
    return side + COLORBAR_INCHES, side


def grid_inches(num_rows: int, num_columns: int, num_tokens: int) -> tuple:
    """``(width, height)`` in inches of ``attention_grid``'s figure."""
    cell = max(GRID_CELL_INCHES, 0.1 * num_tokens + 0.6)
    return GRID_MARGIN_INCHES[0] + cell * num_columns, GRID_MARGIN_INCHES[1] + cell * num_rows


# --- probabilities ----------------------------------------------------------------------------
def _backbone_of(model):
    """The keras_lm backbone of ``model`` (itself or its ``.backbone``), checked for attention maps."""
    backbone = getattr(model, "backbone", model)
    blocks = getattr(backbone, "transformer_layers", None)
    inputs = getattr(backbone, "input", None) if isinstance(backbone, keras.Model) else None
    if not blocks or not isinstance(inputs, dict) or not all(hasattr(b, "self_attention") for b in blocks):
        raise TypeError(
            f"Attention maps need a keras_lm Encoder or Decoder backbone (or a task wrapping one in "
            f"`.backbone`); got {type(backbone).__name__}. A reloaded SavedModel holds no keras_lm layers: "
            "load the .keras file (Classifier.from_keras_file) or the checkpoint instead."
        )
    return backbone


def _is_decoder(backbone) -> bool:
    return hasattr(backbone, "call_with_cache")


def _tokenizer_of(preprocessor):
    return getattr(preprocessor, "tokenizer", preprocessor)


def _features(backbone, text, preprocessor) -> dict:
    """The backbone's inputs for one text, as a batch of one."""
    if isinstance(text, dict):
        features = {name: np.asarray(value) for name, value in text.items()}
        features = {name: value[None] if value.ndim == 1 else value for name, value in features.items()}
        missing = [name for name in backbone.input if name not in features]
        if "token_ids" in missing:
            raise ValueError("Features passed as `text` need at least 'token_ids'.")
        token_ids = features["token_ids"]
        features.setdefault("padding_mask", np.ones_like(token_ids))
        features.setdefault("segment_ids", np.zeros_like(token_ids))
    else:
        if not isinstance(text, (str, tuple)):
            raise TypeError(
                f"`text` must be a string (or a pair of strings for an encoder), got {type(text).__name__}.")
        if preprocessor is None:
            raise ValueError(
                "Turning text into tokens needs a preprocessor or tokenizer: pass `preprocessor=` or a "
                "task that carries one (e.g. Classifier(..., preprocessor=...), CausalLM(backbone, tokenizer))."
            )
        if _is_decoder(backbone):
            if not isinstance(text, str):
                raise TypeError("A decoder reads one string, not a pair.")
            ids = _tokenizer_of(preprocessor)(tf.constant([text]))
            ids = ids.to_list()[0] if isinstance(ids, tf.RaggedTensor) else np.asarray(ids).reshape(-1).tolist()
            if not ids:
                raise ValueError(f"{text!r} has no tokens to show.")
            token_ids = np.array([ids], "int32")
            features = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
        else:
            packed = preprocessor(tuple([s] for s in text) if isinstance(text, tuple) else tf.constant([text]))
            features = {name: np.asarray(value) for name, value in packed.items()}
    features = {name: np.asarray(features[name]).astype("int32") for name in backbone.input}
    length = features["token_ids"].shape[1]
    limit = getattr(backbone, "max_sequence_length", None)
    if limit is not None and length > limit:
        raise ValueError(f"The text has {length} tokens; the model reads at most max_sequence_length={limit}.")
    return features


def _token_strings(tokenizer, ids) -> list:
    """Readable token strings: vocabulary pieces, or the text of each byte-level piece."""
    if tokenizer is None:
        return [str(int(i)) for i in ids]
    import keras_hub

    if isinstance(tokenizer, (keras_hub.tokenizers.BytePairTokenizer, keras_hub.tokenizers.ByteTokenizer)):
        texts = tokenizer.detokenize(tf.ragged.constant([[int(i)] for i in ids], dtype=tf.int32))
        texts = texts.numpy().tolist() if hasattr(texts, "numpy") else list(texts)
        return [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in texts]
    return [str(tokenizer.id_to_token(int(i))) for i in ids]


def _check_index(name: str, index, count: int) -> int:
    """``index`` in ``[-count, count)`` as a non-negative index; one clear ValueError otherwise."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {index!r}.")
    if not -count <= index < count:
        raise ValueError(f"{name} {index} does not exist: the model has {count} {name}s (0 … {count - 1}).")
    return int(index) % count


def attention_probabilities(model, text, layer: int | None = None, preprocessor=None) -> AttentionMaps:
    """The self-attention probabilities of every head of ``layer`` (None: every layer) for ``text``.

    Args:
        model: an ``Encoder`` / ``Decoder`` backbone or a model wrapping one in ``.backbone``.
        text: a string (a pair of strings for an encoder), or the backbone's input features for
            one sequence (``token_ids`` and optionally ``padding_mask``, ``segment_ids``).
        layer: the block index (negative counts from the last), or None for all blocks.
        preprocessor: the encoder's preprocessor (``BertPreprocessor`` ...) or the decoder's
            tokenizer; defaults to ``model.preprocessor``.

    Returns:
        ``AttentionMaps`` over the real tokens (padding dropped).

    Raises:
        TypeError: not a keras_lm backbone (e.g. a reloaded SavedModel) or a wrong ``text`` type.
        ValueError: an unknown layer, no preprocessor for text, or a text longer than the model reads.
    """
    backbone = _backbone_of(model)
    blocks = backbone.transformer_layers
    layers = tuple(range(len(blocks))) if layer is None else (_check_index("layer", layer, len(blocks)),)
    if preprocessor is None:
        preprocessor = getattr(model, "preprocessor", None)
    features = _features(backbone, text, preprocessor)
    block_inputs = [_block_input(blocks[i]) for i in layers]
    hidden = keras.Model(backbone.input, block_inputs)(features)
    hidden = hidden if isinstance(hidden, (list, tuple)) else [hidden]
    padding_mask = features["padding_mask"]
    maps = [_self_attention_scores(blocks[i], h, padding_mask, _is_decoder(backbone)) for i, h in zip(layers, hidden)]
    real = padding_mask[0] != 0
    probabilities = np.stack([np.asarray(m)[0][:, real][:, :, real] for m in maps]).astype("float32")
    ids = features["token_ids"][0][real]
    return AttentionMaps(_token_strings(_tokenizer_of(preprocessor), ids), probabilities, layers)


def _block_input(block):
    inputs = block.input
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


def _self_attention_scores(block, x, padding_mask, causal: bool):
    """``[B, heads, T, T]`` probabilities of ``block``'s self-attention for its input ``x``."""
    h = block.self_attention_norm(x) if block.norm_first else x
    _, scores = block.self_attention(h, padding_mask=padding_mask, use_causal_mask=causal,
                                     return_attention_scores=True)
    return scores


# --- pictures -----------------------------------------------------------------------------------
def attention_figure(maps: AttentionMaps, layer: int, head: int, dpi: int = 100):
    """A matplotlib ``Figure`` of one head of ``maps`` (``layer`` is a model layer index in ``maps.layers``)."""
    from matplotlib.figure import Figure

    if layer not in maps.layers:
        raise ValueError(f"layer {layer} is not in these maps (layers {list(maps.layers)}).")
    head = _check_index("head", head, maps.probabilities.shape[1])
    values = maps.probabilities[maps.layers.index(layer), head]
    figure = Figure(figsize=heatmap_inches(len(maps.tokens)), dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="viridis", vmin=0.0, vmax=max(float(values.max()), 1e-6))
    _label_axes(axes, maps.tokens, x=True, y=True, fontsize=8)
    axes.set_xlabel("key")
    axes.set_ylabel("query")
    axes.set_title(f"layer {layer}, head {head}")
    figure.colorbar(image, ax=axes, label="attention probability")
    return figure


def _label_axes(axes, tokens, x: bool, y: bool, fontsize: float) -> None:
    positions = np.arange(len(tokens))
    labels = [_visible(token) for token in tokens]
    axes.set_xticks(positions, labels if x else [], rotation=90, fontsize=fontsize)
    axes.set_yticks(positions, labels if y else [], fontsize=fontsize)


def _visible(token: str) -> str:
    """A tick label for a token: newlines escaped, a token of spaces shown as open boxes."""
    token = token.replace("\n", "\\n").replace("\t", "\\t")
    return token if token.strip() else "\u2423" * max(len(token), 1)


def _save(figure, path: str, dpi: int, description: dict) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    metadata = {"Title": description["title"], "Description": json.dumps(description, ensure_ascii=True)}
    figure.savefig(path, dpi=dpi, format="png", metadata=metadata)
    return path


def attention(model, text, layer: int = 0, head: int = 0, path: str = "attention.png", preprocessor=None,
              dpi: int = 100) -> str:
    """Writes a PNG heatmap of one attention head for ``text``; returns ``path``.

    Query tokens run down the y axis and key tokens across the x axis, labelled with the token
    strings; padding is left out; the title names the layer and head. The image is
    ``heatmap_inches(T)`` inches at ``dpi``, and its PNG text holds a ``Description`` (JSON: title,
    layer, head, tokens).

    Args:
        model, text, preprocessor: see ``attention_probabilities``.
        layer, head: which block and head (negative counts from the last).
        path: the PNG file (its folder is created).
        dpi: pixels per inch.

    Example:
        >>> attention(classifier, "A gripping film.", layer=1, head=3, path="runs/attention.png")  # doctest: +SKIP
    """
    maps = attention_probabilities(model, text, layer=layer, preprocessor=preprocessor)
    layer = maps.layers[0]
    figure = attention_figure(maps, layer, head, dpi=dpi)
    head = _check_index("head", head, maps.probabilities.shape[1])
    return _save(figure, path, dpi, {"title": f"layer {layer}, head {head}", "layer": layer, "head": head,
                                     "tokens": maps.tokens})


def attention_grid_figure(maps: AttentionMaps, dpi: int = 100):
    """A matplotlib ``Figure`` with one heatmap per (layer, head) of ``maps``: layers down, heads across."""
    from matplotlib.figure import Figure

    rows, columns = maps.probabilities.shape[:2]
    figure = Figure(figsize=grid_inches(rows, columns, len(maps.tokens)), dpi=dpi, layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    fontsize = 6 if len(maps.tokens) > 24 else 7
    which = f"layer {maps.layers[0]}" if rows == 1 else f"layers {maps.layers[0]}-{maps.layers[-1]}"
    figure.suptitle(f"{which}, every head")
    for row, layer in enumerate(maps.layers):
        for head in range(columns):
            axes = grid[row, head]
            axes.imshow(maps.probabilities[row, head], cmap="viridis", vmin=0.0)
            _label_axes(axes, maps.tokens, x=row == rows - 1, y=head == 0, fontsize=fontsize)
            axes.set_title(f"layer {layer}, head {head}", fontsize=8)
    return figure


def attention_grid(model, text, layer: int | None = None, path: str = "attention_grid.png", preprocessor=None,
                   dpi: int = 100) -> str:
    """Writes a PNG grid of every head's attention for ``text``: one layer's heads in a row, or
    all layers (rows) × heads (columns) when ``layer`` is None; returns ``path``.

    Token labels sit on the left column (queries) and the bottom row (keys); each map is titled
    with its layer and head. The image is ``grid_inches(rows, heads, T)`` inches at ``dpi``.

    Example:
        >>> lm = keras_lm.tasks.CausalLM.from_hf("gpt2_dir")  # doctest: +SKIP
        >>> attention_grid(lm, "To be or not", path="grid.png")  # doctest: +SKIP
    """
    maps = attention_probabilities(model, text, layer=layer, preprocessor=preprocessor)
    figure = attention_grid_figure(maps, dpi=dpi)
    return _save(figure, path, dpi, {"title": figure.get_suptitle(), "layers": list(maps.layers),
                                     "heads": int(maps.probabilities.shape[1]), "tokens": maps.tokens})
