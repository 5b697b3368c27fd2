"""False-positive and miss rates of the injection policy on the labelled set
(tests/core/security/injection_cases.py). Run with -s to print the figures:
``.venv/bin/python -m pytest tests/core/security/test_injection_rates.py -s -q``"""

from __future__ import annotations

from collections import Counter

from core.security.injection import InjectionDetector
from core.security.prompt import PromptGuard, PromptReport
from core.settings import PromptSettings
from tests.core.security.injection_cases import ATTACKS, CASES, INNOCENT

# Bounds the policy must stay within on this set (measured: see docs/security.md).
MAX_MISS_RATE = 0.05
MAX_FALSE_POSITIVE_RATE = 0.06


def rates(detector: InjectionDetector) -> dict[str, object]:
    misses = [(t, c) for t, c in ATTACKS if not detector.attacks(t)]
    false_positives = [(t, c) for t, c in INNOCENT if detector.attacks(t)]
    return {
        "attacks": len(ATTACKS),
        "innocent": len(INNOCENT),
        "miss_rate": len(misses) / len(ATTACKS),
        "false_positive_rate": len(false_positives) / len(INNOCENT),
        "misses": misses,
        "false_positives": false_positives,
    }


def test_the_labelled_set_is_large_and_varied() -> None:
    assert len(CASES) >= 100
    attack_kinds = Counter(c for _, c in ATTACKS)
    innocent_kinds = Counter(c for _, c in INNOCENT)
    assert {"direct", "extraction", "identity", "disguised", "language", "embedded"} <= set(
        attack_kinds
    )
    assert {"mention", "own", "template", "everyday", "hard"} <= set(innocent_kinds)
    assert attack_kinds["language"] >= 10 and attack_kinds["disguised"] >= 10
    assert innocent_kinds["mention"] >= 15 and innocent_kinds["template"] >= 5
    assert len({t for t, _, _ in CASES}) == len(CASES)  # no duplicates


def test_miss_and_false_positive_rates_stay_within_bounds() -> None:
    r = rates(InjectionDetector())
    print(
        f"\ninjection policy on {r['attacks']} attacks + {r['innocent']} innocent prompts: "
        f"miss rate {r['miss_rate']:.1%}, false-positive rate {r['false_positive_rate']:.1%}"
    )
    for text, kind in r["misses"]:  # type: ignore[attr-defined]
        print(f"  missed ({kind}): {text!r}")
    for text, kind in r["false_positives"]:  # type: ignore[attr-defined]
        print(f"  false positive ({kind}): {text!r}")
    assert r["miss_rate"] <= MAX_MISS_RATE  # type: ignore[operator]
    assert r["false_positive_rate"] <= MAX_FALSE_POSITIVE_RATE  # type: ignore[operator]


def test_warn_and_block_follow_the_detector_on_every_case() -> None:
    detector = InjectionDetector()
    warn = PromptGuard(PromptSettings(), 100_000)
    block = PromptGuard(PromptSettings(injection_policy="block"), 100_000)
    for text, _, _ in CASES:
        flagged = bool(detector.attacks(text))
        report = PromptReport()
        warn.check(text, "prompt", report)
        assert bool(report.warnings) == flagged, text
        try:
            block.check(text, "prompt", PromptReport())
            blocked = False
        except Exception:
            blocked = True
        assert blocked == flagged, text
