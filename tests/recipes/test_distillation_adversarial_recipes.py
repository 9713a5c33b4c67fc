"""Miniature runs of the distill and compare_adversarial recipe steps on a tiny exported encoder."""
import json
import os
import shutil

import keras
import pytest
import tensorflow as tf

import keras_lm
from keras_lm.recipes.adversarial import compare_adversarial, keras_start
from keras_lm.recipes.distillation import distill


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, movie_sentences):
    """A run folder as `pretrain` leaves it: vocab.txt, pretrainer.keras (a backbone) and encoder/."""
    run = tmp_path_factory.mktemp("run")
    tokenizer = keras_lm.tokenizers.WordPiece.train(
        tf.data.Dataset.from_tensor_slices([text for text, _ in movie_sentences]), vocabulary_size=400)
    tokenizer.save_vocabulary(str(run / "vocab.txt"))
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    keras.utils.set_random_seed(0)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=tokenizer.vocabulary_size(), num_layers=2,
                                          num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=32)
    backbone.save(str(run / "pretrainer.keras"))
    keras_lm.export.encoder(backbone, preprocessor, str(run / "encoder"))
    return run


@pytest.mark.slow
def test_distill_reports_both_students_on_the_same_budget(tiny_run, tmp_path):
    results = tmp_path / "results"
    figures = distill(str(tiny_run), epochs=1, batch_size=32, max_train_examples=64, teacher_epochs=1,
                      hidden_weight=0.5, seeds=(0,), results=str(results))
    with open(tiny_run / "metrics.json") as f:
        recorded = json.load(f)["distillation"]
    assert recorded["settings"]["steps"] == 2 and recorded["settings"]["hidden_weight"] == 0.5
    for name in ("student", "distilled"):
        run = recorded[name]["runs"][0]
        assert 0.0 <= run["test_accuracy"] <= 1.0 and len(run["validation_accuracy"]) == 1
    assert "validation_distillation_loss" in recorded["distilled"]["runs"][0]
    assert figures["difference"] == pytest.approx(recorded["distilled"]["test_accuracy"]
                                                  - recorded["student"]["test_accuracy"])
    assert sorted(os.listdir(results)) == ["distillation.md", "distillation.png"]
    assert "distilled student" in (results / "distillation.md").read_text()


@pytest.mark.slow
def test_distill_into_blocks_of_the_teachers_checkpoint(tiny_run, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(tiny_run, output)
    figures = distill(str(output), epochs=1, batch_size=32, max_train_examples=64, teacher_epochs=1,
                      student_layers=[1], seeds=(0,))
    assert figures["student_model"] == "blocks [1] of the teacher's checkpoint"
    assert figures["student_parameters"] < figures["teacher_parameters"]
    assert "blocks [1] of the teacher's checkpoint" in (output / "distillation.md").read_text()
    with pytest.raises(ValueError, match=r"each in \[0, 1\]; got \[2\]"):
        distill(str(output), epochs=1, max_train_examples=64, student_layers=[2], seeds=(0,))


@pytest.mark.slow
def test_compare_adversarial_rebuilds_the_export_as_keras_layers(tiny_run, tmp_path):
    backbone, _, start = keras_start(str(tiny_run))
    assert "pretrainer.keras" in start and backbone.num_layers == 2
    figures = compare_adversarial(str(tiny_run), methods=("none", "fgm"), epochs=1, max_train_examples=64,
                                  epsilon=[0.1, 0.5], seeds=(0,), results=str(tmp_path / "results"))
    assert set(figures["methods"]) == {"none", "fgm"} and set(figures["difference"]) == {"fgm"}
    fgm = figures["methods"]["fgm"]
    by_radius = fgm["validation_accuracy_by_epsilon"]
    assert set(by_radius) == {"0.1", "0.5"} and fgm["epsilon"] == max([0.1, 0.5], key=lambda r: by_radius[f"{r:g}"])
    assert fgm["validation_accuracy_mean"] == by_radius[f"{fgm['epsilon']:g}"]
    assert "| FGM | 0.5 |" in (tmp_path / "results" / "adversarial.md").read_text()
    with pytest.raises(ValueError, match="epsilon"):
        compare_adversarial(str(tiny_run), epsilon=[0.1, -1.0])
    assert sorted(os.listdir(tmp_path / "results")) == ["adversarial.md", "adversarial.png"]
    with pytest.raises(ValueError, match="distinct methods"):
        compare_adversarial(str(tiny_run), methods=("none", "fgsm"))


@pytest.mark.slow
def test_an_export_without_a_matching_source_is_one_clear_error(tiny_run, tmp_path):
    lone = tmp_path / "lone"
    shutil.copytree(tiny_run / "encoder", lone / "encoder")
    with pytest.raises(ValueError, match="records no source that reproduces it"):
        keras_start(str(lone))
    # A pretrainer.keras that is not the exported encoder is refused, not silently used.
    keras.utils.set_random_seed(1)
    other = keras_lm.applications.Bert(None, vocabulary_size=400, num_layers=2, num_heads=2, hidden_dim=32,
                                       intermediate_dim=64, max_sequence_length=32)
    other.save(str(lone / "pretrainer.keras"))
    with pytest.raises(ValueError, match=r"pretrainer.keras \(differs by"):
        keras_start(str(lone))
