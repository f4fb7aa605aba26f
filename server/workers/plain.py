"""The checks the wire's message shapes are built from (``server/workers/wire.py``).

Each check takes a value as MessagePack decoded it (nil, booleans, integers, floats, str, bytes,
tuples for arrays, dicts for maps) and returns it in the form the code uses, or raises
``RelayError``. Types are compared exactly: a boolean is not an integer here, and a peer cannot
pass one for the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Parse = Callable[[object], Any]

# Deeper than any gateway answer or request body nests; bounds the walk of one.
JSON_DEPTH = 32

_SCALARS = frozenset({str, int, float, bool, type(None)})


class RelayError(Exception):
    """A frame or payload that is not the protocol."""


def exactly(*types: type) -> Parse:
    names = " or ".join(kind.__name__ for kind in types)

    def parse(value: object) -> object:
        if type(value) not in types:
            raise RelayError(f"expected {names}, not {type(value).__name__}")
        return value

    return parse


STR = exactly(str)
BYTES = exactly(bytes)
INT = exactly(int)
BOOL = exactly(bool)
NIL = exactly(type(None))
NUMBER = exactly(int, float)
OPTIONAL_STR = exactly(str, type(None))


def optional(item: Parse) -> Parse:
    def parse(value: object) -> object:
        return None if value is None else item(value)

    return parse


def _array(value: object, length: int | None = None) -> tuple[object, ...]:
    if type(value) is not tuple:
        raise RelayError(f"expected an array, not {type(value).__name__}")
    if length is not None and len(value) != length:
        raise RelayError(f"expected an array of {length}, not of {len(value)}")
    return value


def array(*items: Parse) -> Parse:
    """An array of exactly these items, as a tuple."""

    def parse(value: object) -> tuple[Any, ...]:
        values = _array(value, len(items))
        return tuple([item(each) for item, each in zip(items, values, strict=True)])

    return parse


def array_of(item: Parse) -> Parse:
    """An array of any length whose every element is ``item``, as a tuple."""

    def parse(value: object) -> tuple[Any, ...]:
        return tuple([item(each) for each in _array(value)])

    return parse


def struct_of(*fields: tuple[str, Parse]) -> Parse:
    """An array of these named fields in this order, as a dict: a refusal names the field."""

    def parse(value: object) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        for (name, item), each in zip(fields, _array(value, len(fields)), strict=True):
            try:
                parsed[name] = item(each)
            except RelayError as error:
                raise RelayError(f"{name}: {error}") from None
        return parsed

    return parse


def _map(value: object) -> dict[str, object]:
    if type(value) is not dict:
        raise RelayError(f"expected a map, not {type(value).__name__}")
    if not all(type(key) is str for key in value):
        raise RelayError("a map's keys are str")
    return value


def map_of(item: Parse) -> Parse:
    """A map of str keys whose every value is ``item``."""

    def parse(value: object) -> dict[str, Any]:
        return {key: item(each) for key, each in _map(value).items()}

    return parse


def json_map(value: object) -> dict[str, Any]:
    """A map of JSON values (a request's body, a gateway's answer), arrays as lists, as
    ``json.loads`` would give them; bytes are not JSON and are refused."""
    return {key: _json(each, 1) for key, each in _map(value).items()}


def _json(value: object, depth: int) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth >= JSON_DEPTH:
        raise RelayError(f"JSON nested deeper than {JSON_DEPTH}")
    if kind is tuple:
        return [_json(each, depth + 1) for each in _array(value)]
    if kind is dict:
        return {key: _json(each, depth + 1) for key, each in _map(value).items()}
    raise RelayError(f"{kind.__name__} is not a JSON value")
