"""A simulated gateway: requests split across adapters by the weights now in the manifest.

For demos, experiments and closed-loop tests. Each simulated second it reads the routed object's
targets (so every step the analyzer takes really shifts traffic), draws Poisson arrivals, picks
an adapter per request by weight as the gateway does, and emits an Envoy-style JSON access-log
line (the ``envoy-json`` preset, plus ``upstream_cluster``: Istio's cluster name for the pool the
request went to, which names the pool itself in a pool-level canary). TTFT is lognormal with a
heavier tail mixed in; the canary can be slowed by a factor and given its own error rate. Seeds
make every run reproducible.

Must not: look at the analyzer's state; it only sees the object, as a gateway would.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson

from analyzer.rollout.weights import Target

TargetsReader = Callable[[], Awaitable[Sequence[Target]]]
"""Reads the routed object's current targets (the gateway's view of the weights)."""


@dataclass(frozen=True)
class TrafficProfile:
    model: str
    canary: frozenset[str]
    rps: float = 50.0
    ttft_median: float = 0.25
    ttft_sigma: float = 0.45
    tail_share: float = 0.02
    tail_factor: float = 4.0
    tpot_median: float = 0.025
    baseline_error_rate: float = 0.002
    canary_error_rate: float | None = None
    canary_ttft_factor: float = 1.0
    malformed_ratio: float = 0.0
    pool: str | None = "vllm-pool"
    """The InferencePool every request goes to (adapters share it); None when the targets are
    themselves pools (a pool-level canary over an HTTPRoute)."""
    namespace: str = "default"


def istio_cluster(pool: str, namespace: str, port: int = 8000) -> str:
    """Envoy's cluster name for an InferencePool under Istio: the pool's shadow Service,
    ``<pool>-ip-<first 8 hex of sha256(pool)>`` (istio's InferencePoolServiceName)."""
    digest = hashlib.sha256(pool.encode()).hexdigest()[:8]
    return f"outbound|{port}||{pool}-ip-{digest}.{namespace}.svc.cluster.local"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class GatewaySimulator:
    def __init__(self, read_targets: TargetsReader, profile: TrafficProfile, seed: int = 0) -> None:
        self.read_targets = read_targets
        self.profile = profile
        self.rng = np.random.default_rng(seed)
        self.sent = 0
        self._clusters: dict[str, str] = {}

    def _pick(self, targets: Sequence[Target], n: int) -> list[str]:
        names = [t for t, _ in targets]
        weights = np.array([1.0 if w is None else float(w) for _, w in targets])
        if weights.sum() <= 0:
            return []
        idx = self.rng.choice(len(names), size=n, p=weights / weights.sum())
        return [names[i] for i in idx]

    def _line(self, ts: float, adapter: str) -> bytes:
        p = self.profile
        rng = self.rng
        is_canary = adapter in p.canary
        error_rate = (
            p.canary_error_rate
            if (is_canary and p.canary_error_rate is not None)
            else p.baseline_error_rate
        )
        factor = p.canary_ttft_factor if is_canary else 1.0
        ttft = p.ttft_median * factor * math.exp(p.ttft_sigma * rng.standard_normal())
        if rng.random() < p.tail_share:
            ttft *= p.tail_factor
        prompt = int(rng.integers(16, 2048))
        completion = max(1, int(rng.lognormal(math.log(120), 0.8)))
        tpot = p.tpot_median * math.exp(0.2 * rng.standard_normal())
        failed = rng.random() < error_rate
        status = 503 if failed else 200
        duration = ttft * 0.5 if failed else ttft + tpot * (completion - 1)
        record = {
            "start_time": _iso(ts),
            "method": "POST",
            "path": "/v1/completions",
            "protocol": "HTTP/1.1",
            "response_code": status,
            "response_flags": "-",
            "bytes_received": 180 + prompt // 4,
            "bytes_sent": 0 if failed else 400 + completion * 4,
            "duration": round(duration * 1000, 3),
            "response_duration": round((duration if failed else ttft) * 1000, 3),
            "upstream_host": "10.0.0.12:8000",
            "upstream_cluster": self._cluster(adapter),
            "request_id": f"{self.sent:012x}",
            "model": p.model,
            "target_model": adapter,
            "prompt_tokens": prompt,
            "completion_tokens": 0 if failed else completion,
            "finish_reason": "error" if failed else "length",
        }
        self.sent += 1
        # A copy of exact size: orjson's result keeps its whole 8 KiB buffer alive otherwise.
        line = memoryview(orjson.dumps(record)).tobytes()
        if p.malformed_ratio and rng.random() < p.malformed_ratio:
            line = self._corrupt(line, record)
        return line

    def _cluster(self, target: str) -> str:
        pool = self.profile.pool or target
        if pool not in self._clusters:
            self._clusters[pool] = istio_cluster(pool, self.profile.namespace)
        return self._clusters[pool]

    def _corrupt(self, line: bytes, record: dict[str, object]) -> bytes:
        kind = int(self.rng.integers(0, 5))
        if kind == 0:
            return line[: len(line) // 2]
        if kind == 1:
            return orjson.dumps({k: v for k, v in record.items() if k != "target_model"})
        if kind == 2:
            return orjson.dumps({**record, "response_duration": -5})
        if kind == 3:
            return orjson.dumps({**record, "start_time": "yesterday"})
        return b'"just a string"'

    async def second(self, start: float) -> list[bytes]:
        """All lines of the simulated second beginning at ``start``, in time order."""
        targets = await self.read_targets()
        n = int(self.rng.poisson(self.profile.rps))
        if n == 0:
            return []
        stamps = np.sort(start + self.rng.random(n))
        adapters = self._pick(targets, n)
        return [self._line(float(ts), a) for ts, a in zip(stamps, adapters, strict=False)]
