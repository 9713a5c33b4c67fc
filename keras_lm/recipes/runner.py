"""Recipes: YAML files whose top-level keys name workflow steps and whose values are the
keyword arguments of those functions, run in order with one shared output directory.

    # applications/quickstart.yaml
    train_vocabulary: {corpus: shakespeare, vocabulary_size: 8000}
    pretrain: {size: mini, steps: 300}
    finetune: {epochs: 2}
    serve: {}
    report: {}
"""
import inspect
import os
import time

import yaml

from keras_lm.recipes import gpt
from keras_lm.recipes import report as report_module
from keras_lm.recipes import workflows

STEPS = {
    "train_vocabulary": workflows.train_vocabulary,
    "pretrain": workflows.pretrain,
    "finetune": workflows.finetune,
    "serve": workflows.serve,
    "report": report_module.report,
    "train_byte_pair": gpt.train_byte_pair,
    "pretrain_causal_lm": gpt.pretrain_causal_lm,
    "generate": gpt.generate,
}


class RecipeError(ValueError):
    """A recipe file that cannot be run as written."""


def load_recipe(path: str) -> dict:
    if not os.path.exists(path):
        raise RecipeError(f"No recipe file at '{path}'.")
    with open(path) as f:
        try:
            recipe = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise RecipeError(f"Recipe '{path}' is not valid YAML: {error}") from error
    if not isinstance(recipe, dict) or not recipe:
        raise RecipeError(f"Recipe '{path}' must be a mapping of step names to arguments.")
    validate_recipe(recipe, path)
    return recipe


def validate_recipe(recipe: dict, source: str = "recipe") -> None:
    """Checks every step name and argument name before anything runs."""
    for step, arguments in recipe.items():
        if step not in STEPS:
            raise RecipeError(
                f"{source}: unknown step '{step}'; known steps: {', '.join(STEPS)}."
            )
        if arguments is None:
            continue
        if not isinstance(arguments, dict):
            raise RecipeError(f"{source}: step '{step}' must map argument names to values.")
        accepted = inspect.signature(STEPS[step]).parameters
        for key in arguments:
            if key == "output" or key not in accepted:
                names = ", ".join(name for name in accepted if name != "output")
                raise RecipeError(
                    f"{source}: unknown key '{step}.{key}'; '{step}' accepts: {names}."
                )


def run_recipe(path: str, output: str, overrides: dict | None = None) -> dict:
    """Runs every step of the recipe at `path` in order, writing into `output`."""
    recipe = load_recipe(path)
    for dotted, value in (overrides or {}).items():
        step, _, key = dotted.partition(".")
        recipe.setdefault(step, {})
        recipe[step] = dict(recipe[step] or {}, **{key: value})
    validate_recipe(recipe, path)
    os.makedirs(output, exist_ok=True)
    start = time.time()
    results = {}
    for step, arguments in recipe.items():
        results[step] = STEPS[step](output=output, **(arguments or {}))
    print(f"== recipe '{os.path.basename(path)}' finished in {time.time() - start:.0f} s; outputs in {output}")
    return results
