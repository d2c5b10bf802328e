"""What a newcomer reads holds together: every relative link of the README and the docs resolves to a file, and
the README's test command is the one CI runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted([REPO / "README.md", REPO / "results" / "README.md", *(REPO / "docs").glob("*.md")])
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def relative_links(text: str) -> list[str]:
    """Targets of inline, image and reference links outside code, without external URLs and pure anchors."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    text = "\n".join(line for line in text.split("\n") if not line.startswith("    "))  # indented code blocks
    targets = INLINE.findall(text) + REFERENCE.findall(text)
    return [t for t in targets if not EXTERNAL.match(t) and not t.startswith("#")]


def broken_links(page: Path) -> list[str]:
    """The page's relative link targets that name no existing file or folder (resolved from the page's folder)."""
    return [target for target in relative_links(page.read_text(encoding="utf-8"))
            if not (page.parent / target.split("#", 1)[0]).exists()]


def test_the_pages_exist_and_link_to_each_other():
    assert len(PAGES) >= 10 and all(p.is_file() for p in PAGES)
    readme_links = relative_links((REPO / "README.md").read_text(encoding="utf-8"))
    for page in PAGES:
        if page.parent.name == "docs":
            assert f"docs/{page.name}" in readme_links, f"README.md does not link {page.relative_to(REPO)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md) [anchor](there.md#part) [web](https://example.org/x.md) [self](#top)\n"
                    "[gone](missing.md) ![img](gone.png) `[code](not-a-link.md)`\n\n```\n[fenced](nope.md)\n```\n"
                    "[ref]: also-missing.md\n")
    assert relative_links(page.read_text()) == ["there.md", "there.md#part", "missing.md", "gone.png",
                                                "also-missing.md"]
    assert broken_links(page) == ["missing.md", "gone.png", "also-missing.md"]


def test_the_readme_test_command_is_the_one_ci_runs():
    ci = (REPO / ".ci" / "run").read_text().split("\n")
    command = ci[ci.index("# --- README test command (keep identical to README.md) ---") + 1]
    readme = [line.strip() for line in (REPO / "README.md").read_text().split("\n")]
    assert command in readme
