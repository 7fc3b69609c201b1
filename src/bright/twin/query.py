"""NGSI-LD query languages (``q``, ``scopeQ``, type expressions) compiled to SQL over the twin tables.

This module is the single place that defines what an entity *is* for a query:

* :func:`index_rows` flattens a stored (expanded) entity document into typed ``attr_index`` rows;
* :func:`parse_q`, :func:`parse_scope_query` and :func:`parse_type_query` turn the query strings of
  ETSI GS CIM 009 (clauses 4.9, 4.19 and 4.17) into small immutable ASTs, raising
  :class:`QuerySyntaxError` with the position and the offending text;
* :func:`q_filter`, :func:`scope_filter` and :func:`type_filter` compile an AST to one SQLAlchemy
  boolean expression (``EXISTS`` sub-queries on ``attr_index`` / ``entity_types`` /
  ``entity_scopes`` correlated on ``entities.pk``) that runs in the database on its indexes;
* :func:`matches`, :func:`scope_matches` and :func:`type_matches` evaluate the same ASTs on a
  document in Python (subscriptions, notifications, and the oracle of the property tests).

Index paths
-----------
A row of ``attr_index`` is ``(attr, path, kind, num, txt)``: ``attr`` is the expanded attribute
IRI and ``path`` addresses a leaf inside one instance of it::

    path     := ''                     the attribute's target value (value, object, languageMap, vocab...)
              | path '[' key ']'       a key of a compound (JSON object) value, key NOT expanded
              | sub                    the target value of a sub-attribute (its expanded IRI)
              | sub '.' sub ...        a sub-attribute of a sub-attribute
              | [sub '.'] meta         meta in observedAt, createdAt, modifiedAt, unitCode, datasetId

``[`` and ``]`` and ``\\`` inside a key are escaped with a backslash. Arrays are transparent: each
element is indexed at the path of the array. A JSON object or an empty array yields an existence
marker (kind ``'x'``) at its own path, then its members. ``kind`` is ``'n'`` (number in ``num``),
``'b'`` (boolean, ``num`` 0/1), ``'s'`` (string in ``txt``), ``'r'`` (Relationship object URI in
``txt``), ``'d'`` (date-time ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` or time ``THH:MM:SS.ffffffZ``, UTC, in
``txt``) or ``'x'`` (exists, never compares). A string that is an ISO 8601 date-time, date or time
gets both an ``'s'`` and a ``'d'`` row, so ``a=="2024-01-01"`` and ``a>2023-12-31`` both work.

Matching rules (the values of all instances of an attribute are pooled, as one array)
----------------------------------------------------------------------------------------
* ``a`` matches when the path exists (any row). Comparisons need the path to exist too.
* ``a==v`` (or a list ``v1,v2``, or a range ``lo..hi``): some leaf equals one of the values (is in
  the range). ``a!=...`` : the path exists and no leaf equals (is in the range).
* ``>``, ``>=``, ``<``, ``<=``: some leaf of the same type compares true. Numbers compare with
  numbers, quoted strings with strings (code-point order), date-times and dates with date-times,
  times with times. Values of another type never match. Relationship objects only answer ``==``
  and ``!=`` (spec clause 4.9).
* ``a~=re``: some string leaf matches the regular expression (search, not full match).
  ``a!~=re``: the path has string leaves and none matches.
* An unquoted value that is no number, boolean, date or time is a URI or a term; it matches a string
  or Relationship leaf equal to it as written or expanded with the @context (VocabularyProperty).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, TypeAlias, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Text,
    and_,
    any_,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from bright.twin.schema import attr_index, entities, entity_scopes, entity_types

__all__ = [
    "DRIVE_LIMIT",
    "METADATA_NAMES",
    "And",
    "AttributePath",
    "Comparison",
    "Exists",
    "Expand",
    "Or",
    "Pattern",
    "QNode",
    "QuerySyntaxError",
    "Range",
    "ScopeNode",
    "ScopePattern",
    "TypeName",
    "TypeNode",
    "Value",
    "ValueList",
    "index_rows",
    "install_sqlite_functions",
    "iter_terms",
    "matches",
    "parse_q",
    "parse_scope_query",
    "parse_type_query",
    "q_filter",
    "resolve_attribute",
    "scope_filter",
    "scope_matches",
    "type_filter",
    "type_matches",
]

Expand: TypeAlias = Callable[[str], str]
"""Maps a term (attribute name, type name, vocabulary term) to its IRI with the active @context."""

METADATA_NAMES: frozenset[str] = frozenset({"observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"})
"""Instance members addressable as the last segment of a dotted path (``a.observedAt``)."""
_DATE_METADATA = frozenset({"observedAt", "createdAt", "modifiedAt"})
_SYSTEM_TIMES = frozenset({"createdAt", "modifiedAt"})

Leaf: TypeAlias = tuple[str, float | None, str | None]
"""One typed leaf: (kind, num, txt), as in ``attr_index``."""
_MARKER: Leaf = ("x", None, None)
_TIME_FLOOR = "T"  # normalised times start with 'T', date-times with a digit: 'T' splits them


class QuerySyntaxError(ValueError):
    """A query string that does not follow its grammar.

    Parameters
    ----------
    language : str
        ``'q'``, ``'scopeQ'`` or ``'type'``.
    text : str
        The whole query string.
    position : int
        0-based offset of the offending character in ``text``.
    reason : str
        What was expected or what is wrong.
    """

    def __init__(self, language: str, text: str, position: int, reason: str) -> None:
        near = text[position : position + 24]
        where = f"at position {position + 1} ({near!r})" if near else "at the end of the query"
        super().__init__(f"invalid {language} {text!r}: {reason} {where}")
        self.language = language
        self.text = text
        self.position = position
        self.reason = reason


# --------------------------------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------------------------------

ValueKind: TypeAlias = Literal["n", "s", "b", "d", "t", "u"]


@dataclass(frozen=True, slots=True)
class Value:
    """A literal of the ``q`` language.

    ``kind`` is ``'n'`` number (``value`` float), ``'s'`` quoted string, ``'b'`` boolean, ``'d'``
    date-time or date (``value`` normalised ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, a date is its UTC
    midnight), ``'t'`` time (``value`` normalised ``THH:MM:SS.ffffffZ``) or ``'u'`` unquoted
    URI/term (compared as written and expanded).
    """

    kind: ValueKind
    value: float | str | bool

    def __str__(self) -> str:
        if self.kind == "s":
            text = cast(str, self.value)
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if self.kind == "b":
            return "true" if self.value else "false"
        if self.kind == "n":
            return repr(float(self.value))
        if self.kind == "t":
            return cast(str, self.value)[1:]
        return str(self.value)


@dataclass(frozen=True, slots=True)
class ValueList:
    """``v1,v2,...`` after ``==`` or ``!=``: equal to any of the values."""

    values: tuple[Value, ...]

    def __str__(self) -> str:
        return ",".join(str(v) for v in self.values)


@dataclass(frozen=True, slots=True)
class Range:
    """``low..high`` after ``==`` or ``!=``, bounds included, both of one comparable type."""

    low: Value
    high: Value

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"


@dataclass(frozen=True, slots=True)
class Pattern:
    """The regular expression after ``~=`` or ``!~=``."""

    regex: str

    def __str__(self) -> str:
        return '"' + self.regex.replace('"', '\\"') + '"'


Operand: TypeAlias = Value | ValueList | Range | Pattern
Operator: TypeAlias = Literal["==", "!=", ">", ">=", "<", "<=", "~=", "!~="]


@dataclass(frozen=True, slots=True)
class AttributePath:
    """``name[.sub...][.meta][[key]...]``: what a ``q`` term addresses, with terms as written.

    ``name`` and ``subattributes`` are expanded with the @context at compile/evaluation time,
    ``keys`` (compound value members) are not; ``metadata`` is one of :data:`METADATA_NAMES`.
    """

    name: str
    subattributes: tuple[str, ...] = ()
    metadata: str | None = None
    keys: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = ".".join((self.name, *self.subattributes))
        if self.metadata:
            text += "." + self.metadata
        return text + "".join(f"[{k}]" for k in self.keys)


@dataclass(frozen=True, slots=True)
class Exists:
    """A bare attribute path: the entity has it."""

    path: AttributePath

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class Comparison:
    """``path op operand``."""

    path: AttributePath
    op: Operator
    operand: Operand

    def __str__(self) -> str:
        return f"{self.path}{self.op}{self.operand}"


@dataclass(frozen=True, slots=True)
class ScopePattern:
    """One ``scopeQ`` term: ``/a/b``, with ``+`` (one level) and a final ``#`` (any levels, or none)."""

    segments: tuple[str, ...]

    def __str__(self) -> str:
        return "/" + "/".join(self.segments)


