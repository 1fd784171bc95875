"""Secrets never reach a log, however the output is cut into writes."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hodei_core.worker import MASK, SecretMasker

secret_text = st.text(alphabet="abcxyz-", min_size=1, max_size=12)


def run_masker(secrets: list[str], pieces: list[str]) -> str:
    masker = SecretMasker(secrets)
    return "".join(masker.feed(p) for p in pieces) + masker.flush()


@given(
    secret=st.text(alphabet="abcxyz", min_size=3, max_size=12),
    before=st.text(alphabet="abc-", max_size=20),
    after=st.text(alphabet="abc-", max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6),
)
def test_a_secret_cut_anywhere_is_masked(
    secret: str, before: str, after: str, cuts: list[int]
) -> None:
    text = f"{before}{secret}{after}"
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    out = run_masker([secret], pieces)
    assert secret not in out
    assert MASK in out


@given(text=st.text(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_text_without_secrets_passes_unchanged(text: str, cuts: list[int]) -> None:
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert run_masker(["\x00never\x00"], pieces) == text
    assert run_masker([], pieces) == text


def test_longer_secret_containing_a_shorter_one_is_masked_whole() -> None:
    assert run_masker(["abc", "abcdef"], ["xx abcd", "ef yy abc"]) == "xx *** yy ***"


@given(
    secrets=st.lists(secret_text.filter(lambda s: len(s) >= 2), min_size=1, max_size=4),
    filler=st.lists(st.text(alphabet="abcxyz- ", max_size=8), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=8),
)
def test_no_secret_appears_whole_whatever_the_mix(
    secrets: list[str], filler: list[str], cuts: list[int]
) -> None:
    # interleave filler and secrets, then cut the text into arbitrary writes
    parts = []
    for i, text in enumerate(filler):
        parts += [text, secrets[i % len(secrets)]]
    text = "".join(parts)
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    out = run_masker(secrets, pieces)
    # the same text in one piece gives the same result: cutting changes nothing
    assert out == run_masker(secrets, [text])
    for secret in secrets:
        assert secret not in out.replace(MASK, "\x00")
