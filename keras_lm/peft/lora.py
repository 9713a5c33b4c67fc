"""LoRA (Hu et al., 2021) with Keras' own ``Dense.enable_lora``: low-rank updates of the attention and
feed-forward projections, merged into the kernels before export, saved and loaded on their own."""
from __future__ import annotations

import json
import os
import tempfile

import keras
import numpy as np

from keras_lm.layers import TransformerBlock
from keras_lm.peft.freezing import freeze
from keras_lm.peft.variables import backbone_of, head_weights, reset_compiled_functions

#: Dense layers of a transformer block LoRA adapts by default: the fused query/key/value and the
#: output projection of attention, the two feed-forward projections.
DEFAULT_TARGETS = ("qkv", "output", "intermediate_dense", "output_dense")
#: Every Dense layer name of a block that can be a target (cross-attention ``query``/``key_value``,
#: the gated feed-forward's fused ``gate_up``).
TARGETS = ("qkv", "output", "query", "key_value", "intermediate_dense", "gate_up", "output_dense")
#: Marks a LoRA weights file (safetensors metadata ``format``).
LORA_FORMAT = "keras_lm.lora"


def _check_targets(targets) -> tuple:
    if isinstance(targets, str) or not targets:
        raise ValueError(f"`targets` must be a non-empty list of layer names from {', '.join(TARGETS)}; "
                         f"got {targets!r}.")
    unknown = [name for name in targets if name not in TARGETS]
    if unknown:
        raise ValueError(f"Unknown LoRA target {unknown[0]!r}; use names from {', '.join(TARGETS)}.")
    return tuple(targets)


def target_layers(model, targets=DEFAULT_TARGETS) -> list:
    """The Dense layers named in ``targets`` inside the transformer blocks of ``model``'s backbone."""
    targets = _check_targets(targets)
    backbone = backbone_of(model)
    layers, seen = [], set()
    for block in backbone._flatten_layers(include_self=True, recursive=True):
        if not isinstance(block, TransformerBlock):
            continue
        for layer in block._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.Dense) and layer.name in targets and id(layer) not in seen:
                seen.add(id(layer))
                layers.append(layer)
    return layers


def lora_layers(model) -> list:
    """The Dense layers of ``model`` with LoRA enabled."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.Dense) and getattr(layer, "lora_enabled", False)]


def lora(model, rank: int = 8, alpha: float | None = None, targets=DEFAULT_TARGETS):
    """Enables LoRA on the attention and feed-forward projections of every transformer block; in place.

    Each target ``Dense`` computes ``x @ (W + alpha / rank * A @ B)`` with ``W`` frozen, ``A``
    ``[in, rank]`` (He-uniform) and ``B`` ``[rank, out]`` (zeros): the model is unchanged until it
    trains. Only ``A``, ``B`` and the task head train afterwards (``freeze(model, "lora")``).
    Call it before ``compile``.

    Args:
        model: a task with a keras_lm ``backbone`` (``Classifier``, ...) or a backbone. A classifier
            reloaded with ``Classifier.from_saved_model`` needs ``rebuild=True`` (keras_lm layers).
        rank: rank of the update.
        alpha: scale numerator (``alpha / rank``); None: ``rank`` (scale 1).
        targets: Dense layer names (see ``TARGETS``).

    Returns:
        ``model``.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> classifier = lora(keras_lm.tasks.Classifier(backbone, num_classes=2), rank=4)
        >>> len(lora_layers(classifier))  # 2 blocks x 4 projections
        8
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
        raise ValueError(f"`rank` must be a positive integer, got {rank!r}.")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0):
        raise ValueError(f"`alpha` must be a positive number or None, got {alpha!r}.")
    layers = target_layers(model, targets)
    if not layers:
        raise ValueError(
            f"'{model.name}' has no Dense layers named {', '.join(targets)} inside keras_lm transformer "
            "blocks. An encoder reloaded as a SavedModel layer has none: reload it with "
            "Classifier.from_saved_model(directory, num_classes, rebuild=True)."
        )
    enabled = [layer.path for layer in layers if layer.lora_enabled]
    if enabled:
        raise ValueError(f"LoRA is already enabled on '{enabled[0]}'; merge it (merge_lora) or start again.")
    for layer in layers:
        layer.enable_lora(rank, lora_alpha=alpha)
    return freeze(model, "lora")


def merge_lora(model):
    """Folds every LoRA update into its kernel (``W += alpha / rank * A @ B``) and removes ``A`` and
    ``B``; in place. The merged model computes what the LoRA model computed (the Dense layer added
    the same float32 product to the kernel at each call) with plain Dense layers, ready for
    ``keras_lm.export``. Merged kernels stay frozen as they were during LoRA training.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> merged = merge_lora(lora(backbone, rank=4))
        >>> lora_layers(merged)
        []
    """
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"'{model.name}' has no LoRA layers to merge (apply keras_lm.peft.lora first).")
    for layer in layers:
        scale = layer.lora_alpha / layer.lora_rank
        delta = scale * keras.ops.matmul(layer.lora_kernel_a, layer.lora_kernel_b)
        layer._kernel.assign(keras.ops.cast(keras.ops.add(layer._kernel, delta), layer._kernel.dtype))
        del layer.lora_kernel_a  # Layer.__delattr__ untracks the variable
        del layer.lora_kernel_b
        layer.lora_enabled = False
        layer.lora_rank = None
        layer.lora_alpha = None
    reset_compiled_functions(model)
    return model


