"""HTML escaping with one rule: every string is escaped unless it is :class:`Markup`.

Solver names, problem names, messages and the command line come from users and plugins, so
the report escapes all text by default; only fragments this package builds itself (tables,
SVG from matplotlib) are wrapped in ``Markup`` and inserted as they are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable


class Markup(str):
    """A string of trusted HTML, inserted without escaping."""

    __slots__ = ()


def esc(value: object) -> Markup:
    """``value`` as safe HTML: Markup passes through, anything else is str()-ed and escaped."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def tag(name: str, content: object = "", **attrs: object) -> Markup:
    """``<name attrs>content</name>``; attribute values and non-Markup content are escaped.

    A trailing underscore in an attribute name is dropped (``class_`` -> ``class``).
    """
    parts = [name]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        parts.append(f'{key.rstrip("_").replace("_", "-")}="{esc(value)}"')
    return Markup(f"<{' '.join(parts)}>{esc(content)}</{name}>")


def join(fragments: Iterable[object], sep: str = "\n") -> Markup:
    """Escape and concatenate fragments."""
    return Markup(sep.join(esc(f) for f in fragments))


_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """A lowercase, HTML-id-safe form of ``text`` (may be empty; callers add a prefix)."""
    return _SLUG.sub("-", text.lower()).strip("-")
