"""Recipes: end-to-end workflows driven by YAML files whose keys are our functions' arguments."""
from keras_lm.recipes.runner import RecipeError, load_recipe, run_recipe, validate_recipe

__all__ = ["RecipeError", "load_recipe", "run_recipe", "validate_recipe"]
