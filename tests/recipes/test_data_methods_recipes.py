"""The augmentation and continual-learning recipe steps: bad settings fail before any work; in miniature (slow)
they run end to end from an encoder export, with the same budget for every method, and write their reports."""
import json
import os

import numpy as np
import pytest

import keras_lm
from keras_lm.recipes.augmentation import compare_augmentation
from keras_lm.recipes.continual import continual


@pytest.mark.parametrize("arguments, message", [
    ({"transforms": ("none", "mixup")}, "transforms"),
    ({"swap_rate": 1.5}, "swap_rate"),
    ({"forward_model": "a.keras"}, "both"),
    ({"seeds": ()}, "at least one seed"),
])
def test_augmentation_settings_fail_before_any_work(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        compare_augmentation(str(tmp_path / "run"), **arguments)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("arguments, message", [
    ({"methods": ("none", "dropout")}, "methods"),
    ({"replay_ratio": 1.0}, "replay_ratio"),
    ({"anchored": "head"}, "anchored"),
    ({"fisher_examples": 0}, "fisher_examples"),
])
def test_continual_settings_fail_before_any_work(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        continual(str(tmp_path / "run"), **arguments)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def start(tmp_path_factory, movie_sentences):
    """A tiny encoder export with its vocab.txt beside it, and two tiny random translators."""
    import keras

    from keras_lm.applications.transformer import Transformer
    from keras_lm.tasks.seq2seq_lm import Seq2SeqLM

    directory = tmp_path_factory.mktemp("start")
    words = sorted({w for text, _ in movie_sentences for w in text.lower().replace(",", " , ").split()})
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=str(directory / "vocab.txt"))
    keras.utils.set_random_seed(0)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=tokenizer.vocabulary_size(), num_layers=1,
                                          num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=32)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=32)
    keras_lm.export.encoder(backbone, preprocessor, str(directory / "encoder"))
    for name, seed in (("forward.keras", 0), ("backward.keras", 1)):
        rng = np.random.default_rng(seed)
        model = Transformer("tiny", vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, hidden_dim=16,
                            num_heads=2, intermediate_dim=32, dropout=0.0)
        for weight in model.weights:
            weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
        Seq2SeqLM(model, tokenizer, source_length=16, target_length=8).save(str(directory / name))
    return directory


@pytest.mark.slow
def test_augmentation_recipe_in_miniature(start, tmp_path):
    output, results = tmp_path / "run", tmp_path / "results"
    section = compare_augmentation(str(output), encoder=str(start / "encoder"), max_train_examples=48, epochs=2,
                                   batch_size=16, learning_rate=1e-3, seeds=(0, 1),
                                   forward_model=str(start / "forward.keras"),
                                   backward_model=str(start / "backward.keras"), results=str(results))
    assert list(section["transforms"]) == ["none", "token_noise", "back_translation"]
    assert section["train_examples"] == 48 and section["steps"] == 6
    for result in section["transforms"].values():
        assert [run["steps"] for run in result["runs"]] == [6, 6] and len(result["runs"][0]["validation_accuracy"]) == 2
    assert json.loads((output / "metrics.json").read_text())["augmentation"]["steps"] == 6
    rows = (output / "paraphrases.jsonl").read_text().splitlines()
    assert len(rows) == 49 and json.loads(rows[0])["num_beams"] == 1
    assert sorted(os.listdir(results)) == ["augmentation.md", "augmentation.png"]
    assert str(tmp_path) not in (results / "augmentation.md").read_text()
    assert "| token_noise |" in (output / "augmentation.md").read_text()


@pytest.mark.slow
def test_continual_recipe_in_miniature(start, tmp_path):
    output = tmp_path / "run"
    section = continual(str(output), encoder=str(start / "encoder"), max_train_examples_a=48,
                        max_train_examples_b=48, batch_size=16, learning_rate=1e-3, l2sp_alpha=[0.1, 1.0],
                        ewc_strength=100.0, fisher_examples=8, replay_ratio=0.25, replay_size=16)
    assert section["steps_a"] == section["steps_b"] == 3
    assert [len(section["runs"][m]) for m in ("none", "l2sp", "ewc", "replay")] == [1, 2, 1, 1]
    assert section["chosen"]["l2sp"] in (0.1, 1.0) and section["chosen"]["none"] is None
    for runs in section["runs"].values():
        for run in runs:
            assert len(run["train_loss"]) == 1 and 0 <= run["a_test"]["task"] <= 1
    assert section["examples"]["b"] == {"train": 48, "validation": 1248, "test": 1404}
    report = (output / "continual.md").read_text()
    assert "| none |" in report and "**l2sp" in report and os.path.isfile(output / "continual.png")


@pytest.mark.parametrize("step", [compare_augmentation, continual])
def test_a_missing_encoder_export_fails_before_any_work(tmp_path, step):
    with pytest.raises(FileNotFoundError, match="not a keras_lm encoder export"):
        step(str(tmp_path / "run"), encoder=str(tmp_path / "nowhere"), **(
            {"transforms": ("none",)} if step is compare_augmentation else {}))
    assert not (tmp_path / "run").exists()
