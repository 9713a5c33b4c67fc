"""Reloading exported SavedModels as trainable Keras layers.

The on-disk format is the one `keras_lm.export.encoder` writes::

    DIR/keras_lm.json     manifest: format, version, shapes
    DIR/encoder/          SavedModel: `serve` (inference) and `serve_training` (dropout on) endpoints,
                          inputs {input_word_ids, input_mask, input_type_ids} int32 [batch, length],
                          outputs {sequence_output, pooled_output, encoder_outputs}
    DIR/preprocess/       SavedModel: `serve` (tf.string [batch]) and `serve_pair` (two tf.string
                          [batch]) -> the encoder's three inputs

Keras' own `TFSMLayer(trainable=True)` cannot be fine-tuned with Adam-family optimizers because the
restored variable names end in ":0", which optimizer slot names may not contain. `SavedModelLayer`
keeps the very same variables (so the SavedModel's functions see every update) under clean names.
"""
import json
import os

import keras
import tensorflow as tf

MANIFEST_FILE = "keras_lm.json"
ENCODER_DIR = "encoder"
PREPROCESS_DIR = "preprocess"
ENCODER_FORMAT = "keras_lm.encoder"
#: keras_lm input names -> TF-Hub encoder input names.
HUB_INPUT_NAMES = {
    "token_ids": "input_word_ids",
    "padding_mask": "input_mask",
    "segment_ids": "input_type_ids",
}


def _require_saved_model(path: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No SavedModel directory at '{path}'.")
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"'{path}' is not a SavedModel: it has no saved_model.pb.")


def _load(path: str):
    _require_saved_model(path)
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops a preprocess graph uses)

    try:
        return tf.saved_model.load(path)
    except Exception as error:  # corrupt protobuf, missing variables, ...
        raise ValueError(f"Could not load the SavedModel at '{path}': {error}") from error


@keras.saving.register_keras_serializable(package="keras_lm")
class SavedModelLayer(keras.layers.TFSMLayer):
    """A SavedModel endpoint as a Keras layer whose variables train with any Keras optimizer.

    In training (`training=True`) it calls `call_training_endpoint` when the SavedModel has one,
    so dropout inside the reloaded model is active during fine-tuning.

    Example:
        >>> layer = SavedModelLayer("hub/encoder", call_endpoint="serve",
        ...                         call_training_endpoint="serve_training")  # doctest: +SKIP
    """

    def _add_existing_weight(self, weight):
        # Same tf.Variable (shared state with the SavedModel's functions), name without ":0".
        clean_name = weight.name.split(":")[0].replace("/", "_")
        variable = keras.Variable(
            initializer=weight,
            trainable=weight.trainable,
            dtype=weight.dtype,
            shape=weight.shape,
            name=clean_name,
        )
        self._track_variable(variable)


def _trainable_endpoints(path: str, trainable: bool) -> SavedModelLayer:
    """`serve` for inference plus `serve_training` (dropout on) when the SavedModel has it."""
    import tensorflow_text  # noqa: F401

    def build(training_endpoint):
        return SavedModelLayer(
            path,
            call_endpoint="serve",
            call_training_endpoint=training_endpoint,
            trainable=trainable,
            name="saved_model",
        )

    try:
        try:
            return build("serve_training")
        except ValueError as error:
            if "serve_training" not in str(error):
                raise
            return build(None)  # exported without a training endpoint: no dropout in training
    except Exception as error:
        raise ValueError(f"Could not load the SavedModel at '{path}': {error}") from error


