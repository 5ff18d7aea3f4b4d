"""Latency of a rollback, through the daemon process as it runs in a cluster.

The whole system of the full-system tests (tests/servers/world.py: a real Kafka-protocol broker,
a real Prometheus, the Kubernetes API emulator, a webhook receiver) and `canary-analyzer run
--kafka` as a child process. Each run puts a fresh InferenceModel, starts the daemon on one rule
(interval 1 s, failureThreshold 2) and sends live gateway traffic in which the canary is x1.4
slower, until the rollout is rolled back. Per run, in wall time:
  line -> PATCH:   from the line that made the evidence conclusive being produced to Kafka, to
                   the rollback PATCH as the API emulator received it (the first write whose
                   state says RolledBack). That line is the last
                   one of the concluding judgment's interval: the judgment's time is the end of
                   its interval, and the gateway stamps each line with the wall time it sends it
                   at (within its 0.1 s batch), so the line left within 0.1 s before that time;
  line -> notify:  the same start, to the rollback webhook as the receiver got it;
  first fail -> PATCH: from the first failing judgment instead (the figure of earlier runs: it
                   adds the interval that failureThreshold 2 waits for).
Prints median and p99 (p99 of few runs is their maximum).
Run from the repository root: python -m bench.latency [RUNS]
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.servers.promserver import free_port
from tests.servers.world import (
    BASELINE,
    World,
    gateway,
    inference_model,
    open_world,
    rollout_state,
    rule_text,
    start_world_daemon,
)


def _one_run(w: World, i: int, clock_offset: float) -> tuple[float, float, float]:
    name = f"code-{i}"
    rule = f"code-v2-{i}"
    w.api.put(inference_model(name, name))
    rules = w.tmp / f"rules-{i}"
    rules.mkdir()
    (rules / "code.yaml").write_text(rule_text(rule, name, name, "3s", w.prom.url))
    seen = len(w.receiver.requests)
    proc = start_world_daemon(w, rules, free_port())
    try:

        def done() -> bool:
            return rollout_state(w, name, rule).get("phase") in ("Succeeded", "RolledBack")

        asyncio.run(gateway(w, {name: (name, 1.4)}, done, 90))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _rollback(w, rule, seen):
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    state = rollout_state(w, name, rule)
    if state.get("phase") != "RolledBack":
        raise SystemExit(f"run {i}: the slow canary ended {state.get('phase')}, not RolledBack")
    first_fail = min(
        d["at"] for d in state["history"] if d["action"] in ("hold", "rollback") and d["checks"]
    )
    concluded = max(d["at"] for d in state["history"] if d["action"] == "rollback")
    patch_at = _rollback_patch(w, name, rule)
    hook = _rollback(w, rule, seen)
    assert hook is not None, f"run {i}: no rollback notification within 15 s"
    return patch_at - concluded, hook + clock_offset - concluded, patch_at - first_fail


def _rollback_patch(w: World, name: str, rule: str) -> float:
    """Wall time of the PATCH that wrote the rollback: the first write of the object whose
    state says RolledBack (a finished rollout writes once more when its notifications have
    settled, so the last write is not it). The object's writes are the last entries of its
    changelog: it was put once, before the daemon wrote anything."""
    times = [
        t for (_, key), t in zip(w.api.writes, w.api.write_times, strict=True) if key[4] == name
    ]
    changes = [obj for _, _, key, obj in w.api.changelog if key[4] == name][-len(times) :]
    for at, obj in zip(times, changes, strict=True):
        raw = obj["metadata"].get("annotations", {}).get(f"canary-analyzer.io/rollout.{rule}")
        if raw and json.loads(raw).get("phase") == "RolledBack":
            return at
    raise SystemExit(f"{name}: no write of the rollback")


def _rollback(w: World, rule: str, seen: int) -> float | None:
    """Monotonic time the rollback webhook of ``rule`` arrived, if it has."""
    for r in w.receiver.requests[seen:]:
        body = json.loads(r.body)
        if body["rule"] == rule and body["decision"]["action"] == "rollback":
            return r.at
    return None


def main(runs: int) -> None:
    clock_offset = time.time() - time.monotonic()  # the receiver records monotonic time
    with tempfile.TemporaryDirectory() as tmp, open_world(Path(tmp)) as w:
        results = [_one_run(w, i, clock_offset) for i in range(runs)]
    patch, notify, from_first = (np.array([r[k] for r in results]) for k in range(3))
    print(f"runs: {runs}, interval 1 s, canary TTFT x1.4, baseline {BASELINE}")
    for label, xs in (
        ("line -> PATCH           ", patch),
        ("line -> notify          ", notify),
        ("first fail -> PATCH     ", from_first),
    ):
        print(
            f"{label}: median {np.median(xs):.2f} s  p99 {np.quantile(xs, 0.99):.2f} s  "
            f"min {xs.min():.2f} s  max {xs.max():.2f} s"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
