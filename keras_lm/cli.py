"""The `keras-lm` command: pretrain | finetune | export | serve | report | generate | bench | run RECIPE.

Each command's flags are the keyword arguments of the workflow it runs (the same names a
recipe uses), e.g. `keras-lm pretrain --output runs/a --size mini --steps 300`. A bad argument or
input file is reported in one line, `keras-lm: error: ...`, with exit code 2 (set KERAS_LM_TRACEBACK=1
to see the traceback).
"""
import argparse
import inspect
import os
import sys
import types
import typing

COMMANDS = ("train-vocabulary", "pretrain", "import-checkpoint", "finetune", "serve", "report")
#: Errors that mean "bad input" (a flag, a recipe, a file): one line and exit code 2, no traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def _user_errors() -> tuple:
    """USER_ERRORS plus keras_lm's own: a bad backup, a dataset that is not prepared."""
    from keras_lm.data import DataUnavailableError
    from keras_lm.training import CheckpointError

    return USER_ERRORS + (CheckpointError, DataUnavailableError)
RUN_FOLDER_HELP = "the run folder: every file of the run is read from and written under it"
EXPORT_FOLDER_HELP = (
    "the export folder itself (not a run folder), e.g. runs/a/serving/2; it must not exist yet, "
    "unless --overwrite is given and it holds a previous export of the same kind"
)
OVERWRITE_HELP = "replace OUTPUT if it holds a previous export of the same kind (nothing else is ever replaced)"


def _workflows():
    from keras_lm.recipes import checkpoint, report, workflows

    return {
        "train-vocabulary": workflows.train_vocabulary,
        "pretrain": workflows.pretrain,
        "import-checkpoint": checkpoint.import_checkpoint,
        "finetune": workflows.finetune,
        "serve": workflows.serve,
        "report": report.report,
        "export encoder": workflows.export_encoder,
        "export serving": workflows.export_serving,
    }


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{text}'")


def _without_none(hint):
    """`int` for `int | None` (argparse converts the text; the default stays None)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if len(options) == 1:
            return options[0]
    return hint


def _add_function_flags(parser: argparse.ArgumentParser, function, help_texts: dict) -> None:
    hints = typing.get_type_hints(function)
    for name, parameter in inspect.signature(function).parameters.items():
        flag = "--" + name.replace("_", "-")
        hint = _without_none(hints.get(name, str))
        required = parameter.default is inspect.Parameter.empty
        default = None if required else parameter.default
        kwargs = {"dest": name, "required": required, "default": default}
        if hint is bool:  # `--flag` alone means true; `--flag false` is accepted too
            kwargs.update(type=_parse_bool, nargs="?", const=True)
        elif hint in (int, float):
            kwargs["type"] = hint
        elif hint is tuple or typing.get_origin(hint) is tuple or isinstance(default, tuple):
            kwargs["nargs"] = "+"
            items = [item for item in typing.get_args(hint) if item is not Ellipsis]
            if len(items) == 1 and items[0] in (int, float):  # e.g. `tuple[int, ...]`: --seeds 0 1 2
                kwargs["type"] = items[0]
        help_default = "" if required else f" (default: {default})"
        parser.add_argument(flag, help=help_texts.get(name, name) + help_default, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    workflows = _workflows()
    parser = argparse.ArgumentParser(prog="keras-lm", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        function = workflows[name]
        sub = commands.add_parser(name, help=inspect.getdoc(function).splitlines()[0])
        _add_function_flags(sub, function, {"output": RUN_FOLDER_HELP})
        sub.set_defaults(function=function)
    export = commands.add_parser(
        "export", help="export a .keras model as SavedModels (--output is the export folder itself)"
    )
    kinds = export.add_subparsers(dest="kind", required=True)
    for kind in ("encoder", "serving"):
        function = workflows[f"export {kind}"]
        summary = inspect.getdoc(function).splitlines()[0]
        sub = kinds.add_parser(kind, help=summary, description=summary)
        _add_function_flags(
            sub, function, {"output": EXPORT_FOLDER_HELP, "overwrite": OVERWRITE_HELP, "model": "the .keras file to export"}
        )
        sub.set_defaults(function=function)
    bench = commands.add_parser("bench", help="benchmarks side by side with keras-hub (scripts/bench)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of python -m keras_lm.benchmarks")
    generate = commands.add_parser(
        "generate", help="print text generated by a serving export or a .keras CausalLM or Seq2SeqLM")
    generate.add_argument("--model", required=True,
                          help="a generation or seq2seq serving export directory, or a .keras file")
    generate.add_argument("prompts", nargs="+", help="one or more prompts (a seq2seq model: source texts)")
    generate.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=None,
                          help="max_new_tokens (default: 32; a seq2seq model: its own maximum)")
    generate.add_argument("--num-beams", dest="num_beams", type=int, default=None,
                          help="beams of a .keras Seq2SeqLM's beam search (default: 4; 1 is greedy)")
    generate.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; > 0: sample")
    generate.add_argument("--top-k", dest="top_k", type=int, default=0, help="sample among the k most likely tokens")
    generate.add_argument("--top-p", dest="top_p", type=float, default=1.0, help="sample from the nucleus of mass p")
    generate.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same text)")
    run = commands.add_parser("run", help="run a recipe (YAML) end to end")
    run.add_argument("recipe", help="path to a recipe, e.g. applications/quickstart.yaml")
    run.add_argument("--output", required=True, help=RUN_FOLDER_HELP)
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STEP.KEY=VALUE",
        help="override one recipe value (YAML syntax), e.g. --set pretrain.steps=50",
    )
    return parser


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


def _run(args) -> None:
    from keras_lm.recipes import run_recipe
    from keras_lm.recipes.runner import check_arguments

    if args.command == "generate":
        from keras_lm.recipes.gpt import generate_lines

        lines = generate_lines(args.model, args.prompts, args.max_new_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed, num_beams=args.num_beams)
        for line in lines:  # a causal LM: prompt + continuation; a seq2seq LM: the translation
            print(line, flush=True)
    elif args.command == "run":
        run_recipe(args.recipe, args.output, _overrides(args.set))
    else:
        kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "kind", "function")}
        for key, value in kwargs.items():
            if isinstance(value, list):
                kwargs[key] = tuple(value)
        check_arguments(args.function, kwargs, _flag)  # before any work
        args.function(**kwargs)


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def main(argv=None) -> int:
    """Runs one command; bad input gives one line `keras-lm: error: ...` and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its flags belong to the benchmark runner (argparse.REMAINDER drops leading flags)
        from keras_lm.benchmarks.__main__ import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
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
