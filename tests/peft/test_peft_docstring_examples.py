"""The examples in keras_lm.peft's public docstrings run as written."""
import doctest
import importlib

import pytest

MODULES = ["keras_lm.peft.adapters", "keras_lm.peft.freezing", "keras_lm.peft.layerwise_decay", "keras_lm.peft.lora",
           "keras_lm.peft.prompt_tuning", "keras_lm.peft.variables"]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
