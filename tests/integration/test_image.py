"""The image: the repository's Dockerfile built by buildah and run.

No container registry is reachable here, so the base is made from Debian packages: mmdebstrap
writes a bookworm rootfs with python3 and python3-venv, committed as an image, and the
Dockerfile builds on it through its BASE argument (the default is the official Python image).
Storage is vfs under the test's folder and isolation is chroot: no daemon, no overlay mount.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

MIRROR = "http://deb.debian.org/debian"
BASE = "localhost/canary-analyzer-test-base:bookworm"
IMAGE = "localhost/canary-analyzer:test"


class Buildah:
    def __init__(self, where: Path) -> None:
        self.flags = ["--root", str(where / "storage"), "--runroot", str(where / "run")]
        self.env = os.environ | {"STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}

    def __call__(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["buildah", *self.flags, *args],
            check=False,
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"buildah {args[0]} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    for tool in ("buildah", "mmdebstrap"):
        assert shutil.which(tool), f"{tool}: Debian's package, installed by scripts/test.sh"
    where = tmp_path_factory.mktemp("image")
    rootfs = where / "rootfs.tar"
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--include=python3,python3-venv",
            "bookworm",
            str(rootfs),
            MIRROR,
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    buildah = Buildah(where)
    base = buildah("from", "scratch").strip()
    buildah("add", base, str(rootfs), "/")
    buildah("commit", "--quiet", base, BASE)
    buildah("rm", base)
    rootfs.unlink()
    buildah(
        "bud",
        "--quiet",
        "--format",
        "docker",  # keeps HEALTHCHECK, which the OCI format has no field for
        "--layers=false",
        "--build-arg",
        f"BASE={BASE}",
        # pip inside the build trusts the host's CA bundle (the network may re-sign TLS).
        "--volume",
        "/etc/ssl/certs:/etc/ssl/certs:ro",
        "--tag",
        IMAGE,
        ".",
        cwd=ROOT,
    )
    try:
        yield buildah
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _run(buildah: Buildah, *command: str) -> str:
    ctr = buildah("from", "--quiet", IMAGE).strip()
    try:
        return buildah("run", ctr, "--", *command)
    finally:
        buildah("rm", ctr)


def test_the_image_runs_the_demo_as_its_user(image: Buildah) -> None:
    out = _run(image, "canary-analyzer", "run")
    assert "PROMOTE" in out and "lora-request-canary: Succeeded at 100% canary" in out
    assert _run(image, "id", "-u").strip() == "10001"


def test_the_image_config_pins_what_the_dockerfile_says(image: Buildah) -> None:
    config = json.loads(image("inspect", "--type", "image", IMAGE))
    docker = config["Docker"]["config"]
    assert docker["User"] == "10001"
    assert docker["Entrypoint"] == ["canary-analyzer"]
    assert docker["Cmd"] == ["run", "--kafka", "--rules", "/etc/canary-analyzer/rules"]
    env = dict(e.split("=", 1) for e in docker["Env"])
    assert env["PYTHONUNBUFFERED"] == "1" and env["CANARY_ANALYZER_HTTP_PORT"] == "8080"
    health = docker["Healthcheck"]["Test"]
    assert health[0] == "CMD" and "CANARY_ANALYZER_HTTP_PORT" in health[-1]
    assert "/healthz" in health[-1]


def test_the_image_holds_the_constrained_versions(image: Buildah) -> None:
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    listing = _run(
        image,
        "python3",
        "-c",
        "import json, importlib.metadata as m; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )
    installed = {k.lower().replace("_", "-"): v for k, v in json.loads(listing).items()}
    wanted = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    assert {k: installed.get(k) for k in wanted} == wanted
    assert "pytest" not in installed and "matplotlib" not in installed  # runtime only
