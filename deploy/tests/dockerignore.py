"""The build context Docker sends for this repository: .dockerignore's rules,
as Docker applies them, without a Docker engine.

The deploy checks use it to prove that the context keeps what Cargo reads and
drops the rest; scripts/docker-build-stage.sh uses it to copy the context that
the Dockerfile's build stage sees (no .git, no target/) and run that stage's
commands outside Docker. Standard library only, so the script needs no venv:

    python3 deploy/tests/dockerignore.py REPO   # NUL-separated context files
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path


def rules(dockerignore: Path) -> list[tuple[bool, str, re.Pattern[str]]]:
    """(negated, pattern, regex) per .dockerignore line. Docker matches each
    pattern against the whole path from the context root (Go's filepath.Match,
    plus `**` for any number of directories): `*.log` matches only at the root."""
    result = []
    for line in dockerignore.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        result.append((negated, pattern, re.compile(_regex(pattern) + r"\Z")))
    return result


def _regex(pattern: str) -> str:
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return regex


def is_ignored(path: str, rules_: list[tuple[bool, str, re.Pattern[str]]]) -> bool:
    """The last matching rule wins; a rule matching a directory excludes what
    is under it, unless a later `!` rule takes a path back."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, _, regex in rules_:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def context_files(repo: Path) -> list[str]:
    """Every file of the context, relative to the repository. An ignored
    directory is not walked unless a `!` rule names something inside it (so
    target/ costs nothing)."""
    rules_ = rules(repo / ".dockerignore")
    kept_inside = [pattern for negated, pattern, _ in rules_ if negated]
    files = []
    for top, dirs, names in os.walk(repo):
        rel_top = os.path.relpath(top, repo)
        rel = (lambda name: name) if rel_top == "." else (lambda name: f"{rel_top}/{name}")
        dirs[:] = [
            d
            for d in sorted(dirs)
            if not is_ignored(rel(d), rules_) or any(p.startswith(rel(d) + "/") for p in kept_inside)
        ]
        files += [rel(n) for n in sorted(names) if not is_ignored(rel(n), rules_)]
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: dockerignore.py REPO")
    sys.stdout.write("".join(f + "\0" for f in context_files(Path(sys.argv[1]))))
