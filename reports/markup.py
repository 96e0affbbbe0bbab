"""HTML escaping with one rule: every string is escaped unless it is :class:`Markup`.

Solver names, problem names, messages and the command line come from users and plugins, so
the report escapes all text by default; only fragments this package builds itself (tables,
SVG from matplotlib) are wrapped in ``Markup`` and inserted as they are. ``Markup`` *is*
:class:`markupsafe.Markup`, the class Jinja2 trusts, so a fragment built here with
:func:`tag` goes into a template unescaped and any other string is escaped by the library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from markupsafe import Markup, escape

__all__ = ["Markup", "esc", "join", "slug", "tag"]


def esc(value: object) -> Markup:
    """``value`` as safe HTML: Markup passes through, anything else is str()-ed and escaped."""
    return escape(value)


def tag(name: str, content: object = "", **attrs: object) -> Markup:
    """``<name attrs>content</name>``; attribute values and non-Markup content are escaped.

    A trailing underscore in an attribute name is dropped (``class_`` -> ``class``); other
    underscores become hyphens (``data_sort`` -> ``data-sort``).
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
