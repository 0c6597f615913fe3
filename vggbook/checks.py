"""Claims checked by code: a chapter states a claim, the check passes or the chapter fails."""

from __future__ import annotations


class ClaimFailed(AssertionError):
    """A claim of the paper that the book's own numbers no longer support."""


def check(claim: str, ok: bool, detail: str = "") -> None:
    """Print ``PASS claim`` or raise ClaimFailed; ``detail`` must not vary across machines."""
    line = f"{claim} ({detail})" if detail else claim
    if not ok:
        raise ClaimFailed(f"FAIL {line}")
    print(f"PASS {line}")


def status(ok: bool, reproduced: str = "reproduced", otherwise: str = "not reproduced") -> str:
    """A claim's status for the report, from the same condition its check tests."""
    return reproduced if ok else otherwise
