"""Recipes: YAML files whose top-level keys name workflow steps and whose values are the
keyword arguments of those functions, run in order with one shared output directory.

    # applications/quickstart.yaml
    train_vocabulary: {corpus: shakespeare, vocabulary_size: 8000}
    pretrain: {size: mini, steps: 300}
    finetune: {epochs: 2}
    serve: {}
    report: {}
"""
import importlib
import inspect
import os
import time
import types
import typing

import yaml

from keras_lm.values import is_integer, is_number

#: Step name -> "module:function". A module is imported when one of its steps is used, so that
#: reading the list (`keras-lm --help`, an unknown step) imports nothing heavy. One line per step.
STEPS = {
    "train_vocabulary": "keras_lm.recipes.workflows:train_vocabulary",
    "pretrain": "keras_lm.recipes.workflows:pretrain",
    "finetune": "keras_lm.recipes.workflows:finetune",
    "serve": "keras_lm.recipes.workflows:serve",
    "report": "keras_lm.recipes.report:report",
    "train_byte_pair": "keras_lm.recipes.gpt:train_byte_pair",
    "pretrain_causal_lm": "keras_lm.recipes.gpt:pretrain_causal_lm",
    "generate": "keras_lm.recipes.gpt:generate",
    "import_checkpoint": "keras_lm.recipes.checkpoint:import_checkpoint",
    "checkpoint_report": "keras_lm.recipes.checkpoint:checkpoint_report",
    "train_translation": "keras_lm.recipes.translation:train_translation",
    "evaluate_translation": "keras_lm.recipes.translation:evaluate_translation",
    "translation_report": "keras_lm.recipes.translation:translation_report",
    "pretrain_span_corruption": "keras_lm.recipes.text_to_text:pretrain_span_corruption",
    "finetune_text_to_text": "keras_lm.recipes.text_to_text:finetune_text_to_text",
    "text_to_text_report": "keras_lm.recipes.text_to_text:text_to_text_report",
    "compare_peft": "keras_lm.recipes.peft:compare_peft",
    "distill": "keras_lm.recipes.distillation:distill",
    "compare_adversarial": "keras_lm.recipes.adversarial:compare_adversarial",
    "compare_augmentation": "keras_lm.recipes.augmentation:compare_augmentation",
    "continual": "keras_lm.recipes.continual:continual",
    "prompting": "keras_lm.recipes.prompting:prompting",
}


def step_function(step: str):
    """The function of recipe step `step` (its module imported on first use)."""
    module, _, name = STEPS[step].partition(":")
    return getattr(importlib.import_module(module), name)


class RecipeError(ValueError):
    """A recipe file that cannot be run as written."""


def load_recipe(path: str) -> dict:
    """Reads and validates the recipe at `path` (see `validate_recipe`)."""
    recipe = _read_recipe(path)
    validate_recipe(recipe, path)
    return recipe


def _read_recipe(path: str) -> dict:
    if not os.path.exists(path):
        raise RecipeError(f"No recipe file at '{path}'.")
    with open(path) as f:
        try:
            recipe = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise RecipeError(f"Recipe '{path}' is not valid YAML: {error}") from error
    if not isinstance(recipe, dict) or not recipe:
        raise RecipeError(f"Recipe '{path}' must be a mapping of step names to arguments.")
    return recipe


def validate_recipe(recipe: dict, source: str = "recipe") -> None:
    """Checks every step name, argument name, value type and value range before anything runs."""
    for step, arguments in recipe.items():
        if step not in STEPS:
            raise RecipeError(
                f"{source}: unknown step '{step}'; known steps: {', '.join(STEPS)}."
            )
        if arguments is None:
            continue
        if not isinstance(arguments, dict):
            raise RecipeError(f"{source}: step '{step}' must map argument names to values.")
        accepted = inspect.signature(step_function(step)).parameters
        for key in arguments:
            if key == "output" or key not in accepted:
                names = ", ".join(name for name in accepted if name != "output")
                raise RecipeError(
                    f"{source}: unknown key '{step}.{key}'; '{step}' accepts: {names}."
                )
        try:
            check_arguments(step_function(step), arguments, lambda key: f"{step}.{key}")
        except ValueError as error:
            raise RecipeError(f"{source}: {error}") from None


def check_arguments(function, arguments: dict, describe=lambda key: key) -> None:
    """Checks `arguments` against `function`'s annotations and value rules; one ValueError if not.

    A bool must be a real bool (YAML `true`, not the string "false"); an int is not a bool; a
    float accepts an int; a tuple accepts a list; `X | None` accepts None. Values then pass
    `workflows.check_values` (positive step counts, known model sizes, ...). `describe(key)` is
    how the error names an argument (e.g. "pretrain.steps" in a recipe, "--steps" on the CLI).
    """
    hints = typing.get_type_hints(function)
    for key, value in arguments.items():
        if key in hints and not _matches(value, hints[key]):
            raise ValueError(
                f"{describe(key)} must be {_type_name(hints[key])}, got {value!r} "
                f"({type(value).__name__})."
            )
    from keras_lm.recipes import workflows

    problem = workflows.check_values(function, arguments)
    if problem:
        key, message = problem
        raise ValueError(f"{describe(key)} {message}")


def _matches(value, hint) -> bool:
    """Whether `value` (as YAML or argparse gives it) is acceptable for the annotation `hint`."""
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_integer(value)
    if hint is float:
        return is_number(value)
    if hint in (tuple, list) or origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        item = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return len(item) != 1 or all(_matches(v, item[0]) for v in value)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation we do not check


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(option) for option in typing.get_args(hint) if option is not type(None)]
        optional = type(None) in typing.get_args(hint)
        return " or ".join(names) + (" (or null)" if optional else "")
    if hint in (tuple, list) or origin in (tuple, list):
        return "a list"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def run_recipe(path: str, output: str, overrides: dict | None = None) -> dict:
    """Runs every step of the recipe at `path` in order, writing into `output`.

    `overrides` maps "step.key" to a value; the recipe with its overrides is validated (names,
    types, ranges) before any step runs.
    """
    recipe = _read_recipe(path)
    for dotted, value in (overrides or {}).items():
        step, _, key = dotted.partition(".")
        arguments = recipe.get(step) or {}
        if not isinstance(arguments, dict):
            raise RecipeError(f"{path}: step '{step}' must map argument names to values.")
        recipe[step] = dict(arguments, **{key: value})
    validate_recipe(recipe, path)
    os.makedirs(output, exist_ok=True)
    start = time.time()
    results = {}
    for step, arguments in recipe.items():
        results[step] = step_function(step)(output=output, **(arguments or {}))
    print(f"== recipe '{os.path.basename(path)}' finished in {time.time() - start:.0f} s; outputs in {output}")
    return results
