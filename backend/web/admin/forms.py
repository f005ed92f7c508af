"""HTML forms read into the management API's request bodies, with every error by field.

A form is a list of ``Field``s; ``read_form`` turns the typed strings into the same msgspec
struct the API decodes from JSON, converting each field against that struct's own annotated type
(so lengths, patterns and ranges are checked by one definition) and collecting every error at
once instead of stopping at the first. The page shows each error next to its field and puts
back what was typed.
"""

from __future__ import annotations

import re
import types
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Union, get_args, get_origin

import msgspec
from litestar import Request

from backend.core.money import MINOR_DIGITS, format_minor, parse_amount
from backend.core.validation import FieldError

S = TypeVar("S", bound=msgspec.Struct)
T = TypeVar("T")
PAGE_SIZE = 50
_LIST_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class Field:
    """One input. ``hint`` says what is expected; it is also the error for a wrong value."""

    name: str
    label: str
    hint: str
    kind: str = "text"  # an <input> type, "select", "list" (values of a textarea) or "money"
    options: Sequence[tuple[str, str]] = ()  # (value, label) pairs of a select
    required: bool = False


class FormInvalid(Exception):
    """What was wrong with a form, by field name."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(", ".join(errors))
        self.errors = errors


def _allows_none(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _has_default(info: msgspec.structs.FieldInfo) -> bool:
    return info.default not in (msgspec.NODEFAULT, msgspec.UNSET) or (
        info.default_factory is not msgspec.NODEFAULT
    )


def typed_currency(form: Mapping[str, str]) -> str | None:
    """The ISO 4217 code typed in the form's ``currency`` field, if it is one."""
    typed = form.get("currency", "").strip().upper()
    return typed if typed in MINOR_DIGITS else None


def _minor_units(raw: str, currency: str | None) -> int:
    """A typed amount ("0.50", "-3") in minor units of ``currency``; ValueError if it is none."""
    if currency is None:
        raise ValueError("no currency to read the amount in")
    negative = raw.startswith("-")
    minor = parse_amount(raw.removeprefix("-"), currency)
    return -minor if negative else minor


def read_form(
    form: Mapping[str, str],
    fields: Sequence[Field],
    schema: type[S],
    currency: str | None = None,
) -> S:
    """``schema`` built from the form's ``fields``, or ``FormInvalid`` with every field's error;
    money fields are read in ``currency``."""
    infos = {info.name: info for info in msgspec.structs.fields(schema)}
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        info = infos[field.name]
        if field.name not in form and info.default is msgspec.UNSET:
            continue  # an edit form without the field (older than it): left as it is
        raw = form.get(field.name, "").strip()
        value: Any = [v for v in _LIST_SEPARATORS.split(raw) if v] if field.kind == "list" else raw
        if raw == "" and _allows_none(info.type):
            value = None
        elif raw == "" and _has_default(info):
            continue
        try:
            if field.kind == "money" and isinstance(value, str):
                value = _minor_units(value, currency)
            values[field.name] = msgspec.convert(value, info.type, strict=False)
        except (msgspec.ValidationError, ValueError):
            errors[field.name] = f"Expected {field.hint}"
    if errors:
        raise FormInvalid(errors)
    return schema(**values)


def form_values(
    source: object, fields: Sequence[Field], currency: str | None = None
) -> dict[str, str]:
    """The text an edit form starts with: each field's current value on ``source`` (money in
    ``currency``)."""
    values: dict[str, str] = {}
    for field in fields:
        value = getattr(source, field.name)
        if value is None:
            values[field.name] = ""
        elif field.kind == "money" and isinstance(value, int) and currency is not None:
            values[field.name] = format_minor(value, currency)
        elif isinstance(value, bool):
            values[field.name] = "true" if value else "false"  # what msgspec reads back
        elif isinstance(value, list):
            values[field.name] = "\n".join(str(item) for item in value)
        else:
            values[field.name] = str(value)
    return values


async def typed_form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The posted text fields (the last value of a repeated name)."""
    return {name: value for name, value in (await request.form()).items() if isinstance(value, str)}


async def submit(
    form: Mapping[str, str],
    fields: Sequence[Field],
    schema: type[S],
    save: Callable[[S], Awaitable[T]],
    currency: str | None = None,
) -> T:
    """Read the form and ``save`` it; the rules' ``FieldError`` becomes a form error too."""
    data = read_form(form, fields, schema, currency)
    try:
        return await save(data)
    except FieldError as error:
        raise FormInvalid({error.field: error.message}) from None
