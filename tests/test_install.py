"""Reproducible installs: constraints.txt pins every package the suite runs with, scripts/setup-env.sh
installs through it, and the environment running these tests is the pinned one."""

import os
import re
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the pins this environment was installed with: constraints.txt, or constraints-oldest.txt in the
#: oldest-versions lane (scripts/test-oldest.sh sets YOLO4_CONSTRAINTS)
CONSTRAINTS = Path(os.environ.get("YOLO4_CONSTRAINTS", REPO / "constraints.txt"))


def _pins(path=REPO / "constraints.txt"):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"constraints.txt: not an exact pin: {line!r}"
        pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def _requirement_names(reqs):
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", r).group(0)).lower() for r in reqs}


def test_setup_script_installs_through_the_constraints():
    text = (REPO / "scripts" / "setup-env.sh").read_text()
    installs = [ln for ln in text.splitlines() if "pip install" in ln]
    assert installs and all('-c "$root/constraints.txt"' in ln for ln in installs), installs


def test_every_declared_dependency_is_pinned():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import pytest

        pytest.skip("tomllib needs Python 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"])
    for extra in ("train", "export", "dev"):
        declared |= set(project["optional-dependencies"][extra])
    missing = sorted(_requirement_names(declared) - set(_pins()))
    assert not missing, f"declared but not pinned in constraints.txt: {missing}"


def test_this_environment_is_the_pinned_one():
    """What the suite runs with is what its constraints file says (a drifted venv fails here, not later)."""
    wrong = []
    for name, version in _pins(CONSTRAINTS).items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # pinned for an extra this environment did not install
        if have.split("+")[0] != version:
            wrong.append(f"{name} {have} (pinned {version})")
    assert not wrong, wrong
