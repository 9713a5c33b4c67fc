"""Checks of plain Python values shared by every module that validates user input.

Python's ``bool`` is an ``int``: ``True`` must never pass as a step count or a class id, so these
exclude it (NumPy's integer and floating scalars pass).

Example:
    >>> from keras_lm.values import is_integer, is_number
    >>> is_integer(3), is_integer(True), is_integer(2.0), is_number(2), is_number(True)
    (True, False, False, True, False)
"""
from __future__ import annotations

import numbers

import numpy as np


def is_integer(value) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """A real number (Python or NumPy; an integer counts), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