@dataclass(frozen=True, slots=True)
class TypeName:
    """One entity type term of a type expression, as written."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class And:
    """All items hold (``;``)."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return ";".join(_group(i) for i in self.items)


@dataclass(frozen=True, slots=True)
class Or:
    """Any item holds (``|``, and ``,`` in scopeQ and type expressions)."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return "|".join(_group(i) for i in self.items)


Node: TypeAlias = And | Or | Exists | Comparison | ScopePattern | TypeName
QNode: TypeAlias = And | Or | Exists | Comparison
ScopeNode: TypeAlias = And | Or | ScopePattern
TypeNode: TypeAlias = And | Or | TypeName


def _group(node: Node) -> str:
    """Nested groups keep their parentheses, so that ``parse(str(ast)) == ast``."""
    return f"({node})" if isinstance(node, And | Or) else str(node)


# --------------------------------------------------------------------------------------------------
# Typed leaves (shared by the index and the Python evaluator)
# --------------------------------------------------------------------------------------------------

_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME_RE = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(Z|[+-]\d{2}(?::?\d{2})?)?")
_TYPED_DATE_TYPES = ("DateTime", "Date", "Time")


def _offset(tz: str | None) -> timedelta:
    if not tz or tz == "Z":
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))


def _micro(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


def _format_datetime(dt: datetime) -> str:
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        f".{dt.microsecond:06d}Z"
    )


_NORMALISED_RE = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z"
)


def _temporal(text: str) -> str | None:
    """The normalised 'd' text of an ISO 8601 date-time, date or time string, else None."""
    if len(text) < 5 or len(text) > 40 or not text[0].isdigit():
        return None
    # Cheap shape test first: dates have '-' at 4, times ':' at 2 (most strings are neither).
    if text[4] != "-" and text[2] != ":":
        return None
    return _parsed_temporal(text)


@lru_cache(maxsize=8192)
def _parsed_temporal(text: str) -> str | None:
    """:func:`_temporal` of a string shaped like a date or time (cached: the instants of a batch
    repeat, such as the same ``observedAt`` on many meters)."""
    if len(text) == 27 and _NORMALISED_RE.fullmatch(text):  # the store's own stamps: already UTC
        return text
    try:
        if m := _DATETIME_RE.fullmatch(text):
            y, mo, d, h, mi, s, frac, tz = m.groups()
            dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), _micro(frac), tzinfo=UTC)
            return _format_datetime(dt - _offset(tz))
        if m := _DATE_RE.fullmatch(text):
            return _format_datetime(datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC))
        if m := _TIME_RE.fullmatch(text):
            h, mi, s, frac, tz = m.groups()
            base = datetime(2000, 1, 2, int(h), int(mi), int(s or 0), _micro(frac), tzinfo=UTC)
            return "T" + _format_datetime(base - _offset(tz))[11:]
    except (ValueError, OverflowError):
        return None
    return None


def _is_typed_literal(value: Any) -> bool:
    return isinstance(value, dict) and "@value" in value


def _scalar_leaves(value: Any) -> list[Leaf]:
    """Leaves of a JSON scalar or a JSON-LD typed literal ``{"@type": ..., "@value": ...}``."""
    if isinstance(value, bool):
        return [("b", 1.0 if value else 0.0, None)]
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return [_MARKER]
        return [("n", number, None)] if math.isfinite(number) else [_MARKER]
    if isinstance(value, str):
        if "\x00" in value:  # PostgreSQL text cannot hold NUL: such strings only exist
            return [_MARKER]
        stamp = _temporal(value)
        return [("s", None, value), ("d", None, stamp)] if stamp else [("s", None, value)]
    if _is_typed_literal(value):
        raw, kind = value["@value"], value.get("@type")
        if isinstance(kind, str) and kind.rsplit("/", 1)[-1].rsplit("#", 1)[-1] in _TYPED_DATE_TYPES:
            stamp = _temporal(raw) if isinstance(raw, str) else None
            return [("d", None, stamp)] if stamp else _scalar_leaves(raw)
        return _scalar_leaves(raw) if not isinstance(raw, dict | list) else [_MARKER]
    return [_MARKER]


def _value_leaves(value: Any) -> list[Leaf]:
    """Leaves of a value at its own path: arrays flattened, objects as an existence marker."""
    if isinstance(value, list):
        if not value:
            return [_MARKER]
        return [leaf for item in value for leaf in _value_leaves(item)]
    if isinstance(value, dict) and not _is_typed_literal(value):
        return [_MARKER]
    return _scalar_leaves(value)


def _strings(value: Any, kind: str) -> list[Leaf]:
    """Leaves of a URI or a list of URIs (Relationship objects 'r', vocab terms 's')."""
    items = value if isinstance(value, list) else [value]
    out: list[Leaf] = []
    for item in items:
        if isinstance(item, dict):  # objectList entries may be {"object": "urn:..."}
            item = item.get("object", item.get("@id"))
        out.append((kind, None, item) if isinstance(item, str) and "\x00" not in item else _MARKER)
    return out or [_MARKER]


def _meta_leaves(name: str, value: Any) -> list[Leaf]:
    if isinstance(value, str) and "\x00" not in value:
        if name in _DATE_METADATA and (stamp := _temporal(value)):
            return [("d", None, stamp)]
        return [("s", None, value)]
    return [_MARKER]


def _key_segment(key: str) -> str:
    return "[" + key.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]") + "]"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _instances(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [i for i in items if isinstance(i, dict)]


def _is_subattribute(key: str, value: Any) -> bool:
    """Sub-attributes are the instance members keyed by an IRI (always with ':') holding instances."""
    return ":" in key and any("type" in i for i in _instances(value))


# The member holding the target value of each attribute type; how it is flattened.
_TARGET_MEMBER = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "VocabularyProperty": "vocab",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
    "JsonProperty": "json",
}


def _target(instance: dict[str, Any]) -> tuple[str, Any]:
    """(attribute type, target value) of an instance; type '' when the value is missing."""
    kind = instance.get("type")
    member = _TARGET_MEMBER.get(kind) if isinstance(kind, str) else None
    if member is None or member not in instance:
        if "value" in instance and kind not in ("Relationship", "ListRelationship"):
            return ("Property", instance["value"])
        return ("", None)
    return (cast(str, kind), instance[member])


# --------------------------------------------------------------------------------------------------
# Index rows
# --------------------------------------------------------------------------------------------------


def index_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten an expanded entity document into ``attr_index`` rows.

    Parameters
    ----------
    doc : dict
        The stored entity document (``entities.doc``): ``attrs`` maps expanded attribute IRIs to
        lists of instances (one per ``datasetId``).

    Returns
    -------
    list of dict
        One dict per row with keys ``attr``, ``path``, ``dataset_id``, ``kind``, ``num``, ``txt``
        (the caller adds ``entity_pk``). Duplicated rows are removed; the order is stable.
    """
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str | None, Leaf]] = set()
    attrs = doc.get("attrs") or {}
    for attr, value in attrs.items():
        for instance in _instances(value):
            dataset = instance.get("datasetId")
            dataset_id = dataset if isinstance(dataset, str) else None

            def emit(path: str, leaf: Leaf, attr: str = attr, dataset_id: str | None = dataset_id) -> None:
                key = (attr, path, dataset_id, leaf)
                if key not in seen:
                    seen.add(key)
                    out.append(
                        {
                            "attr": attr,
                            "path": path,
                            "dataset_id": dataset_id,
                            "kind": leaf[0],
                            "num": leaf[1],
                            "txt": leaf[2],
                        }
                    )

            _instance_rows(instance, "", emit)
    return out


