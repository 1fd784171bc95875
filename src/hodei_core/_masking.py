"""Masking secrets in a stream of text, including a secret split across two writes."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "SecretMasker"]

MASK = "***"


class SecretMasker:
    """Replaces every secret in a stream of text by ``***``.

    A secret may arrive in pieces, so the last ``len(longest secret) - 1`` characters are held
    back until more text (or ``flush``) shows whether they start a secret. Any occurrence that
    starts before the held-back tail lies wholly in the text seen so far, so it is masked before
    it is let through.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        # longest first, so that a secret containing another is masked whole
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None
        self._hold = len(values[0]) - 1 if values else 0
        self._pending = ""

    def feed(self, text: str) -> str:
        """Masked text that is safe to let through now (possibly empty)."""
        if self._pattern is None:
            return text
        text = self._pattern.sub(MASK, self._pending + text)
        if self._hold == 0:
            return text
        cut = max(len(text) - self._hold, 0)
        self._pending = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """The held-back rest, at the end of the stream."""
        rest, self._pending = self._pending, ""
        return rest
