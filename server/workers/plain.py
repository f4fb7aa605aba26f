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


class Exactly:
    """A value of one of these types, as it is. The containers below check one in line, without
    a call: most items of the protocol are one."""

    def __init__(self, *types: type) -> None:
        self.types = types
        self._names = " or ".join(kind.__name__ for kind in types)

    def __call__(self, value: object) -> object:
        if type(value) not in self.types:
            raise RelayError(f"expected {self._names}, not {type(value).__name__}")
        return value


STR = Exactly(str)
BYTES = Exactly(bytes)
INT = Exactly(int)
BOOL = Exactly(bool)
NIL = Exactly(type(None))
NUMBER = Exactly(int, float)
OPTIONAL_STR = Exactly(str, type(None))


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


def _types(item: Parse) -> tuple[type, ...]:
    """The types a value may have to pass ``item`` as it is; none for a conversion."""
    return item.types if isinstance(item, Exactly) else ()


def array(*items: Parse) -> Parse:
    """An array of exactly these items, as a tuple."""
    plan = tuple((_types(item), item) for item in items)

    def parse(value: object) -> tuple[Any, ...]:
        values = _array(value, len(plan))
        return tuple(
            [
                each if type(each) in types else item(each)
                for (types, item), each in zip(plan, values, strict=True)
            ]
        )

    return parse


def array_of(item: Parse) -> Parse:
    """An array of any length whose every element is ``item``, as a tuple."""
    types = _types(item)

    def parse(value: object) -> tuple[Any, ...]:
        values = _array(value)
        if types and all(type(each) in types for each in values):
            return values
        return tuple([item(each) for each in values])

    return parse


def struct_of(*fields: tuple[str, Parse]) -> Parse:
    """An array of these named fields in this order, as a dict: a refusal names the field."""
    plan = tuple((name, _types(item), item) for name, item in fields)

    def parse(value: object) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        for (name, types, item), each in zip(plan, _array(value, len(plan)), strict=True):
            parsed[name] = each if type(each) in types else _field(name, item, each)
        return parsed

    return parse


def _field(name: str, item: Parse, value: object) -> Any:
    try:
        return item(value)
    except RelayError as error:
        raise RelayError(f"{name}: {error}") from None


def _map(value: object) -> dict[str, object]:
    if type(value) is not dict:
        raise RelayError(f"expected a map, not {type(value).__name__}")
    if not all(type(key) is str for key in value):
        raise RelayError("a map's keys are str")
    return value


def map_of(item: Parse) -> Parse:
    """A map of str keys whose every value is ``item``."""
    types = _types(item)

    def parse(value: object) -> dict[str, Any]:
        values = _map(value)
        if types and all(type(each) in types for each in values.values()):
            return values
        return {key: item(each) for key, each in values.items()}

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
