"""Prometheus as a check source: templated PromQL, evaluated at the judgment's time.

prometheus-api-client is synchronous, so every query runs in a worker thread under an asyncio
timeout: a slow or dead Prometheus never stalls ingestion or the judging of other rules; its
checks come back ``nodata`` (unreachable) and the rollout holds. Queries are evaluated at the
judgment's time (``time=now``), so replaying a recorded log against Prometheus asks the same
questions a live run asked.

Template variables (``{{ name }}``): model, namespace, canary_regex, baseline_regex,
group_regex (the group a relative or histogram query is run for), adapters (all adapters of the
rule, as a regex), interval (the rule's judging interval, e.g. 10s), step_start (Unix seconds),
step_duration (time since the step started, e.g. 95s, at least one interval).

Must not: decide pass/fail (analysis/promchecks.py does); log credentials.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from analyzer.analysis.promchecks import QueryOutcome
from analyzer.config import TEMPLATE_RE, PrometheusCheckSpec, PrometheusSpec, RuleSpec
from analyzer.secrets import resolve


def _regex(names: Sequence[str]) -> str:
    return "|".join(re.escape(n) for n in names)


def _seconds(value: float) -> str:
    return f"{max(1, math.ceil(value))}s"


def template_context(spec: RuleSpec, step_start: float, now: float) -> dict[str, str]:
    return {
        "model": spec.model,
        "namespace": spec.target.namespace,
        "canary_regex": _regex(spec.canary),
        "baseline_regex": _regex(spec.baseline),
        "adapters": _regex([*spec.baseline, *spec.canary]),
        "interval": _seconds(spec.analysis.interval),
        "step_start": str(int(step_start)),
        "step_duration": _seconds(max(now - step_start, spec.analysis.interval)),
    }


def render(query: str, context: Mapping[str, str]) -> str:
    return TEMPLATE_RE.sub(lambda m: context[m.group(1)], query)


class PrometheusSource:
    def __init__(self, spec: PrometheusSpec) -> None:
        self.spec = spec
        headers: dict[str, str] = {}
        if spec.bearer_token is not None:
            headers["Authorization"] = f"Bearer {resolve(spec.bearer_token)}"
        auth = None
        if spec.basic_auth is not None:
            auth = (spec.basic_auth.username, resolve(spec.basic_auth.password))
        session = requests.Session()
        session.verify = spec.ca_file or not spec.insecure_skip_verify
        self.client = PrometheusConnect(
            url=spec.address,
            headers=headers or None,
            auth=auth,
            session=session,
            timeout=max(1, math.ceil(spec.timeout)),
            retry=Retry(total=0),
        )

    def _query(self, query: str, at: float) -> QueryOutcome:
        try:
            raw: list[dict[str, Any]] = self.client.custom_query(query, params={"time": at})
        except PrometheusApiClientException as exc:
            return QueryOutcome(error=_short(str(exc)))
        except requests.RequestException as exc:
            return QueryOutcome(error=type(exc).__name__, unreachable=True)
        samples = []
        for item in raw:
            value = item.get("value")
            if not isinstance(value, list) or len(value) != 2:
                return QueryOutcome(error="not an instant vector (use a vector query)")
            try:
                samples.append((dict(item.get("metric", {})), float(value[1])))
            except (TypeError, ValueError):
                return QueryOutcome(error=f"unparseable sample value {value[1]!r}")
        return QueryOutcome(samples=tuple(samples))

    async def query(self, query: str, at: float) -> QueryOutcome:
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._query, query, at), self.spec.timeout + 1.0
            )
        except TimeoutError:
            return QueryOutcome(error=f"no answer within {self.spec.timeout:g}s", unreachable=True)

    async def outcomes(
        self, check: PrometheusCheckSpec, spec: RuleSpec, step_start: float, now: float
    ) -> list[QueryOutcome]:
        """The query results a check needs: one, or baseline then canary."""
        context = template_context(spec, step_start, now)
        query = check.resolved_query
        if check.resolved_test == "threshold":
            return [await self.query(render(query, context), now)]
        out = []
        for group in ("baseline_regex", "canary_regex"):
            out.append(
                await self.query(render(query, {**context, "group_regex": context[group]}), now)
            )
        return out

    async def served(self, spec: RuleSpec, since: float, now: float) -> tuple[int, int] | None:
        """The endpoint picker's rewrite decisions per group since ``since`` (the current
        counter, or its deprecated twin on older endpoint pickers); None without an answer."""
        if now <= since:
            return None
        context = template_context(spec, since, now)
        outcome = await self.query(render(SERVED_QUERY, context), now)
        if outcome.error is not None or not outcome.samples:
            return None
        counts = {"baseline": 0.0, "canary": 0.0}
        for labels, value in outcome.samples:
            target = labels.get("target_model", "")
            if target in spec.baseline:
                counts["baseline"] += value
            elif target in spec.canary:
                counts["canary"] += value
        return round(counts["baseline"]), round(counts["canary"])

    def close(self) -> None:
        self.client.close()


_SERVED = (
    'sum by (target_model) (increase({name}{{model_name="{{{{ model }}}}",'
    'target_model=~"{{{{ adapters }}}}"}}[{{{{ step_duration }}}}]))'
)
SERVED_QUERY = " or ".join(
    _SERVED.format(name=n)
    for n in (
        "llm_d_epp_model_rewrite_decisions_total",
        "inference_extension_model_rewrite_decisions_total",
    )
)
"""Where the endpoint picker sent a virtual model's requests, per target."""


def _short(message: str) -> str:
    return message if len(message) <= 300 else message[:297] + "..."
