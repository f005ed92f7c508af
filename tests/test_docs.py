"""The README and docs/ say what the repository holds: every file they name exists, the settings
table gives the defaults the code uses, and the package dependency list is the code's."""

from __future__ import annotations

import re
from pathlib import Path

import grimp
import pytest

from backend.core import settings as settings_module
from backend.core.settings import load_settings
from backend.domain.quality.agents import classify

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A backticked word is a repository path when it starts with one of these folders or names a
# file by an extension the repository uses; `var/...`, URLs and route paths are not.
FOLDERS = {"backend", "tests", "static", "templates", "snippet", "docs", ".ci"}
FILE_ENDINGS = (".md", ".py", ".toml", ".conf", ".lua", ".html", ".css", ".js", ".json")
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(doc: Path) -> str:
    """The text outside fenced code blocks (shell commands and pictures name no files)."""
    return FENCED.sub("", doc.read_text())


def named_paths(text: str) -> set[str]:
    paths = set()
    for word in re.findall(r"`([^`\s]+)`", text):
        if word.startswith("/") or "://" in word:
            continue
        if word.split("/")[0] in FOLDERS or word.endswith(FILE_ENDINGS):
            paths.add(word)
    return paths


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(ROOT).as_posix())
def test_every_file_a_document_names_exists(doc: Path) -> None:
    text = prose(doc)
    missing = [path for path in sorted(named_paths(text)) if not (ROOT / path).exists()]
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        if not (doc.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert missing == []


def test_the_code_cites_only_documents_the_repository_holds() -> None:
    cited = {
        (source.relative_to(ROOT).as_posix(), document)
        for folder in ("backend", "tests")
        for source in (ROOT / folder).rglob("*.py")
        for document in re.findall(r"[\w./-]+\.md\b", source.read_text())
    }
    assert [(source, doc) for source, doc in sorted(cited) if not (ROOT / doc).exists()] == []


def documented_defaults() -> dict[str, str]:
    """``CLICKTRAIL_`` variable -> its default cell in docs/configuration.md's table."""
    rows = re.findall(
        r"^\| `([A-Z_]+)` \| ([^|]+) \|", (ROOT / "docs/configuration.md").read_text(), re.MULTILINE
    )
    return {name: cell.strip() for name, cell in rows}


def shown(value: object) -> str:
    """A default as the table writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "empty"
    return "unset" if value is None else str(value)


def test_the_settings_table_gives_every_variable_with_the_code_s_default() -> None:
    source = Path(settings_module.__file__).read_text()
    variables = set(re.findall(r'(?:PREFIX \+ |\(\s*env, )"([A-Z_]+)"', source))
    documented = documented_defaults()
    assert variables == set(documented)

    defaults = load_settings({"CLICKTRAIL_SECRET_KEY": "s" * 32})
    generated = {"SECRET_KEY", "REDIS_URL"}  # a generated key, the embedded server: no value
    for name in sorted(variables - generated):
        field = "environment" if name == "ENV" else name.lower()
        words = re.findall(r"[^\s`();]+", documented[name])
        assert shown(getattr(defaults, field)) in words, name


def layer(module: str) -> str:
    """``backend.web.api.stats`` -> ``web``."""
    return module.split(".")[1] if "." in module else module


def test_the_documented_package_dependencies_are_the_code_s() -> None:
    text = (ROOT / "docs/architecture.md").read_text()
    section = text.split("## Package dependencies", 1)[1]
    block = section.split("```", 2)[1]
    documented = {tuple(line.split(" -> ")) for line in block.strip().splitlines()}

    graph = grimp.build_graph("backend", cache_dir=None)
    imported = {
        (layer(importer), layer(imported))
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if layer(importer) != layer(imported)
    }
    assert documented == imported


def test_the_quickstarts_curl_click_counts_as_a_persons() -> None:
    """docs/api.md says a bare curl is a bot and shows the headers that make it a person."""
    text = (ROOT / "docs/api.md").read_text()
    command = re.search(r"curl -si -A '([^']+)' \\\n\s+-H 'Accept-Language: ([^']+)'", text)
    assert command is not None
    assert not classify(command[1], accept_language=True).is_bot
    assert classify("curl/8.5.0", accept_language=False).is_bot
