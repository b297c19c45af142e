"""A griffe extension for the API reference: Sphinx cross-reference roles in docstrings become code.

steelflow's docstrings are prose that names other objects the Sphinx way (``:func:`~steelflow.x.f```).
Markdown has no such roles, so ``:role:`target``` is shown as the code span ``target`` (``~a.b.c`` as
``c``, as Sphinx shows it), and reStructuredText's double-backtick literals are left to Markdown, which
reads them as code spans too.
"""

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|obj|exc|const):`([^`]+)`")


def as_code(match: re.Match[str]) -> str:
    """The role's target as a code span; a leading ``~`` keeps only the last dotted part."""
    target = match.group(1).strip()
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrites every docstring's Sphinx roles once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(as_code, obj.docstring.value)
