"""The `keras-lm` command: train-vocabulary | pretrain | import-checkpoint | finetune | serve | report |
export | generate | predict | evaluate | bench | run RECIPE.

Each command's flags are the keyword arguments of the function it runs (the same names a recipe
uses), e.g. `keras-lm pretrain --output runs/a --size mini --steps 300`. The parser lives in
`keras_lm_cli` (it reads the functions' signatures from source, so `--help` imports no TensorFlow);
this module runs a parsed command. A bad argument or input file is reported in one line,
`keras-lm: error: ...`, with exit code 2 (set KERAS_LM_TRACEBACK=1 to see the traceback).
"""
import importlib
import os
import sys

from keras_lm_cli import build_parser, main  # noqa: F401  (`keras_lm.cli.main` is the command)

#: Errors that mean "bad input" (a flag, a recipe, a file): one line and exit code 2, no traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def _user_errors() -> tuple:
    """USER_ERRORS plus keras_lm's own: a bad backup, a dataset that is not prepared."""
    from keras_lm.data import DataUnavailableError
    from keras_lm.training import CheckpointError

    return USER_ERRORS + (CheckpointError, DataUnavailableError)


def _overrides(pairs) -> dict:
    import yaml

    from keras_lm.recipes import RecipeError

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise RecipeError(f"--set expects STEP.KEY=VALUE, got '{pair}'")
        try:
            values[key] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise RecipeError(f"--set {key}: '{value}' is not a YAML value ({error.problem}).") from None
    return values


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve(target: str):
    """The function "module:function" names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _run(args) -> None:
    from keras_lm.recipes import run_recipe
    from keras_lm.recipes.runner import check_arguments

    if args.command == "run":
        run_recipe(args.recipe, args.output, _overrides(args.set))
        return
    function = resolve(args.target)
    kwargs = {name: getattr(args, name) for name in args.parameters}
    check_arguments(function, kwargs, _flag)  # before any work
    function(**kwargs)


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def run(args) -> int:
    """Runs a command parsed by `keras_lm_cli.build_parser`; bad input: one line on stderr and 2."""
    try:
        _run(args)
    except _user_errors() as error:
        if os.environ.get("KERAS_LM_TRACEBACK"):
            raise
        print(f"keras-lm: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
