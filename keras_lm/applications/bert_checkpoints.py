"""BERT checkpoints beyond transformers: Google's original TF checkpoints, keras-hub presets, detection.

Google checkpoints (``bert_config.json`` + ``bert_model.ckpt.{index,data-*}``, read with
``tf.train.load_checkpoint``) are renamed to transformers' names and orientation, then imported by
``bert_hf`` (one mapping for every format)::

    bert/embeddings/{word,position,token_type}_embeddings  -> embeddings.*_embeddings.weight
    bert/.../LayerNorm/{gamma,beta}                        -> ....LayerNorm.{weight,bias}
    bert/encoder/layer_N/...                               -> encoder.layer.N....
    .../kernel [in, out]                                   -> ....weight [out, in] (transposed)
    cls/predictions/output_bias                            -> cls.predictions.bias
    cls/seq_relationship/output_weights [2, H]             -> cls.seq_relationship.weight (as is)
    cls/seq_relationship/output_bias                       -> cls.seq_relationship.bias

Optimizer slots (``*/adam_m``, ``*/adam_v``) and training counters (``global_step``, loss-scale
variables) are skipped. Google's ``"gelu"`` is the tanh approximation (``"gelu_approximate"``) and
its LayerNorm epsilon is 1e-12.

keras-hub preset folders are read by ``keras_hub_preset``; ``detect_bert_checkpoint_format`` tells
the three formats apart.
"""
from __future__ import annotations

import glob
import json
import os
import re

from keras_lm.applications.bert_hf import BertWeights, canonical_bert_state, encoder_kwargs_from_bert_config
from keras_lm.applications.checkpoint_hf import CheckpointError, is_hub_name
from keras_lm.applications.keras_hub_preset import keras_hub_preset_class

GOOGLE_ACTIVATIONS = {"gelu": "gelu_approximate", "relu": "relu"}
_TRAINING_STATE = re.compile(r"(^|/)(adam_m|adam_v|Adam|Adam_1|global_step|good_steps|bad_steps|loss_scale)$")
_EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def google_to_hf_name(name: str) -> tuple[str, bool]:
    """``(transformers name, stored transposed)`` of a Google BERT variable name."""
    if name == "cls/predictions/output_bias":
        return "cls.predictions.bias", False
    parts = name.split("/")
    last = parts[-1]
    parts = [re.sub(r"^layer_(\d+)$", r"layer.\1", part) for part in parts[:-1]]
    transposed = False
    if last in _EMBEDDING_TABLES:
        parts += [last, "weight"]
    elif last == "kernel":
        parts, transposed = parts + ["weight"], True
    else:
        parts.append({"gamma": "weight", "beta": "bias", "output_weights": "weight",
                      "output_bias": "bias"}.get(last, last))
    return ".".join(parts), transposed


def hf_to_google_name(name: str) -> str:
    """The Google variable name of a canonical transformers BERT name (inverse of ``google_to_hf_name``)."""
    if name == "cls.predictions.bias":
        return "cls/predictions/output_bias"
    parts = name.split(".")
    if parts[0] in ("embeddings", "encoder", "pooler"):
        parts = ["bert"] + parts
    parts = re.sub(r"(^|\.)layer\.(\d+)", r"\1layer_\2", ".".join(parts)).split(".")
    *head, parameter = parts
    owner = head[-1] if head else ""
    if owner in _EMBEDDING_TABLES and parameter == "weight":
        return "/".join(head)
    if owner == "LayerNorm":
        parameter = {"weight": "gamma", "bias": "beta"}.get(parameter, parameter)
    elif owner == "seq_relationship":
        parameter = {"weight": "output_weights", "bias": "output_bias"}.get(parameter, parameter)
    elif parameter == "weight":
        parameter = "kernel"
    return "/".join(head + [parameter])


