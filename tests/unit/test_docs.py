"""README.md and docs/: links resolve, the README stays short and lists every task, the generated
limits table is current, and the runnable blocks are valid code (tests/serve/test_docs_examples.py
runs them)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```+|~~~+)(.*)$")
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def outside_fences(text: str) -> list[str]:
    """The lines of a Markdown page outside its fenced code blocks."""
    out, fence = [], None
    for line in text.splitlines():
        found = FENCE.match(line.strip())
        if found and (fence is None or found.group(1) == fence):
            fence = None if fence else found.group(1)
            continue
        if fence is None:
            out.append(line)
    return out


def runnable_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line, language, code)`` of each fenced block whose info string ends in ``runnable``."""
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if current is None:
            found = FENCE.match(stripped)
            if found:
                words = found.group(2).split()
                current = (number, found.group(1), words, [])
        elif stripped == current[1]:
            start, _, words, body = current
            if len(words) >= 2 and words[-1] == "runnable":
                blocks.append((start, words[0], "\n".join(body) + "\n"))
            current = None
        else:
            current[3].append(line)
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings."""
    lines = outside_fences(page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for line in lines if (m := re.match(r"^#{1,6}\s+(.*?)\s*#*$", line))}


def links(page: Path) -> list[str]:
    """The targets of a page's Markdown links (outside code blocks)."""
    return [target for line in outside_fences(page.read_text(encoding="utf-8")) for target in LINK.findall(line)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):      # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


#: A file (with its extension) or folder (with its slash) of the project named in a code span:
#: `deployments/facade.py`, `serve_app/hub/` (not the model id `hubserve/efficientnet-lite0`).
SOURCE_PATH = re.compile(r"`((?:hubserve|serve_app|deployments|bench|configs|k8s|tests|docs)/[\w./-]*(?:\.\w+|/))`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_project_path_a_page_names_exists(page):
    named = set(SOURCE_PATH.findall(page.read_text(encoding="utf-8")))
    assert {path for path in named if not (ROOT / path).exists()} == set()


def test_the_path_checker_sees_paths_in_code_spans():
    text = "see `deployments/facade.py` and `serve_app/hub/`, not `openai/whisper` or `hubserve/efficientnet-lite0`"
    assert SOURCE_PATH.findall(text) == ["deployments/facade.py", "serve_app/hub/"]


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 200, f"README.md has {lines} lines: move details into docs/ (it must stay under 200)"


def test_readme_task_table_lists_every_served_task():
    from deployments.tasks import task_names

    rows = {m.group(1) for m in re.finditer(r"^\| ([a-z0-9-]+) \|", (ROOT / "README.md").read_text(), re.M)}
    assert rows == set(task_names()), (
        f"README.md's task table: missing {sorted(set(task_names()) - rows)}, not served {sorted(rows - set(task_names()))}")


def test_the_limits_table_is_current():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_limits.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + "\n(limits changed: run `python docs/gen_limits.py`)"


def test_the_limits_table_has_every_field_once():
    from hubserve.config.limits import LimitsConfig

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = text.split("<!-- limits:start", 1)[1].split("<!-- limits:end -->", 1)[0]
    for name in LimitsConfig.model_fields:
        assert block.count(f"| `limits.{name}` |") == 1, name


def test_there_are_runnable_blocks_and_each_is_valid_code():
    blocks = [(page, *block) for page in PAGES for block in runnable_blocks(page.read_text(encoding="utf-8"))]
    readme = {language for page, _, language, _ in blocks if page.name == "README.md"}
    assert {"python", "bash"} <= readme, "README.md's InferenceClient, OpenAI and curl examples must be runnable"
    for page, line, language, code in blocks:
        where = f"{page.relative_to(ROOT)}:{line}"
        if language == "python":
            ast.parse(code, where)
        elif language in ("bash", "sh"):
            done = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
            assert done.returncode == 0, f"{where}: {done.stderr}"
        else:
            pytest.fail(f"{where}: runnable blocks are python or bash, not {language!r}")
