"""A real Prometheus on loopback with deterministic, backfilled data (promtool), for tests.

The data: 40 minutes of 15-second samples ending 30 minutes ago, for
- vllm:gpu_cache_usage_perc on two pods (0.62 and 0.95);
- the endpoint picker's request, error, TTFT-histogram and rewrite-decision counters for two
  virtual models, each
  routed to baseline adapters b1, b2 (10 req/s each) and canary c1 (2 req/s):
  ``slow-model``: the canary's TTFT is 1.4x and its error rate 5% (baseline 1%);
  ``aa-model``: the canary behaves exactly like the baseline.
The generator keeps the exact per-bucket increments so tests can check the stats core on them.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

BOUNDS = [
    0.005,
    0.025,
    0.05,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    4.0,
    5.0,
    6.0,
    8.0,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
    120.0,
    math.inf,
]
STEP = 15
TARGETS = {"b1": 10.0, "b2": 10.0, "c1": 2.0}
MODELS = {"slow-model": (1.4, 0.05), "aa-model": (1.0, 0.01)}


@dataclass
class Dataset:
    start: int
    end: int
    # (model, target) -> cumulative bucket counts per scrape (rows: scrapes, cols: BOUNDS)
    buckets: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def increments(self, model: str, targets: list[str], t0: int, t1: int) -> np.ndarray:
        """Exact per-bucket (non-cumulative) request counts between two scrape times."""
        i0, i1 = (t0 - self.start) // STEP, (t1 - self.start) // STEP
        cum = sum(self.buckets[(model, t)][i1] - self.buckets[(model, t)][i0] for t in targets)
        return np.diff(np.concatenate([[0], cum]))


def _fmt_le(b: float) -> str:
    return "+Inf" if math.isinf(b) else repr(b)


def write_openmetrics(path: Path, seed: int = 7) -> Dataset:
    rng = np.random.default_rng(seed)
    end = (int(time.time()) - 1800) // STEP * STEP
    start = end - 2400
    times = list(range(start, end + 1, STEP))
    data = Dataset(start, end)
    lines = ["# TYPE vllm:gpu_cache_usage_perc gauge"]
    for pod, value in (("a", 0.62), ("b", 0.95)):
        lines += [f'vllm:gpu_cache_usage_perc{{pod="{pod}"}} {value} {t}' for t in times]
    totals: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for model, (factor, canary_err) in MODELS.items():
        for target, rps in TARGETS.items():
            canary = target.startswith("c")
            n = rng.poisson(rps * STEP, len(times))
            n[0] = 0
            errors = rng.binomial(n, canary_err if canary else 0.01)
            ok = n - errors
            cum = np.zeros((len(times), len(BOUNDS)), dtype=np.int64)
            running = np.zeros(len(BOUNDS), dtype=np.int64)
            for i, k in enumerate(ok):
                ttft = 0.3 * np.exp(0.5 * rng.standard_normal(int(k))) * (factor if canary else 1)
                idx = np.searchsorted(BOUNDS, ttft)
                running += np.cumsum(np.bincount(idx, minlength=len(BOUNDS)))
                cum[i] = running
            data.buckets[(model, target)] = cum
            totals[(model, target)] = (np.cumsum(n), np.cumsum(errors))
    lines.append("# TYPE llm_d_epp_request counter")
    for (model, target), (req, _) in totals.items():
        labels = f'model_name="{model}",target_model_name="{target}"'
        lines += [
            f"llm_d_epp_request_total{{{labels}}} {v} {t}" for v, t in zip(req, times, strict=True)
        ]
    # The endpoint picker's rewrite decisions: which target each request of the model went to.
    lines.append("# TYPE llm_d_epp_model_rewrite_decisions counter")
    for (model, target), (req, _) in totals.items():
        labels = (
            f'model_rewrite_name="{model}-rewrite",model_name="{model}",target_model="{target}"'
        )
        lines += [
            f"llm_d_epp_model_rewrite_decisions_total{{{labels}}} {v} {t}"
            for v, t in zip(req, times, strict=True)
        ]
    lines.append("# TYPE llm_d_epp_request_error counter")
    for (model, target), (_, err) in totals.items():
        labels = f'model_name="{model}",target_model_name="{target}",error_code="500"'
        lines += [
            f"llm_d_epp_request_error_total{{{labels}}} {v} {t}"
            for v, t in zip(err, times, strict=True)
        ]
    lines.append("# TYPE llm_d_epp_request_ttft_seconds histogram")
    for (model, target), cum in data.buckets.items():
        for j, b in enumerate(BOUNDS):
            labels = f'model_name="{model}",target_model_name="{target}",le="{_fmt_le(b)}"'
            lines += [
                f"llm_d_epp_request_ttft_seconds_bucket{{{labels}}} {cum[i, j]} {t}"
                for i, t in enumerate(times)
            ]
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    def __init__(self, workdir: Path) -> None:
        if shutil.which("prometheus") is None or shutil.which("promtool") is None:
            raise RuntimeError("prometheus and promtool are needed (apt-get install -y prometheus)")
        self.workdir = workdir
        self.tsdb = workdir / "tsdb"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        om = workdir / "data.om"
        self.data = write_openmetrics(om)
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(self.tsdb)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (workdir / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.tsdb}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=10y",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "prometheus.log").open("ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(
            "prometheus did not become ready: "
            + (self.workdir / "prometheus.log").read_text()[-2000:]
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
