"""The cluster-mode daemon (`canary-analyzer run --kafka`) as a child process, for the tests that
run it whole: against a broker, the API server emulator and its kubeconfig. Without a broker
(``bootstrap`` None) it runs as for rules whose checks all query Prometheus: no --kafka."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def start_daemon(
    bootstrap: str | None,
    rules: Path,
    kubeconfig: Path,
    port: int,
    env: Mapping[str, str] = {},
) -> subprocess.Popen[bytes]:
    """Start it on ``rules`` (a file or a directory), serving HTTP on ``port``; ``env`` adds
    to (or overrides) the Kafka settings and the test's own environment."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analyzer",
            "run",
            *(["--kafka"] if bootstrap is not None else []),
            "--rules",
            str(rules),
            "--kubeconfig",
            str(kubeconfig),
            "--http-port",
            str(port),
            "--http-host",
            "127.0.0.1",  # loopback only, as a pod with a sidecar proxy would bind
        ],
        env={
            **os.environ,
            **(
                {
                    "CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                    "CANARY_ANALYZER_KAFKA_TOPICS": "logs",
                }
                if bootstrap is not None
                else {}
            ),
            "POD_NAMESPACE": "default",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
