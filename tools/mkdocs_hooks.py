"""MkDocs hooks (mkdocs.yml): the build fails when a public name has no entry in the
reference, so a name added to `__all__` without a docstring, or outside the modules
the reference renders, cannot be published undocumented."""

from __future__ import annotations

import re
from typing import Any

from mkdocs.exceptions import PluginError

import wavespeed_outpaint

REFERENCE = "reference.md"


def on_page_content(html: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != REFERENCE:
        return html
    documented = set(re.findall(r'id="wavespeed_outpaint\.[\w.]*?\.?(\w+)"', html))
    missing = sorted(set(wavespeed_outpaint.__all__) - {"__version__"} - documented)
    if missing:
        raise PluginError(f"public names with no entry in {REFERENCE}: {', '.join(missing)}")
    return html
