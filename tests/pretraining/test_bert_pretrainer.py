"""BertPretrainer / MaskedLM: learning on real Shakespeare, .keras round trip, Keras callbacks, bad backbones."""
import keras
import numpy as np
import pytest

import keras_lm
from keras_lm.pretraining import BertPretrainer, MaskedLM

METRICS = ["loss", "mlm_accuracy", "mlm_loss", "nsp_accuracy", "nsp_loss"]


class StepLosses(keras.callbacks.Callback):
    """Records the logs of every epoch (with steps_per_epoch=1: of every step)."""

    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


@pytest.mark.slow  # long: run with -m slow
def test_loss_falls_over_50_steps_on_shakespeare_to_the_frequency_level(
        train_works, validation_works, tokenizer, preprocessor, tiny_backbone, unigram_baseline):
    """50 steps teach a tiny BERT the token frequencies of real text, not yet the use of context.

    Measured: held-out MLM loss 5.9 nats at 50 steps and 5.8 at 200, against a unigram entropy of
    5.5 — beating it on real text takes far longer than a unit test may. That the model learns
    from context is asserted on synthetic copies in test_learning_needs_attention.py.
    """
    pretrainer = BertPretrainer(tiny_backbone, max_predictions=12)
    pretrainer.compile(optimizer=keras.optimizers.AdamW(learning_rate=2e-3, weight_decay=0.01))
    dataset = pretrainer.dataset(train_works, preprocessor, batch_size=16, seed=0, shuffle_buffer=2000)
    steps = StepLosses()
    pretrainer.fit(dataset.repeat(), steps_per_epoch=1, epochs=50, callbacks=[steps], verbose=0)

    assert sorted(steps.logs[0]) == METRICS
    losses = np.array([logs["loss"] for logs in steps.logs])
    print("first 5:", losses[:5].round(3), "last 5:", losses[-5:].round(3))
    assert np.all(np.isfinite(losses))
    assert losses[-5:].mean() < losses[:5].mean() - 0.75

    held_out = pretrainer.dataset(validation_works, preprocessor, batch_size=32, seed=1, shuffle=False).take(4)
    labels, weights = zip(*[(y["mlm"], w["mlm"]) for _, y, w in held_out.as_numpy_iterator()])
    entropy, most_frequent = unigram_baseline(np.concatenate(labels), np.concatenate(weights))
    result = pretrainer.evaluate(held_out, return_dict=True, verbose=0)
    print(result, {"unigram_entropy": entropy, "most_frequent": most_frequent})
    uniform = np.log(tokenizer.vocabulary_size())  # about the untrained loss
    assert result["mlm_loss"] < uniform - 0.6  # moved from uniform towards the unigram entropy
    assert result["mlm_accuracy"] > 0.7 * most_frequent  # found the frequent tokens (chance: 0.1%)


def test_compile_needs_no_loss_and_rejects_one(tiny_backbone):
    pretrainer = BertPretrainer(tiny_backbone)
    with pytest.raises(ValueError, match="computes its own pretraining loss"):
        pretrainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    pretrainer.compile()  # "auto": AdamW
    assert isinstance(pretrainer.optimizer, keras.optimizers.AdamW)


def fixed_batch(pretrainer, corpus, preprocessor):
    return next(iter(pretrainer.dataset(corpus, preprocessor, batch_size=8, seed=4, shuffle=False)))


@pytest.mark.parametrize("pretrainer_class", [BertPretrainer, MaskedLM])
def test_keras_file_round_trip_gives_identical_loss(pretrainer_class, validation_works, preprocessor,
                                                    tiny_backbone, tmp_path):
    pretrainer = pretrainer_class(tiny_backbone, max_predictions=10)
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    dataset = pretrainer.dataset(validation_works, preprocessor, batch_size=8, seed=4)
    pretrainer.fit(dataset.take(3), verbose=0)
    x, y, w = fixed_batch(pretrainer, validation_works, preprocessor)
    before = pretrainer.evaluate(x, y, sample_weight=w, return_dict=True, verbose=0)

    path = tmp_path / "pretrainer.keras"
    pretrainer.save(path)
    restored = keras.models.load_model(path)
    assert type(restored) is pretrainer_class
    assert restored.get_config() == pretrainer.get_config()
    after = restored.evaluate(x, y, sample_weight=w, return_dict=True, verbose=0)
    assert after.keys() == before.keys()
    for name in before:
        assert after[name] == pytest.approx(before[name], abs=1e-6), name
    # The reloaded head is still tied to the reloaded embedding.
    assert restored.masked_lm_head.token_embedding is restored.backbone.token_embedding
    assert len(restored.optimizer.variables) == len(pretrainer.optimizer.variables)


