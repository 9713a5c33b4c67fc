"""Fine-tuning on your own CSV / TSV / JSON Lines files through the CLI and a recipe, into a fresh run
folder, with bad rows reported by line, label names served, and `keras-lm predict` / `evaluate`."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSITIVE = "good great fine lovely charming gripping superb".split()
NEGATIVE = "bad awful dull lifeless boring weak tedious".split()


def _reviews(count: int, seed: int) -> list:
    """`count` (text, name) pairs: three words of one sentiment and 'film', shuffled."""
    rng, rows = random.Random(seed), []
    for _ in range(count):
        name = rng.choice(["positive", "negative"])
        words = rng.sample(POSITIVE if name == "positive" else NEGATIVE, 3) + ["film"]
        rng.shuffle(words)
        rows.append((" ".join(words), name))
    return rows


@pytest.fixture(scope="module")
def labelled_files(tmp_path_factory):
    """A tiny encoder export (random weights) in one folder; train.csv (with two planted bad rows),
    dev.tsv and test.jsonl in another."""
    import keras

    import keras_lm

    folder = tmp_path_factory.mktemp("files")
    train = _reviews(64, 1)
    lines = ["review,sentiment"] + [f"{text},{name}" for text, name in train] + [",positive", "fine film,"]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    (folder / "dev.tsv").write_text("review\tsentiment\n" + "".join(f"{t}\t{n}\n" for t, n in _reviews(16, 2)))
    test = _reviews(16, 3)
    (folder / "test.jsonl").write_text("".join(json.dumps({"review": t, "sentiment": n}) + "\n" for t, n in test))
    keras.utils.set_random_seed(0)
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "film", *POSITIVE, *NEGATIVE]
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=16)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=len(vocabulary), num_layers=1, hidden_dim=16,
                                          num_heads=2, intermediate_dim=32, max_sequence_length=16)
    encoder = tmp_path_factory.mktemp("pretraining") / "encoder"  # another run's export: no vocab.txt near it
    keras_lm.export.encoder(backbone, preprocessor, str(encoder))
    return folder, str(encoder), test


@pytest.mark.slow  # long: run with -m slow
def test_cli_fine_tunes_on_files_into_a_fresh_folder_and_serves_label_names(labelled_files, tmp_path, capsys,
                                                                             load_in_fresh_process):
    import keras

    from keras_lm import cli

    folder, encoder, test = labelled_files
    run = tmp_path / "fresh" / "run"  # does not exist yet
    command = [sys.executable, "-m", "keras_lm_cli", "finetune", "--output", str(run), "--encoder", encoder,
               "--train", str(folder / "train.csv"), "--validation", str(folder / "dev.tsv"),
               "--test", str(folder / "test.jsonl"), "--text-column", "review", "--label-column", "sentiment",
               "--epochs", "2", "--batch-size", "8", "--learning-rate", "0.02", "--pooling", "mean"]
    process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                             env=dict(os.environ, PYTHONPATH=ROOT))
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    out = process.stdout
    for native in ("absl::InitializeLog", "oneDNN", "cuda", "I0000", "E0000"):  # TensorFlow's C++ lines
        assert native not in process.stderr, process.stderr
    assert "\x1b[" not in out and "\r" not in out  # a pipe gets plain lines, no progress-bar redraws
    assert f"[data] {folder / 'train.csv'}: 64 examples of 66 rows, skipped 2 bad rows" in out
    assert "[data]   skipped line 66: empty text (column review)\n[data]   skipped line 67: empty label\n" in out

    finetuning = json.loads((run / "metrics.json").read_text())["finetuning"]
    assert finetuning["data"]["label_names"] == ["negative", "positive"]
    assert finetuning["data"]["bad_rows"] == {"train": ["line 66: empty text (column review)",
                                                        "line 67: empty label"]}
    assert finetuning["data"]["examples"] == {"train": 64, "validation": 16, "test": 16}
    assert len(finetuning["random_init"]["runs"]) == 1  # the baseline's encoder shape came from the export
    assert finetuning["pretrained"]["test_accuracy"] >= 0.9  # the words decide the label: it is learned

    serving = run / "serving" / "1"
    texts = [text for text, _ in test]
    served = load_in_fresh_process(str(serving), texts)
    classifier = keras.saving.load_model(str(run / "classifier.keras"))
    assert classifier.label_names == ("negative", "positive")  # saved with the model
    expected = classifier.predict(texts, verbose=0)
    for loader in ("eager", "session"):
        labels = served[loader]["label"]
        assert labels == np.argmax(expected, -1).tolist()
        assert served[loader]["label_name"] == [["negative", "positive"][label] for label in labels]
        np.testing.assert_allclose(served[loader]["probabilities"], keras.ops.softmax(expected), atol=1e-5)

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("good great film\n\nawful dull film\n")
    assert cli.main(["predict", "--model", str(serving), str(inputs), str(folder / "test.jsonl"),
                     "--text-column", "review"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["text"] for a in answers] == ["good great film", "awful dull film", *texts]
    assert [a["label_name"] for a in answers[:2]] == ["positive", "negative"]
    assert [a["label"] for a in answers[2:]] == served["eager"]["label"]

    assert cli.main(["evaluate", "--model", str(serving), "--data", str(folder / "test.jsonl"),
                     "--text-column", "review", "--label-column", "sentiment"]) == 0
    printed = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines() if not line.startswith("["))
    correct = sum(label == ["negative", "positive"].index(name) for label, (_, name) in
                  zip(served["eager"]["label"], test))
    assert printed["examples"] == "16" and float(printed["accuracy"]) == pytest.approx(correct / 16, abs=1e-4)
    assert float(printed["accuracy"]) == pytest.approx(finetuning["pretrained"]["test_accuracy"], abs=1e-4)


def test_a_recipe_fine_tunes_on_a_file_and_holds_out_validation(labelled_files, tmp_path):
    from keras_lm.recipes import run_recipe

    folder, encoder, _ = labelled_files
    recipe = tmp_path / "files.yaml"
    recipe.write_text(
        f"finetune: {{encoder: {encoder}, train: {folder / 'train.csv'}, text_column: review, "
        "label_column: sentiment, epochs: 1, batch_size: 8, compare_random_init: false}\n"
    )
    run = tmp_path / "run"
    run_recipe(str(recipe), str(run))
    data = json.loads((run / "metrics.json").read_text())["finetuning"]["data"]
    # Every 10th of the 64 usable rows is held out for validation, which is also the test set.
    assert data["examples"] == {"train": 58, "validation": 6, "test": 6}
    assert data["validation"] == f"every 10th example of {folder / 'train.csv'}"
    assert data["test"].startswith("the validation examples")
    assert json.loads((run / "serving" / "1" / "assets.extra" / "label_names.json").read_text()) == {
        "label_names": ["negative", "positive"]}


def test_wrong_columns_and_mismatched_classes_fail_before_any_work(labelled_files, tmp_path):
    from keras_lm.recipes.workflows import finetune

    folder, encoder, _ = labelled_files
    run = tmp_path / "run"
    header = r"has no column 'text' or 'label'; its header \(line 1\) names 'review', 'sentiment'"
    with pytest.raises(ValueError, match=header):
        finetune(str(run), encoder=encoder, train=str(folder / "train.csv"))
    with pytest.raises(ValueError, match=r"num_classes is 3 but the data names 2 classes \(negative, positive\)"):
        finetune(str(run), encoder=encoder, train=str(folder / "train.csv"), text_column="review",
                 label_column="sentiment", num_classes=3)
    with pytest.raises(ValueError, match="`validation` and `test` files need a `train` file"):
        finetune(str(run), encoder=encoder, validation=str(folder / "dev.tsv"))
    assert not run.exists()
