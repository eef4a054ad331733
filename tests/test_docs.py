"""The README and docs/ stay true: examples run, commands parse, links resolve.

Conventions for the pages (README.md and docs/*.md):

- Every ```python block runs, each page's blocks in order in one namespace, in a fresh folder
  that holds ``clip.avi`` (one CK+ clip: a face going from neutral to happy), with the
  environment variable ``KEMO_DATA`` naming the shared data (``shared_data`` fixture), so
  examples call the loaders without a path. Without the data the examples are skipped.
- A block that must not run (a camera, a cluster, a file kemo does not ship) is preceded by
  ``<!-- not-run: reason -->`` on the line just above its fence. It is still compiled.
- Every ``kemo SUBCOMMAND --option`` in a ```bash / ```console block, or in an inline code
  span, must name a real subcommand whose ``--help`` lists the option.
- Relative links must reach an existing file, and ``#anchors`` an existing heading of it
  (GitHub's slugs); README must stay at most 250 lines and link every docs page; its
  GitHub / Colab addresses must be the repository of pyproject.toml's ``[project.urls]``.
"""

import functools
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_LINES = 250
# the clip every example may read as "clip.avi": 33 frames, one face, Happy
EXAMPLE_CLIP = Path("ckplus_emopy") / "videos" / "S052_004_happiness.avi"

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.*?)\s*-->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the reason, for a block marked not-run


def rel(page):
    return page.relative_to(ROOT).as_posix()


@functools.cache
def parse(page):
    """Return ``(blocks, prose_lines)``: the fenced blocks and the lines outside them."""
    blocks, prose = [], []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, lang, start = m.group(2), m.group(3).lower(), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        before = lines[start - 1].strip() if start > 0 else ""
        marker = NOT_RUN.match(before)
        blocks.append(Block(page, start + 1, lang, "\n".join(body) + "\n",
                            marker.group(1) if marker else None))
    return blocks, prose


def python_blocks(page):
    return [b for b in parse(page)[0] if b.lang in ("python", "py")]


def slug(text):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.cache
def anchors(page):
    seen, out = {}, set()
    for _, line in parse(page)[1]:
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page):
    """``(line, target)`` of every Markdown link outside code blocks and code spans."""
    for number, line in parse(page)[1]:
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            yield number, m.group(1)


# ---------------------------------------------------------------------------------- README


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, (
        f"README.md has {n} lines; keep it a front page of at most {MAX_README_LINES} lines and "
        "move details to docs/")


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.split("#")[0]).resolve() for _, t in links(README)
              if not re.match(r"^[a-z][\w+.-]*:", t)}
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    missing = [rel(p) for p in pages if p.resolve() not in linked]
    assert not missing, f"README.md does not link these docs pages: {missing}"
    assert (DOCS / "results.md").resolve() in linked, "README.md must link docs/results.md"


def _readme_shell_lines():
    return [line.strip() for b in parse(README)[0] if b.lang in ("bash", "sh", "console")
            for line in b.code.splitlines()]


def test_readme_shows_the_main_commands():
    lines = _readme_shell_lines()
    for command in ('pip install -e ".[dev,dask]"', "kemo predict VIDEO", "pytest"):
        assert command in lines, f"README.md lost its command {command!r}"


def test_ci_runs_the_readme_install_and_test_commands():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.strip().startswith("#")]
    readme_installs = {line for line in _readme_shell_lines() if line.startswith("pip install")}
    ci_installs = {line for line in ci if line.startswith("pip install")}
    assert ci_installs == readme_installs, (
        f".ci/run installs with {sorted(ci_installs)}, README.md shows {sorted(readme_installs)}")
    assert any(re.match(r"^pytest( |$)", line) for line in ci), ".ci/run must run `pytest`"


