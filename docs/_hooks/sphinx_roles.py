"""mkdocs hook: show the Sphinx cross-reference roles of wildfer's docstrings as plain code.

Docstrings write ``:class:`~wildfer.models.loader.Classifier```; mkdocstrings renders that as
``:class:<code>~wildfer.models.loader.Classifier</code>``. This keeps the code span, drops the
role, and shortens ``~a.b.C`` to ``C`` as Sphinx does. Doctest directives are dropped from
rendered examples.
"""

import re

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):<code>(~?)([^<]+)</code>")
DOCTEST = re.compile(r"\s*# doctest: \+\w+")


def _role(match: re.Match) -> str:
    short, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html, page, config, files):
    return DOCTEST.sub("", ROLE.sub(_role, html))
