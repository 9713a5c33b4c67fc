"""The keras-lm command: bad input gives one line and exit code 2; an export never deletes its source."""
import hashlib
import os
import subprocess
import sys

import pytest

import keras_lm
from keras_lm import cli


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, match):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-lm: error: "), err
    assert match in lines[0], lines[0]


def _tree(folder):
    """Every file under `folder` with its content hash (to show nothing changed)."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.mark.parametrize(
    "argv, match",
    [
        (["pretrain", "--size", "huge"], "--size must be one of tiny, mini, small, medium, base, large, got 'huge'"),
        (["pretrain", "--steps", "-5"], "--steps must be at least 1, got -5"),
        (["pretrain", "--learning-rate", "0"], "--learning-rate must be a positive number"),
        (["finetune", "--num-classes", "1"], "--num-classes must be at least 2"),
        (["report"], "No metrics in"),
        (["serve"], "No serving export at"),
    ],
)
def test_bad_arguments_give_one_line_before_any_work(capsys, tmp_path, argv, match):
    run = tmp_path / "run"
    run.mkdir()
    code, out, err = _run(capsys, *argv[:1], "--output", str(run), *argv[1:])
    _assert_one_line_error(code, err, match)
    assert "Traceback" not in out + err
    assert os.listdir(run) == []  # nothing was started or written


def test_generate_from_an_empty_folder(capsys, tmp_path):
    code, _, err = _run(capsys, "generate", "--model", str(tmp_path), "To be")
    _assert_one_line_error(code, err, str(tmp_path))


def test_no_traceback_in_a_real_process(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "keras_lm.cli", "pretrain", "--output", str(tmp_path), "--size", "huge"],
        capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("keras-lm")]
    assert errors == ["keras-lm: error: --size must be one of tiny, mini, small, medium, base, large, got 'huge'."]


def test_recipe_override_of_the_wrong_type(capsys, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train_vocabulary: {vocabulary_size: 100}\n")
    output = tmp_path / "run"
    code, _, err = _run(capsys, "run", str(recipe), "--output", str(output),
                        "--set", "train_vocabulary.vocabulary_size=lots")
    _assert_one_line_error(code, err, "train_vocabulary.vocabulary_size must be an integer, got 'lots' (str)")
    assert not output.exists()


def test_flag_types_follow_the_annotations():
    parser = cli.build_parser()
    args = parser.parse_args(["finetune", "--output", "o", "--max-train-examples", "5"])
    assert args.max_train_examples == 5  # `int | None`: an int, not the string "5"
    args = parser.parse_args(["finetune", "--output", "o", "--seeds", "0", "1", "2"])
    assert args.seeds == (0, 1, 2)  # `tuple[int, ...] | None`: ints, not strings
    args = parser.parse_args(["export", "serving", "--output", "o", "--model", "m.keras", "--overwrite"])
    assert args.overwrite is True
    args = parser.parse_args(["export", "serving", "--output", "o", "--model", "m.keras"])
    assert args.overwrite is False


def test_export_help_says_output_is_the_export_folder(capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "serving", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the export folder itself (not a run folder)" in text
    assert "--overwrite" in text and "nothing else is ever replaced" in text


@pytest.fixture
def run_with_classifier(tmp_path):
    """RUN/ holding a tiny fine-tuned classifier (with its preprocessor) and a vocabulary file."""
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "a the film is good bad dull fine".split()
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=vocabulary)
    preprocessor = keras_lm.tokenizers.BertPreprocessor(tokenizer, sequence_length=16)
    backbone = keras_lm.applications.Bert(None, vocabulary_size=len(vocabulary), num_layers=1, hidden_dim=16,
                                          num_heads=2, max_sequence_length=16)
    classifier = keras_lm.tasks.Classifier(backbone, num_classes=2, preprocessor=preprocessor)
    run = tmp_path / "RUN"
    run.mkdir()
    classifier.save(str(run / "classifier.keras"))
    (run / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    return run


def test_export_never_deletes_the_run_or_its_model(capsys, run_with_classifier):
    run = run_with_classifier
    model = str(run / "classifier.keras")
    before = _tree(run)
    code, _, err = _run(capsys, "export", "serving", "--output", str(run), "--model", model)
    _assert_one_line_error(code, err, "")
    assert _tree(run) == before
    code, _, err = _run(capsys, "export", "serving", "--output", str(run), "--model", model, "--overwrite")
    _assert_one_line_error(code, err, "classifier.keras")
    assert _tree(run) == before
    # Exporting the classifier as an encoder into the run folder is refused the same way.
    code, _, err = _run(capsys, "export", "encoder", "--output", str(run), "--model", model,
                        "--vocabulary", str(run / "vocab.txt"), "--overwrite")
    _assert_one_line_error(code, err, "Refusing")
    assert _tree(run) == before


def test_export_writes_a_new_folder_and_replaces_only_its_own_export(capsys, run_with_classifier):
    run = run_with_classifier
    model, export = str(run / "classifier.keras"), run / "serving" / "2"
    code, _, err = _run(capsys, "export", "serving", "--output", str(export), "--model", model)
    assert code == 0, err
    assert (export / "saved_model.pb").exists()
    code, _, err = _run(capsys, "export", "serving", "--output", str(export), "--model", model)
    _assert_one_line_error(code, err, "already exists")
    (run / "notes").mkdir()
    (run / "notes" / "keep.txt").write_text("mine")
    code, _, err = _run(capsys, "export", "serving", "--output", str(run / "notes"), "--model", model, "--overwrite")
    _assert_one_line_error(code, err, "Refusing to overwrite")
    assert (run / "notes" / "keep.txt").read_text() == "mine"


def test_export_from_a_truncated_keras_file(capsys, run_with_classifier):
    run = run_with_classifier
    data = (run / "classifier.keras").read_bytes()
    (run / "broken.keras").write_bytes(data[: len(data) // 3])
    code, _, err = _run(capsys, "export", "serving", "--output", str(run / "export"),
                        "--model", str(run / "broken.keras"))
    _assert_one_line_error(code, err, "is not a valid or complete .keras archive")
    assert not (run / "export").exists()


def test_a_corrupt_backup_is_one_line_and_is_kept(capsys, tmp_path):
    """keras_lm's own errors (here CheckpointError, a RuntimeError) reach the user as one line too."""
    import json

    run, backup = tmp_path / "run", tmp_path / "backup"
    run.mkdir()
    backup.mkdir()
    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]))
    metadata = backup / "training_metadata.json"
    metadata.write_text(json.dumps({"global_step": -3, "weights": "step-4.weights.h5", "seed_states": []}))
    code, _, err = _run(capsys, "pretrain", "--output", str(run), "--vocabulary", str(vocabulary),
                        "--backup-dir", str(backup), "--size", "tiny", "--steps", "2", "--batch-size", "2",
                        "--sequence-length", "16", "--warmup", "1", "--mixed-precision", "float32")
    _assert_one_line_error(code, err, "'global_step' is -3")
    assert json.loads(metadata.read_text())["global_step"] == -3  # the backup is left as it was


