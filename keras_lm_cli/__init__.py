"""The `keras-lm` command, kept apart from the `keras_lm` package so that `keras-lm --help` and
`keras-lm COMMAND --help` answer at once: they read the workflows' signatures from source
(`keras_lm_cli.signatures`) and import neither keras_lm nor TensorFlow. A command imports them
only to run (`keras_lm.cli.run`).

    keras-lm --help
    keras-lm finetune --train train.csv --validation dev.csv --text-column review --label-column stars
"""
from keras_lm_cli.main import main
from keras_lm_cli.parser import build_parser

__all__ = ["build_parser", "main"]
