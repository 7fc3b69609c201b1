"""The ``pick`` / ``omit`` projection language (CIM 009 clause 4.21): ``id,name,locatedAt{name}``.

A projection is a tree: each entity member name maps to None (the member itself) or to the
projection that applies to the entity a Relationship links to (used with ``join``).
"""

from __future__ import annotations

import re

from bright.twin.errors import BadRequestData

Projection = dict[str, "Projection | None"]
_NAME = re.compile(r"[A-Za-z0-9_@:.\-#/]")


def parse_projection(text: str, what: str = "pick") -> Projection:
    """Parse a projection expression.

    Raises
    ------
    BadRequestData
        Empty members, consecutive separators, unbalanced or empty braces, invalid characters;
        the message names the parameter and the position.
    """
    pos = 0

    def fail(msg: str) -> BadRequestData:
        return BadRequestData(f"{what}: {msg} at position {pos} in {text!r}")

    def members(depth: int) -> Projection:
        nonlocal pos
        out: Projection = {}
        while True:
            start = pos
            while pos < len(text) and _NAME.match(text[pos]):
                pos += 1
            name = text[start:pos]
            if not name:
                raise fail("an entity member name is expected")
            sub: Projection | None = None
            if pos < len(text) and text[pos] == "{":
                pos += 1
                sub = members(depth + 1)
                if pos >= len(text) or text[pos] != "}":
                    raise fail("unclosed brace")
                pos += 1
            out[name] = sub
            if pos >= len(text):
                if depth > 0:
                    raise fail("unclosed brace")
                return out
            if text[pos] == ",":
                pos += 1
                continue
            if text[pos] == "}" and depth > 0:
                return out
            raise fail(f"unexpected character {text[pos]!r}")

    if not text:
        raise BadRequestData(f"{what} is empty")
    return members(0)
