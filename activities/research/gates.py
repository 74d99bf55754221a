"""The mission's quality bar (cartridge `quality`) applied to a run's claims.

A claim is a *finding* only when it clears every gate; the others are kept,
each with the reason, as "below this mission's quality bar". No finding means
the run abstains (`insufficient_evidence`); more contradicted findings than
`max_contradiction_ratio` marks it `contested`.
"""
from __future__ import annotations

from typing import Sequence

from stratmaster.contracts.research import Claim, Gates, Outcome


def gates_from(quality) -> Gates:
    """The cartridge's `quality` section as the run's Gates."""
    return Gates(min_confidence=quality.min_confidence, min_sources=quality.min_sources,
                 max_contradiction_ratio=quality.max_contradiction_ratio,
                 min_retrieval_score=quality.min_retrieval_score)


def below_bar_reason(claim: Claim, gates: Gates) -> str | None:
    reasons = []
    if claim.confidence < gates.min_confidence:
        reasons.append(f"confidence {claim.confidence:.2f} < min_confidence {gates.min_confidence:g}")
    docs = len({c.document_id for c in claim.supporting})
    if docs < gates.min_sources:
        reasons.append(f"{docs} independent source{'s' if docs != 1 else ''} < min_sources {gates.min_sources}")
    best = max((c.score for c in claim.supporting), default=0.0)
    if best < gates.min_retrieval_score:
        reasons.append(f"best retrieval score {best:.2f} < min_retrieval_score {gates.min_retrieval_score:g}")
    return "; ".join(reasons) or None


def apply_gates(claims: Sequence[Claim], gates: Gates) -> tuple[list[Claim], list[Claim], Outcome]:
    """(findings, below_bar, outcome). Findings keep their order, renumbered from 0."""
    findings: list[Claim] = []
    below: list[Claim] = []
    for c in claims:
        reason = below_bar_reason(c, gates)
        if reason:
            below.append(c.model_copy(update={"below_bar_reason": reason}))
        else:
            findings.append(c.model_copy(update={"ordinal": len(findings), "below_bar_reason": None}))
    if not findings:
        return findings, below, "insufficient_evidence"
    contested = sum(1 for c in findings if c.contradicting) / len(findings)
    return findings, below, ("contested" if contested > gates.max_contradiction_ratio else "answered")