def _google_files(path: str) -> tuple[str, str]:
    """``(bert_config.json path, checkpoint prefix)`` of a Google checkpoint folder or prefix."""
    path = os.fspath(path)
    if os.path.isfile(path + ".index"):  # a prefix such as folder/bert_model.ckpt
        directory, prefix = os.path.dirname(path) or ".", path
    elif os.path.isdir(path):
        directory = path
        indexes = sorted(glob.glob(os.path.join(glob.escape(directory), "*.index")))
        if not indexes:
            raise FileNotFoundError(f"No TF checkpoint (*.ckpt.index) in '{directory}': not a Google BERT checkpoint.")
        if len(indexes) > 1:
            import tensorflow as tf

            latest = tf.train.latest_checkpoint(directory)
            if latest is None:
                names = ", ".join(os.path.basename(index) for index in indexes)
                raise CheckpointError(f"'{directory}' holds several checkpoints ({names}); pass the prefix of one, "
                                      f"e.g. '{indexes[0][: -len('.index')]}'.")
            indexes = [latest + ".index"]
        prefix = indexes[0][: -len(".index")]
    else:
        raise FileNotFoundError(f"'{path}' is neither a folder nor a TF checkpoint prefix.")
    config_path = os.path.join(directory, "bert_config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"No bert_config.json in '{directory}' next to the checkpoint '{prefix}'.")
    return config_path, prefix


def read_google_checkpoint(path: str) -> BertWeights:
    """``BertWeights`` of an original Google BERT TF checkpoint (folder or checkpoint prefix)."""
    import tensorflow as tf

    config_path, prefix = _google_files(path)
    with open(config_path, encoding="utf-8") as file:
        config = json.load(file)
    kwargs = encoder_kwargs_from_bert_config(config, GOOGLE_ACTIVATIONS, 1e-12, config_path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as error:  # tf.errors.* for a truncated or foreign file
        raise CheckpointError(f"Cannot read the TF checkpoint '{prefix}': {str(error).splitlines()[0]}") from error
    source = f"the Google checkpoint '{prefix}'"
    state, names, transposed = {}, {}, set()
    for name in reader.get_variable_to_shape_map():
        if _TRAINING_STATE.search(name):
            continue
        hf_name, is_transposed = google_to_hf_name(name)
        if hf_name.startswith("bert."):
            hf_name = hf_name[len("bert."):]
        elif hf_name.startswith(("embeddings.", "encoder.", "pooler.")):
            hf_name = "unprefixed:" + hf_name
        value = reader.get_tensor(name)
        state[hf_name] = value.T if is_transposed else value
        names[hf_name] = name
        if is_transposed:
            transposed.add(hf_name)
    if "embeddings.word_embeddings.weight" not in state:
        canonical_bert_state(state, source)  # raises the layout error naming what was found
    return BertWeights(
        kwargs, state, source, "Bert.from_google_checkpoint",
        source_name=lambda name: names.get(name) or hf_to_google_name(name),
        stored_transposed=lambda name: name in transposed,
    )


def detect_bert_checkpoint_format(path: str) -> str:
    """``"hf"``, ``"google"`` or ``"keras_hub"`` for a checkpoint folder (or a hub name, ``"hf"``);
    one clear error otherwise."""
    text = os.fspath(path)
    if os.path.isfile(text + ".index"):
        return "google"
    if isinstance(path, str) and not os.path.exists(text) and is_hub_name(text):
        return "hf"  # a hub name such as "bert-base-uncased": Bert.from_hf downloads it or says how to
    if not os.path.isdir(text):
        raise FileNotFoundError(f"'{text}' is not a checkpoint folder.")
    path = text
    files = sorted(os.listdir(path))
    if os.path.isfile(os.path.join(path, "bert_config.json")) and glob.glob(os.path.join(glob.escape(path), "*.index")):
        return "google"
    if keras_hub_preset_class(path) is not None:
        return "keras_hub"
    config_path = os.path.join(path, "config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as file:
            try:
                config = json.load(file)
            except json.JSONDecodeError:
                config = None
        if isinstance(config, dict) and "model_type" in config:
            return "hf"
    shown = ", ".join(files[:12]) + (" ..." if len(files) > 12 else "") if files else "nothing"
    raise CheckpointError(
        f"'{path}' is not a BERT checkpoint folder keras_lm knows. Expected one of: a Hugging Face transformers "
        "folder (config.json with 'model_type' + model.safetensors or pytorch_model.bin); an original Google "
        "TF checkpoint (bert_config.json + bert_model.ckpt.index/.data-*); a keras-hub preset (config.json "
        f"with 'class_name' + model.weights.h5). Found: {shown}."
    )
