"""Freezing policies and BitFit: which backbone variables train; the task head always trains."""
from __future__ import annotations

from keras_lm.peft.variables import (
    backbone_of,
    block_index,
    head_weights,
    is_adapter,
    is_bias,
    is_embedding,
    is_layer_norm,
    is_lora,
    is_soft_prompt,
    num_blocks,
    train_only,
    variable_key,
    weights_of,
)

#: What `freeze` accepts. The first three are freezing policies; the others train what the PEFT
#: method of that name adds (use them to set the flags again on a reloaded model).
POLICIES = ("embeddings", "bottom_k", "all_but_head", "bitfit", "lora", "adapters", "prompt")


def _frozen_bottom(k: int):
    def trains(key: str) -> bool:
        index = block_index(key)
        return not is_embedding(key) and (index is None or index >= k)

    return trains


def freeze(model, policy: str, k: int | None = None):
    """Sets which variables of ``model`` train (in place) and returns it.

    Policies (the task head, the variables outside ``model.backbone``, always trains):

    - ``"embeddings"``: everything but the embedding block (token, position, segment embeddings,
      their LayerNorm and projection).
    - ``"bottom_k"``: everything but the embedding block and the ``k`` lowest transformer blocks.
    - ``"all_but_head"``: the head only (a linear probe of the frozen encoder).
    - ``"bitfit"``, ``"lora"``, ``"adapters"``, ``"prompt"``: what that method trains (see
      `bitfit`, `keras_lm.peft.lora`, `keras_lm.peft.add_adapters`, `keras_lm.peft.prompt_tuning`).

    Works on keras_lm backbones and on an encoder reloaded as a SavedModel layer (variables are
    matched by name). Compile the model afterwards.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> classifier = keras_lm.tasks.Classifier(backbone, num_classes=2)
        >>> _ = freeze(classifier, "all_but_head")
        >>> [v.path for v in classifier.trainable_variables]
        ['logits/kernel', 'logits/bias']
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown freezing policy {policy!r}; use one of {', '.join(POLICIES)}.")
    if policy == "bottom_k":
        layers = num_blocks(model)
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= layers:
            raise ValueError(f"policy 'bottom_k' needs `k`, the number of blocks to freeze, in [0, {layers}]; "
                             f"got {k!r}.")
    elif k is not None:
        raise ValueError(f"`k` belongs to policy 'bottom_k', not {policy!r}.")
    if policy == "all_but_head" and not head_weights(model):
        raise ValueError(f"'{model.name}' has no task head (no variables outside its backbone): "
                         "'all_but_head' would train nothing.")
    rules = {
        "embeddings": lambda key: not is_embedding(key),
        "bottom_k": _frozen_bottom(k) if policy == "bottom_k" else None,
        "all_but_head": lambda key: False,
        "bitfit": is_bias,
        "lora": is_lora,
        "adapters": lambda key: is_adapter(key) or is_layer_norm(key),
        "prompt": is_soft_prompt,
    }
    _check_method_present(model, policy)
    return train_only(model, rules[policy])


_PRESENT = {"lora": (is_lora, "peft.lora"), "adapters": (is_adapter, "peft.add_adapters"),
            "prompt": (is_soft_prompt, "peft.prompt_tuning")}


def _check_method_present(model, policy: str) -> None:
    if policy not in _PRESENT:
        return
    present, function = _PRESENT[policy]
    if not any(present(variable_key(v)) for v in weights_of(backbone_of(model))):
        raise ValueError(f"'{model.name}' has no {policy} variables: apply {function} first.")


def bitfit(model):
    """BitFit (Ben Zaken et al., 2022): only the bias terms of the backbone train (every Dense
    bias and LayerNorm ``beta``), plus the task head. In place; returns the model.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> classifier = bitfit(keras_lm.tasks.Classifier(backbone, num_classes=2))
        >>> sorted({v.name for v in classifier.trainable_variables})
        ['beta', 'bias', 'kernel']
    """
    return freeze(model, "bitfit")
