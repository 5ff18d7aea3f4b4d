"""The rollout bench's own gateway: per-request traffic for one second of event time.

Deliberately not the product's simulator (analyzer/simulator/gateway.py): the bench must not
share code with what it measures. Requests arrive as a Poisson process; each goes to the canary
group with the canary share the analyzer last wrote; TTFT is lognormal (median 250 ms, sigma
0.5) with the scenario's changes; lines are Envoy JSON access-log lines as the gateway writes.

Must not: import the analyzer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

MEDIAN, SIGMA = 0.25, 0.5
BASE_ERRORS = 0.005
COLD_SECONDS = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    healthy: bool
    factor: float = 1.0
    """Canary TTFT multiplier."""
    err_canary: float = BASE_ERRORS
    heavy: bool = False
    """Both groups: sigma 1.0 instead of 0.5."""
    ties: bool = False
    """Both groups: TTFT rounded to 10 ms."""
    bimodal: bool = False
    """Both groups: 30% of requests miss the prefix cache and take 4x as long."""
    ramp: bool = False
    """Both groups slow down together, x1.0 to x1.6 over 15 minutes (a load ramp)."""
    cold: float = 1.0
    """Canary TTFT multiplier during the first 30 s after each weight change."""
    tail_extra: float = 0.0
    """Seconds added to 2% of the canary's requests only (a p99 regression)."""

    @property
    def sigma(self) -> float:
        return 1.0 if self.heavy else SIGMA


SCENARIOS = [
    Scenario("healthy x1.0", True),
    Scenario("healthy x1.05", True, factor=1.05),
    Scenario("heavy tail", True, heavy=True),
    Scenario("ties 10 ms", True, ties=True),
    Scenario("bimodal", True, bimodal=True),
    Scenario("load ramp", True, ramp=True),
    Scenario("cold start x3 30 s", True, cold=3.0),
    Scenario("TTFT x1.12", False, factor=1.12),
    Scenario("TTFT x1.15", False, factor=1.15),
    Scenario("TTFT x1.2", False, factor=1.2),
    Scenario("TTFT x1.3", False, factor=1.3),
    Scenario("errors 0.5->1.5%", False, err_canary=0.015),
    Scenario("errors 0.5->2%", False, err_canary=0.02),
    Scenario("errors 0.5->3%", False, err_canary=0.03),
    Scenario("p99 only +2 s on 2%", False, tail_extra=2.0),
]
BY_NAME = {s.name: s for s in SCENARIOS}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Second:
    """One second of requests, in arrival order."""

    times: npt.NDArray[np.float64]
    canary: npt.NDArray[np.bool_]
    ttft: npt.NDArray[np.float64]
    error: npt.NDArray[np.bool_]


class Gateway:
    def __init__(self, scenario: Scenario, rps: float, seed: int, started: float) -> None:
        self.s = scenario
        self.rps = rps
        self.rng = np.random.default_rng(seed)
        self.started = started

    def second(self, t: float, share: float, since_change: float) -> Second:
        s, rng = self.s, self.rng
        n = int(rng.poisson(self.rps))
        times = t + np.sort(rng.random(n))
        canary = rng.random(n) < share
        ttft = MEDIAN * np.exp(s.sigma * rng.standard_normal(n))
        if s.bimodal:
            ttft *= np.where(rng.random(n) < 0.3, 4.0, 1.0)
        if s.ramp:
            ttft *= 1.0 + 0.6 * min(1.0, (t - self.started) / 900.0)
        factor = s.factor * (s.cold if since_change < COLD_SECONDS else 1.0)
        ttft = np.where(canary, ttft * factor, ttft)
        if s.tail_extra:
            ttft = ttft + np.where(canary & (rng.random(n) < 0.02), s.tail_extra, 0.0)
        if s.ties:
            ttft = np.maximum(0.01, np.round(ttft, 2))
        error = rng.random(n) < np.where(canary, s.err_canary, BASE_ERRORS)
        return Second(times, canary, ttft, error)


def lines(sec: Second, model: str, baseline: list[str], canary: list[str]) -> list[bytes]:
    """Envoy ``json_format``-style lines (numbers as numbers) for the envoy-json preset."""
    out = []
    for i in range(sec.times.size):
        group = canary if sec.canary[i] else baseline
        adapter = group[i % len(group)]
        status = 503 if sec.error[i] else 200
        ms = round(float(sec.ttft[i]) * 1000, 3)
        out.append(
            (
                f'{{"start_time":"{iso(float(sec.times[i]))}","response_code":{status},'
                f'"response_duration":{ms},"duration":{ms * 4:.3f},"model":"{model}",'
                f'"target_model":"{adapter}"}}'
            ).encode()
        )
    return out


def baseline_p99(scenario: Scenario, seed: int = 0) -> float:
    """The baseline's p99 TTFT an SRE reads off a dashboard before the rollout."""
    g = Gateway(scenario, 200_000.0, seed, 0.0)
    sec = g.second(0.0, 0.0, math.inf)
    return float(np.quantile(sec.ttft, 0.99))
