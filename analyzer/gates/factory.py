"""Builds a rule's gates.

Must not: keep secrets anywhere but inside the gates that need them.
"""

from __future__ import annotations

from analyzer.config import RuleSpec
from analyzer.gates.base import Gate
from analyzer.gates.http import HttpGate
from analyzer.secrets import resolve


def make_gates(spec: RuleSpec) -> list[Gate]:
    return [
        HttpGate(g.name, g.type, resolve(g.url), resolve(g.secret) if g.secret else None, g.timeout)
        for g in spec.gates
    ]
