"""How many guesses a password takes: zxcvbn's estimate, with its worst cases bounded.

zxcvbn's own cost explodes on crafted input. Its l33t matcher tries every combination of
substitutions (736 of them for "4@8({[<36911!|70$5+7%2"), its repeat matcher judges the
repeated unit again with every matcher, and its search grows faster than the square of the
length: one 128-character password took 4.7 s. Judging long passwords in independent chunks
bounds the length, but let "1234567890" * 10 pass as ten strong-looking chunks.

So a password is judged in parts whose guesses multiply:

- a repeat or a sequence of at least RUN characters is a part of its own, judged over its
  whole length the way zxcvbn judges one: the unit's guesses times the number of repeats,
  a sequence's base times its length;
- the text between them goes to zxcvbn's matchers in pieces of at most CHUNK characters,
  with the l33t substitutions tried in a few layers instead of every combination;
- parts are judged until their guesses reach what the rule asks.

This calls zxcvbn's modules (matching, scoring, feedback) as zxcvbn() itself does; the
version is pinned in requirements.lock. bench/strength.py measures the worst case.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from zxcvbn import feedback, matching, scoring, time_estimates

RUN = 8
CHUNK = 32
# Every zxcvbn matcher but the l33t one, which is called with the layers below.
_MATCHERS = (
    matching.dictionary_match,
    matching.reverse_dictionary_match,
    matching.spatial_match,
    matching.repeat_match,
    matching.sequence_match,
    matching.regex_match,
    matching.date_match,
)


@dataclass(frozen=True)
class Estimate:
    guesses_log10: float
    # zxcvbn's advice for the weakest part: {"warning": str, "suggestions": [str, ...]}
    feedback: dict[str, Any]


def estimate(password: str, user_inputs: list[str], enough: float = math.inf) -> Estimate:
    """The guesses of the password (log10), and the advice for its weakest part.

    Parts are judged from left to right until their guesses reach `enough`: the estimate is
    then a lower bound, which is all a yes-or-no rule needs, and a long strong password costs
    the judging of its first part or two."""
    # The user's words go in a dictionary of this call: zxcvbn() writes them into its
    # module's shared one, where concurrent checks in threads would see each other's.
    ranked = {
        **matching.RANKED_DICTIONARIES,
        "user_inputs": matching.build_ranked_dict([i.lower() for i in user_inputs]),
    }
    return _judge(password, ranked, enough)


def _judge(text: str, ranked: dict[str, Any], enough: float) -> Estimate:
    total, weakest = 0.0, Estimate(0.0, feedback.get_feedback(0, []))
    for i, part in enumerate(_parts(text, ranked, enough)):
        total += part.guesses_log10
        if i == 0 or part.guesses_log10 < weakest.guesses_log10:
            weakest = part
        if total >= enough:
            break
    return Estimate(total, weakest.feedback)


def _parts(text: str, ranked: dict[str, Any], enough: float) -> Iterator[Estimate]:
    if not text:
        return
    run = _longest_run(text)
    if run is None:
        pieces = math.ceil(len(text) / CHUNK)
        size = math.ceil(len(text) / pieces)  # even pieces: no 1-character tail judged alone
        for i in range(0, len(text), size):
            yield _zxcvbn(text[i : i + size], ranked)
        return
    start, end, match = run
    yield from _parts(text[:start], ranked, enough)
    if match["pattern"] == "repeat":
        repeats = math.log10(match["repeat_count"])
        guesses = _judge(match["base_token"], ranked, enough - repeats).guesses_log10 + repeats
    else:
        guesses = math.log10(scoring.sequence_guesses(match))
    yield Estimate(guesses, feedback.get_match_feedback(match, False))
    yield from _parts(text[end:], ranked, enough)


def _longest_run(text: str) -> tuple[int, int, dict[str, Any]] | None:
    """The longest repeat or sequence of at least RUN characters: (start, end, zxcvbn match)."""
    best: tuple[int, int, dict[str, Any]] | None = None
    for start, end, period in _periodic_stretches(text):
        if best is None or end - start > best[1] - best[0]:
            unit = text[start : start + period]
            best = (
                start,
                end,
                {"pattern": "repeat", "base_token": unit, "repeat_count": (end - start) // period},
            )
    for match in matching.sequence_match(text):
        start, end = match["i"], match["j"] + 1
        if end - start >= RUN and (best is None or end - start > best[1] - best[0]):
            best = (start, end, match)
    return best


def _periodic_stretches(text: str) -> list[tuple[int, int, int]]:
    """(start, end, period) of every maximal stretch made of a unit said at least twice,
    RUN characters or more; O(n^2) comparisons, about a millisecond for 128 characters."""
    stretches = []
    n = len(text)
    for period in range(1, n // 2 + 1):
        i = 0
        while i + period < n:
            if text[i] != text[i + period]:
                i += 1
                continue
            start = i
            while i + period < n and text[i] == text[i + period]:
                i += 1
            # text[start : i + period] has this period; keep whole units only.
            repeats = (i + period - start) // period
            if repeats >= 2 and repeats * period >= RUN:
                stretches.append((start, start + repeats * period, period))
    return stretches


def _zxcvbn(text: str, ranked: dict[str, Any]) -> Estimate:
    """zxcvbn(text) with the l33t substitutions tried in layers."""
    matches = [m for matcher in _MATCHERS for m in matcher(text, _ranked_dictionaries=ranked)]
    for table in _l33t_layers(text):
        matches += matching.l33t_match(text, ranked, table)
    result = scoring.most_guessable_match_sequence(text, matches)
    score = time_estimates.guesses_to_score(result["guesses"])
    return Estimate(
        float(result["guesses_log10"]), feedback.get_feedback(score, result["sequence"])
    )


def _l33t_layers(text: str) -> list[dict[str, list[str]]]:
    """Substitution tables for zxcvbn's l33t matcher that each map every letter to one of its
    substitutes found in the text, so that every substitute is tried: at most four tables
    (c has four substitutes), where zxcvbn's own table makes it try every combination."""
    present = matching.relevant_l33t_subtable(text, matching.L33T_TABLE)
    depth = max((len(subs) for subs in present.values()), default=0)
    return [
        {letter: [subs[min(k, len(subs) - 1)]] for letter, subs in present.items()}
        for k in range(depth)
    ]
