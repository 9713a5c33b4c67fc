"""The examples in the public docstrings run as written."""
import doctest
import importlib

import pytest

MODULES = ["keras_lm.applications.bert"]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    result = doctest.testmod(importlib.import_module(module_name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
