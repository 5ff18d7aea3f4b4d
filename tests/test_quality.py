"""Static checks run with the suite, so `.ci/run` and a developer see the same thing:
ruff (lint + format), mypy --strict, the import-linter contracts that keep the core pure, and
what the repository tracks (nothing that works only on the machine that committed it)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_lint_and_format() -> None:
    lint = _run(sys.executable, "-m", "ruff", "check", "analyzer", "tests", "bench")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run(sys.executable, "-m", "ruff", "format", "--check", "analyzer", "tests", "bench")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict() -> None:
    res = _run(sys.executable, "-m", "mypy", "analyzer")
    assert res.returncode == 0, res.stdout + res.stderr


def test_import_contracts() -> None:
    res = _run(str(BIN / "lint-imports"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 2 kept, 0 broken." in res.stdout


def _lint_with(tmp_path: Path, probes: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the package with ``probes`` (module path -> line) added."""
    shutil.copytree(
        ROOT / "analyzer", tmp_path / "analyzer", ignore=shutil.ignore_patterns("*.pyc")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for module, line in probes.items():
        path = tmp_path / module
        path.write_text(path.read_text() + f"\n{line}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    ("probes", "broken"),
    [
        # An I/O client in the event parsers (no contract covered them once).
        ({"analyzer/events/units.py": "import aiokafka"}, "1 kept, 1 broken"),
        # The rule models reaching into the daemon.
        ({"analyzer/config/loading.py": "import analyzer.runtime.engine"}, "0 kept, 2 broken"),
        # Indirect: the judge imports a helper outside every layer that imports the client.
        (
            {
                "analyzer/secrets.py": "import kubernetes_asyncio",
                "analyzer/analysis/judge.py": "import analyzer.secrets",
            },
            "1 kept, 1 broken",
        ),
    ],
)
def test_the_contracts_fail_on_a_probe(tmp_path: Path, probes: dict[str, str], broken: str) -> None:
    clean = _lint_with(tmp_path / "clean", {})
    assert clean.returncode == 0, clean.stdout + clean.stderr
    res = _lint_with(tmp_path / "probed", probes)
    assert res.returncode != 0
    assert f"Contracts: {broken}." in res.stdout, res.stdout


# Path parts that are a local environment or build output: they belong to one machine.
LOCAL_PARTS = ("__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis")
LOCAL_DIRS = ("build", "dist", "node_modules", "site-packages", ".tools")


def tracked_hazards(repo: Path) -> list[str]:
    """What ``repo`` tracks that breaks a fresh clone: links leading outside it (or nowhere),
    virtualenvs, caches and build output. One line per problem, naming the path."""
    out = subprocess.run(
        ["git", "ls-files", "-s", "-z"], cwd=repo, capture_output=True, check=True
    ).stdout.decode()
    problems = []
    root = repo.resolve()
    for entry in filter(None, out.split("\0")):
        meta, path = entry.split("\t", 1)
        parts = PurePosixPath(path).parts
        if meta.startswith("120000"):
            target = os.readlink(repo / path) if (repo / path).is_symlink() else "?"
            resolved = (repo / path).resolve()
            if not resolved.is_relative_to(root) or not resolved.exists():
                problems.append(f"{path}: a link to {target}, outside the repository")
        if (
            any(p.startswith(".venv") or p in LOCAL_PARTS or p in LOCAL_DIRS for p in parts)
            or any(p.endswith(".egg-info") for p in parts)
            or parts[-1] == "pyvenv.cfg"
            or parts[-1].endswith(".pyc")
        ):
            problems.append(f"{path}: a local environment or build output")
    return problems


def test_the_repository_tracks_nothing_local() -> None:
    assert tracked_hazards(ROOT) == []


def test_a_tracked_link_outside_or_a_venv_is_caught(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "ok.txt").write_text("x")
    (repo / "inside").symlink_to("ok.txt")
    (repo / ".venv-helm").symlink_to(tmp_path / "elsewhere")
    (repo / "env").mkdir()
    (repo / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (repo / "dist").mkdir()
    (repo / "dist" / "a.whl").write_text("")
    subprocess.run(["git", "add", "-f", "."], cwd=repo, check=True)
    problems = tracked_hazards(repo)
    assert sorted(p.split(":")[0] for p in problems) == [
        ".venv-helm",
        ".venv-helm",
        "dist/a.whl",
        "env/pyvenv.cfg",
    ]
    assert any("outside the repository" in p for p in problems)