Emit: TypeAlias = Callable[[str, Leaf], None]


def _instance_rows(instance: dict[str, Any], prefix: str, emit: Emit) -> None:
    kind, value = _target(instance)
    if kind in ("Property", "JsonProperty", "ListProperty"):
        _walk(value, prefix, emit)
    elif kind in ("Relationship", "ListRelationship"):
        for leaf in _strings(value, "r"):
            emit(prefix, leaf)
    elif kind == "VocabularyProperty":
        for leaf in _strings(value, "s"):
            emit(prefix, leaf)
    elif kind == "LanguageProperty" and isinstance(value, dict) and value:
        for lang, text in value.items():
            for leaf in _value_leaves(text):
                emit(prefix, leaf)
            _walk(text, prefix + _key_segment(lang), emit)
    else:  # GeoProperty (see bright.twin.geo), empty languageMap, no value: existence only
        emit(prefix, _MARKER)
    for key, member in instance.items():
        if key in _SYSTEM_TIMES:
            # createdAt/modifiedAt change on every write and are almost never queried: not
            # indexed (a third of the rows of a typical entity); orderBy on them sorts in memory.
            continue
        if key in METADATA_NAMES:
            for leaf in _meta_leaves(key, member):
                emit(_join(prefix, key), leaf)
        elif _is_subattribute(key, member):
            for sub in _instances(member):
                _instance_rows(sub, _join(prefix, key), emit)


def _walk(value: Any, path: str, emit: Emit) -> None:
    if isinstance(value, list):
        if not value:
            emit(path, _MARKER)
        for item in value:
            _walk(item, path, emit)
    elif isinstance(value, dict) and not _is_typed_literal(value):
        emit(path, _MARKER)
        for key, member in value.items():
            _walk(member, path + _key_segment(str(key)), emit)
    else:
        for leaf in _scalar_leaves(value):
            emit(path, leaf)


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_NAME_STOP = frozenset('.[]()=!<>~;|,"' + "'") | frozenset(" \t\r\n")
_VALUE_STOP = frozenset(';|(),"') | frozenset(" \t\r\n")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_OPERATORS: tuple[Operator, ...] = ("!~=", "==", "!=", "~=", ">=", "<=", ">", "<")
_ORDERING = frozenset({">", ">=", "<", "<="})
_COMPARABLE = frozenset({"n", "s", "d", "t"})
_NAMED_GROUP_RE = re.compile(r"\(\?P|\(\?<(?![=!])")