@pytest.mark.slow  # long: run with -m slow
def test_callbacks_checkpoint_backup_and_early_stopping(train_works, validation_works, preprocessor,
                                                        tiny_backbone, tmp_path):
    pretrainer = BertPretrainer(tiny_backbone, max_predictions=10)
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    train = pretrainer.dataset(train_works, preprocessor, batch_size=8, seed=1, shuffle_buffer=500).take(2)
    validation = pretrainer.dataset(validation_works, preprocessor, batch_size=8, seed=1, shuffle=False).take(1)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    callbacks = [
        keras.callbacks.ModelCheckpoint(tmp_path / "epoch_{epoch}.keras"),
        keras.callbacks.ModelCheckpoint(tmp_path / "best.weights.h5", save_weights_only=True,
                                        monitor="val_loss", save_best_only=True),
        keras.callbacks.BackupAndRestore(tmp_path / "backup"),
    ]
    with pytest.raises(RuntimeError, match="interrupted"):
        pretrainer.fit(train, validation_data=validation, epochs=4, callbacks=callbacks + [Interrupt()], verbose=0)
    assert (tmp_path / "epoch_1.keras").exists() and (tmp_path / "epoch_2.keras").exists()
    assert (tmp_path / "best.weights.h5").exists()

    # A fresh model resumes after the last backed-up epoch (epoch index 1 finished) and runs 2 more.
    resumed = BertPretrainer.from_config(pretrainer.get_config())
    resumed.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = resumed.fit(train, validation_data=validation, epochs=4, callbacks=callbacks, verbose=0)
    assert len(history.history["loss"]) == 2
    assert sorted(history.history) == sorted(METRICS + [f"val_{m}" for m in METRICS])
    for prefix in ("", "val_"):  # epoch averages add up, also when the data ran out mid-call
        parts = np.add(history.history[f"{prefix}mlm_loss"], history.history[f"{prefix}nsp_loss"])
        np.testing.assert_allclose(history.history[f"{prefix}loss"], parts, rtol=1e-5)

    reloaded = keras.models.load_model(tmp_path / "epoch_4.keras")
    np.testing.assert_allclose(
        reloaded.backbone.token_embedding.embeddings.numpy(),
        resumed.backbone.token_embedding.embeddings.numpy(),
    )
    weights_only = BertPretrainer.from_config(pretrainer.get_config())
    weights_only.load_weights(tmp_path / "best.weights.h5")

    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=100.0, patience=1)
    history = resumed.fit(train, validation_data=validation, epochs=10, callbacks=[stopper], verbose=0)
    assert len(history.history["loss"]) == 2 and stopper.stopped_epoch > 0


def test_masked_lm_trains_on_single_segments(train_works, preprocessor, tiny_backbone):
    model = MaskedLM(tiny_backbone, max_predictions=12)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    dataset = model.dataset(train_works, preprocessor, batch_size=8, seed=0, shuffle_buffer=200)
    features, targets, _ = next(iter(dataset))
    assert sorted(targets) == ["mlm"]
    assert not features["segment_ids"].numpy().any()
    assert features["padding_mask"].numpy().mean() > 0.9  # chunks of long works fill their rows
    history = model.fit(dataset.take(2), verbose=0)
    assert sorted(history.history) == ["loss", "mlm_accuracy", "mlm_loss"]
    assert history.history["loss"][0] == pytest.approx(history.history["mlm_loss"][0], rel=1e-5)
    assert BertPretrainer(tiny_backbone, next_sentence=False).get_config()["next_sentence"] is False


def small_gpt2():
    return keras_lm.applications.Gpt2("tiny", vocabulary_size=50, hidden_dim=16, intermediate_dim=32,
                                      max_sequence_length=16)


@pytest.mark.parametrize(
    "make_pretrainer,pattern",
    [
        (lambda backbone: BertPretrainer(backbone), r"BertPretrainer needs an encoder.*Gpt2.*segment_ids, pooled_output"),
        (lambda backbone: BertPretrainer(backbone, next_sentence=False), r"BertPretrainer needs an encoder.*Gpt2"),
        (lambda backbone: MaskedLM(backbone), r"MaskedLM needs an encoder.*Gpt2.*lacks segment_ids\."),
    ],
    ids=["bert_pretrainer", "without_next_sentence", "masked_lm"],
)
def test_a_decoder_backbone_is_one_clear_error(make_pretrainer, pattern):
    with pytest.raises(TypeError, match=pattern) as error:
        make_pretrainer(small_gpt2())
    assert "keras_lm.applications.Bert" in str(error.value)
    assert "pretrain decoders with keras_lm.pretraining.CausalLM" in str(error.value)


def test_backbones_without_the_needed_outputs_are_one_clear_error(tiny_backbone):
    sequence_only = keras.Model(tiny_backbone.input, {"sequence_output": tiny_backbone.output["sequence_output"]})
    with pytest.raises(TypeError, match="lacks pooled_output, token_embedding"):
        BertPretrainer(sequence_only)
    with pytest.raises(TypeError, match="lacks token_embedding"):
        MaskedLM(sequence_only)
    with pytest.raises(TypeError, match="got str, which lacks token_ids, segment_ids, padding_mask"):
        MaskedLM("bert")
    assert MaskedLM(tiny_backbone).backbone is tiny_backbone  # an Encoder is accepted