@pytest.fixture
def run_with_seq2seq(tmp_path):
    """SEQ2SEQ/ holding a tiny T5 Seq2SeqLM (a WordPiece vocabulary, random weights spread so rows differ)."""
    import keras
    import numpy as np

    from keras_lm.applications import T5

    keras.utils.set_random_seed(0)
    words = "in the beginning god created heavens and earth light was good day night".split()
    tokenizer = keras_lm.tokenizers.WordPiece(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])
    backbone = T5("tiny", vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, hidden_dim=32, num_heads=4,
                  intermediate_dim=64)
    rng = np.random.default_rng(2)
    for weight in backbone.weights:  # norm scales around 1, matrices around 0
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32") + (len(weight.shape) == 1))
    model = keras_lm.tasks.Seq2SeqLM(backbone, tokenizer, source_length=8, target_length=6)
    run = tmp_path / "SEQ2SEQ"
    run.mkdir()
    model.save(str(run / "translate.keras"))
    return run


def _printed(out):
    return out.split("\n")[:-1]  # one line per source (a translation may be empty)


@pytest.mark.slow  # long: run with -m slow
def test_generate_translates_with_a_seq2seq_export_and_its_keras_file(capsys, run_with_seq2seq, run_with_classifier):
    import keras

    run = run_with_seq2seq
    path, export = str(run / "translate.keras"), str(run / "serving" / "1")
    code, _, err = _run(capsys, "export", "serving", "--output", export, "--model", path)
    assert code == 0, err
    model = keras.saving.load_model(path)
    sources = ["in the beginning god created", "light was good", "day and night"]
    beam = model.generate(sources, sampler="beam", num_beams=4, length_penalty=0.6, jit_compile=False)
    greedy = model.generate(sources, sampler="greedy", jit_compile=False)
    assert beam != greedy and len(set(beam)) == 3
    for model_path, num_beams, expected in ((export, None, beam), (path, None, beam), (path, "1", greedy)):
        options = [] if num_beams is None else ["--num-beams", num_beams]
        code, out, err = _run(capsys, "generate", "--model", model_path, *options, *sources)
        assert code == 0, err
        assert _printed(out) == expected, model_path  # the translations, one per line
    code, _, err = _run(capsys, "generate", "--model", export, "--max-new-tokens", "7", *sources)
    _assert_one_line_error(code, err, "max_new_tokens must be in [1, 6] for this export")
    code, _, err = _run(capsys, "generate", "--model", export, "--temperature", "1", *sources)
    _assert_one_line_error(code, err, "decodes as it was exported")
    # A model that is neither a CausalLM nor a Seq2SeqLM: one line.
    code, _, err = _run(capsys, "generate", "--model", str(run_with_classifier / "classifier.keras"), "a film")
    _assert_one_line_error(code, err, "holds a Classifier, neither a CausalLM nor a Seq2SeqLM")