@keras.saving.register_keras_serializable(package="keras_lm")
class SavedModelEncoder(keras.layers.Layer):
    """A TF-Hub-style encoder SavedModel as a trainable layer with keras_lm's input names.

    Takes {"token_ids", "segment_ids", "padding_mask"} and returns {"sequence_output",
    "pooled_output"} like `keras_lm.models.Encoder`.

    Example:
        >>> encoder = SavedModelEncoder("hub/encoder/encoder")  # doctest: +SKIP
        >>> encoder(batch)["pooled_output"].shape  # doctest: +SKIP
        TensorShape([8, 256])
    """

    def __init__(self, path: str, trainable: bool = True, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        path = os.path.abspath(path)
        _require_saved_model(path)
        self.saved_model_path = path
        self.saved_model = _trainable_endpoints(path, trainable)

    def call(self, inputs, training=False):
        missing = sorted(set(HUB_INPUT_NAMES) - set(inputs))
        if missing:
            raise ValueError(f"SavedModelEncoder is missing inputs {missing}; got {sorted(inputs)}.")
        hub_inputs = {
            hub_name: tf.cast(inputs[name], tf.int32) for name, hub_name in HUB_INPUT_NAMES.items()
        }
        outputs = self.saved_model(hub_inputs, training=training)
        return {
            "sequence_output": outputs["sequence_output"],
            "pooled_output": outputs["pooled_output"],
        }

    def get_config(self):
        config = super().get_config()
        config["path"] = self.saved_model_path
        return config


@keras.saving.register_keras_serializable(package="keras_lm")
class SavedModelPreprocessor(keras.layers.Layer):
    """A preprocess SavedModel (strings -> encoder inputs) as a layer usable in tf.data and graphs.

    Accepts one tf.string tensor (one segment) or a pair (first, second) and returns keras_lm's
    {"token_ids", "segment_ids", "padding_mask"} as int32.

    Example:
        >>> pre = SavedModelPreprocessor("hub/encoder/preprocess")  # doctest: +SKIP
        >>> pre(tf.constant(["a fine film"]))["token_ids"].shape  # doctest: +SKIP
        TensorShape([1, 128])
    """

    def __init__(self, path: str, **kwargs):
        kwargs.pop("trainable", None)  # present in saved configs; a preprocessor has no weights to train
        super().__init__(trainable=False, **kwargs)
        path = os.path.abspath(path)
        self.saved_model_path = path
        self.saved_model = _load(path)
        self.sequence_length = int(self.saved_model.sequence_length.numpy())

    def call(self, inputs):
        if isinstance(inputs, (tuple, list)):
            if len(inputs) != 2:
                raise ValueError(f"Expected one or two text segments, got {len(inputs)}.")
            first, second = (tf.convert_to_tensor(x, tf.string) for x in inputs)
            scalar = first.shape.rank == 0
            if scalar:
                first, second = first[None], second[None]
            outputs = self.saved_model.serve_pair(first, second)
        else:
            text = tf.convert_to_tensor(inputs, tf.string)
            scalar = text.shape.rank == 0
            outputs = self.saved_model.serve(text[None] if scalar else text)
        features = {name: outputs[hub_name] for name, hub_name in HUB_INPUT_NAMES.items()}
        if scalar:
            features = {name: value[0] for name, value in features.items()}
        return features

    def get_config(self):
        config = super().get_config()
        config["path"] = self.saved_model_path
        return config


def read_manifest(directory: str) -> dict:
    """Reads DIR/keras_lm.json written by `keras_lm.export.encoder`, with a clear error."""
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"'{directory}' is not a keras_lm encoder export: {MANIFEST_FILE} is missing "
            "(write one with keras_lm.export.encoder)."
        )
    try:
        with open(path) as f:
            manifest = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"Corrupt manifest '{path}': {error}") from error
    if manifest.get("format") != ENCODER_FORMAT:
        raise ValueError(f"'{path}' has format {manifest.get('format')!r}, expected {ENCODER_FORMAT!r}.")
    return manifest


#: Per-layer random-number states (dropout seeds): not weights, named by creation order, not copied.
SEED_STATE = "seed_generator_state"


def rebuild_encoder(directory: str):
    """The exported encoder as keras_lm layers again, holding the SavedModel's variable values.

    `keras_lm.export.encoder` records the backbone's class and arguments in the manifest; the
    backbone is rebuilt from them (e.g. a ``keras_lm.applications.Bert``) and each of its variables
    takes the value of the SavedModel variable of the same path. The result is an ordinary keras_lm
    backbone, so LoRA, adapters and prompt tuning (``keras_lm.peft``) apply to it.

    Raises:
        ValueError: the manifest has no backbone configuration (an export written before it was
            recorded: export the encoder again), the SavedModel holds unmerged LoRA weights, or a
            variable of the rebuilt backbone has no counterpart of the same shape in the SavedModel.

    Example:
        >>> backbone = rebuild_encoder("hub/bert")  # doctest: +SKIP
        >>> backbone.get_layer("transformer_layer_0")  # doctest: +SKIP
    """
    import keras_lm.applications  # noqa: F401  (registers the backbone classes named in manifests)

    manifest = read_manifest(directory)
    config = manifest.get("backbone")
    if not config:
        raise ValueError(
            f"The manifest {os.path.join(directory, MANIFEST_FILE)} records no backbone configuration "
            "(written by an older keras_lm or for a backbone without get_config): export the encoder "
            "again with keras_lm.export.encoder, or reload it with rebuild=False."
        )
    path = os.path.join(directory, ENCODER_DIR)
    _require_saved_model(path)
    try:
        exported = tf.saved_model.load(path)
    except Exception as error:
        raise ValueError(f"Could not load the SavedModel at '{path}': {error}") from error
    values = {variable.name.split(":")[0]: variable for variable in exported.variables}
    lora = sorted(name for name in values if "lora_kernel" in name)
    if lora:
        raise ValueError(
            f"The encoder SavedModel at '{path}' holds unmerged LoRA weights ('{lora[0]}'): merge them "
            "before exporting (keras_lm.peft.merge_lora), or reload it with rebuild=False."
        )
    try:
        backbone = keras.saving.deserialize_keras_object(config)
    except Exception as error:
        raise ValueError(f"Could not rebuild the backbone recorded in the manifest of '{directory}': {error}") from error
    for variable in backbone.variables:
        if SEED_STATE in variable.path:
            continue
        source = values.get(variable.path)
        if source is None or tuple(source.shape) != tuple(variable.shape):
            found = "no variable" if source is None else f"shape {tuple(source.shape)}"
            raise ValueError(
                f"The encoder SavedModel at '{path}' has {found} for '{variable.path}' "
                f"{tuple(variable.shape)} of the backbone its manifest describes; export the encoder again."
            )
        variable.assign(tf.cast(source, variable.dtype))
    return backbone
