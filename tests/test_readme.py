"""The README is the front door and docs/ the rest of the house: the README stays short, every
relative link of the README and of docs/*.md resolves, and the README's commands that need no
training run as written (in a temporary directory) and exit 0."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 300

#: The rule for "cheap": a README command runs here when it is a simple `umt` command (no pipe,
#: redirection or `&&`) whose arguments start with one of these prefixes, or which asks for
#: `--help`. None of them trains anything.
CHEAP_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("config",),
    ("datasets",),
    ("data", "template"),
    ("data", "check"),
    ("data", "export"),
)
#: The README must keep at least these (prefixes of the arguments after `umt`), so that this test
#: cannot silently run nothing.
REQUIRED: tuple[tuple[str, ...], ...] = (
    ("config",),
    ("config", "--describe"),
    ("datasets",),
    ("data", "export"),
    ("data", "check"),
    ("data", "template"),
)
SHELL_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "<", "&"}

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _relative_links(page: Path) -> list[str]:
    """The link targets of ``page`` outside code, without web links and pure anchors."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))
    links = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto, ...; an anchor in the same page
        links.append(target)
    return links


def _bash_commands(text: str) -> list[str]:
    """Each command line of the ```bash blocks, backslash continuations joined."""
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def _cheap(command: str) -> list[str] | None:
    """The arguments after ``umt`` of a cheap command (see CHEAP_PREFIXES), else None."""
    words = shlex.split(command, comments=True)
    if not words or words[0] != "umt" or SHELL_OPERATORS & set(words):
        return None
    args = words[1:]
    if "--help" in args or "-h" in args:
        return args
    if any(tuple(args[: len(p)]) == p for p in CHEAP_PREFIXES):
        return args
    return None


def _umt() -> list[str]:
    """The `umt` console script of this interpreter's environment (or the module)."""
    script = Path(sys.executable).with_name("umt")
    return [str(script)] if script.exists() else [sys.executable, "-m", "umt.cli"]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move the detail to a "
        "page of docs/ and link it"
    )


def test_relative_links_resolve() -> None:
    broken = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in _pages()
        for target in _relative_links(page)
        if not (page.parent / target.split("#", 1)[0]).exists()
    ]
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)
    assert any(t.startswith("docs/") for t in _relative_links(README)), "README links no docs"


def test_every_docs_page_is_in_the_index() -> None:
    linked = {t.split("#", 1)[0] for t in _relative_links(DOCS / "index.md")}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "index.md"]
    missing = [name for name in missing if name not in linked]
    assert not missing, f"docs/index.md does not link {missing}"


def test_readme_results_table_matches_docs() -> None:
    """The README's results table is a copy of the default study's in docs/results.md."""
    readme = README.read_text(encoding="utf-8")
    section = readme.split("\n## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows, "the README's results section has no table"
    results = (DOCS / "results.md").read_text(encoding="utf-8").splitlines()
    assert [row for row in rows if row not in results] == []


def test_cheap_readme_commands_run(tmp_path: Path) -> None:
    commands = [
        (c, args) for c in _bash_commands(README.read_text(encoding="utf-8")) if (args := _cheap(c))
    ]
    for prefix in REQUIRED:
        assert any(tuple(a[: len(prefix)]) == prefix for _, a in commands), (
            f"the README no longer shows `umt {' '.join(prefix)}`"
        )
    assert any("--help" in a for _, a in commands), "the README shows no `umt ... --help`"
    for _, args in commands:  # outputs go to tmp_path: the commands must use relative paths
        assert not any(Path(a).is_absolute() for a in args), f"absolute path in umt {args}"

    def run(group: list[tuple[str, list[str]]]) -> list[str]:
        failures = []
        for command, args in group:
            proc = subprocess.run(
                [*_umt(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
            )
            if proc.returncode != 0 or not proc.stdout.strip():
                tail = (proc.stderr or proc.stdout)[-800:]
                failures.append(f"{command}\n  exit {proc.returncode}: {tail}")
        return failures

    # `umt data ...` commands read what the ones before them wrote: in README order, in one
    # worker; each of the others alone (two processes at a time).
    data = [(c, a) for c, a in commands if a[0] == "data"]
    rest = [[(c, a)] for c, a in commands if a[0] != "data"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for result in pool.map(run, [data, *rest]) for f in result]
    assert not failures, "README commands that failed:\n" + "\n".join(failures)


@pytest.mark.parametrize(
    ("command", "cheap"),
    [
        ("umt config --describe   # a comment", True),
        ("umt data export synthetic ./my_data", True),
        ("umt run --help", True),
        ("umt run", False),
        ("umt prepare vggsound --src RAW --out DATA", False),
        ("umt config > out.txt", False),
        ("torchrun --nproc-per-node 4 -m umt.cli run", False),
    ],
)
def test_cheap_rule(command: str, cheap: bool) -> None:
    assert (_cheap(command) is not None) is cheap
