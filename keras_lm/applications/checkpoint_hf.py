"""Reading Hugging Face transformers checkpoints (config + weights) as numpy, without network access.

A source is one of: a checkpoint directory (``config.json`` plus ``model.safetensors``,
sharded ``model.safetensors.index.json``, ``pytorch_model.bin`` or its index), an in-memory
transformers model (anything with ``.config`` and ``.state_dict()``), or a state dict (name ->
array/tensor) together with ``config=`` (a dict or a transformers config object).
"""
from __future__ import annotations

import json
import os

import numpy as np

_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
_PYTORCH = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (bf16/fp16 are widened to float32)
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _config_dict(config) -> dict:
    if config is None:
        raise ValueError("A state dict needs `config=` (a dict or a transformers config) to describe the model.")
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"`config` must be a dict or a transformers config, got {type(config).__name__}.")


def _load_weight_file(path: str) -> dict:
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as error:
            raise ImportError(
                "Reading .safetensors needs the `safetensors` package (pip install safetensors)."
            ) from error
        try:
            return load_file(path)
        except (TypeError, ValueError):  # e.g. bfloat16, which numpy lacks: go through torch
            from safetensors.torch import load_file as load_torch_file

            return {name: _to_numpy(value) for name, value in load_torch_file(path).items()}
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"Reading {os.path.basename(path)} needs torch; save the checkpoint as safetensors "
                          "or install torch.") from error
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: _to_numpy(value) for name, value in state.items()}


def _read_directory(directory: str) -> tuple[dict, dict]:
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"No config.json in '{directory}': not a transformers checkpoint directory.")
    with open(config_path, encoding="utf-8") as file:
        config = json.load(file)
    for name in _SAFETENSORS + _PYTORCH:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        if name.endswith(".index.json"):
            with open(path, encoding="utf-8") as file:
                shards = sorted(set(json.load(file)["weight_map"].values()))
            state = {}
            for shard in shards:
                state.update(_load_weight_file(os.path.join(directory, shard)))
            return config, state
        return config, _load_weight_file(path)
    raise FileNotFoundError(
        f"No weights in '{directory}': expected one of {', '.join(_SAFETENSORS + _PYTORCH)}."
    )


def read_hf_checkpoint(source, config=None) -> tuple[dict, dict]:
    """``(config dict, {weight name: float32/int numpy array})`` for a checkpoint source (see module doc)."""
    if isinstance(source, (str, os.PathLike)):
        directory = os.fspath(source)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"'{directory}' is not a directory holding a transformers checkpoint.")
        return _read_directory(directory)
    if hasattr(source, "state_dict") and hasattr(source, "config"):
        state = {name: _to_numpy(value) for name, value in source.state_dict().items()}
        return _config_dict(config if config is not None else source.config), state
    if isinstance(source, dict):
        return _config_dict(config), {name: _to_numpy(value) for name, value in source.items()}
    raise TypeError(
        f"Cannot read a checkpoint from {type(source).__name__}: pass a directory, a transformers model or "
        "a state dict with `config=`."
    )


def strip_prefix(state: dict, prefixes: tuple[str, ...]) -> dict:
    """Drops a leading model prefix (``transformer.``, ``model.``) from the weight names."""
    result = {}
    for name, value in state.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        result[name] = value
    return result


class WeightPorter:
    """Assigns checkpoint arrays to variables, checking shapes and that every weight is used."""

    def __init__(self, state: dict, ignore=lambda name: False):
        self.state = state
        self.ignore = ignore
        self.used = set()

    def take(self, name: str) -> np.ndarray:
        if name not in self.state:
            raise KeyError(f"The checkpoint has no weight '{name}'.")
        self.used.add(name)
        return self.state[name]

    def has(self, name: str) -> bool:
        return name in self.state

    @staticmethod
    def assign(variable, value: np.ndarray, name: str) -> None:
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(f"Cannot port '{name}': shape {tuple(value.shape)} does not fit {tuple(variable.shape)}.")
        variable.assign(value.astype(np.float32))

    def finish(self) -> None:
        unused = sorted(name for name in self.state if name not in self.used and not self.ignore(name))
        if unused:
            raise ValueError(f"Checkpoint weights not understood: {', '.join(unused[:8])}"
                             f"{' …' if len(unused) > 8 else ''}.")
