"""`keras-lm` explains itself: help without TensorFlow, a sentence for every option, typed flags,
one-line errors, no TensorFlow start-up lines, and plain progress lines when output is not a terminal."""
import argparse
import configparser
import json
import os
import subprocess
import sys

import pytest

from keras_lm_cli import build_parser
from keras_lm_cli.options import option_help
from keras_lm_cli.parser import COMMANDS, Flag

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HELP_WITHOUT_TENSORFLOW = r"""
import contextlib, io, json, sys
from keras_lm_cli import main
pages = {}
for argv in json.loads(sys.argv[1]):
    page = io.StringIO()
    with contextlib.redirect_stdout(page):
        try:
            main(argv)
        except SystemExit as exit:
            assert exit.code == 0, (argv, exit.code)
    pages[" ".join(argv)] = page.getvalue()
heavy = sorted(name for name in ("tensorflow", "keras", "keras_lm", "numpy") if name in sys.modules)
print(json.dumps({"imported": heavy, "pages": pages}))
"""


def _subcommands(parser):
    """`(command name, its parser)` for every command and export kind."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                if nested:
                    yield from ((f"{name} {kind}", kind_parser) for kind, kind_parser in nested[0].choices.items())
                elif name != "bench":
                    yield name, sub


def test_help_of_every_command_imports_no_tensorflow():
    commands = [command.name.split() for command in COMMANDS] + [["run"], ["export"]]
    argvs = [["--help"]] + [[*command, "--help"] for command in commands]
    process = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TENSORFLOW, json.dumps(argvs)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stderr == ""  # no TensorFlow start-up line either
    result = json.loads(process.stdout)
    assert result["imported"] == []
    pages = result["pages"]
    assert "usage: keras-lm [-h] [--verbose] COMMAND" in pages["--help"]
    for command in ("finetune", "predict", "evaluate", "generate", "serve"):
        assert command in pages["--help"]
    finetune = " ".join(pages["finetune --help"].split())
    assert "--compare-random-init / --no-compare-random-init" in finetune
    assert "--max-train-examples MAX_TRAIN_EXAMPLES use only the first N training examples (examples; default: all)" \
        in finetune
    assert "--epochs EPOCHS passes over the training examples (epochs; default: 2)" in finetune
    assert "--text-column TEXT_COLUMN the column (CSV/TSV header name or JSON key) holding the text (default: text)" \
        in finetune


def test_the_console_script_is_the_tensorflow_free_entry_point():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    assert config["options.entry_points"]["console_scripts"].strip() == "keras-lm = keras_lm_cli:main"


def test_every_option_of_every_command_has_a_help_sentence():
    parser = build_parser()
    checked = 0
    for command, sub in _subcommands(parser):
        for action in sub._actions:
            if action.dest in ("help", "verbose") or isinstance(action, argparse._SubParsersAction):
                continue
            name = action.dest
            if command != "run":
                sentence = option_help(command, name)
                assert sentence and len(sentence.split()) >= 4, (command, name)  # a sentence, not a name
            assert action.help and "default: None" not in action.help, (command, name)
            checked += 1
    assert checked > 60


def test_flag_types_come_from_the_annotations():
    parser = build_parser()

    def parse(*argv):
        return parser.parse_args(list(argv))

    args = parse("finetune", "--output", "o", "--max-train-examples", "1000", "--learning-rate", "1e-3")
    assert args.max_train_examples == 1000 and type(args.max_train_examples) is int  # was the string '1000'
    assert args.learning_rate == 0.001 and args.num_classes is None
    assert parse("finetune", "--output", "o", "--seeds", "0", "1", "2").seeds == (0, 1, 2)
    assert parse("finetune", "--output", "o").compare_random_init is True
    assert parse("finetune", "--output", "o", "--no-compare-random-init").compare_random_init is False
    assert parse("finetune", "--output", "o", "--compare-random-init", "false").compare_random_init is False
    assert parse("train-vocabulary", "--output", "o", "--corpus", "shakespeare").corpus == "shakespeare"
    assert parse("train-vocabulary", "--output", "o", "--corpus", "a", "b").corpus == ("a", "b")  # str | tuple
    assert parse("serve", "--output", "o", "--sentences", "A.", "B.").sentences == ("A.", "B.")
    args = parse("predict", "--model", "m", "a.txt", "b.csv")
    assert args.inputs == ("a.txt", "b.csv") and args.batch_size == 32
    assert parse("generate", "--model", "m", "--top-k", "5", "To be").top_k == 5
    flags = [action for _, sub in _subcommands(parser) for action in sub._actions if isinstance(action, Flag)]
    assert {action.dest for action in flags} >= {"compare_random_init", "overwrite", "lowercase", "norm_first"}


@pytest.mark.parametrize("argv, message", [
    (["finetune", "--output", "o", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["finetune", "--output", "o", "--compare-random-init", "maybe"],
     "--compare-random-init expects no value, true or false; got 'maybe'"),
    (["predict", "--model", "m"], "the following arguments are required: inputs"),
    (["pretrian"], "argument COMMAND: invalid choice: 'pretrian'"),
])
def test_a_bad_flag_is_one_line_naming_it_and_the_help(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-lm: error: ") and message in err, err
    assert "--help`" in err


def test_a_real_command_shows_no_tensorflow_start_up_lines_unless_verbose(tmp_path):
    """The C++ lines TensorFlow prints when imported ("All log messages before absl::InitializeLog()",
    oneDNN, CUDA) stay off stderr: only the one error line of a bad value remains."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "keras_lm_cli", "finetune", "--output", str(tmp_path / "run"),
               "--num-classes", "1"]
    quiet = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment)
    assert quiet.returncode == 2
    assert quiet.stderr == "keras-lm: error: --num-classes must be at least 2, got 1.\n"
    assert quiet.stdout == ""
    verbose = subprocess.run(command + ["--verbose"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env=environment)
    assert verbose.returncode == 2
    assert verbose.stderr.endswith("keras-lm: error: --num-classes must be at least 2, got 1.\n")
    assert len(verbose.stderr.splitlines()) > 1  # TensorFlow's own lines, shown on request


def test_training_prints_plain_lines_when_output_is_not_a_terminal(capsys):
    import keras
    import numpy as np

    from keras_lm.recipes.progress import fit_verbosity, progress_callbacks

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((40, 2), "float32"), np.zeros((40, 1), "float32")
    assert fit_verbosity() == 2  # pytest's captured stdout is not a terminal
    model.fit(x, y, batch_size=2, epochs=1, verbose=fit_verbosity(), callbacks=progress_callbacks(steps=20))
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "\r" not in out and "\b" not in out  # no colour codes, no redraws
    steps = [line.split(":")[0].strip() for line in out.splitlines() if line.startswith("   step ")]
    assert steps == [f"step {n}/20" for n in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20)]
    assert sum(line.startswith("20/20 - ") for line in out.splitlines()) == 1  # Keras' one line per epoch