def save_lora_weights(model, path: str) -> str:
    """Writes only the LoRA matrices and the task head to a safetensors file; returns ``path``.

    Keys are variable paths (``transformer_layer_0/self_attention/qkv/lora_kernel_a``,
    ``logits/kernel``); the metadata records the rank, alpha and targets, so `load_lora_weights`
    can enable LoRA on a fresh model. The frozen backbone is not written: the file is a few
    percent of the model. The file is replaced atomically.

    Example:
        >>> save_lora_weights(classifier, "runs/lora/sentiment.safetensors")  # doctest: +SKIP
    """
    from safetensors.numpy import save_file

    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"'{model.name}' has no LoRA layers (apply keras_lm.peft.lora first).")
    ranks = {(layer.lora_rank, layer.lora_alpha) for layer in layers}
    if len(ranks) != 1:
        raise ValueError(f"'{model.name}' mixes LoRA ranks/alphas {sorted(ranks)}; one file holds one setting.")
    (rank, alpha), = ranks
    tensors = {}
    for layer in layers:
        for variable in (layer.lora_kernel_a, layer.lora_kernel_b):
            tensors[variable.path] = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
    head = [variable.path for variable in head_weights(model)]
    for variable in head_weights(model):
        tensors[variable.path] = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
    metadata = {
        "format": LORA_FORMAT,
        "rank": str(rank),
        "alpha": repr(float(alpha)),
        "targets": json.dumps(sorted({layer.name for layer in layers})),
        "head": json.dumps(head),
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".lora.", dir=directory)
    os.close(handle)
    try:
        save_file(tensors, staging, metadata=metadata)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise
    return path


def read_lora_file(path: str) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a file written by `save_lora_weights`, with one clear error."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No LoRA weights file at '{path}'.")
    try:
        with safe_open(path, framework="numpy") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except Exception as error:
        raise ValueError(f"'{path}' is not a readable safetensors file: {error}") from error
    if metadata.get("format") != LORA_FORMAT:
        raise ValueError(f"'{path}' is not a keras_lm LoRA weights file (format {metadata.get('format')!r}, "
                         f"expected {LORA_FORMAT!r}); write one with save_lora_weights.")
    return tensors, metadata


def load_lora_weights(model, path: str):
    """Loads a `save_lora_weights` file into ``model``; returns it.

    A model without LoRA gets it first, with the file's rank, alpha and targets, so a freshly built
    model of the same configuration (and the same frozen backbone weights) reproduces the saved
    model's outputs exactly. Every key is checked (present, same shape) before anything changes.

    Example:
        >>> classifier = load_lora_weights(fresh_classifier, "runs/lora/sentiment.safetensors")  # doctest: +SKIP
    """
    tensors, metadata = read_lora_file(path)
    rank, alpha = int(metadata["rank"]), float(metadata["alpha"])
    targets = tuple(json.loads(metadata["targets"]))
    existing = lora_layers(model)
    variables = {}
    if existing:
        for layer in existing:
            variables.update({v.path: v for v in (layer.lora_kernel_a, layer.lora_kernel_b)})
    else:  # the LoRA variables `lora` would create, by path
        for layer in target_layers(model, targets):
            base = layer._kernel.path.rsplit("/", 1)[0]
            variables[f"{base}/lora_kernel_a"] = (layer._kernel.shape[0], rank)
            variables[f"{base}/lora_kernel_b"] = (rank, layer._kernel.shape[1])
    heads = {variable.path: variable for variable in head_weights(model)}
    expected = set(variables) | set(json.loads(metadata["head"]))
    missing_in_model = sorted(key for key in tensors if key not in variables and key not in heads)
    missing_in_file = sorted(key for key in variables if key not in tensors)
    if missing_in_model or missing_in_file or set(tensors) != expected:
        problem = (f"'{missing_in_model[0]}' in the file has no counterpart in '{model.name}'" if missing_in_model
                   else f"'{missing_in_file[0]}' of '{model.name}' is not in the file" if missing_in_file
                   else "the file's tensors differ from the list in its metadata")
        raise ValueError(f"LoRA weights '{path}' do not fit: {problem}. Build the model with the "
                         f"configuration the file was saved from (rank {rank}, targets {', '.join(targets)}).")
    for key, value in tensors.items():
        target = variables.get(key, heads.get(key))
        shape = tuple(target) if isinstance(target, tuple) else tuple(target.shape)
        if tuple(value.shape) != shape:
            raise ValueError(f"LoRA weights '{path}': '{key}' has shape {tuple(value.shape)}, the model's {shape}.")
    if not existing:
        lora(model, rank=rank, alpha=alpha, targets=targets)
        for layer in lora_layers(model):
            variables.update({v.path: v for v in (layer.lora_kernel_a, layer.lora_kernel_b)})
    elif {(layer.lora_rank, float(layer.lora_alpha)) for layer in existing} != {(rank, alpha)}:
        raise ValueError(f"LoRA weights '{path}' were saved with rank {rank} and alpha {alpha:g}; "
                         f"'{model.name}' uses another setting.")
    for key, value in tensors.items():
        target = variables.get(key, heads.get(key))
        target.assign(value.astype(keras.backend.standardize_dtype(target.dtype)))
    reset_compiled_functions(model)
    return model
