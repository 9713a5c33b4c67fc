"""The `keras-lm` argument parser, built from the workflow functions' signatures without importing them.

Each command runs one function; its options are that function's annotated keyword arguments
(`--max-train-examples` for `max_train_examples`), typed by their annotations: `int` and `float`
are converted, `bool` is a flag pair (`--compare-random-init / --no-compare-random-init`), a
`tuple` takes several values. Their help sentences are in `keras_lm_cli.options`.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing

from keras_lm_cli.options import option_help
from keras_lm_cli.signatures import Parameter, read_signature, without_none


@dataclasses.dataclass(frozen=True)
class Command:
    """A command: the function it runs ("module:function") and the arguments given without a flag."""

    name: str
    target: str
    positional: tuple = ()


COMMANDS = (
    Command("train-vocabulary", "keras_lm.recipes.workflows:train_vocabulary"),
    Command("pretrain", "keras_lm.recipes.workflows:pretrain"),
    Command("import-checkpoint", "keras_lm.recipes.checkpoint:import_checkpoint"),
    Command("finetune", "keras_lm.recipes.workflows:finetune"),
    Command("serve", "keras_lm.recipes.workflows:serve"),
    Command("report", "keras_lm.recipes.report:report"),
    Command("export encoder", "keras_lm.recipes.workflows:export_encoder"),
    Command("export serving", "keras_lm.recipes.workflows:export_serving"),
    Command("generate", "keras_lm.recipes.gpt:print_generation", positional=("prompts",)),
    Command("predict", "keras_lm.recipes.predictions:predict", positional=("inputs",)),
    Command("evaluate", "keras_lm.recipes.predictions:evaluate"),
)
DESCRIPTION = (
    "Build, pretrain, fine-tune, export and serve transformer language models (keras_lm). "
    "`keras-lm COMMAND --help` lists a command's options."
)
#: Units a help sentence may end with, in parentheses; the default joins them: "(steps; default: 300)".
UNITS = ("tokens", "steps", "epochs", "examples", "inputs", "beams", "measurements", "per step", "a probability")
VERBOSE_HELP = "show TensorFlow's start-up and log lines (hidden by default)"
EXPORT_HELP = "export a .keras model as SavedModels (--output is the export folder itself)"
BENCH_HELP = "benchmarks side by side with keras-hub (scripts/bench; `keras-lm bench --help` for its options)"
RUN_HELP = "run a recipe (YAML) end to end"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the problem and where to find the options."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"keras-lm: error: {message} (see `{self.prog} --help`)\n")


class Sequence(argparse.Action):
    """Several values as a tuple; for a `str | tuple` argument, one value stays a string."""

    def __init__(self, *args, one_is_text: bool = False, **kwargs):
        self.one_is_text = one_is_text
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        value = values[0] if self.one_is_text and len(values) == 1 else tuple(values)
        setattr(namespace, self.dest, value)


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class Flag(argparse.Action):
    """A boolean option as a flag pair, `--name` / `--no-name`; `--name false` is read too."""

    def __init__(self, option_strings, dest, default=None, required=False, help=None):
        strings = []
        for option in option_strings:
            strings += [option, "--no-" + option[2:]]
        super().__init__(strings, dest, nargs="?", default=default, required=required, help=help,
                         metavar="true|false")

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"{option_string} takes no value (got '{values}')")
            setattr(namespace, self.dest, False)
            return
        if values is None or values.lower() in TRUE_WORDS:
            setattr(namespace, self.dest, True)
        elif values.lower() in FALSE_WORDS:
            setattr(namespace, self.dest, False)
        else:
            parser.error(f"{option_string} expects no value, true or false; got '{values}'")



class HelpFormatter(argparse.HelpFormatter):
    """Shows a `Flag` as `--name / --no-name`, without its optional true|false value."""

    def _format_action_invocation(self, action):
        if isinstance(action, Flag):
            return " / ".join(action.option_strings)
        return super()._format_action_invocation(action)

    def _format_args(self, action, default_metavar):
        if isinstance(action, Flag):
            return ""
        return super()._format_args(action, default_metavar)


def _options(annotation) -> tuple[object, list]:
    """`(annotation without None, the types a union allows)`."""
    hint = without_none(annotation)
    if typing.get_origin(hint) is typing.Union:
        return hint, list(typing.get_args(hint))
    return hint, [hint]


def _is_sequence(hint) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple


def _item_type(hint):
    items = [item for item in typing.get_args(hint) if item is not Ellipsis]
    return items[0] if len(items) == 1 and items[0] in (int, float) else None


def _shown(value) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(repr(v) if isinstance(v, str) and " " in v else str(v) for v in value)
    return str(value)


def _help(command: str, parameter: Parameter, flag: bool) -> str:
    sentence = option_help(command, parameter.name)
    if not sentence:
        sentence = parameter.name.replace("_", " ")  # tests/test_cli_help.py requires a real sentence
    if flag and not parameter.required and parameter.default is not None:
        default = {True: "on", False: "off"}.get(parameter.default) if isinstance(parameter.default, bool) \
            else _shown(parameter.default)
        unit = re.search(r" \((\w+(?: \w+)?)\)$", sentence)
        if unit and unit.group(1) in UNITS:  # "... (epochs)" -> "... (epochs; default: 2)"
            sentence = f"{sentence[:-1]}; default: {default})"
        elif "default" not in sentence:
            sentence += f" (default: {default})"
    return sentence.replace("%", "%%")


def add_function_options(parser: argparse.ArgumentParser, command: str, target: str, positional=()) -> tuple:
    """Adds one option (or positional argument) per annotated argument of `target`; returns their names."""
    names = []
    for parameter in read_signature(target).parameters:
        if not parameter.annotated:
            continue
        names.append(parameter.name)
        hint, allowed = _options(parameter.annotation)
        kwargs = {}
        sequence = next((option for option in allowed if _is_sequence(option)), None)
        if sequence is not None:
            kwargs.update(nargs="+", action=Sequence, one_is_text=str in allowed)
            if _item_type(sequence):
                kwargs["type"] = _item_type(sequence)
        elif hint in (int, float):
            kwargs["type"] = hint
        if parameter.name in positional:
            parser.add_argument(parameter.name, help=_help(command, parameter, flag=False), **kwargs)
            continue
        flag = "--" + parameter.name.replace("_", "-")
        if hint is bool:
            kwargs = {"action": Flag}
        default = None if parameter.required else parameter.default
        parser.add_argument(flag, dest=parameter.name, required=parameter.required, default=default,
                            help=_help(command, parameter, flag=True), **kwargs)
    return tuple(names)


def _add_verbose(parser: argparse.ArgumentParser, top_level: bool) -> None:
    parser.add_argument("--verbose", action="store_true", default=False if top_level else argparse.SUPPRESS,
                        help=VERBOSE_HELP)


def _first_paragraph(docstring: str) -> str:
    return docstring.split("\n\n")[0].replace("\n", " ").replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    """The `keras-lm` parser (reads the workflows' source files; imports neither them nor TensorFlow)."""
    parser = Parser(prog="keras-lm", description=DESCRIPTION)
    _add_verbose(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = {}
    for command in COMMANDS:
        group, name = commands, command.name
        if command.name.startswith("export "):
            if "export" not in groups:
                export = commands.add_parser("export", help=EXPORT_HELP, description=EXPORT_HELP)
                _add_verbose(export, top_level=False)
                groups["export"] = export.add_subparsers(dest="kind", required=True, metavar="KIND")
            group, name = groups["export"], command.name.split()[1]
        signature = read_signature(command.target)
        sub = group.add_parser(name, help=signature.summary, description=_first_paragraph(signature.docstring))
        names = add_function_options(sub, command.name, command.target, command.positional)
        _add_verbose(sub, top_level=False)
        sub.set_defaults(target=command.target, parameters=names)
    _add_bench_and_run(commands)
    return parser


def _add_bench_and_run(commands) -> None:
    bench = commands.add_parser("bench", help=BENCH_HELP, add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of python -m keras_lm.benchmarks")
    run = commands.add_parser("run", help=RUN_HELP, description=RUN_HELP)
    run.add_argument("recipe", help="path to a recipe, e.g. applications/quickstart.yaml")
    run.add_argument("--output", required=True, help=option_help("run", "output"))
    run.add_argument("--set", action="append", default=[], metavar="STEP.KEY=VALUE",
                     help="override one recipe value (YAML syntax), e.g. --set pretrain.steps=50")
    _add_verbose(run, top_level=False)


def parse_arguments(argv=None) -> argparse.Namespace:
    """Parses `argv` (default: sys.argv[1:]); `--help` and bad flags exit here, before any import."""
    return build_parser().parse_args(sys.argv[1:] if argv is None else argv)
