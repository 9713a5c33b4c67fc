"""Loading weights saved before the encoder and decoder shared one block type.

keras_lm 0.1 saved encoder blocks as ``transformer_encoder_block[_N]`` (with norms named
``self_attention_layer_norm`` / ``feed_forward_layer_norm``) and decoder blocks as
``transformer_decoder_block[_N]``; both are ``transformer_block[_N]`` now, with ``*_norm`` names.
Keras addresses a functional model's layers by class name in ``.keras`` and ``.weights.h5`` files,
so a backbone reading such a file looks its blocks up under the old names (``translate_legacy_paths``).
"""
from __future__ import annotations

BLOCK = "transformer_block"
#: Old block group name -> renamed sub-layers inside it.
LEGACY_BLOCKS = {
    "transformer_encoder_block": {"self_attention_layer_norm": "self_attention_norm",
                                  "feed_forward_layer_norm": "feed_forward_norm"},
    "transformer_decoder_block": {},
}


def legacy_path(path: str, layers_path: str, legacy_block: str) -> str:
    """``path`` of the current layout as written by keras_lm 0.1 (unchanged outside the blocks).

    Example:
        >>> legacy_path("layers/transformer_block_1/self_attention_norm", "layers", "transformer_encoder_block")
        'layers/transformer_encoder_block_1/self_attention_layer_norm'
    """
    if not path.startswith(layers_path + "/"):
        return path
    head, _, tail = path[len(layers_path) + 1:].partition("/")
    suffix = head[len(BLOCK):]
    if not head.startswith(BLOCK) or (suffix and not (suffix.startswith("_") and suffix[1:].isdigit())):
        return path
    parts = tail.split("/") if tail else []
    if parts:
        inverse = {new: old for old, new in LEGACY_BLOCKS[legacy_block].items()}
        parts[0] = inverse.get(parts[0], parts[0])
    return "/".join([layers_path, legacy_block + suffix, *parts])


def translate_legacy_paths(store) -> None:
    """Make an HDF5 weights ``store`` positioned at a backbone answer current block paths from a
    keras_lm 0.1 layout, if the file has one. A no-op for current files and other store types."""
    h5_file = getattr(store, "h5_file", None)
    own_path = getattr(store, "_h5_entry_path", None)
    if h5_file is None or own_path is None or not callable(getattr(store, "get", None)):
        return
    layers_path = f"{own_path}/layers" if own_path else "layers"
    try:
        names = set(h5_file[layers_path].keys()) if layers_path in h5_file else set()
    except (KeyError, TypeError, ValueError):
        return
    legacy = [name for name in LEGACY_BLOCKS if name in names]
    if not legacy or BLOCK in names:
        return
    original_get = store.get

    def get(path):
        return original_get(legacy_path(path, layers_path, legacy[0]))

    store.get = get
