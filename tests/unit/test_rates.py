"""The restricted MLE against numerical maximisation, and the p-value corrections."""

import numpy as np
import pytest

from analyzer.stats.corrections import adjust
from analyzer.stats.rates import restricted_mle, restricted_mle_numeric


def test_holm_and_bonferroni() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 1.0])
    # Holm: sorted 0.01*4, 0.03*3, 0.04*2, 0.5*1 with running max.
    assert adjust(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert adjust(p, "none") == p
    assert adjust([0.2], "holm") == [0.2]


def test_closed_form_restricted_mle_matches_numeric_maximisation() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        n1, n2 = int(rng.integers(1, 2000)), int(rng.integers(1, 20000))
        x1, x2 = int(rng.binomial(n1, 0.02)), int(rng.binomial(n2, 0.01))
        d = float(rng.choice([0.0, 0.005, 0.01, 0.05]))
        closed, numeric = (
            restricted_mle(x1, n1, x2, n2, d),
            restricted_mle_numeric(x1, n1, x2, n2, d),
        )
        assert closed == pytest.approx(numeric, abs=1e-6)
