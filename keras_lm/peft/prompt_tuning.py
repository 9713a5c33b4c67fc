"""Prompt tuning (Lester et al., 2021): trainable soft-prompt vectors prepended to the token embeddings."""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_lm.models import Encoder
from keras_lm.models.encoder import INPUT_NAMES
from keras_lm.peft.adapters import with_backbone
from keras_lm.peft.freezing import freeze
from keras_lm.peft.variables import backbone_of


@keras.saving.register_keras_serializable(package="keras_lm")
class SoftPrompt(keras.layers.Layer):
    """``num_prompts`` trainable vectors; called on token embeddings ``[B, T, D]`` it returns them
    broadcast to ``[B, num_prompts, D]``.

    Example:
        >>> import numpy as np
        >>> tuple(SoftPrompt(3)(np.zeros((2, 5, 8), "float32")).shape)
        (2, 3, 8)
    """

    def __init__(self, num_prompts: int, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_prompts, int) or isinstance(num_prompts, bool) or num_prompts <= 0:
            raise ValueError(f"`num_prompts` must be a positive integer, got {num_prompts!r}.")
        self.num_prompts = num_prompts
        self.initializer = keras.initializers.get(initializer)

    def build(self, inputs_shape):
        self.prompts = self.add_weight(name="prompts", shape=(self.num_prompts, inputs_shape[-1]),
                                       initializer=self.initializer)

    def call(self, embeddings):
        prompts = ops.cast(self.prompts, embeddings.dtype)[None]
        return ops.broadcast_to(prompts, (ops.shape(embeddings)[0], self.num_prompts, ops.shape(embeddings)[-1]))

    def compute_output_shape(self, inputs_shape):
        return (inputs_shape[0], self.num_prompts, inputs_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"num_prompts": self.num_prompts,
                       "initializer": keras.initializers.serialize(self.initializer)})
        return config


def prompt_padding_mask(padding_mask, num_prompts: int):
    """The padding mask of the prompted sequence: ``num_prompts`` ones, then 1 where the text has a
    token and 0 where it is padded (``[B, T] -> [B, num_prompts + T]``, int32).

    Example:
        >>> import numpy as np
        >>> np.asarray(prompt_padding_mask(np.array([[1, 1, 0]]), 2)).tolist()
        [[1, 1, 1, 1, 0]]
    """
    real = ops.cast(ops.not_equal(padding_mask, 0), "int32")
    ones = ops.ones_like(real[:, :1]) * ops.ones((1, num_prompts), dtype="int32")  # [B, N]; B may be symbolic
    return ops.concatenate([ones, real], axis=1)


