"""The documentation site: `mkdocs build --strict` succeeds and builds every page of the nav,
and every relative link in docs/ points at a file that exists."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), with an optional "title"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def nav_pages(nav) -> list[str]:
    """Every Markdown file named in mkdocs.yml's nav (nested sections included)."""
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            pages += nav_pages(value)
        elif isinstance(value, str) and value.endswith(".md"):
            pages.append(value)
    return pages


def relative_links(markdown: str) -> list[str]:
    """Link and image targets of a Markdown text that are paths (not URLs, not in code)."""
    text = INLINE_CODE.sub("", FENCE.sub("", markdown))
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
            continue
        out.append(target)
    return out


def built_file(site: Path, page: str) -> Path:
    """Where mkdocs (use_directory_urls) writes a page: index.md -> index.html, a.md -> a/index.html."""
    stem = page[: -len(".md")]
    if stem == "index" or stem.endswith("/index"):
        return site / f"{stem}.html"
    return site / stem / "index.html"


def load_config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def test_relative_link_parser():
    md = "See [models](models.md#x), ![pic](img/a.jpg), [web](https://x.org), [top](#a), `[no](code.md)`\n" \
         "```\n[nor](fenced.md)\n```\n"
    assert relative_links(md) == ["models.md#x", "img/a.jpg"]


def test_every_relative_link_in_docs_exists():
    broken = []
    files = sorted(DOCS.rglob("*.md"))
    assert files, "docs/ has no Markdown pages"
    for md in files:
        for target in relative_links(md.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if path and not (md.parent / path).exists():
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_nav_lists_every_page_and_index_links_to_each():
    pages = nav_pages(load_config()["nav"])
    assert len(pages) == len(set(pages)), f"a page is listed twice in the nav: {pages}"
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"nav names pages that do not exist: {missing}"
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(pages) == on_disk, "pages in docs/ and in the nav differ"
    linked = {t.split("#", 1)[0] for t in relative_links((DOCS / "index.md").read_text(encoding="utf-8"))}
    unlinked = [p for p in pages if p != "index.md" and p not in linked]
    assert not unlinked, f"index.md does not link to: {unlinked}"


def test_mkdocs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip('mkdocs is not installed (pip install -e ".[docs]")')
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(CONFIG), "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    pages = nav_pages(load_config()["nav"])
    assert pages
    not_built = [p for p in pages if not built_file(site, p).is_file()]
    assert not not_built, f"pages in the nav that were not built: {not_built}"
    api = built_file(site, "api.md").read_text(encoding="utf-8")
    for name in ("wildfer.Recognizer", "wildfer.load_model", "wildfer.create_model", "wildfer.list_models",
                 "IntegratedGradients", "evaluate_wild"):
        assert name in api, f"the API page lacks {name}"