def _repository():
    """``owner/name`` of ``[project.urls] Repository``, read without tomllib (Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    table = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert table, "pyproject.toml needs a [project.urls] table with Repository"
    url = re.search(r'^Repository\s*=\s*"([^"]+)"', table.group(1), re.M)
    assert url, "pyproject.toml's [project.urls] needs Repository"
    m = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", url.group(1))
    assert m, f"[project.urls] Repository is not a GitHub address: {url.group(1)}"
    return m.group(1)


GITHUB = re.compile(r"(?<![\w.])github\.com/([\w.-]+/[\w.-]+)")
COLAB = re.compile(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)")


def test_readme_and_colab_links_name_the_repository():
    repo = _repository()
    text = README.read_text(encoding="utf-8")
    found = GITHUB.findall(text) + COLAB.findall(text)
    assert found, "README.md should link the repository (clone address, Colab badge)"
    wrong = sorted({f for f in found if f.removesuffix(".git") != repo})
    assert not wrong, f"README.md links {wrong}, but pyproject.toml names {repo}"
    for page in PAGES:  # Colab badges anywhere must open this repository's notebooks
        wrong = sorted({f for f in COLAB.findall(page.read_text(encoding="utf-8")) if f != repo})
        assert not wrong, f"{rel(page)}: Colab links to {wrong}, not {repo}"


# ----------------------------------------------------------------------------------- links


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page):
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z][\w+.-]*:", target):  # https:, mailto:...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{rel(page)}:{number}: {target}"
        if not dest.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{where} (no heading #{anchor} in {dest.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_link_checker_catches_broken_links(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Two words: `code`\n\n[a](#two-words-code) [b](#nope) "
                    "[c](missing.md) `[not](a-link.md)`\n```\n[in](code.md)\n```\n")
    assert anchors(page) == {"title", "two-words-code"}
    assert [t for _, t in links(page)] == ["#two-words-code", "#nope", "missing.md"]


# ---------------------------------------------------------------------------- not-run marks


def test_not_run_marks_sit_on_python_blocks_and_give_a_reason():
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if "not-run" not in line:
                continue
            m = NOT_RUN.match(line.strip())
            assert m and m.group(1), f"{rel(page)}:{i + 1}: write <!-- not-run: reason -->"
            after = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            assert after and after.group(3) in ("python", "py"), (
                f"{rel(page)}:{i + 1}: a not-run mark must be just above a ```python fence")


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_python_blocks_compile(page):
    for block in python_blocks(page):
        compile(block.code, f"{rel(page)}:{block.line}", "exec")


# -------------------------------------------------------------------------------- commands


@functools.cache
def _help(*command):
    proc = subprocess.run([sys.executable, "-m", "kemo", *command, "--help"],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def _commands(page):
    """``(line, text)`` of each ``kemo ...`` command in shell blocks and inline code."""
    for block in parse(page)[0]:
        if block.lang not in ("bash", "sh", "shell", "console"):
            continue
        joined = block.code.replace("\\\n", " ").splitlines()
        for offset, line in enumerate(joined):
            line = re.sub(r"^\s*\$\s+", "", line).strip()
            if line.startswith(("kemo ", "!kemo ")):
                yield block.line + 1 + offset, line.lstrip("!")
    for number, line in parse(page)[1]:
        for m in INLINE_CODE.finditer(line):
            if m.group(2).startswith("kemo "):
                yield number, m.group(2)


def _words(text):
    text = re.sub(r"\s#.*$", "", text)  # a shell comment
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote in prose: plain words will do
        return text.split()


SUBCOMMAND = re.compile(r"^[a-z][a-z0-9-]*$")


def _check_command(text):
    """Return a problem with one ``kemo ...`` command, or None."""
    words = _words(text)
    if len(words) < 2 or not SUBCOMMAND.match(words[1]):
        return None  # "kemo: error ..." and other prose about kemo
    command = [words[1]]
    if words[1] == "train" and len(words) > 2 and SUBCOMMAND.match(words[2]):
        command.append(words[2])
    status, usage = _help(*command)
    if status != 0:
        return f"`kemo {' '.join(command)}` is not a command ({usage.strip().splitlines()[-1]})"
    for word in words[len(command) + 1:]:
        for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", word.split("=")[0]):
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", usage):
                return f"`kemo {' '.join(command)}` has no option {option}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_shown_commands_parse(page):
    problems = [f"{rel(page)}:{n}: {text}\n    {problem}" for n, text in _commands(page)
                if (problem := _check_command(text))]
    assert not problems, "commands that do not match `kemo ... --help`:\n" + "\n".join(problems)


def test_command_check_catches_drift():
    assert _check_command("kemo predict VIDEO --json out.json") is None
    assert _check_command("kemo train fer2013 --data DATA --epochs 2") is None
    assert "no option --nope" in _check_command("kemo predict VIDEO --nope")
    assert "not a command" in _check_command("kemo predcit VIDEO")


# -------------------------------------------------------------------------------- examples


RUNNABLE = [p for p in PAGES if any(b.not_run is None for b in python_blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=rel)
def test_python_examples_run(page, shared_data, tmp_path, monkeypatch):
    clip = shared_data / EXAMPLE_CLIP
    if not clip.is_file():
        pytest.skip(f"example clip not found: {clip}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shutil.copy(clip, tmp_path / "clip.avi")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEMO_DATA", str(shared_data))
    namespace = {"__name__": "__docs__"}
    timings = []
    try:
        for block in python_blocks(page):
            if block.not_run is not None:
                continue
            start = time.perf_counter()
            code = compile(block.code, f"{rel(page)}:{block.line}", "exec")
            exec(code, namespace)  # noqa: S102 - the documentation's own examples
            timings.append(f"{rel(page)}:{block.line} {time.perf_counter() - start:.1f} s")
    finally:
        plt.close("all")
    print("\n".join(timings))
