"""`pretrain(objective="rtd")`: ELECTRA pretraining through the recipe step, on real review text."""
import json
import math

import pytest


@pytest.mark.slow  # long: run with -m slow (about 3 minutes on 2 cores)
def test_discriminator_learns_to_spot_replaced_tokens_in_review_text(tmp_path):
    """The task: a generator a quarter as wide fills in 10 masked tokens of each 64-token row of
    movie_snippets reviews; the discriminator (Bert('tiny')'s shape) marks which tokens of the row
    the generator's samples replaced. Held-out rows are the validation reviews.

    Measured (300 steps, 4000-token vocabulary): accuracy on the replaced tokens 0.001 at step 50
    (the discriminator first answers "original" everywhere, the 86% base rate) -> 0.053 at step 300;
    detection loss 0.376 -> 0.354, below the 0.39 that any answer ignoring the tokens can reach.
    Without the co-occurrence start the replaced-token accuracy stays at 0 for 1500 steps: the
    generator's samples soon follow the text's token frequencies and only what the tokens mean gives
    them away.
    """
    import keras

    import keras_lm
    from keras_lm.recipes import workflows

    texts = keras_lm.data.load("movie_snippets", split="train").map(lambda example: example["text"])
    vocabulary = keras_lm.tokenizers.WordPiece.train(texts, vocabulary_size=4000).get_vocabulary()
    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    workflows.pretrain(str(tmp_path), corpus="movie_snippets", size="tiny", objective="rtd", steps=300, warmup=30,
                       learning_rate=3e-3, sequence_length=64, batch_size=32, max_predictions=10, evaluations=6,
                       mixed_precision="float32", norm_first=True, dropout=0.0,
                       token_embeddings="cooccurrence", train_token_embeddings=False)

    pretraining = workflows.read_metrics(str(tmp_path))["pretraining"]
    assert pretraining["objective"] == "rtd" and pretraining["backbone_class"] == "Electra"
    curve = pretraining["held_out_curve"]
    print(json.dumps(curve, indent=1))
    assert [point["step"] for point in curve] == [50, 100, 150, 200, 250, 300]
    first, last = curve[0], curve[-1]
    assert first["rtd_replaced_accuracy"] < 0.01  # the base-rate stage: "original" everywhere
    assert last["rtd_replaced_accuracy"] > first["rtd_replaced_accuracy"] + 0.02
    assert last["rtd_original_accuracy"] > 0.98
    # The replaced share s from the accuracies (accuracy = (1 - s) * original + s * replaced); a
    # discriminator that ignores the tokens can do no better than the entropy of s.
    share = (last["rtd_original_accuracy"] - last["rtd_accuracy"]) / (
        last["rtd_original_accuracy"] - last["rtd_replaced_accuracy"])
    entropy = -(share * math.log(share) + (1 - share) * math.log(1 - share))
    assert 0.1 < share < 0.16
    assert last["rtd_loss"] < entropy - 0.02
    assert last["mlm_accuracy"] > 0.1  # the generator learned too

    # The exported encoder is the discriminator, reloaded with the shape it was pretrained with.
    classifier = keras_lm.tasks.Classifier.from_saved_model(str(tmp_path / "encoder"), num_classes=2)
    discriminator = keras.saving.load_model(str(tmp_path / "pretrainer.keras")).discriminator
    assert type(discriminator).__name__ == "Electra" and classifier.backbone is not None
    random_start = workflows._new_encoder(str(tmp_path), seed=0)
    assert type(random_start).__name__ == "Electra"
    assert random_start.get_config() == discriminator.get_config()


