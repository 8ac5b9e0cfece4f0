"""docs/resource.md shows every validation message exactly as it is printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ebbtide.core.errors import SpecError
from ebbtide.spec import validate_document
from tests.spec.cases import INVALID_CASES

RESOURCE_DOC = Path(__file__).parents[2] / "docs" / "resource.md"


@pytest.mark.parametrize(
    ("case", "document"), [pytest.param(case, doc, id=case) for case, doc, _, _ in INVALID_CASES]
)
def test_the_reference_shows_the_message_as_printed(case: str, document: dict[str, object]) -> None:
    with pytest.raises(SpecError) as raised:
        validate_document(document, "endpoint.yaml")
    shown = re.search(
        r"\*\*" + re.escape(case) + r"\*\*\n\n```\n(.*?)\n```", RESOURCE_DOC.read_text(), re.S
    )
    assert shown is not None, f"docs/resource.md has no block for {case}"
    assert shown.group(1) == "\n".join(raised.value.problems)
