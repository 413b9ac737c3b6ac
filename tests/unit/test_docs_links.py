"""The README, docs/ and the dbt docs link only to files in the repository, and every link resolves.

A clone has nothing outside the repository: the data contract lives in docs/data-contract.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [
        REPO_ROOT / "README.md",
        REPO_ROOT / "dbt_project" / "README.md",
        *(REPO_ROOT / "docs").glob("*.md"),
        *(REPO_ROOT / "dbt_project" / "models").rglob("*.md"),
    ]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


def test_the_documents_are_found():
    names = {p.relative_to(REPO_ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/data-contract.md", "dbt_project/models/docs.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(document: Path):
    for target in links(document):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not files
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (document.parent / file_part).resolve() if file_part else document
        assert resolved.is_relative_to(REPO_ROOT), f"{document.name} links outside the repository: {target}"
        assert resolved.exists(), f"{document.name} links to a missing file: {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{document.name}: no heading for #{anchor} in {resolved.name}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_nothing_points_at_the_shared_folder_outside_the_repository(document: Path):
    assert not re.search(r"(\.\./)?shared/CONTRACT", document.read_text()), document


def test_readme_and_dbt_overview_name_the_contract():
    assert "](docs/data-contract.md)" in (REPO_ROOT / "README.md").read_text()
    overview = (REPO_ROOT / "dbt_project" / "models" / "docs.md").read_text().split("{% enddocs %}")[0]
    assert "docs/data-contract.md" in overview


def test_the_contract_keeps_the_section_numbers_the_code_cites():
    headings = {
        m.group(1)
        for m in re.finditer(
            r"^#{2,3} (\d+(?:\.\d+)?)\.? ", (REPO_ROOT / "docs" / "data-contract.md").read_text(), re.MULTILINE
        )
    }
    assert {"1", "1.1", "1.2", "1.3", "2", "3", "4", "5", "6"} <= headings
