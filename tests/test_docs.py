"""The examples in docs/ run and print what the pages say."""

import doctest
import pathlib

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_doc_examples(page):
    result = doctest.testfile(str(DOCS / page), module_relative=False)
    assert result.failed == 0
