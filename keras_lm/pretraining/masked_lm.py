"""MaskedLM: an encoder backbone + a masked-LM head tied to its token embedding, with its own loss."""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_lm.layers import MaskedLMHead
from keras_lm.training.optimizers import AdamW
from keras_lm.training.saving import RecompiledOnLoad
from keras_lm.pretraining import datasets
from keras_lm.pretraining.masking import MaskedLMMasker

MLM = "mlm"
ENCODER_INPUTS = ("token_ids", "segment_ids", "padding_mask")


@keras.saving.register_keras_serializable(package="keras_lm")
class MaskedLM(RecompiledOnLoad, keras.Model):
    """Masked-language-model pretraining of an encoder backbone (single segments, no NSP).

    Inputs: a dict of ``[B, T]`` ``token_ids``, ``segment_ids``, ``padding_mask`` and ``[B, P]``
    ``mask_positions``. Outputs: ``{"mlm": float32 logits [B, P, vocabulary_size]}``.

    The loss is built in: compile with an optimizer only. It is the cross-entropy at the masked
    positions, weighted by ``mask_weights`` and averaged over the real predictions (float32), plus
    any regularization losses. The progress bar shows ``loss``, ``mlm_loss`` and ``mlm_accuracy``.
    ``dataset()`` turns a corpus into batches with masks redrawn every epoch.

    Args:
        backbone: a ``keras_lm.models.Encoder`` (e.g. ``keras_lm.applications.Bert``).
        max_predictions: masked positions per sequence (``P``).
        mask_rate: fraction of tokens selected for prediction.
        mask_token_rate: fraction of the selected tokens replaced by ``[MASK]``.
        random_token_rate: fraction replaced by a random token (the rest stay unchanged).

    Raises:
        TypeError: at construction, if ``backbone`` is not an encoder (e.g. a decoder such as
            ``Gpt2``, which ``keras_lm.pretraining.CausalLM`` pretrains).

    Example:
        >>> import keras, tensorflow as tf, keras_lm
        >>> backbone = keras_lm.applications.Bert("tiny", vocabulary_size=30)
        >>> model = MaskedLM(backbone, max_predictions=2)
        >>> model.compile(optimizer="adam")
        >>> x = {"token_ids": tf.constant([[2, 7, 4, 9, 3]]), "segment_ids": tf.zeros((1, 5), "int32"),
        ...      "padding_mask": tf.ones((1, 5), "int32"), "mask_positions": tf.constant([[2, 0]])}
        >>> y, w = {"mlm": tf.constant([[8, 0]])}, {"mlm": tf.constant([[1.0, 0.0]])}
        >>> sorted(model.train_on_batch(x, y, w, return_dict=True))
        ['loss', 'mlm_accuracy', 'mlm_loss']
    """

    def __init__(
        self,
        backbone: keras.Model,
        max_predictions: int = 20,
        mask_rate: float = 0.15,
        mask_token_rate: float = 0.8,
        random_token_rate: float = 0.1,
        **kwargs,
    ):
        check_encoder_backbone(backbone, type(self).__name__, self._required_backbone_outputs())
        # === Layers ===
        self.backbone = backbone
        self.masked_lm_head = MaskedLMHead(
            token_embedding=backbone.token_embedding,
            activation=getattr(backbone, "activation", "gelu"),
            layer_norm_epsilon=getattr(backbone, "layer_norm_epsilon", 1e-12),
            dtype=backbone.dtype_policy,
            name="masked_lm_head",
        )
        self._add_heads(backbone)

        # === Functional graph ===
        inputs = {
            name: keras.Input(shape=(None,), dtype=tensor.dtype, name=name)
            for name, tensor in backbone.input.items()
        }
        inputs["mask_positions"] = keras.Input(shape=(None,), dtype="int32", name="mask_positions")
        backbone_outputs = backbone({name: inputs[name] for name in backbone.input})
        outputs = self._head_outputs(inputs, backbone_outputs)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Attributes ===
        self.max_predictions = int(max_predictions)
        self.mask_rate = float(mask_rate)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.mlm_loss_tracker = keras.metrics.Mean(name="mlm_loss")
        self.mlm_accuracy = keras.metrics.SparseCategoricalAccuracy(name="mlm_accuracy")
        self._masker_for(mask_id=0)  # validates the masking settings now, not at dataset() time

    # --- checkpoint import ---

    @classmethod
    def from_hf(cls, source, config=None, dtype=None, **kwargs) -> "MaskedLM":
        """A model on ``Bert.from_hf(source)`` whose masked-LM head holds the checkpoint's trained head.

        Copies ``cls.predictions.transform.dense``, ``cls.predictions.transform.LayerNorm`` and
        ``cls.predictions.bias``; the output projection stays tied to the imported word embeddings
        (a checkpoint whose ``cls.predictions.decoder.weight`` differs from them is refused). A
        checkpoint without a masked-LM head (``BertModel``, a fine-tuned classifier) is one clear
        error: use ``MaskedLM(Bert.from_hf(source))`` for a fresh head.

        Args:
            source: anything ``keras_lm.applications.Bert.from_hf`` reads (folder, model, state
                dict with ``config``, hub name) holding a ``BertForMaskedLM``/``BertForPreTraining``.
            config: the transformers config when ``source`` is a state dict.
            dtype: dtype policy of the backbone and heads.
            **kwargs: constructor arguments (``max_predictions``, ``mask_rate``, ...).
        """
        from keras_lm.applications.bert_hf import read_bert_hf

        return import_pretraining_checkpoint(cls, read_bert_hf(source, config), dtype, kwargs)

    @classmethod
    def from_google_checkpoint(cls, path: str, dtype=None, **kwargs) -> "MaskedLM":
        """Like ``from_hf`` for an original Google BERT TF checkpoint (``cls/predictions/*``).

        Args:
            path: a folder with ``bert_config.json`` + ``bert_model.ckpt.*``, or the checkpoint prefix.
            dtype: dtype policy of the backbone and heads.
            **kwargs: constructor arguments (``max_predictions``, ``mask_rate``, ...).
        """
        from keras_lm.applications.bert_checkpoints import read_google_checkpoint

        return import_pretraining_checkpoint(cls, read_google_checkpoint(path), dtype, kwargs)

    # --- graph hooks (extended by BertPretrainer) ---

    def _required_backbone_outputs(self) -> tuple:
        """The backbone outputs the heads read."""
        return ("sequence_output",)

    def _add_heads(self, backbone):
        """Creates heads beyond the masked-LM head (before the functional graph is built)."""

    def _head_outputs(self, inputs, backbone_outputs) -> dict:
        logits = self.masked_lm_head(backbone_outputs["sequence_output"], inputs["mask_positions"])
        return {MLM: logits}

    # --- training ---

    @property
    def trainable_weights(self):
        """The backbone's and heads' trainable weights, minus those no objective uses (the pooler
        when there is no next-sentence head), so the optimizer sees only weights with gradients."""
        unused = {id(weight) for weight in self._weights_without_objective()}
        return [weight for weight in super().trainable_weights if id(weight) not in unused]

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def _weights_without_objective(self) -> list:
        pooler = getattr(self.backbone, "pooler", None)
        return list(pooler.weights) if pooler is not None else []

    def compile(self, optimizer="auto", loss=None, **kwargs):
        """Like ``keras.Model.compile``; the loss is built in, so ``loss`` must stay None.

        ``optimizer="auto"`` is ``keras_lm.training.AdamW`` (Keras' AdamW with a fused update; lr
        1e-4, weight decay 0.01 except biases and LayerNorm, global norm clipping at 1.0).
        """
        if loss is not None:
            raise ValueError(
                f"{type(self).__name__} computes its own pretraining loss; call compile() without "
                f"`loss` (got loss={loss!r}). To change the objective, subclass it and override "
                "`compute_loss`."
            )
        if optimizer == "auto":
            optimizer = AdamW(learning_rate=1e-4, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0)
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        super().compile(optimizer=optimizer, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses = self._objective_losses(y, y_pred, sample_weight)
        total = ops.sum(ops.stack(list(losses.values())))
        for extra in self.losses:  # regularizers and add_loss()
            total = total + ops.cast(ops.sum(extra), "float32")
        # Keras sums replica losses under tf.distribute and expects each scaled by 1 / replicas.
        return total / tf.distribute.get_strategy().num_replicas_in_sync

    def _objective_losses(self, y, y_pred, sample_weight) -> dict:
        mask_ids, mask_weights = _mlm_targets(y, sample_weight)
        logits = ops.cast(y_pred[MLM], "float32")
        per_position = keras.losses.sparse_categorical_crossentropy(mask_ids, logits, from_logits=True)
        mlm_loss = ops.divide_no_nan(ops.sum(per_position * mask_weights), ops.sum(mask_weights))
        self.mlm_loss_tracker.update_state(mlm_loss, sample_weight=_batch_size(mask_ids))
        return {MLM: mlm_loss}

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        mask_ids, mask_weights = _mlm_targets(y, sample_weight)
        self.mlm_accuracy.update_state(mask_ids, y_pred[MLM], sample_weight=mask_weights)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # --- data ---

    def _masker_for(self, mask_id: int, unselectable_ids=(0,), special_ids=None) -> MaskedLMMasker:
        return MaskedLMMasker(
            vocabulary_size=self.backbone.vocabulary_size,
            mask_id=mask_id,
            unselectable_ids=unselectable_ids,
            special_ids=special_ids,
            max_predictions=self.max_predictions,
            mask_rate=self.mask_rate,
            mask_token_rate=self.mask_token_rate,
            random_token_rate=self.random_token_rate,
        )

    def masker_for(self, tokenizer) -> MaskedLMMasker:
        """The masking layer for ``tokenizer``'s special ids (never masks ``[PAD]/[CLS]/[SEP]``)."""
        vocabulary_size = int(tokenizer.vocabulary_size())
        if vocabulary_size > self.backbone.vocabulary_size:
            raise ValueError(
                f"The tokenizer has {vocabulary_size} tokens but the backbone's vocabulary_size is "
                f"{self.backbone.vocabulary_size}."
            )
        return self._masker_for(
            mask_id=tokenizer.mask_id,
            unselectable_ids=(tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id),
            special_ids=(tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id,
                         tokenizer.mask_id),
        )

    def dataset(
        self,
        corpus: tf.data.Dataset,
        preprocessor,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        **kwargs,
    ) -> tf.data.Dataset:
        """Training batches for this model from a corpus of documents.

        Args:
            corpus: documents (dicts with ``"text"``, e.g. ``keras_lm.data.load("shakespeare")``).
            preprocessor: a ``keras_lm.tokenizers.BertPreprocessor``; its ``tokenizer`` and
                ``sequence_length`` are used.
            batch_size: examples per batch.
            shuffle: reshuffle and redraw masks every epoch; False for a fixed evaluation set.
            seed: makes the pipeline reproducible.
            **kwargs: ``shuffle_buffer``, ``cache``, ``drop_remainder`` (see
                ``keras_lm.pretraining.datasets``).

        Returns:
            a batched, prefetching ``tf.data.Dataset`` of ``(features, targets, sample_weights)``.
        """
        return datasets.masked_lm_dataset(
            corpus, preprocessor.tokenizer, preprocessor.sequence_length,
            self.masker_for(preprocessor.tokenizer),
            batch_size=batch_size, shuffle=shuffle, seed=seed, **kwargs,
        )

    # --- serialization ---

    def get_config(self):
        # Not chained to Functional.get_config: the graph is rebuilt from these arguments.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            "max_predictions": self.max_predictions,
            "mask_rate": self.mask_rate,
            "mask_token_rate": self.mask_token_rate,
            "random_token_rate": self.random_token_rate,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def import_pretraining_checkpoint(cls, weights, dtype, kwargs: dict, next_sentence: bool = False):
    """``cls(Bert carrying weights' backbone, **kwargs)`` with the checkpoint's masked-LM head (and
    next-sentence head when ``next_sentence``); the heads are checked before anything is built."""
    from keras_lm.applications import Bert
    from keras_lm.applications.bert_hf import (
        bert_from_weights,
        check_pretraining_heads,
        copy_masked_lm_head,
        copy_next_sentence_head,
    )

    check_pretraining_heads(weights, cls.__name__, next_sentence=next_sentence)
    backbone = bert_from_weights(Bert, weights, dtype=dtype)
    model = cls(backbone, **kwargs)
    copy_masked_lm_head(weights, model.masked_lm_head, backbone.token_embedding)
    if next_sentence:
        copy_next_sentence_head(weights, model.next_sentence_head)
    return model


def check_encoder_backbone(backbone, owner: str, required_outputs=("sequence_output",)) -> None:
    """Raise one clear TypeError unless ``backbone`` is an encoder the pretraining heads can use.

    Needed: a Keras model with the encoder inputs (``token_ids``, ``segment_ids``,
    ``padding_mask``), the ``required_outputs`` and a ``token_embedding`` to tie the MLM head to.
    """
    inputs, outputs = _named_tensors(backbone, "input"), _named_tensors(backbone, "output")
    missing = [name for name in ENCODER_INPUTS if name not in inputs]
    missing += [name for name in required_outputs if name not in outputs]
    if not hasattr(backbone, "token_embedding"):
        missing.append("token_embedding")
    if not missing:
        return
    hint = ""
    if hasattr(backbone, "call_with_cache"):
        hint = " It is a decoder: pretrain decoders with keras_lm.pretraining.CausalLM."
    raise TypeError(
        f"{owner} needs an encoder backbone with inputs {'/'.join(ENCODER_INPUTS)}, outputs "
        f"{'/'.join(required_outputs)} and a token_embedding (a keras_lm.models.Encoder such as "
        f"keras_lm.applications.Bert); got {type(backbone).__name__}, which lacks "
        f"{', '.join(missing)}.{hint}"
    )


def _named_tensors(model, attribute: str) -> dict:
    """A functional model's ``input``/``output`` dict; empty for anything else."""
    if not isinstance(model, keras.Model):
        return {}
    try:
        tensors = getattr(model, attribute)
    except (AttributeError, ValueError):  # a subclassed model that was never called
        return {}
    return tensors if isinstance(tensors, dict) else {}


def _mlm_targets(y, sample_weight):
    """``(mask_ids, mask_weights)`` from ``y`` (dict or tensor) and ``sample_weight`` (dict, tensor, None)."""
    mask_ids = y[MLM] if isinstance(y, dict) else y
    weights = sample_weight[MLM] if isinstance(sample_weight, dict) else sample_weight
    if weights is None:
        weights = ops.ones_like(mask_ids, dtype="float32")
    return mask_ids, ops.cast(weights, "float32")


def _batch_size(targets):
    """Batch size as a float tensor that depends on the data.

    Loss trackers are weighted by it, like Keras' own ``loss``, so that ``loss = mlm_loss + nsp_loss``
    holds for epoch averages too; and a weight computed from the data keeps a tracker from counting
    a step whose input turned out to be exhausted (a constant count would run ahead of the data).
    """
    return ops.cast(ops.shape(targets)[0], "float32")
