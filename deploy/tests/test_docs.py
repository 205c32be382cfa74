"""Checks of what a platform team reads first: the licence Cargo.toml
declares, a changelog that tells existing users what to do, a README that is a
front page (the two commands, the requirements, a short production quick start,
the pipeline in one picture, and a link to every page under docs/), a
Troubleshooting entry for every symptom the alerts point to, and links that
lead somewhere: every relative link and every #anchor in README.md,
CHANGELOG.md and docs/**/*.md resolves, by GitHub's rules for heading anchors."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from deploycheck import DOCS, KUBERNETES, README, REPO, TROUBLESHOOTING_GUIDE, load_yaml_documents
from promql import page_anchors

TWO_COMMANDS = """```sh
./demo.sh          # the main job: the demo against a local Firehose emulator
scripts/test.sh    # the whole test suite (what CI's .ci/run calls)
```"""

# The anchors of docs/design.md that code, tests and other pages cite: renaming
# a heading there breaks every citation, so they are fixed here.
CITED_ANCHORS = (
    "pipeline", "guarantees", "firehose-rules", "files-and-lines", "shutdown-and-drain",
    "checkpoint", "command-line", "observability", "sources",
)


def readme() -> str:
    return README.read_text()


def section(title: str, text: str | None = None) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text or readme(), re.S | re.M)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def doc_pages() -> list[Path]:
    return [README, REPO / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


def test_license_is_the_apache_2_text_cargo_declares():
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    assert cargo["package"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    for n, title in enumerate(
        ["Definitions", "Grant of Copyright License", "Grant of Patent License", "Redistribution",
         "Submission of Contributions", "Trademarks", "Disclaimer of Warranty",
         "Limitation of Liability", "Accepting Warranty or Additional Liability"],
        start=1,
    ):
        assert f"{n}. {title}." in text, f"section {n} ({title}) is missing: the licence must be complete"
    assert "END OF TERMS AND CONDITIONS" in text


def test_changelog_tells_existing_users_about_the_s3_layout():
    text = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and "Keep a Changelog" in text
    assert "app_access_log/" in text and "datepath" in text
    assert "**Action**" in text


def test_the_two_commands_stay_at_the_top():
    text = readme()
    assert TWO_COMMANDS in text
    first_sections = re.findall(r"^## (.+)$", text, re.M)
    assert first_sections[0] == "The two commands", first_sections[:3]


def test_readme_is_a_front_page_that_leads_to_every_doc():
    text = readme()
    assert len(text.splitlines()) <= 250, "the README is a front page: move the detail to docs/"
    for needed in ("Requirements", "Production quick start", "How it works", "Documentation"):
        section(needed)
    picture = section("How it works")
    assert re.search(r"```\n.*tail.*batch.*ship.*checkpoint", picture, re.S), "the pipeline's picture is gone"
    linked = set(re.findall(r"\]\((docs/[\w./-]+\.md)\)", section("Documentation")))
    pages = {p.relative_to(REPO).as_posix() for p in DOCS.glob("*.md")}
    assert pages - linked == set(), f"pages the README's Documentation does not lead to: {sorted(pages - linked)}"


def test_requirements_name_kubernetes_iam_and_firehose():
    text = section("Requirements")
    for needed in ("1.29", "IRSA", "Pod Identity", "Firehose", "kube-state-metrics"):
        assert needed in text, needed


def test_production_quick_start_is_short_and_complete():
    text = section("Production quick start")
    assert len(text.strip().splitlines()) < 40
    for step in ("terraform apply", "docker buildx build", "kubectl apply -k", "datepath"):
        assert step in text, step


def test_troubleshooting_covers_each_symptom():
    anchors = page_anchors(TROUBLESHOOTING_GUIDE, level=2)
    for symptom in (
        "nothing-arrives-in-s3", "throttling", "dead-letters-growing",
        "pod-stuck-terminating", "readiness-failing", "ipv6-cluster",
        "files-not-followed", "a-sources-file-is-not-a-regular-file", "two-sources-match-one-file",
    ):
        assert symptom in anchors, f"Troubleshooting has no '{symptom}' entry: {sorted(anchors)}"


def test_docs_explain_a_mistyped_line_in_a_packed_record():
    text = (DOCS / "performance.md").read_text()
    assert re.search(r"whole\s+packed\s+record", text)
    assert "errors/format-conversion-failed/" in text


def test_design_keeps_the_anchors_others_cite():
    anchors = page_anchors(DOCS / "design.md", level=2)
    missing = [a for a in CITED_ANCHORS if a not in anchors]
    assert not missing, f"docs/design.md lost the sections cited as #{', #'.join(missing)}"


def test_generated_blocks_keep_their_markers():
    """The bench and the fleet simulation rewrite what lies between these
    markers; without them they only print their tables."""
    for page, marker in (("performance.md", "bench-table"), ("fleet.md", "fleet")):
        text = (DOCS / page).read_text()
        start, end = text.find(f"<!-- {marker}:start -->"), text.find(f"<!-- {marker}:end -->")
        assert 0 <= start < end, f"docs/{page} lost its {marker} markers"


def links(text: str) -> list[str]:
    """The targets of inline links and images, outside code blocks and code spans."""
    text = re.sub(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1", "", text, flags=re.S | re.M)
    text = re.sub(r"(`+).+?\1", "", text, flags=re.S)
    return [m.group(1) for m in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)]


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in doc_pages():
        for target in links(page.read_text()):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http(s), mailto: not checked offline
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(REPO)}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and (dest.suffix != ".md" or anchor not in page_anchors(dest)):
                broken.append(f"{where}: no heading with that anchor")
    assert not broken, "\n".join(broken)


def test_the_link_checker_finds_a_broken_anchor_and_a_missing_file(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Files: rotation, truncation\n\n```\n[code](#not-a-link)\n```\n"
                    "[ok](#files-rotation-truncation) [bad](#nowhere) [gone](missing.md) `[span](#x)`\n")
    found = links(page.read_text())
    assert found == ["#files-rotation-truncation", "#nowhere", "missing.md"], found
    assert "files-rotation-truncation" in page_anchors(page)
    assert "nowhere" not in page_anchors(page)


# The repository stands alone: it cites its own pages (docs/design.md#anchor)
# or says the reason in place, never a planning document outside it or the
# number of the issue that asked for a change. Built from pieces, so that this
# file does not match itself.
OUTSIDE_CITATION = re.compile("DES" + r"IGN|[Ii]ssue [0-9\"]|" + "\u00a7")
# Source trees (src/, query/src/) are held to the same rule by their own
# review; generated and third-party trees are not ours.
NOT_CHECKED = {".git", "target", "src", ".venv", "node_modules", ".terraform", "__pycache__"}


def test_nothing_outside_src_cites_a_planning_document_or_an_issue_number():
    found = []
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO)
        if not path.is_file() or set(rel.parts) & NOT_CHECKED:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE_CITATION.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "cite docs/design.md#<anchor> or say the reason in place:\n" + "\n".join(found)


def test_readme_shows_the_two_source_pod_as_the_overlay_has_it():
    """The README's excerpt is the overlay's: the same sources, the same
    Downward API fields, the component's --add-field arguments, and a query by pod."""
    text = section("Two logs, one sidecar")
    (kustomization,) = load_yaml_documents(KUBERNETES / "two-sources" / "kustomization.yaml")
    ops = [op for p in kustomization["patches"] if "patch" in p for op in yaml.safe_load(p["patch"])]
    (sources,) = [op["value"] for op in ops if op.get("path") == "/data/sources"]
    for line in sources.strip().splitlines():
        assert f"\n{line}\n" in text, f"the README lacks the overlay's source {line!r}"
    (patch,) = load_yaml_documents(KUBERNETES / "sidecar" / "firetail-sidecar.yaml")
    (sidecar,) = patch["spec"]["template"]["spec"]["initContainers"]
    for arg in (a for a in sidecar["args"] if a.startswith("--add-field=")):
        assert f'"{arg}"' in text, f"the README lacks the component's {arg}"
    for env in sidecar["env"]:
        field = env.get("valueFrom", {}).get("fieldRef")
        if field:
            assert f"{{name: {env['name']}, valueFrom: {{fieldRef: {{fieldPath: {field['fieldPath']}}}}}}}" in text
    assert re.search(r"WHERE datepath = '[\d/]+' AND namespace = '\w+' AND pod = '[\w-]+'", text)
    assert "--pod " in text and "(docs/deploying.md#several-log-files-in-one-pod)" in text