class _Scanner:
    """Character cursor shared by the three parsers."""

    def __init__(self, language: str, text: str) -> None:
        self.language = language
        self.text = text
        self.pos = 0

    def error(self, reason: str, position: int | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(self.language, self.text, self.pos if position is None else position, reason)

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def at(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def expect(self, token: str, what: str) -> None:
        self.skip_spaces()
        if not self.at(token):
            raise self.error(f"expected {what}")
        self.pos += len(token)

    def logical(self, parse_item: Callable[[], Node], or_tokens: str) -> Node:
        """``item ((';' | or_tokens) item)*`` with ';' binding tighter, and parentheses."""

        def parse_or() -> Node:
            items = [parse_and()]
            while True:
                self.skip_spaces()
                if self.at_end() or self.text[self.pos] not in or_tokens:
                    break
                self.pos += 1
                items.append(parse_and())
            return items[0] if len(items) == 1 else Or(tuple(items))

        def parse_and() -> Node:
            items = [parse_primary()]
            while True:
                self.skip_spaces()
                if not self.at(";"):
                    break
                self.pos += 1
                items.append(parse_primary())
            return items[0] if len(items) == 1 else And(tuple(items))

        def parse_primary() -> Node:
            self.skip_spaces()
            if self.at("("):
                opened = self.pos
                self.pos += 1
                node = parse_or()
                self.skip_spaces()
                if not self.at(")"):
                    raise self.error(f"missing ')' for the '(' at position {opened + 1}")
                self.pos += 1
                return node
            if self.at_end():
                raise self.error("expected a term")
            return parse_item()

        self.skip_spaces()
        if self.at_end():
            raise self.error("the query is empty")
        node = parse_or()
        self.skip_spaces()
        if not self.at_end():
            if self.at(")"):
                raise self.error("unbalanced ')'")
            raise self.error(f"expected ';', {' or '.join(repr(t) for t in or_tokens)} or the end")
        return node


class _QParser(_Scanner):
    def __init__(self, text: str) -> None:
        super().__init__("q", text)

    def parse(self) -> QNode:
        return cast(QNode, self.logical(self.term, "|"))

    # -- attribute paths ------------------------------------------------------------------------
    def name(self, what: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _NAME_STOP:
            self.pos += 1
        if self.pos == start:
            raise self.error(f"expected {what}")
        return self.text[start : self.pos]

    def attribute(self) -> AttributePath:
        start = self.pos
        name = self.name("an attribute name")
        if "://" in name:
            # A full IRI as attribute name keeps its dots: 'https://example.org/x' is one name.
            while self.pos < len(self.text) and self.text[self.pos] not in _NAME_STOP - {"."}:
                self.pos += 1
            name = self.text[start : self.pos]
        segments: list[str] = []
        while self.at("."):
            self.pos += 1
            segments.append(self.name("a sub-attribute name after '.'"))
        metadata = None
        if segments and segments[-1] in METADATA_NAMES:
            metadata = segments.pop()
        keys: list[str] = []
        while self.at("["):
            if metadata is not None:
                raise self.error(f"the metadata {metadata!r} has no compound keys")
            self.pos += 1
            key_start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in "[]":
                self.pos += 1
            if self.pos == key_start:
                raise self.error("expected a key name inside '[...]'")
            if not self.at("]"):
                raise self.error("expected ']' to close the key")
            keys.append(self.text[key_start : self.pos])
            self.pos += 1
        if self.at("."):
            raise self.error("a sub-attribute cannot follow a compound key: write a.b[c], not a[c].b")
        return AttributePath(name, tuple(segments), metadata, tuple(keys))

    # -- terms ----------------------------------------------------------------------------------
    def term(self) -> QNode:
        path = self.attribute()
        self.skip_spaces()
        if self.at_end() or self.text[self.pos] in ";|)":
            return Exists(path)
        op_start = self.pos
        op = next((o for o in _OPERATORS if self.at(o)), None)
        if op is None:
            if self.text[self.pos] in "=!<>~":
                raise self.error("unknown operator (expected ==, !=, >, >=, <, <=, ~= or !~=)")
            raise self.error("expected an operator (==, !=, >, >=, <, <=, ~=, !~=), ';', '|' or ')'")
        self.pos += len(op)
        if op in ("~=", "!~="):
            return Comparison(path, op, self.pattern())
        operand = self.operand(op, op_start)
        return Comparison(path, op, operand)

    def operand(self, op: Operator, op_start: int) -> Value | ValueList | Range:
        first_at = self.pos
        first = self.value()
        if self.at(".."):
            if op not in ("==", "!="):
                raise self.error(f"a range is only allowed after == or !=, not after {op}", op_start)
            self.pos += 2
            second_at = self.pos
            second = self.value()
            for bound, at in ((first, first_at), (second, second_at)):
                if bound.kind not in _COMPARABLE:
                    raise self.error("range bounds must be numbers, quoted strings, dates or times", at)
            if {first.kind, second.kind} != {first.kind}:
                raise self.error("both bounds of a range must have the same type", second_at)
            if self.at(","):
                raise self.error("a range cannot be part of a list of values")
            return Range(first, second)
        if self.at(","):
            if op not in ("==", "!="):
                raise self.error(f"a list of values is only allowed after == or !=, not after {op}", op_start)
            values = [first]
            while self.at(","):
                self.pos += 1
                values.append(self.value())
                if self.at(".."):
                    raise self.error("a range cannot be part of a list of values")
            return ValueList(tuple(values))
        if op in _ORDERING and first.kind not in _COMPARABLE:
            raise self.error(f"{op} needs a number, a quoted string, a date, a time or a date-time", first_at)
        return first

    def value(self) -> Value:
        self.skip_spaces()
        start = self.pos
        if self.at('"'):
            return Value("s", self.quoted(unescape_all=True))
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in _VALUE_STOP or (char == "." and self.at("..")):
                break
            self.pos += 1
        token = self.text[start : self.pos]
        if not token or token[0] in "=!<>~":
            raise self.error("expected a value", start)
        if token in ("true", "false"):
            return Value("b", token == "true")
        if _NUMBER_RE.fullmatch(token):
            number = float(token)
            if not math.isfinite(number):
                raise self.error("number out of range", start)
            return Value("n", number)
        if token[0].isdigit() and (stamp := _temporal(token)):
            return Value("t" if stamp.startswith(_TIME_FLOOR) else "d", stamp)
        if re.fullmatch(r"[+\-]?\d[\d:.TZ+\-]*", token):
            raise self.error(f"{token!r} is not a valid number, date, time or date-time", start)
        return Value("u", token)

    def quoted(self, *, unescape_all: bool) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                chars.append(nxt if (unescape_all or nxt == '"') else char + nxt)
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(chars)
            chars.append(char)
            self.pos += 1
        raise self.error("unterminated quoted string", start)

    def pattern(self) -> Pattern:
        self.skip_spaces()
        start = self.pos
        if self.at('"'):
            regex = self.quoted(unescape_all=False)
        else:
            depth, in_class = 0, False
            while self.pos < len(self.text):
                char = self.text[self.pos]
                if char == "\\":
                    self.pos += 2
                    continue
                if in_class:
                    in_class = char != "]"
                elif char == "[":
                    in_class = True
                    if self.at("[]") or self.at("[^]"):  # ']' first in a class is literal
                        self.pos += 2 if self.at("[]") else 3
                        continue
                elif char == "(":
                    depth += 1
                elif char == ")":
                    if depth == 0:
                        break
                    depth -= 1
                elif char in ";|" and depth == 0:
                    break
                self.pos += 1
            self.pos = min(self.pos, len(self.text))
            regex = self.text[start : self.pos].rstrip()
        if not regex:
            raise self.error("expected a regular expression after ~= or !~=", start)
        if _NAMED_GROUP_RE.search(regex):
            raise self.error("named groups are not portable to PostgreSQL regular expressions", start)
        try:
            re.compile(regex)
        except re.error as exc:
            raise self.error(f"bad regular expression ({exc})", start) from None
        return Pattern(regex)


def parse_q(text: str) -> QNode:
    """Parse an NGSI-LD ``q`` query (CIM 009 clause 4.9).

    Parameters
    ----------
    text : str
        The query, URL-decoded, e.g. ``'(name=="Pisa Tower"|level>=4);address[city]=="Pisa"'``.

    Returns
    -------
    QNode
        The AST: :class:`And`, :class:`Or`, :class:`Exists` or :class:`Comparison`.

    Raises
    ------
    QuerySyntaxError
        With the 1-based position and the text where the grammar is broken.
    """
    return _QParser(text).parse()


class _ScopeParser(_Scanner):
    def __init__(self, text: str) -> None:
        super().__init__("scopeQ", text)

    def parse(self) -> ScopeNode:
        return cast(ScopeNode, self.logical(self.term, "|,"))

    def term(self) -> ScopePattern:
        start = self.pos
        if not self.at("/"):
            raise self.error("a scope starts with '/'")
        while self.pos < len(self.text) and self.text[self.pos] not in ";|,() \t\r\n":
            self.pos += 1
        text = self.text[start : self.pos]
        segments = tuple(text[1:].split("/"))
        if segments == ("#",):
            return ScopePattern(segments)
        for index, segment in enumerate(segments):
            at = start + 1 + sum(len(s) + 1 for s in segments[:index])
            if not segment:
                raise self.error("empty scope level", at)
            if segment == "#" and index != len(segments) - 1:
                raise self.error("'#' is only allowed as the last level", at)
            if segment not in ("+", "#") and ("+" in segment or "#" in segment or '"' in segment):
                raise self.error("'+' and '#' must be whole levels", at)
        return ScopePattern(segments)


def parse_scope_query(text: str) -> ScopeNode:
    """Parse an NGSI-LD ``scopeQ`` (CIM 009 clause 4.19).

    Parameters
    ----------
    text : str
        E.g. ``'/Brussels/#,/Ghent/+'``: ``;`` is AND, ``|`` and ``,`` are OR, parentheses group.

    Raises
    ------
    QuerySyntaxError
        On an empty level, a misplaced ``#`` or ``+``, or unbalanced parentheses.
    """
    return cast(ScopeNode, _ScopeParser(text).parse())


class _TypeParser(_Scanner):
    def __init__(self, text: str) -> None:
        super().__init__("type", text)

    def parse(self) -> TypeNode:
        return cast(TypeNode, self.logical(self.term, "|,"))

    def term(self) -> TypeName:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ";|,() \t\r\n":
            self.pos += 1
        if self.pos == start:
            raise self.error("expected an entity type")
        return TypeName(self.text[start : self.pos])


def parse_type_query(text: str) -> TypeNode:
    """Parse an entity type selection (CIM 009 clause 4.17): ``A,B``, ``A|B``, ``(A;B)|C``.

    Parameters
    ----------
    text : str
        Type names, compact or full IRIs; ``,`` and ``|`` are OR, ``;`` is AND (an entity has several
        types), parentheses group.

    Raises
    ------
    QuerySyntaxError
        On an empty type name or unbalanced parentheses.
    """
    return cast(TypeNode, _TypeParser(text).parse())


# --------------------------------------------------------------------------------------------------
# Attribute resolution
# --------------------------------------------------------------------------------------------------


def resolve_attribute(path: AttributePath, expand: Expand) -> tuple[str, str]:
    """The ``(attr, path)`` of ``attr_index`` rows that a ``q`` attribute path addresses.

    Parameters
    ----------
    path : AttributePath
        As parsed.
    expand : callable
        Term to IRI with the active @context.

    Returns
    -------
    tuple of str
        Expanded attribute IRI, index path (see the module docstring for the grammar).
    """
    index_path = ".".join(expand(s) for s in path.subattributes)
    if path.metadata:
        index_path = _join(index_path, path.metadata)
    return expand(path.name), index_path + "".join(_key_segment(k) for k in path.keys)


# --------------------------------------------------------------------------------------------------
# SQL compilation
# --------------------------------------------------------------------------------------------------


class _bytewise(FunctionElement[str]):
    """A text column compared in code-point order (``COLLATE "C"`` on PostgreSQL)."""

    type = Text()
    inherit_cache = True
    name = "bytewise"


@compiles(_bytewise)
def _bytewise_default(element: _bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_bytewise, "postgresql")
def _bytewise_postgresql(element: _bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)} COLLATE "C")'


_ai = attr_index.c


def _eq_condition(values: Sequence[Value], expand: Expand) -> ColumnElement[bool]:
    numbers = sorted({cast(float, v.value) for v in values if v.kind == "n"})
    booleans = sorted({1.0 if v.value else 0.0 for v in values if v.kind == "b"})
    stamps = sorted({cast(str, v.value) for v in values if v.kind in ("d", "t")})
    texts: set[str] = set()
    for v in values:
        if v.kind == "s":
            texts.add(cast(str, v.value))
        elif v.kind == "u":
            texts.update((cast(str, v.value), expand(cast(str, v.value))))
    parts: list[ColumnElement[bool]] = []
    for kind, column, items in (("n", _ai.num, numbers), ("b", _ai.num, booleans), ("d", _ai.txt, stamps)):
        if items:
            parts.append(and_(_ai.kind == kind, column == items[0] if len(items) == 1 else column.in_(items)))
    if texts:
        ordered = sorted(texts)
        match = _ai.txt == ordered[0] if len(ordered) == 1 else _ai.txt.in_(ordered)
        parts.append(and_(_ai.kind.in_(("s", "r")), match))
    return or_(*parts) if len(parts) != 1 else parts[0]


def _compare(column: Any, op: str, bound: Any) -> ColumnElement[bool]:
    match op:
        case ">":
            return cast(ColumnElement[bool], column > bound)
        case ">=":
            return cast(ColumnElement[bool], column >= bound)
        case "<":
            return cast(ColumnElement[bool], column < bound)
        case _:
            return cast(ColumnElement[bool], column <= bound)


def _order_condition(op: str, value: Value) -> ColumnElement[bool]:
    if value.kind == "n":
        return and_(_ai.kind == "n", _compare(_ai.num, op, value.value))
    if value.kind == "s":
        return and_(_ai.kind == "s", _compare(_bytewise(_ai.txt), op, value.value))
    guard = _ai.txt < _TIME_FLOOR if value.kind == "d" else _ai.txt >= _TIME_FLOOR
    return and_(_ai.kind == "d", _compare(_ai.txt, op, value.value), guard)


def _range_condition(rng: Range) -> ColumnElement[bool]:
    low, high = rng.low.value, rng.high.value
    if rng.low.kind == "n":
        return and_(_ai.kind == "n", _ai.num >= low, _ai.num <= high)
    if rng.low.kind == "s":
        text = _bytewise(_ai.txt)
        return and_(_ai.kind == "s", text >= low, text <= high)
    return and_(_ai.kind == "d", _ai.txt >= low, _ai.txt <= high)


def _match_condition(op: Operator, operand: Operand, expand: Expand) -> ColumnElement[bool]:
    """The condition on one ``attr_index`` row for the positive form of a comparison."""
    if isinstance(operand, Pattern):
        return and_(_ai.kind == "s", _ai.txt.regexp_match(operand.regex))
    if isinstance(operand, Range):
        return _range_condition(operand)
    if isinstance(operand, ValueList):
        return _eq_condition(operand.values, expand)
    if op in ("==", "!="):
        return _eq_condition([operand], expand)
    return _order_condition(op, operand)


DRIVE_LIMIT = 2000
"""A term matching fewer ``attr_index`` / ``entity_types`` rows than this drives the query."""


def _member(pk: Any, selection: Select[Any], connection: Connection) -> ColumnElement[bool]:
    """``pk`` in a (small) set computed once: the database starts from that set."""
    if connection.dialect.name == "postgresql":
        # ANY(ARRAY(...)) is an init-plan: PostgreSQL computes the set first, then probes the pk.
        return cast(ColumnElement[bool], pk == any_(func.array(selection.scalar_subquery())))
    return cast(ColumnElement[bool], pk.in_(selection))


def _per_entity(selection: Select[Any], connection: Connection | None) -> ColumnElement[bool]:
    """EXISTS evaluated entity by entity (after a probe chose the driving term).

    On PostgreSQL ``OFFSET 0`` keeps the sub-query a per-row sub-plan instead of a semi-join
    whose row estimate (attr_index statistics mix every attribute) is often far off.
    """
    if connection is not None and connection.dialect.name == "postgresql":
        selection = selection.offset(0)
    return selection.exists()


def _probe(connection: Connection, selection: Select[Any], limit: int) -> int:
    """How many rows ``selection`` has, counting no further than ``limit`` (an index range scan)."""
    capped = selection.with_only_columns(literal(1)).limit(limit).subquery()
    return int(connection.execute(select(func.count()).select_from(capped)).scalar_one())


def _drive(
    conjuncts: Sequence[Any],
    selection: Callable[[Any], tuple[Select[Any], Select[Any]] | None],
    connection: Connection | None,
    limit: int,
) -> tuple[int, Select[Any]] | None:
    """The most selective conjunct under ``limit`` rows, with its exact row selection, if any.

    ``selection(term)`` gives (probe, exact): the probe may over-count (it only uses indexed
    columns, so the count is an index-only range scan); the exact selection drives the query.
    """
    if connection is None:
        return None
    best: tuple[int, int, Select[Any]] | None = None
    for index, term in enumerate(conjuncts):
        chosen = selection(term)
        if chosen is None:
            continue
        count = _probe(connection, chosen[0], limit)
        if count < limit and (best is None or count < best[0]):
            best = (count, index, chosen[1])
        if count == 0:
            break
    return None if best is None else (best[1], best[2])


def _index_condition(op: Operator, operand: Operand, expand: Expand) -> ColumnElement[bool]:
    """A superset of :func:`_match_condition` on the indexed columns only (num or txt)."""
    if isinstance(operand, Range):
        column = _ai.num if operand.low.kind == "n" else _ai.txt
        return and_(column >= operand.low.value, column <= operand.high.value)
    if isinstance(operand, Value) and op in _ORDERING:
        if operand.kind == "n":
            return _compare(_ai.num, op, operand.value)
        return _compare(_ai.txt, op, operand.value)
    values = operand.values if isinstance(operand, ValueList) else (cast(Value, operand),)
    numbers = {
        (1.0 if v.value else 0.0) if v.kind == "b" else v.value for v in values if v.kind in ("n", "b")
    }
    texts = {v.value for v in values if v.kind in ("s", "d", "t", "u")}
    texts |= {expand(cast(str, v.value)) for v in values if v.kind == "u"}
    parts = []
    if numbers:
        parts.append(_ai.num.in_(sorted(numbers)))  # type: ignore[type-var]
    if texts:
        parts.append(_ai.txt.in_(sorted(cast(set[str], texts))))
    return or_(*parts) if len(parts) > 1 else parts[0]


def q_filter(
    node: QNode,
    expand: Expand,
    *,
    entity_pk: Any = None,
    connection: Connection | None = None,
    drive_limit: int = DRIVE_LIMIT,
) -> ColumnElement[bool]:
    """Compile a ``q`` AST to a boolean SQL expression over ``entities``.

    Every term becomes ``EXISTS (SELECT entity_pk FROM attr_index WHERE entity_pk = <pk> AND
    attr = :a AND path = :p AND <leaf condition>)``, served by the (entity_pk, attr) index; ``!=``
    and ``!~=`` add ``NOT EXISTS``. Correlated EXISTS are fast when many entities match (the page
    fills after a few probes) and slow when few do (every entity is probed). With a
    ``connection``, each positive top-level conjunct (not a regular expression) is first counted
    on the (attr, path, num|txt) index up to ``drive_limit`` rows; the most selective one under
    the limit is compiled as ``pk IN (SELECT entity_pk ...)`` (``pk = ANY(ARRAY(...))`` on
    PostgreSQL) so that the database starts from its few rows. Both forms select the same rows.

    Parameters
    ----------
    node : QNode
        From :func:`parse_q`.
    expand : callable
        Term to IRI with the active @context (attribute names, sub-attributes, URI/term values).
    entity_pk : column, optional
        The entity key to correlate with (default ``entities.c.pk``; pass an alias's column).
    connection : Connection, optional
        Enables the selectivity probe (one capped count per candidate term).
    drive_limit : int, optional
        Rows under which a term drives the query (default :data:`DRIVE_LIMIT`).

    Returns
    -------
    ColumnElement
        Use in ``select(entities).where(...)``. Regular expressions need
        :func:`install_sqlite_functions` on SQLite.
    """
    pk = entities.c.pk if entity_pk is None else entity_pk

    def selection(attr: str, path: str, *conditions: ColumnElement[bool]) -> Select[Any]:
        return select(_ai.entity_pk).where(_ai.attr == attr, _ai.path == path, *conditions)

    def rows(attr: str, path: str, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
        return _per_entity(selection(attr, path, *conditions).where(_ai.entity_pk == pk), connection)

    def build(n: QNode) -> ColumnElement[bool]:
        if isinstance(n, And):
            return and_(*(build(cast(QNode, i)) for i in n.items))
        if isinstance(n, Or):
            return or_(*(build(cast(QNode, i)) for i in n.items))
        attr, path = resolve_attribute(n.path, expand)
        if isinstance(n, Exists):
            return rows(attr, path)
        condition = _match_condition(n.op, n.operand, expand)
        if n.op == "!=":
            return and_(rows(attr, path), not_(rows(attr, path, condition)))
        if n.op == "!~=":
            return and_(rows(attr, path, _ai.kind == "s"), not_(rows(attr, path, condition)))
        return rows(attr, path, condition)

    def driving_rows(n: Any) -> tuple[Select[Any], Select[Any]] | None:
        if isinstance(n, Exists):
            exact = selection(*resolve_attribute(n.path, expand))
            return exact, exact
        if isinstance(n, Comparison) and n.op not in ("!=", "~=", "!~="):
            attr, path = resolve_attribute(n.path, expand)
            probe = selection(attr, path, _index_condition(n.op, n.operand, expand))
            return probe, selection(attr, path, _match_condition(n.op, n.operand, expand))
        return None

    conjuncts: Sequence[QNode] = cast(Sequence[QNode], node.items) if isinstance(node, And) else (node,)
    driver = _drive(conjuncts, driving_rows, connection, drive_limit)
    if driver is None or connection is None:
        return build(node)
    parts = [
        _member(pk, driver[1], connection) if i == driver[0] else build(term)
        for i, term in enumerate(conjuncts)
    ]
    return and_(*parts) if len(parts) > 1 else parts[0]


def scope_filter(node: ScopeNode, *, entity_pk: Any = None) -> ColumnElement[bool]:
    """Compile a ``scopeQ`` AST to a boolean SQL expression (EXISTS on ``entity_scopes``).

    Parameters
    ----------
    node : ScopeNode
        From :func:`parse_scope_query`.
    entity_pk : column, optional
        The entity key to correlate with (default ``entities.c.pk``).
    """
    pk = entities.c.pk if entity_pk is None else entity_pk
    scope = entity_scopes.c.scope

    def term(pattern: ScopePattern) -> ColumnElement[bool]:
        segments = pattern.segments
        fixed: list[str] = []
        for segment in segments:
            if segment in ("+", "#"):
                break
            fixed.append(segment)
        exact = "/" + "/".join(fixed)
        if len(fixed) == len(segments):
            condition: ColumnElement[bool] = scope == exact
        elif segments == ("#",):
            condition = true()
        else:
            prefix = exact.rstrip("/") + "/"
            below = and_(_bytewise(scope) >= prefix, _bytewise(scope) < prefix[:-1] + "0")
            if "+" in segments:
                condition = and_(below, scope.regexp_match(_scope_regex(segments)))
            else:  # '/a/b/#': '/a/b' itself or anything below it
                condition = or_(scope == exact, below)
        return select(entity_scopes.c.entity_pk).where(entity_scopes.c.entity_pk == pk, condition).exists()

    def build(n: ScopeNode) -> ColumnElement[bool]:
        if isinstance(n, And):
            return and_(*(build(cast(ScopeNode, i)) for i in n.items))
        if isinstance(n, Or):
            return or_(*(build(cast(ScopeNode, i)) for i in n.items))
        return term(n)

    return build(node)


def _scope_regex(segments: tuple[str, ...]) -> str:
    parts = []
    for segment in segments:
        if segment == "+":
            parts.append("/[^/]+")
        elif segment == "#":
            parts.append("(/.*)?")
        else:
            parts.append("/" + re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", segment))
    return "^" + "".join(parts) + "$"


def type_filter(
    node: TypeNode,
    expand: Expand,
    *,
    entity_pk: Any = None,
    connection: Connection | None = None,
    drive_limit: int = DRIVE_LIMIT,
) -> ColumnElement[bool]:
    """Compile a type expression to a boolean SQL expression (EXISTS on ``entity_types``).

    Parameters
    ----------
    node : TypeNode
        From :func:`parse_type_query`.
    expand : callable
        Type name to IRI with the active @context.
    entity_pk : column, optional
        The entity key to correlate with (default ``entities.c.pk``).
    connection : Connection, optional
        Enables the selectivity probe: a type (or ``,``/``|`` list of types) held by fewer than
        ``drive_limit`` entities is compiled as ``pk IN (...)`` so that the query starts from
        them (see :func:`q_filter`).
    drive_limit : int, optional
        Default :data:`DRIVE_LIMIT`.
    """
    pk = entities.c.pk if entity_pk is None else entity_pk
    column = entity_types.c.type

    def selection(types: list[str]) -> Select[Any]:
        condition = column == types[0] if len(types) == 1 else column.in_(sorted(set(types)))
        return select(entity_types.c.entity_pk).where(condition)

    def has(types: list[str]) -> ColumnElement[bool]:
        return _per_entity(selection(types).where(entity_types.c.entity_pk == pk), connection)

    def names(n: TypeNode) -> list[str] | None:
        if isinstance(n, TypeName):
            return [expand(n.name)]
        if isinstance(n, Or) and all(isinstance(i, TypeName) for i in n.items):
            return [expand(cast(TypeName, i).name) for i in n.items]
        return None

    def build(n: TypeNode) -> ColumnElement[bool]:
        if (plain := names(n)) is not None:
            return has(plain)
        if isinstance(n, Or):
            listed = [expand(i.name) for i in n.items if isinstance(i, TypeName)]
            rest = [build(cast(TypeNode, i)) for i in n.items if not isinstance(i, TypeName)]
            return or_(*([has(listed)] if listed else []), *rest)
        return and_(*(build(cast(TypeNode, i)) for i in cast(And, n).items))

    def driving_rows(n: Any) -> tuple[Select[Any], Select[Any]] | None:
        plain = names(n)
        return None if plain is None else (selection(plain), selection(plain))

    conjuncts: Sequence[TypeNode] = cast(Sequence[TypeNode], node.items) if isinstance(node, And) else (node,)
    driver = _drive(conjuncts, driving_rows, connection, drive_limit)
    if driver is None or connection is None:
        return build(node)
    parts = [
        _member(pk, driver[1], connection) if i == driver[0] else build(term)
        for i, term in enumerate(conjuncts)
    ]
    return and_(*parts) if len(parts) > 1 else parts[0]


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _sqlite_regexp(pattern: str | None, value: str | None) -> int | None:
    if pattern is None or value is None:
        return None
    return 1 if _regex(pattern).search(value) else 0


def install_sqlite_functions(dbapi_connection: Any) -> None:
    """Register ``regexp(pattern, value)`` (Python :func:`re.search`) on a sqlite3 connection.

    Call it from a ``connect`` event of every SQLite engine::

        event.listen(engine, "connect", lambda conn, _: install_sqlite_functions(conn))

    Parameters
    ----------
    dbapi_connection : sqlite3.Connection
        The raw DB-API connection.
    """
    dbapi_connection.create_function("regexp", 2, _sqlite_regexp, deterministic=True)


# --------------------------------------------------------------------------------------------------
# Python evaluation
# --------------------------------------------------------------------------------------------------


def _at_keys(value: Any, keys: Sequence[str]) -> list[Leaf]:
    """Leaves of ``value`` at the compound key path ``keys`` (arrays transparent)."""
    if isinstance(value, list):
        if not value:
            return [] if keys else [_MARKER]
        return [leaf for item in value for leaf in _at_keys(item, keys)]
    if isinstance(value, dict) and not _is_typed_literal(value):
        if not keys:
            return [_MARKER]
        return _at_keys(value[keys[0]], keys[1:]) if keys[0] in value else []
    return [] if keys else _scalar_leaves(value)


def _target_leaves(instance: dict[str, Any], keys: Sequence[str]) -> list[Leaf]:
    kind, value = _target(instance)
    if kind in ("Property", "JsonProperty", "ListProperty"):
        return _at_keys(value, keys)
    if keys and kind != "LanguageProperty":
        return []
    if kind in ("Relationship", "ListRelationship"):
        return _strings(value, "r")
    if kind == "VocabularyProperty":
        return _strings(value, "s")
    if kind == "LanguageProperty" and isinstance(value, dict) and value:
        if keys:
            return _at_keys(value[keys[0]], keys[1:]) if keys[0] in value else []
        return [leaf for text in value.values() for leaf in _value_leaves(text)]
    return [] if keys else [_MARKER]


def _leaves(doc: dict[str, Any], path: AttributePath, expand: Expand) -> list[Leaf]:
    attrs = doc.get("attrs") or {}
    instances = _instances(attrs.get(expand(path.name)))
    for sub in path.subattributes:
        iri = expand(sub)
        instances = [
            nested for i in instances if _is_subattribute(iri, i.get(iri)) for nested in _instances(i[iri])
        ]
    if path.metadata:
        return [
            leaf
            for i in instances
            if path.metadata in i
            for leaf in _meta_leaves(path.metadata, i[path.metadata])
        ]
    return [leaf for i in instances for leaf in _target_leaves(i, path.keys)]


def _leaf_equals(leaf: Leaf, value: Value, expand: Expand) -> bool:
    kind, num, txt = leaf
    if value.kind == "n":
        return kind == "n" and num == value.value
    if value.kind == "b":
        return kind == "b" and num == (1.0 if value.value else 0.0)
    if value.kind in ("d", "t"):
        return kind == "d" and txt == value.value
    if kind not in ("s", "r"):
        return False
    if value.kind == "u":
        return txt == value.value or txt == expand(cast(str, value.value))
    return txt == value.value


def _ordered(leaf: Leaf, kind: str) -> Any:
    """The comparable key of a leaf for a literal of ``kind``, or None if not comparable."""
    leaf_kind, num, txt = leaf
    if kind == "n":
        return num if leaf_kind == "n" else None
    if kind == "s":
        return txt if leaf_kind == "s" else None
    if leaf_kind != "d" or txt is None:
        return None
    return txt if (txt >= _TIME_FLOOR) == (kind == "t") else None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _leaf_matches(leaf: Leaf, op: Operator, operand: Operand, expand: Expand) -> bool:
    if isinstance(operand, Pattern):
        return leaf[0] == "s" and _regex(operand.regex).search(cast(str, leaf[2])) is not None
    if isinstance(operand, Range):
        key = _ordered(leaf, operand.low.kind)
        return key is not None and operand.low.value <= key <= operand.high.value  # type: ignore[operator]
    if isinstance(operand, ValueList):
        return any(_leaf_equals(leaf, v, expand) for v in operand.values)
    if op in ("==", "!="):
        return _leaf_equals(leaf, operand, expand)
    key = _ordered(leaf, operand.kind)
    return key is not None and _COMPARE[op](key, operand.value)


def matches(node: QNode, doc: dict[str, Any], expand: Expand) -> bool:
    """Evaluate a ``q`` AST on an expanded entity document, with the semantics of :func:`q_filter`.

    Parameters
    ----------
    node : QNode
        From :func:`parse_q`.
    doc : dict
        The stored entity document (expanded form, see :func:`index_rows`).
    expand : callable
        Term to IRI with the active @context.
    """
    if isinstance(node, And):
        return all(matches(cast(QNode, i), doc, expand) for i in node.items)
    if isinstance(node, Or):
        return any(matches(cast(QNode, i), doc, expand) for i in node.items)
    leaves = _leaves(doc, node.path, expand)
    if isinstance(node, Exists):
        return bool(leaves)
    hit = any(_leaf_matches(leaf, node.op, node.operand, expand) for leaf in leaves)
    if node.op == "!=":
        return bool(leaves) and not hit
    if node.op == "!~=":
        return any(leaf[0] == "s" for leaf in leaves) and not hit
    return hit


def _scope_term_matches(segments: tuple[str, ...], scope: str) -> bool:
    if segments == ("#",):
        return True
    if not scope.startswith("/"):
        return False
    levels = scope[1:].split("/")
    for index, segment in enumerate(segments):
        if segment == "#":
            return True
        if index >= len(levels) or (segment != "+" and segment != levels[index]):
            return False
    return len(levels) == len(segments)


def scope_matches(node: ScopeNode, scopes: Iterable[str]) -> bool:
    """Evaluate a ``scopeQ`` AST on the scopes of an entity (same semantics as :func:`scope_filter`).

    Parameters
    ----------
    node : ScopeNode
        From :func:`parse_scope_query`.
    scopes : iterable of str
        The entity's ``scope`` values, e.g. ``['/Brussels/Ixelles']``.
    """
    values = list(scopes)
    if isinstance(node, And):
        return all(scope_matches(cast(ScopeNode, i), values) for i in node.items)
    if isinstance(node, Or):
        return any(scope_matches(cast(ScopeNode, i), values) for i in node.items)
    return any(_scope_term_matches(node.segments, s) for s in values)


def type_matches(node: TypeNode, types: Iterable[str], expand: Expand) -> bool:
    """Evaluate a type expression on the (expanded) types of an entity.

    Parameters
    ----------
    node : TypeNode
        From :func:`parse_type_query`.
    types : iterable of str
        The entity's expanded type IRIs.
    expand : callable
        Type name to IRI with the active @context.
    """
    values = set(types)
    if isinstance(node, And):
        return all(type_matches(cast(TypeNode, i), values, expand) for i in node.items)
    if isinstance(node, Or):
        return any(type_matches(cast(TypeNode, i), values, expand) for i in node.items)
    return expand(node.name) in values


def iter_terms(node: Node) -> Iterator[Node]:
    """The leaves (terms) of an AST, left to right (e.g. to list the attributes a query uses)."""
    if isinstance(node, And | Or):
        for item in node.items:
            yield from iter_terms(item)
    else:
        yield node
