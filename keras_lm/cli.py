"""The `keras-lm` command: pretrain | finetune | export | serve | report | bench | run RECIPE.

Each command's flags are the keyword arguments of the workflow it runs (the same names a
recipe uses), e.g. `keras-lm pretrain --output runs/a --size mini --steps 300`.
"""
import argparse
import inspect
import sys
import typing

COMMANDS = ("train-vocabulary", "pretrain", "finetune", "serve", "report")


def _workflows():
    from keras_lm.recipes import report, workflows

    return {
        "train-vocabulary": workflows.train_vocabulary,
        "pretrain": workflows.pretrain,
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


def _add_function_flags(parser: argparse.ArgumentParser, function) -> None:
    hints = typing.get_type_hints(function)
    for name, parameter in inspect.signature(function).parameters.items():
        flag = "--" + name.replace("_", "-")
        hint = hints.get(name, str)
        required = parameter.default is inspect.Parameter.empty
        default = None if required else parameter.default
        kwargs = {"dest": name, "required": required, "default": default}
        if hint is bool:
            kwargs["type"] = _parse_bool
        elif hint in (int, float):
            kwargs["type"] = hint
        elif hint is tuple or isinstance(default, tuple):
            kwargs["nargs"] = "+"
        help_default = "" if required else f" (default: {default})"
        parser.add_argument(flag, help=f"{name}{help_default}", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    workflows = _workflows()
    parser = argparse.ArgumentParser(prog="keras-lm", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        function = workflows[name]
        sub = commands.add_parser(name, help=inspect.getdoc(function).splitlines()[0])
        _add_function_flags(sub, function)
        sub.set_defaults(function=function)
    export = commands.add_parser("export", help="export a .keras model as SavedModels")
    kinds = export.add_subparsers(dest="kind", required=True)
    for kind in ("encoder", "serving"):
        function = workflows[f"export {kind}"]
        sub = kinds.add_parser(kind, help=inspect.getdoc(function).splitlines()[0])
        _add_function_flags(sub, function)
        sub.set_defaults(function=function)
    bench = commands.add_parser("bench", help="benchmarks side by side with keras-hub (scripts/bench)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of python -m keras_lm.benchmarks")
    run = commands.add_parser("run", help="run a recipe (YAML) end to end")
    run.add_argument("recipe", help="path to a recipe, e.g. applications/quickstart.yaml")
    run.add_argument("--output", required=True, help="directory for every output of the run")
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

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"keras-lm: --set expects STEP.KEY=VALUE, got '{pair}'")
        values[key] = yaml.safe_load(value)
    return values


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from keras_lm.recipes import RecipeError, run_recipe

    try:
        if args.command == "bench":
            from keras_lm.benchmarks.__main__ import main as bench_main

            return bench_main(args.bench_args)
        if args.command == "run":
            run_recipe(args.recipe, args.output, _overrides(args.set))
        else:
            kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "kind", "function")}
            for key, value in kwargs.items():
                if isinstance(value, list):
                    kwargs[key] = tuple(value)
            args.function(**kwargs)
    except (RecipeError, FileNotFoundError, FileExistsError) as error:
        print(f"keras-lm: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
