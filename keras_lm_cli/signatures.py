"""Workflow signatures read from their source files with `ast`, without importing them.

The `keras-lm` command builds its options from the keyword arguments, annotations, defaults and
docstrings of the workflow functions it runs. Importing those modules would import TensorFlow
(seconds, and its start-up lines on the terminal); reading their source is instant and keeps the
functions the single source of truth.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import os
import types
import typing

#: Names an annotation may use; anything else is read as text.
ANNOTATION_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "tuple": tuple, "list": list,
                    "dict": dict, "None": None}
_EMPTY = object()


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One keyword argument: its name, annotation (a type, `X | None`, `tuple[int, ...]`, ...) and default."""

    name: str
    annotation: object
    default: object = _EMPTY
    annotated: bool = True

    @property
    def required(self) -> bool:
        return self.default is _EMPTY


@dataclasses.dataclass(frozen=True)
class Signature:
    """A function's parameters in order and the first line of its docstring."""

    target: str
    parameters: tuple
    summary: str
    docstring: str


def package_root(package: str = "keras_lm") -> str:
    """The folder of `package`, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"Cannot find the {package} package.")
    return list(spec.submodule_search_locations)[0]


def module_path(module: str) -> str:
    """The source file of `module` (e.g. keras_lm.recipes.workflows), found without importing it."""
    top, _, rest = module.partition(".")
    base = os.path.join(package_root(top), *rest.split(".")) if rest else package_root(top)
    return base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__init__.py")


@functools.lru_cache(maxsize=None)
def _module_tree(module: str) -> ast.Module:
    with open(module_path(module), encoding="utf-8") as file:
        return ast.parse(file.read(), filename=module_path(module))


def _constants(tree: ast.Module) -> dict:
    """Module-level `NAME = literal` assignments (defaults may name them)."""
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return values


def _annotation(node):
    """The annotation `node` as a Python type object (`int | None`, `tuple[int, ...]`, ...)."""
    if node is None:
        return str
    if isinstance(node, ast.Constant):
        if node.value is None:
            return None
        if node.value is Ellipsis:
            return Ellipsis
        if isinstance(node.value, str):  # a quoted annotation
            return _annotation(ast.parse(node.value, mode="eval").body)
        return str
    if isinstance(node, ast.Name):
        return ANNOTATION_NAMES.get(node.id, str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _annotation(node.left), _annotation(node.right)
        return typing.Union[left if left is not None else type(None), right if right is not None else type(None)]
    if isinstance(node, ast.Subscript):
        origin = _annotation(node.value)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        arguments = tuple(_annotation(item) for item in items)
        if origin in (tuple, list, dict):
            return origin[arguments if len(arguments) > 1 else arguments[0]]
        return origin
    return str


def _default(node, constants: dict, where: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        raise ValueError(f"{where}: the default {ast.unparse(node)} is not a literal.") from None


@functools.lru_cache(maxsize=None)
def read_signature(target: str) -> Signature:
    """The signature of `target` ("package.module:function") read from its source file."""
    module, _, name = target.partition(":")
    tree = _module_tree(module)
    function = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name), None)
    if function is None:
        raise ValueError(f"{module} defines no function {name}.")
    constants = _constants(tree)
    arguments = function.args
    positional = arguments.posonlyargs + arguments.args
    defaults = [_EMPTY] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    parameters = [
        Parameter(a.arg, _annotation(a.annotation),
                  _EMPTY if d is _EMPTY else _default(d, constants, f"{target}({a.arg})"), a.annotation is not None)
        for a, d in zip(positional, defaults)
    ]
    parameters += [
        Parameter(a.arg, _annotation(a.annotation),
                  _EMPTY if d is None else _default(d, constants, f"{target}({a.arg})"), a.annotation is not None)
        for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults)
    ]
    docstring = ast.get_docstring(function) or ""
    return Signature(target, tuple(parameters), docstring.strip().splitlines()[0] if docstring else name, docstring)


def without_none(annotation):
    """`int` for `int | None`; a union of several types stays a union."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(annotation) if option is not type(None)]
        if len(options) == 1:
            return options[0]
        return typing.Union[tuple(options)]
    return annotation
