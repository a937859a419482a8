"""Every experiment's report explains its protocol in plain Markdown: no Sphinx markup reaches a reader."""
import ast
import re
from pathlib import Path

import pytest

from convcorr.experiments import EXPERIMENTS, get_experiment

#: Sphinx / reST markup that means nothing in Markdown: roles (:func:`x`, :py:class:`x`) and double backticks
SPHINX = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|obj|exc|ref|doc|term):`|``")


def test_the_markup_pattern():
    for bad in (":func:`convcorr.pck.evaluate`", ":py:class:`Report`", "``workers``", ":mod:`stats`"):
        assert SPHINX.search(bad), bad
    for ok in ("`workers` and `top`", "alpha x max(box height, box width)", "ratio 1:2", "**Data.**"):
        assert not SPHINX.search(ok), ok


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_protocol_text_is_plain_markdown(name):
    text = get_experiment(name).PROTOCOL
    assert not SPHINX.search(text), SPHINX.search(text).group(0)
    assert "**The paper.**" in text
    assert len(text.split()) > 80 and "\n\n" in text  # paragraphs for a reader, not a one-liner


def _report_literals(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that are not docstrings (report text is built from these)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_no_sphinx_markup_in_report_text(name):
    path = Path(get_experiment(name).__file__)
    bad = [(line, s[:80]) for line, s in _report_literals(path) if SPHINX.search(s)]
    assert bad == [], f"{path.name}: Sphinx markup in report text: {bad}"
    assert "__doc__" not in path.read_text()  # the module docstring is for developers, not the report


def test_a_written_report_has_the_protocol_and_no_sphinx_markup(tmp_path):
    from convcorr.experiments import run
    from convcorr.experiments.table1 import PROTOCOL

    text = run("table1", tmp_path, "paper").read_text()
    assert f"## Protocol\n\n{PROTOCOL}\n" in text
    body = [line for line in text.splitlines() if not line.startswith("_Generated ")]  # (a command may need ``)
    assert body and not any(SPHINX.search(line) for line in body)
