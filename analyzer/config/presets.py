"""Presets a rule names instead of spelling out: field maps of gateway logs, Prometheus
checks, and the template variables a PromQL query may use.

Must not: import anything (a leaf: the rule models, the parsers and the Prometheus source
read it).
"""

from __future__ import annotations

import re
from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Istio/Envoy JSON access log (Istio's default JSON keys) plus the model fields a gateway
    # adds for LLM traffic; see rules/README.md for the accessLogFormat that produces it.
    "envoy-json": {
        "timestamp": {"path": "start_time", "format": "rfc3339"},
        "model": {"path": "model"},
        "target": {"path": "target_model"},
        "status": {"path": "response_code"},
        "ttft": {"path": "response_duration", "unit": "ms"},
        "duration": {"path": "duration", "unit": "ms"},
        "prompt_tokens": {"path": "prompt_tokens"},
        "completion_tokens": {"path": "completion_tokens"},
        "finish_reason": {"path": "finish_reason"},
        "request_id": {"path": "request_id"},
    },
    # The endpoint picker's per-request log line (zap JSON, epoch seconds in ``ts``).
    "epp": {
        "timestamp": {"path": "ts", "format": "epoch_s"},
        "model": {"path": "model"},
        "target": {"path": "targetModel"},
        "status": {"path": "responseCode"},
        "ttft": {"path": "ttftSeconds", "unit": "s"},
        "duration": {"path": "latencySeconds", "unit": "s"},
        "prompt_tokens": {"path": "promptTokens"},
        "completion_tokens": {"path": "completionTokens"},
        "finish_reason": {"path": "finishReason"},
        "request_id": {"path": "requestId"},
    },
}

TEMPLATE_VARIABLES = frozenset(
    {
        "model",
        "namespace",
        "canary_regex",
        "baseline_regex",
        "group_regex",
        "adapters",
        "interval",
        "step_start",
        "step_duration",
    }
)
TEMPLATE_RE = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")

PROMETHEUS_PRESETS: dict[str, dict[str, Any]] = {
    # Pool health guards (vLLM metrics carry no adapter label: they guard the whole pool).
    # vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc; the old name is the fallback
    # for older servers (a guard on a name that no longer exists would be nodata forever).
    "vllm-kv-cache": {
        "test": "threshold",
        "query": "max(vllm:kv_cache_usage_perc) or max(vllm:gpu_cache_usage_perc)",
    },
    "vllm-queue": {"test": "threshold", "query": "max(vllm:num_requests_waiting)"},
    "vllm-error-share": {
        "test": "threshold",
        "query": 'sum(increase(vllm:request_success_total{finished_reason="error"}'
        "[{{ step_duration }}])) / sum(increase(vllm:request_success_total[{{ step_duration }}]))",
    },
    # Per adapter, from the endpoint picker (llm_d_epp_*, labels model_name/target_model_name).
    "epp-error-rate": {
        "test": "relative",
        "compare": "difference",
        "query": 'sum(increase(llm_d_epp_request_error_total{model_name="{{ model }}",'
        'target_model_name=~"{{ group_regex }}"}[{{ step_duration }}])) / '
        'sum(increase(llm_d_epp_request_total{model_name="{{ model }}",'
        'target_model_name=~"{{ group_regex }}"}[{{ step_duration }}]))',
    },
    "epp-ttft": {
        "test": "mann-whitney",
        "query": "sum by (le) (increase(llm_d_epp_request_ttft_seconds_bucket{model_name="
        '"{{ model }}",target_model_name=~"{{ group_regex }}"}[{{ step_duration }}]))',
    },
    "epp-e2e": {
        "test": "mann-whitney",
        "query": "sum by (le) (increase(llm_d_epp_request_duration_seconds_bucket{model_name="
        '"{{ model }}",target_model_name=~"{{ group_regex }}"}[{{ step_duration }}]))',
    },
}