def test_rtd_objective_pairs_an_electra_of_bert_shape_with_a_quarter_width_generator():
    from keras_lm.applications import Bert
    from keras_lm.recipes import workflows

    discriminator, pretrainer = workflows.pretraining_models("rtd", "tiny", 300, max_predictions=5, seed=3,
                                                             norm_first=True, dropout=0.0)
    bert = Bert("tiny", vocabulary_size=300, norm_first=True, dropout=0.0)
    assert type(discriminator).__name__ == "Electra" and pretrainer.discriminator is discriminator
    assert discriminator.count_params() == bert.count_params()  # the same encoder shape as masked LM's
    for key in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", "norm_first", "dropout"):
        assert discriminator.get_config()[key] == bert.get_config()[key], key
    generator = pretrainer.generator
    assert (generator.hidden_dim, generator.num_layers, generator.num_heads) == (32, 2, 1)
    assert generator.token_embedding is discriminator.token_embedding
    assert (pretrainer.max_predictions, pretrainer.discriminator_weight, pretrainer.seed) == (5, 50.0, 3)
    masked_lm, bert_pretrainer = workflows.pretraining_models("mlm", "tiny", 300, max_predictions=5)
    assert type(masked_lm).__name__ == "Bert" and bert_pretrainer.next_sentence is False
    assert workflows.check_values(workflows.pretrain, {"objective": "electra"}) == (
        "objective", "must be one of mlm, mlm+nsp, rtd, got 'electra'.")


@pytest.mark.slow  # long: run with -m slow
def test_rtd_pretraining_run_writes_its_figures_and_report(tmp_path, movie_vocabulary):
    """A 3-step ELECTRA run through the recipe step: metrics, the encoder export and the report's table."""
    from keras_lm.recipes import report, workflows

    (tmp_path / "vocab.txt").write_text("\n".join(movie_vocabulary) + "\n")
    workflows.pretrain(str(tmp_path), corpus="movie_snippets", size="tiny", objective="rtd", steps=3, warmup=1,
                       sequence_length=32, batch_size=4, max_predictions=4, evaluations=1, mixed_precision="float32")
    pretraining = workflows.read_metrics(str(tmp_path))["pretraining"]
    assert pretraining["backbone_class"] == "Electra" and pretraining["discriminator_weight"] == 50.0
    assert pretraining["generator_config"]["hidden_dim"] == 32
    assert {"mlm_loss", "rtd_loss", "rtd_accuracy", "rtd_replaced_accuracy"} <= set(pretraining["train_curves"])
    assert {"rtd_loss", "rtd_replaced_accuracy"} <= set(pretraining["validation_before"])
    assert (tmp_path / "encoder" / "keras_lm.json").exists()
    lines = "\n".join(report._pretraining_lines(workflows.read_metrics(str(tmp_path))))
    assert "Electra of Bert('tiny')'s shape" in lines and "accuracy on replaced tokens" in lines
    assert "NSP" not in lines


def test_pretraining_models_take_a_wider_embedding_with_a_projection():
    """embedding_dim: the token table (and the tied MLM output) as wide as asked, a Dense projection to
    the blocks' width; ELECTRA's discriminator takes it too; 0 is refused before any work."""
    import numpy as np

    from keras_lm.recipes import workflows

    bert, pretrainer = workflows.pretraining_models("mlm", "tiny", 300, max_predictions=5, embedding_dim=48)
    assert tuple(bert.token_embedding.embeddings.shape) == (300, 48)
    assert bert.get_config()["embedding_dim"] == 48 and bert.hidden_dim == 128
    ids = np.array([[2, 7, 8, 9, 3, 0]], "int32")
    outputs = bert({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": ids != 0})
    assert tuple(outputs["sequence_output"].shape) == (1, 6, 128)
    electra, _ = workflows.pretraining_models("rtd", "tiny", 300, max_predictions=5, embedding_dim=48)
    assert tuple(electra.token_embedding.embeddings.shape) == (300, 48)
    default, _ = workflows.pretraining_models("rtd", "tiny", 300, max_predictions=5)
    assert tuple(default.token_embedding.embeddings.shape) == (300, 128)
    assert workflows.check_values(workflows.pretrain, {"embedding_dim": 0}) == (
        "embedding_dim", "must be at least 1, got 0.")
