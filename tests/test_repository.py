"""The repository's own files: the licence the package metadata names, and documents that record figures by date,
machine and command rather than by the work periods that produced them."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Work-log wording: numbered work periods and references to the defect tracker.
WORK_LOG = re.compile(
    r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|this|same|that|next|"
    r"previous|last)\s+session(?:'s)?\b|\bsession's\b|\bissue\s+\d+|\bissue's\b", re.IGNORECASE)


def _texts() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
    return files


def test_license_is_the_apache_2_text_the_metadata_names():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0"
    assert "LICENSE" in meta.get("license-files", [])
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text
    # The full text, not a notice: all nine sections of the terms and their end.
    for n, title in enumerate(["Definitions", "Grant of Copyright License", "Grant of Patent License",
                               "Redistribution", "Submission of Contributions", "Trademarks",
                               "Disclaimer of Warranty", "Limitation of Liability",
                               "Accepting Warranty or Additional Liability"], start=1):
        assert f"{n}. {title}." in text, title
    assert "END OF TERMS AND CONDITIONS" in text


def test_no_work_log_wording_in_docs_or_code():
    found = []
    for path in _texts():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if WORK_LOG.search(line):
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_performance_opens_with_one_table_of_current_figures():
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    before_first_section = text.split("\n## ", 1)[0]
    lines = before_first_section.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    assert table, "performance.md must open with a table"
    assert table == list(range(table[0], table[-1] + 1)), "one table, not several"
    header = [c.strip() for c in lines[table[0]].strip("|").split("|")]
    assert "floor (same run)" in header and "command" in header
    floor, command = header.index("floor (same run)"), header.index("command")
    rows = [[c.strip() for c in lines[i].strip("|").split("|")] for i in table[2:]]
    assert len(rows) >= 10
    for row in rows:
        assert len(row) == len(header), row[0]
        assert "`" in row[command] and "bench/" in row[command], row[0]
    # A floor beside nearly every figure (a few figures have no meaningful one and say so by leaving it empty).
    assert sum(1 for row in rows if row[floor]) >= len(rows) - 1
    assert (ROOT / "docs" / "performance-history.md").exists()
