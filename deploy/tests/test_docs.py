"""Checks of what a platform team reads first: the licence Cargo.toml
declares, a changelog that tells existing users what to do, and a README with
contents that lead somewhere, the requirements, a short production quick
start, and a Troubleshooting entry for every symptom the alerts point to."""

from __future__ import annotations

import re
import tomllib

from deploycheck import README, REPO
from promql import github_anchor, readme_section_anchors

TWO_COMMANDS = """```sh
./demo.sh          # the main job: the demo against a local Firehose emulator
scripts/test.sh    # the whole test suite (what CI's .ci/run calls)
```"""


def readme() -> str:
    return README.read_text()


def section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", readme(), re.S | re.M)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


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


def test_contents_link_to_headings_that_exist():
    text = readme()
    anchors = {github_anchor(h) for h in re.findall(r"^#{2,4} (.+)$", text, re.M)}
    links = re.findall(r"\]\(#([\w-]+)\)", section("Contents"))
    assert len(links) >= 10
    for link in links:
        assert link in anchors, f"the contents link #{link} leads nowhere"


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
    anchors = readme_section_anchors(README, "Troubleshooting")
    for symptom in (
        "nothing-arrives-in-s3", "throttling", "dead-letters-growing",
        "pod-stuck-terminating", "readiness-failing", "ipv6-cluster",
    ):
        assert symptom in anchors, f"Troubleshooting has no '{symptom}' entry: {sorted(anchors)}"


def test_readme_explains_a_mistyped_line_in_a_packed_record():
    text = readme()
    assert re.search(r"whole\s+packed\s+record", text)
    assert "errors/format-conversion-failed/" in text
