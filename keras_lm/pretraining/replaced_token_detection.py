"""ReplacedTokenDetection: ELECTRA pretraining, a generator's samples judged by a discriminator."""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_lm.layers import MaskedLMHead
from keras_lm.layers.heads import ReplacedTokenDetectionHead
from keras_lm.models.encoder import truncated_normal
from keras_lm.pretraining.masked_lm import ENCODER_INPUTS, MaskedLM, _mlm_targets, check_encoder_backbone
from keras_lm.training.optimizers import AdamW
from keras_lm.training.saving import RecompiledOnLoad

MLM = "mlm"
RTD = "rtd"


@keras.saving.register_keras_serializable(package="keras_lm")
class ReplacedTokenDetection(RecompiledOnLoad, keras.Model):
    """ELECTRA pretraining (Clark et al., 2020) of a discriminator with a small generator, by ``fit``.

    Each step, on masked-LM batches (``MaskedLM.dataset`` or this model's ``dataset``):

    1. the generator predicts the masked tokens (masked-LM loss at the masked positions);
    2. a token is sampled from the generator's softmax at every masked position (no gradient
       flows through the sampling) and written into the input in place of the masked token;
    3. the discriminator labels every non-padding token of that corrupted input as original or
       replaced (binary cross-entropy, averaged over non-padding tokens). A sample equal to the
       original token counts as original.

    ``loss = mlm_loss + discriminator_weight * rtd_loss``. The generator must share the
    discriminator's embeddings (``discriminator.generator()``), and so does the generator's
    masked-LM head (tied to the shared token embedding): the shared variables receive the
    gradients of both losses in one update. Metrics: ``mlm_accuracy`` (generator),
    ``rtd_accuracy`` (discriminator, all non-padding tokens), ``rtd_replaced_accuracy`` and
    ``rtd_original_accuracy`` (on the replaced / original tokens alone).

    Called directly (``predict``), the model returns ``{"mlm": generator logits [B, P, V] at
    mask_positions, "rtd": discriminator logits [B, T] for the given token_ids}``. The discriminator
    (``.discriminator``, also ``.backbone``) is what gets fine-tuned and exported.

    Args:
        generator: an ``ElectraGenerator`` sharing ``discriminator``'s embeddings.
        discriminator: an ``Electra`` (any ``keras_lm.models.Encoder``).
        discriminator_weight: weight of the discriminator loss (ELECTRA: 50).
        max_predictions, mask_rate, mask_token_rate, random_token_rate: masking of ``dataset()``
            (ELECTRA: 15% of the tokens, 85% of them ``[MASK]``, the rest unchanged).
        seed: seed of the replacement sampling.

    Example:
        >>> import tensorflow as tf
        >>> from keras_lm.applications.electra import Electra
        >>> discriminator = Electra("tiny", vocabulary_size=50, max_sequence_length=8)
        >>> model = ReplacedTokenDetection(discriminator.generator(), discriminator, max_predictions=2)
        >>> model.compile(optimizer="adam")
        >>> x = {"token_ids": tf.constant([[2, 7, 4, 9, 3]]), "segment_ids": tf.zeros((1, 5), "int32"),
        ...      "padding_mask": tf.ones((1, 5), "int32"), "mask_positions": tf.constant([[2, 0]])}
        >>> y, w = {"mlm": tf.constant([[8, 0]])}, {"mlm": tf.constant([[1.0, 0.0]])}
        >>> sorted(model.train_on_batch(x, y, w, return_dict=True))
        ['loss', 'mlm_accuracy', 'mlm_loss', 'rtd_accuracy', 'rtd_loss', 'rtd_original_accuracy', 'rtd_replaced_accuracy']
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        discriminator_weight: float = 50.0,
        max_predictions: int = 20,
        mask_rate: float = 0.15,
        mask_token_rate: float = 0.85,
        random_token_rate: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        owner = type(self).__name__
        check_encoder_backbone(generator, owner)
        check_encoder_backbone(discriminator, owner)
        if generator.token_embedding is not discriminator.token_embedding:
            raise ValueError(
                f"{owner} needs a generator that shares the discriminator's token embedding (ELECTRA ties "
                "them); build it with discriminator.generator() or ElectraGenerator(..., discriminator=...)."
            )
        super().__init__(**kwargs)
        # === Layers ===
        self.discriminator = discriminator
        self.generator = generator
        self.masked_lm_head = MaskedLMHead(
            token_embedding=discriminator.token_embedding,
            activation="gelu",  # ELECTRA's generator head: GELU whatever the encoder's activation
            layer_norm_epsilon=getattr(generator, "layer_norm_epsilon", 1e-12),
            kernel_initializer=truncated_normal(),
            dtype=generator.dtype_policy,
            name="masked_lm_head",
        )
        self.replaced_token_head = ReplacedTokenDetectionHead(
            activation=getattr(discriminator, "activation", "gelu"),
            kernel_initializer=truncated_normal(),
            dtype=discriminator.dtype_policy,
            name="replaced_token_head",
        )
        self.masked_lm_head.build((None, None, generator.hidden_dim))
        self.replaced_token_head.build((None, None, discriminator.hidden_dim))
        self.sampler_seed = keras.random.SeedGenerator(seed, name="sampler_seed")

        # === Attributes ===
        self.discriminator_weight = float(discriminator_weight)
        self.max_predictions = int(max_predictions)
        self.mask_rate = float(mask_rate)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.seed = seed
        self.mlm_loss_tracker = keras.metrics.Mean(name="mlm_loss")
        self.rtd_loss_tracker = keras.metrics.Mean(name="rtd_loss")
        self.mlm_accuracy = keras.metrics.SparseCategoricalAccuracy(name="mlm_accuracy")
        self.rtd_accuracy = keras.metrics.BinaryAccuracy(name="rtd_accuracy")
        self.rtd_replaced_accuracy = keras.metrics.BinaryAccuracy(name="rtd_replaced_accuracy")
        self.rtd_original_accuracy = keras.metrics.BinaryAccuracy(name="rtd_original_accuracy")
        self._masker_for(mask_id=0)  # validates the masking settings now
        self.built = True

    @property
    def backbone(self) -> keras.Model:
        """The discriminator: the model to fine-tune (``Classifier.from_keras_file`` reads it)."""
        return self.discriminator

    # --- checkpoint import ---

    @classmethod
    def from_hf(cls, discriminator, generator, dtype=None, **kwargs) -> "ReplacedTokenDetection":
        """A model holding a transformers ELECTRA pair: ``ElectraForPreTraining`` + ``ElectraForMaskedLM``.

        The discriminator's encoder and ``discriminator_predictions``, the generator's encoder,
        ``generator_predictions`` and ``generator_lm_head.bias`` are copied; the generator shares
        the discriminator's embeddings, so its checkpoint must hold the same embedding tensors
        (Google's pairs do). Heads or tensors that are missing are one ``CheckpointError`` naming them.

        Args:
            discriminator: a source ``Electra.from_hf`` reads (e.g. google/electra-small-discriminator).
            generator: a source holding the matching ``ElectraForMaskedLM``.
            dtype: dtype policy of both models and heads.
            **kwargs: constructor arguments (``discriminator_weight``, ``max_predictions``, ...).
        """
        from keras_lm.applications.electra import Electra, ElectraGenerator
        from keras_lm.applications.electra_hf import (
            DISCRIMINATOR_HEAD,
            GENERATOR_HEAD,
            check_head,
            copy_discriminator_head,
            copy_generator_head,
            electra_from_weights,
            read_electra_hf,
        )

        discriminator_weights, generator_weights = read_electra_hf(discriminator), read_electra_hf(generator)
        check_head(discriminator_weights, DISCRIMINATOR_HEAD, cls.__name__)
        check_head(generator_weights, GENERATOR_HEAD, cls.__name__)
        discriminator_model = electra_from_weights(Electra, discriminator_weights, dtype=dtype)
        generator_model = electra_from_weights(ElectraGenerator, generator_weights, dtype=dtype,
                                               discriminator=discriminator_model)
        model = cls(generator_model, discriminator_model, **kwargs)
        copy_discriminator_head(discriminator_weights, model.replaced_token_head)
        copy_generator_head(generator_weights, model.masked_lm_head, discriminator_model.token_embedding)
        return model

    # --- forward passes ---

    def call(self, inputs, training=False):
        encoder_inputs = {name: inputs[name] for name in ENCODER_INPUTS}
        generated = self.generator(encoder_inputs, training=training)["sequence_output"]
        discriminated = self.discriminator(encoder_inputs, training=training)["sequence_output"]
        return {MLM: self.masked_lm_head(generated, inputs["mask_positions"]),
                RTD: self.replaced_token_head(discriminated)}

    def pretraining_outputs(self, x, y, sample_weight=None, training=False) -> dict:
        """One ELECTRA forward pass on a masked-LM batch (what ``fit`` computes its loss from).

        Returns float32 ``mlm_logits [B, P, V]``, ``mask_ids``/``mask_weights [B, P]``, the
        ``corrupted_ids [B, T]`` the discriminator saw, ``rtd_logits``, ``rtd_labels`` (1.0 where a
        token was replaced) and ``token_weights`` (1.0 on non-padding tokens), all ``[B, T]``.
        """
        mask_ids, mask_weights = _mlm_targets(y, sample_weight)
        encoder_inputs = {name: x[name] for name in ENCODER_INPUTS}
        token_ids = ops.cast(x["token_ids"], "int32")
        generated = self.generator(encoder_inputs, training=training)["sequence_output"]
        mlm_logits = self.masked_lm_head(generated, x["mask_positions"])
        sampled = ops.stop_gradient(self._sample(mlm_logits))

        # [B, P, T]: where each real prediction sits in its row (padding predictions select nothing).
        at_position = ops.one_hot(ops.cast(x["mask_positions"], "int32"), ops.shape(token_ids)[1], dtype="int32")
        at_position = at_position * ops.cast(mask_weights > 0, "int32")[:, :, None]
        selected = ops.sum(at_position, axis=1) > 0

        def written(values):
            return ops.sum(at_position * ops.cast(values, "int32")[:, :, None], axis=1)

        original = ops.where(selected, written(mask_ids), token_ids)
        corrupted = ops.where(selected, written(sampled), token_ids)
        discriminated = self.discriminator({**encoder_inputs, "token_ids": corrupted},
                                           training=training)["sequence_output"]
        return {
            "mlm_logits": mlm_logits,
            "mask_ids": mask_ids,
            "mask_weights": mask_weights,
            "corrupted_ids": corrupted,
            "rtd_logits": self.replaced_token_head(discriminated),
            "rtd_labels": ops.cast(ops.not_equal(corrupted, original), "float32"),
            "token_weights": ops.cast(ops.cast(x["padding_mask"], "bool"), "float32"),
        }

    def _sample(self, logits):
        """One token per prediction from ``softmax(logits)`` ``[B, P, V]`` -> int32 ``[B, P]``."""
        shape = ops.shape(logits)
        flat = ops.reshape(logits, (-1, shape[-1]))
        samples = keras.random.categorical(flat, 1, dtype="int32", seed=self.sampler_seed)
        return ops.reshape(samples, shape[:-1])

    def pretraining_losses(self, outputs: dict) -> dict:
        """``{"mlm": generator loss, "rtd": discriminator loss}`` (float32 scalars) of ``pretraining_outputs``."""
        per_prediction = keras.losses.sparse_categorical_crossentropy(
            outputs["mask_ids"], outputs["mlm_logits"], from_logits=True)
        mlm_loss = ops.divide_no_nan(ops.sum(per_prediction * outputs["mask_weights"]),
                                     ops.sum(outputs["mask_weights"]))
        per_token = ops.binary_crossentropy(outputs["rtd_labels"], outputs["rtd_logits"], from_logits=True)
        rtd_loss = ops.divide_no_nan(ops.sum(per_token * outputs["token_weights"]), ops.sum(outputs["token_weights"]))
        return {MLM: mlm_loss, RTD: rtd_loss}

    def _total_loss(self, losses: dict):
        total = losses[MLM] + self.discriminator_weight * losses[RTD]
        for extra in self.losses:  # regularizers and add_loss()
            total = total + ops.cast(ops.sum(extra), "float32")
        return total

    # --- training ---

    @property
    def trainable_weights(self):
        """Trainable weights minus the poolers, which no pretraining loss reaches."""
        unused = {id(weight) for model in (self.generator, self.discriminator)
                  for weight in (model.pooler.weights if getattr(model, "pooler", None) is not None else [])}
        return [weight for weight in super().trainable_weights if id(weight) not in unused]

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def compile(self, optimizer="auto", loss=None, **kwargs):
        """Like ``keras.Model.compile``; the loss is built in, so ``loss`` must stay None.

        ``optimizer="auto"`` is ``keras_lm.training.AdamW`` (lr 1e-4, weight decay 0.01 except
        biases and LayerNorm, global norm clipping at 1.0).
        """
        if loss is not None:
            raise ValueError(f"{type(self).__name__} computes its own loss; call compile() without `loss` "
                             f"(got loss={loss!r}).")
        if optimizer == "auto":
            optimizer = AdamW(learning_rate=1e-4, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0)
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        super().compile(optimizer=optimizer, **kwargs)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            outputs = self.pretraining_outputs(x, y, sample_weight, training=True)
            losses = self.pretraining_losses(outputs)
            # Keras sums replica gradients under tf.distribute: scale each replica's loss by 1 / replicas.
            loss = self._total_loss(losses) / tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_weights
        gradients = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(gradients, weights))
        return self._update_metrics(outputs, losses)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self.pretraining_outputs(x, y, sample_weight, training=False)
        return self._update_metrics(outputs, self.pretraining_losses(outputs))

    def _update_metrics(self, outputs: dict, losses: dict) -> dict:
        batch = ops.cast(ops.shape(outputs["mask_ids"])[0], "float32")
        self._loss_tracker.update_state(self._total_loss(losses), sample_weight=batch)
        self.mlm_loss_tracker.update_state(losses[MLM], sample_weight=batch)
        self.rtd_loss_tracker.update_state(losses[RTD], sample_weight=batch)
        self.mlm_accuracy.update_state(outputs["mask_ids"], outputs["mlm_logits"], sample_weight=outputs["mask_weights"])
        labels, weights = outputs["rtd_labels"], outputs["token_weights"]
        probabilities = ops.sigmoid(outputs["rtd_logits"])
        self.rtd_accuracy.update_state(labels, probabilities, sample_weight=weights)
        self.rtd_replaced_accuracy.update_state(labels, probabilities, sample_weight=weights * labels)
        self.rtd_original_accuracy.update_state(labels, probabilities, sample_weight=weights * (1.0 - labels))
        return self.get_metrics_result()

    # --- data (the masked-LM pipeline and masking of MaskedLM) ---

    _masker_for = MaskedLM._masker_for
    masker_for = MaskedLM.masker_for
    dataset = MaskedLM.dataset

    # --- serialization ---

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": self.generator.get_config(),
            "discriminator": keras.layers.serialize(self.discriminator),
            "discriminator_weight": self.discriminator_weight,
            "max_predictions": self.max_predictions,
            "mask_rate": self.mask_rate,
            "mask_token_rate": self.mask_token_rate,
            "random_token_rate": self.random_token_rate,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        from keras_lm.applications.electra import ElectraGenerator

        config = dict(config)
        discriminator = keras.layers.deserialize(config.pop("discriminator"))
        generator = ElectraGenerator.from_config({**config.pop("generator"), "discriminator": discriminator})
        return cls(generator, discriminator, **config)