@keras.saving.register_keras_serializable(package="keras_lm")
class PromptEncoder(keras.Model):
    """A keras_lm encoder that reads ``num_prompts`` trainable vectors before every text.

    The prompt vectors live in the token-embedding space and are prepended to the embedded tokens;
    then, as for any token, position and segment embeddings are added, and the embeddings
    LayerNorm, dropout and blocks run over ``num_prompts + T`` positions. Positions: the prompts
    take positions ``0 .. N-1`` and segment 0, the text ``N .. N+T-1`` (its tokens are shifted by
    ``N``, as in Hugging Face PEFT's prompt tuning), so texts may hold at most
    ``max_sequence_length - N`` tokens. Mask: the prompts are always attended to
    (`prompt_padding_mask`); padded text positions stay masked.

    Outputs ``sequence_output`` ``[B, T, hidden]`` for the text tokens only (position ``N + t`` of
    the prompted sequence is token ``t``), ``pooled_output`` (the pooler on the ``[CLS]`` token,
    i.e. position ``N``), and ``prompt_output`` ``[B, N, hidden]``, so every task head works
    unchanged. The wrapped encoder's layers are shared, not copied.

    Args:
        backbone: a keras_lm ``Encoder`` (e.g. ``Bert``).
        num_prompts: ``N``.
        initializer: initializer of the prompt vectors (see `prompt_tuning` for the vocabulary start).

    Example:
        >>> import keras_lm, numpy as np
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> prompted = PromptEncoder(backbone, num_prompts=4)
        >>> out = prompted({"token_ids": np.ones((2, 6), "int32"), "segment_ids": np.zeros((2, 6), "int32"),
        ...                 "padding_mask": np.ones((2, 6), "int32")})
        >>> tuple(out["sequence_output"].shape), tuple(out["prompt_output"].shape)
        ((2, 6, 128), (2, 4, 128))
    """

    def __init__(self, backbone, num_prompts: int, initializer="zeros", **kwargs):
        if not isinstance(backbone, Encoder):
            raise ValueError(
                f"Prompt tuning needs a keras_lm encoder; got {type(backbone).__name__}. An encoder reloaded as a "
                "SavedModel layer needs Classifier.from_saved_model(directory, num_classes, rebuild=True)."
            )
        soft_prompt = SoftPrompt(num_prompts, initializer=initializer, dtype=backbone.dtype_policy,
                                 name="soft_prompt")
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}
        tokens = backbone.token_embedding(inputs["token_ids"])
        tokens = ops.concatenate([soft_prompt(tokens), tokens], axis=1)
        prompt_segments = ops.zeros_like(inputs["segment_ids"][:, :1]) + ops.zeros((1, num_prompts), "int32")
        segments = ops.concatenate([prompt_segments, inputs["segment_ids"]], axis=1)
        x = tokens + backbone.position_embedding(tokens) + backbone.segment_embedding(segments)
        x = backbone.get_layer("embeddings_layer_norm")(x)
        x = backbone.get_layer("embeddings_dropout")(x)
        if backbone.embedding_dim is not None and backbone.embedding_dim != backbone.hidden_dim:
            x = backbone.get_layer("embedding_projection")(x)
        mask = prompt_padding_mask(inputs["padding_mask"], num_prompts)
        for block in backbone.transformer_layers:
            x = block(x, padding_mask=mask)
        text = x[:, num_prompts:]
        outputs = {"sequence_output": text, "pooled_output": backbone.pooler(text),
                   "prompt_output": x[:, :num_prompts]}
        kwargs.setdefault("name", f"prompted_{backbone.name}")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.soft_prompt = soft_prompt
        self.num_prompts = num_prompts
        self.initializer = keras.initializers.get(initializer)
        for name in ("vocabulary_size", "num_layers", "hidden_dim", "max_sequence_length"):
            setattr(self, name, getattr(backbone, name))

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_prompts": self.num_prompts,
                "initializer": keras.initializers.serialize(self.initializer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def prompt_tuning(model, num_prompts: int = 20, init: str = "vocabulary", seed: int = 0):
    """A new model whose encoder reads ``num_prompts`` trainable soft-prompt vectors before each text
    (`PromptEncoder`); only the prompts and the task head train (``freeze(new_model, "prompt")``).

    ``init="vocabulary"`` starts each prompt as the embedding of a token drawn (with ``seed``) from
    the encoder's vocabulary, as Lester et al. recommend; ``"zeros"`` or any Keras initializer name
    otherwise. A task (``Classifier``, ...) is rebuilt around the new encoder with its head weights
    and preprocessor; ``model`` is left unchanged. Compile the returned model.

    Raises:
        ValueError: the preprocessor's ``sequence_length`` plus ``num_prompts`` exceeds the
            encoder's ``max_sequence_length``.

    Example:
        >>> import keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=100, max_sequence_length=16)
        >>> classifier = prompt_tuning(keras_lm.tasks.Classifier(backbone, num_classes=2), num_prompts=4)
        >>> [v.path for v in classifier.trainable_variables]
        ['soft_prompt/prompts', 'logits/kernel', 'logits/bias']
    """
    backbone = backbone_of(model)
    length = getattr(getattr(model, "preprocessor", None), "sequence_length", None)
    limit = getattr(backbone, "max_sequence_length", None)
    if isinstance(length, int) and isinstance(limit, int) and length + num_prompts > limit:
        raise ValueError(
            f"{num_prompts} prompts + the preprocessor's sequence_length {length} exceed the encoder's "
            f"max_sequence_length {limit}: the prompts take the first positions. Use fewer prompts or a "
            f"shorter sequence_length (at most {limit - num_prompts})."
        )
    initializer = "zeros" if init == "vocabulary" else init
    prompted = PromptEncoder(backbone, num_prompts, initializer=initializer)
    if init == "vocabulary":
        table = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)
        rows = np.random.default_rng(seed).choice(table.shape[0], size=num_prompts, replace=table.shape[0] < num_prompts)
        prompted.soft_prompt.prompts.assign(table[rows])
    result = prompted if backbone is model else with_backbone(model, prompted)
    return freeze(result, "prompt")
