"""Which variables a fine-tuning method trains: names, layer depths, backbone and head.

Every rule reads a variable's *key*, its path with ``/`` written ``_``
(``transformer_layer_0_self_attention_qkv_kernel``). A keras_lm backbone and the same encoder
reloaded as one SavedModel layer (``Classifier.from_saved_model``) give the same keys, so the
freezing policies, BitFit and layer-wise learning rates act on both.
"""
from __future__ import annotations

import math
import re

import keras

#: Random-number states of dropout layers: never weights, never trained.
SEED_STATE = "seed_generator_state"
#: Keys starting with one of these belong to the embedding block (depth 0).
EMBEDDING_PREFIXES = ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm",
                      "embedding_projection", "soft_prompt")
_BLOCK = re.compile(r"^transformer_layer_(\d+)_")
_BIAS = re.compile(r"(^|_)(bias|beta)$")
_LAYER_NORM = re.compile(r"norm_(gamma|beta|scale)$")


def variable_key(variable) -> str:
    """``variable.path`` with ``/`` as ``_``: the same for keras_lm layers and a reloaded SavedModel."""
    return variable.path.replace("/", "_")


def is_embedding(key: str) -> bool:
    return key.startswith(EMBEDDING_PREFIXES)


def block_index(key: str) -> int | None:
    """The index ``i`` of ``transformer_layer_{i}`` a variable belongs to, or None."""
    found = _BLOCK.match(key)
    return int(found.group(1)) if found else None


def is_bias(key: str) -> bool:
    """Dense biases and LayerNorm's ``beta`` (the bias terms BitFit trains)."""
    return _BIAS.search(key) is not None


def is_layer_norm(key: str) -> bool:
    return _LAYER_NORM.search(key) is not None


def is_lora(key: str) -> bool:
    return key.endswith(("lora_kernel_a", "lora_kernel_b"))


def is_adapter(key: str) -> bool:
    return "_adapter_" in key


def is_soft_prompt(key: str) -> bool:
    return key.startswith("soft_prompt")


def backbone_of(model):
    """``model.backbone`` for a task, else the model itself (a backbone)."""
    backbone = getattr(model, "backbone", None)
    return backbone if isinstance(backbone, keras.layers.Layer) else model


def weights_of(layer) -> list:
    """The layer's variables without random-number states."""
    return [variable for variable in layer.variables if SEED_STATE not in variable.path]


def head_weights(model) -> list:
    """The variables of a task that are not its backbone's (the task head)."""
    backbone = backbone_of(model)
    if backbone is model:
        return []
    inside = {id(variable) for variable in backbone.variables}
    return [variable for variable in weights_of(model) if id(variable) not in inside]


def num_blocks(model) -> int:
    """Number of transformer blocks: ``num_layers`` of a keras_lm backbone, else counted from the
    variable names (a reloaded SavedModel layer)."""
    backbone = backbone_of(model)
    count = getattr(backbone, "num_layers", None)
    if isinstance(count, int):
        return count
    indices = [block_index(variable_key(v)) for v in weights_of(backbone)]
    indices = [i for i in indices if i is not None]
    if not indices:
        raise ValueError(f"{type(backbone).__name__} '{backbone.name}' has no variables of transformer blocks "
                         "(named transformer_layer_{i}); layer-wise rules need a keras_lm encoder.")
    return max(indices) + 1


def depth(key: str, num_layers: int) -> int:
    """Depth of a variable: 0 for the embedding block, ``i + 1`` for ``transformer_layer_{i}``,
    ``num_layers + 1`` for everything above (the pooler and the task head)."""
    if is_embedding(key):
        return 0
    index = block_index(key)
    return num_layers + 1 if index is None else index + 1


def reset_compiled_functions(model) -> None:
    """Forget traced train/test/predict steps: they captured the previous variables and flags."""
    for name in ("train_function", "test_function", "predict_function"):
        if hasattr(model, name):
            setattr(model, name, None)


def train_only(model, trains_in_backbone, head: bool = True):
    """Sets every backbone variable's ``trainable`` flag to ``trains_in_backbone(key)`` and every head
    variable's to ``head``. Returns the model.

    Layer-level flags are reset to trainable first, so the result depends only on the rule.
    Compile the model after this (an optimizer already built keeps its old variable list).
    """
    model.trainable = True
    backbone = backbone_of(model)
    for variable in weights_of(backbone):
        variable.trainable = bool(trains_in_backbone(variable_key(variable)))
    for variable in head_weights(model):
        variable.trainable = bool(head)
    reset_compiled_functions(model)
    return model


def trainable_parameter_count(model) -> int:
    """Number of scalars the optimizer updates (each shared variable counted once).

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> trainable_parameter_count(backbone) == backbone.count_params()
        True
    """
    seen, total = set(), 0
    for variable in model.trainable_variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            total += math.prod(variable.shape)
    return total
