"""checkov (PyPI, pinned in `.ci/checkov-requirements.txt`, installed by `.ci/run` into
`.ci/.venv-checkov`: its dependency tree is its own) on the synthesized templates.

Green means: no failed check, no parsing error, every skipped check has its reason written in
the template (`Metadata.checkov.skip`, see `cdk/security.py`), and every skip written in the
template suppresses a finding checkov really makes (no stale exception). A canary template with
one resource's skips removed proves the scan finds what the skips hide, so a new finding fails.
"""

import copy
import json
import subprocess
from pathlib import Path

import pytest

from tests.cdk_support import synthesized

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".ci" / ".venv-checkov" / "bin" / "checkov"
CANARY_RESOURCE_PREFIX = "ExportsBucket"


def _canary(template: dict) -> tuple[dict, str]:
    """The template with the exports bucket's checkov skips removed."""
    canary = copy.deepcopy(template)
    (name,) = [
        k
        for k, r in canary["Resources"].items()
        if k.startswith(CANARY_RESOURCE_PREFIX) and r["Type"] == "AWS::S3::Bucket"
    ]
    del canary["Resources"][name]["Metadata"]["checkov"]
    return canary, name


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> dict:
    """checkov's JSON report over every variant and the canary (one run)."""
    assert CHECKOV.is_file(), (
        f"{CHECKOV} is missing: python3 -m venv .ci/.venv-checkov && "
        ".ci/.venv-checkov/bin/pip install -r .ci/checkov-requirements.txt (what .ci/run does)"
    )
    directory = tmp_path_factory.mktemp("templates")
    templates = synthesized()
    for name, body in templates.items():
        (directory / f"{name}.template.json").write_text(json.dumps(body))
    canary, canary_resource = _canary(templates["Default"])
    canary_dir = tmp_path_factory.mktemp("canary")
    (canary_dir / "Canary.template.json").write_text(json.dumps(canary))
    reports = {}
    for label, path in (("stacks", directory), ("canary", canary_dir)):
        # --skip-download: no call to the vendor's API (guidelines, severities); offline.
        result = subprocess.run(
            [
                str(CHECKOV),
                "--directory",
                str(path),
                "--framework",
                "cloudformation",
                "--output",
                "json",
                "--skip-download",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode in (0, 1), result.stderr[-3000:]
        reports[label] = json.loads(result.stdout)
    return {**reports, "templates": templates, "canary_resource": canary_resource}


def _checks(report: dict, kind: str) -> list[dict]:
    return report["results"][kind]


def test_no_failed_check_and_no_parsing_error(scan):
    report = scan["stacks"]
    failed = [
        f"{c['check_id']} {c['resource']} ({Path(c['file_path']).name}): {c['check_name']}"
        for c in _checks(report, "failed_checks")
    ]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] > 150  # every variant was scanned
    assert report["summary"]["passed"] > 100


def test_every_skip_has_its_reason(scan):
    skipped = _checks(scan["stacks"], "skipped_checks")
    assert skipped, "the stack documents its exceptions to the scan"
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason) > 30, f"{check['check_id']} on {check['resource']}: no reason"


def test_every_skip_in_the_template_suppresses_a_real_finding(scan):
    """A skip of a check that checkov does not make (renamed, or no longer failing) is stale."""
    used = {
        (Path(c["file_path"]).name.split(".")[0], c["resource"].split(".", 1)[1], c["check_id"])
        for c in _checks(scan["stacks"], "skipped_checks")
    }
    declared = set()
    for stack, body in scan["templates"].items():
        for name, resource in body["Resources"].items():
            for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", []):
                declared.add((stack, name, skip["id"]))
    assert declared - used == set()
    assert used - declared == set()


def test_canary_without_its_skips_fails_the_scan(scan):
    failed = {
        (c["resource"].split(".", 1)[1], c["check_id"])
        for c in _checks(scan["canary"], "failed_checks")
    }
    name = scan["canary_resource"]
    # The exports bucket's documented exceptions: access logging and versioning.
    assert failed == {(name, "CKV_AWS_18"), (name, "CKV_AWS_21")}
