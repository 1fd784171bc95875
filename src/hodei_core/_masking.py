"""Masking secrets in a stream of text, including a secret split across two writes."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "SecretMasker"]

MASK = "***"


class SecretMasker:
    """Replaces every secret in a stream of text by ``***``.

    A secret may arrive in pieces, so the last ``len(longest secret) - 1`` characters are held
    back until more text (or ``flush``) shows whether they start a secret.
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
        buffer = self._pending + text
        cut = max(len(buffer) - self._hold, 0)
        # Only occurrences starting before the cut are masked now: they lie wholly in the
        # buffer, so the longest secret starting there is known. Later ones wait for more text.
        out = []
        done = 0
        for match in self._pattern.finditer(buffer):
            if match.start() >= cut:
                break
            out.append(buffer[done : match.start()])
            out.append(MASK)
            done = match.end()
        done_to = max(cut, done)
        out.append(buffer[done:done_to])
        self._pending = buffer[done_to:]
        return "".join(out)

    def flush(self) -> str:
        """The held-back rest, masked, at the end of the stream."""
        rest, self._pending = self._pending, ""
        return self._pattern.sub(MASK, rest) if self._pattern is not None else rest
