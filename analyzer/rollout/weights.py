"""Group shares -> integer per-adapter weights, exact to the percent, within the CRD limits.

The gateway sends a request to a target with probability weight / sum(weights), so a canary
share of C% means sum(canary weights) / sum(all weights) = C/100 exactly. Weights are solved in
rationals and scaled to the smallest integers that keep every share exact (preferring a total of
100, as humans write them: 90/10 over 5+5 adapters gives 18 and 2). Within the baseline group the
adapters keep their original proportions; canary adapters share equally.

Limits (../shared/crds): v1alpha2 objects take weights 1..1000000 and no zero, so an adapter at
0% is removed from the list; v1alpha1 keeps it at 0. At most 10 targets. An HTTPRoute rule
takes backendRef weights 0..1000000 (0: no traffic) and at most 16 backendRefs.

Must not: read or write objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

Target = tuple[str, int | None]
"""(adapter, weight); weight None when the object sets no weights (equal split)."""


class WeightError(ValueError):
    """The object's targets do not fit the rule's groups or the CRD limits."""


@dataclass(frozen=True)
class WeightLimits:
    allow_zero: bool
    max_weight: int = 1_000_000
    max_targets: int = 10


def limits_for(kind: str, api_version: str) -> WeightLimits:
    if kind == "InferenceModel" and api_version.endswith("/v1alpha1"):
        return WeightLimits(allow_zero=True)
    if kind == "HTTPRoute":
        return WeightLimits(allow_zero=True, max_targets=16)
    return WeightLimits(allow_zero=False)


def check_groups(
    original: Sequence[Target], baseline: Sequence[str], canary: Sequence[str]
) -> None:
    """Every baseline adapter must be routed; every routed adapter must be in a group."""
    names = [n for n, _ in original]
    missing = [b for b in baseline if b not in names]
    if missing:
        raise WeightError(f"baseline adapters not targeted by the object: {', '.join(missing)}")
    strays = [n for n in names if n not in baseline and n not in canary]
    if strays:
        raise WeightError(
            f"the object also routes to {', '.join(strays)}, which is in neither group; "
            "add it to baseline or canary"
        )
    if not any((w is None or w > 0) for n, w in original if n in baseline):
        raise WeightError("the baseline group has no traffic in the object (all weights 0)")


def _baseline_proportions(original: Sequence[Target], baseline: Sequence[str]) -> list[Fraction]:
    weights = dict(original)
    raw = [weights.get(b) for b in baseline]
    if all(w is None for w in raw) or not any(w for w in raw):
        return [Fraction(1, len(baseline))] * len(baseline)
    total = sum(w or 0 for w in raw)
    return [Fraction(w or 0, total) for w in raw]


def split(
    original: Sequence[Target],
    baseline: Sequence[str],
    canary: Sequence[str],
    canary_percent: int,
    limits: WeightLimits,
) -> list[tuple[str, int]]:
    """Per-adapter weights that give the canary group exactly ``canary_percent`` of traffic."""
    if not 0 <= canary_percent <= 100:
        raise WeightError("canary percent must be in 0..100")
    check_groups(original, baseline, canary)
    c_share = Fraction(canary_percent, 100)
    shares: dict[str, Fraction] = {}
    for name, prop in zip(baseline, _baseline_proportions(original, baseline), strict=True):
        shares[name] = (1 - c_share) * prop
    for name in canary:
        shares[name] = c_share / len(canary)
    # Smallest k with every share * 100k an integer: total weight 100k.
    k = math.lcm(*((s * 100).denominator for s in shares.values()))
    weights = {n: int(s * 100 * k) for n, s in shares.items()}
    if k > 1:  # no total of 100 works: use the smallest integers instead
        g = math.gcd(*weights.values())
        weights = {n: w // g for n, w in weights.items()}
    if max(weights.values()) > limits.max_weight:
        raise WeightError(
            f"{canary_percent}% over these adapters needs weights above {limits.max_weight}"
        )
    order = [n for n, _ in original] + [c for c in canary if c not in dict(original)]
    out = [(n, weights[n]) for n in order if weights[n] > 0 or limits.allow_zero]
    if len(out) > limits.max_targets:
        raise WeightError(f"{len(out)} targets exceed the object's limit of {limits.max_targets}")
    return out


def canary_share(weights: Sequence[Target], canary: Sequence[str]) -> Fraction:
    """Exact canary share of a target list (weights None mean equal)."""
    vals = [(n, 1 if w is None else w) for n, w in weights]
    total = sum(w for _, w in vals)
    if total == 0:
        return Fraction(0)
    return Fraction(sum(w for n, w in vals if n in canary), total)
