"""Operator schemas as torch_npu registers them (strings of libtorch_npu.so), turned into Python signatures.

An emulated op is exposed through `bind_to_schema`, so it takes exactly the arguments the real op of the selected
version takes (same names, order, defaults and keyword-only marker) and rejects the others with the TypeError
Python gives for a wrong call.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from collections.abc import Callable
from typing import Any

import torch

_SCHEMA = re.compile(r"^(?P<name>[\w.]+)\((?P<params>.*)\) -> (?P<returns>.+)$")


def _split_top_level(text: str) -> list[str]:
    """`text` split at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def _default(text: str) -> Any:
    """A schema default (None, True, 1., 2147483647, 'none', "", [0, 1]) as a Python value."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    return ast.literal_eval(text)


def parse_schema(schema: str) -> tuple[str, inspect.Signature]:
    """(op name with overload, Python signature) of one schema string, e.g. 'npu_gelu(Tensor input, *, ...) -> T'."""
    match = _SCHEMA.match(schema.strip())
    if match is None:
        raise ValueError(f"not an operator schema: {schema!r}")
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = []
    for item in _split_top_level(match["params"]):
        if item == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        declaration, _, default = item.partition("=")
        name = declaration.split()[-1]
        value = _default(default) if default else inspect.Parameter.empty
        params.append(inspect.Parameter(name, kind, default=value))
    return match["name"], inspect.Signature(params)


def _is_default(value: Any, default: Any) -> bool:
    """Whether an argument holds the schema's default (a tensor never does: every tensor default is None)."""
    return value is default or (not isinstance(value, torch.Tensor) and value == default)


def bind_to_schema(schema: str, impl: Callable[..., Any]) -> Callable[..., Any]:
    """`impl` callable exactly as the op of `schema`: arguments are bound by the schema's signature; those `impl`
    does not take must keep their defaults (else NotImplementedError: the emulation does not model them)."""
    name, signature = parse_schema(schema)
    accepted = inspect.signature(impl).parameters

    @functools.wraps(impl)
    def op(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        unmodelled = [
            arg
            for arg, value in bound.arguments.items()
            if arg not in accepted and not _is_default(value, signature.parameters[arg].default)
        ]
        if unmodelled:
            raise NotImplementedError(f"{name} emulation: {', '.join(unmodelled)} not emulated (defaults only)")
        return impl(**{arg: value for arg, value in bound.arguments.items() if arg in accepted})

    op.__signature__ = signature  # what inspect.signature reports: the real op's, not impl's
    return op
