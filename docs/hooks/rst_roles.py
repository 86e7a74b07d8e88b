"""MkDocs hook: show the Sphinx roles of the docstrings as plain code in the API reference.

The docstrings cross-reference with Sphinx roles (``:func:`~instructkit.io.write_atomic```),
which Markdown renders as ``:func:<code>~instructkit.io.write_atomic</code>``. This drops the
role and, as Sphinx does for a leading ``~``, keeps only the last name; a paragraph that ends
in reST's ``::`` (a literal block follows) ends in one colon.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|exc|obj|const):<code>(~?)([^<]+)</code>")
LITERAL = re.compile(r"::</p>")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def strip_roles(html: str) -> str:
    """The page's HTML with every Sphinx role shown as its target in code."""
    return LITERAL.sub(":</p>", ROLE.sub(_code, html))


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: only the API pages hold docstrings."""
    return strip_roles(html) if page.file.src_uri.startswith("api/") else html
