"""Worst-case cost of the password strength check: `.venv/bin/python bench/strength.py`.

The strength rule runs on every registration, password change and reset, before any rate
limit can tell an attacker from a user, so its worst case is what counts: the target is a
check well under 50 ms for any password the API accepts as input (at most 128 characters).

1. Builds an adversarial corpus (seeded, so every run checks the same passwords): the one
   from the attack report, `("4@8({[<36911!|70$5+7%2" * 10)[:128]`; every l33t substitute
   in one string; dates, years and digits; common words run together, plain and in l33t;
   keyboard walks; repeats, near-repeats (a unit with one character changed per copy) and
   nested repeats; sequences; random printable and non-ASCII text; each at several lengths.
2. Searches from the slowest of them: random edits (insert, replace, swap, duplicate a
   slice) of the current worst, keeping a change when it makes the check slower.
3. Times each candidate as the best of a few runs (`check_password_strength`, which the
   API calls), so the figure is the check's own cost rather than the machine's noise, and
   prints the slowest passwords, the worst time and PASS or MISS against 50 ms.

Exit status 0 on PASS, 1 on MISS. Keep the machine otherwise idle: the figure is CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import string
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core.errors import InvalidInput  # noqa: E402
from app.passwords.strength import MAX_LENGTH, check_password_strength  # noqa: E402

TARGET_S = 0.050
EMAIL = "bench@example.com"
REPORTED = ("4@8({[<36911!|70$5+7%2" * 10)[:128]
L33T = "4@8({[<36911!|70$5+7%2"
WORDS = (
    "password",
    "monkey",
    "dragon",
    "shadow",
    "master",
    "football",
    "baseball",
    "superman",
    "iloveyou",
    "trustno1",
    "princess",
    "sunshine",
    "welcome",
    "letmein",
    "qwerty",
    "whatever",
    "freedom",
    "starwars",
    "batman",
    "michael",
    "jennifer",
    "jordan",
    "hunter",
    "ranger",
    "buster",
    "soccer",
    "harley",
    "andrew",
    "charlie",
    "thomas",
    "summer",
)
WALKS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1qaz2wsx3edc", "poiuytrewq", "!QAZ@WSX#EDC")


def leet(word: str) -> str:
    return word.translate(str.maketrans("aeiostgblz", "4310$+98|2"))


def corpus(rng: random.Random) -> Iterator[str]:
    """Every kind of password that makes one of zxcvbn's matchers or its search work hard."""
    yield REPORTED
    yield REPORTED[::-1]
    lengths = (16, 24, 32, 48, 64, 96, MAX_LENGTH)
    generators: list[Callable[[], str]] = [
        lambda: "".join(rng.sample(L33T, len(L33T))),
        lambda: "".join(str(rng.randint(1900, 2030)) for _ in range(40)),
        lambda: "".join(
            f"{rng.randint(1, 28):02}{rng.randint(1, 12):02}{rng.randint(50, 99)}"
            for _ in range(30)
        ),
        lambda: "".join(rng.choice(string.digits) for _ in range(MAX_LENGTH)),
        lambda: "".join(rng.choice(WORDS) for _ in range(30)),
        lambda: "".join(leet(rng.choice(WORDS)) for _ in range(30)),
        lambda: "".join(leet(w) + rng.choice(L33T) for w in rng.sample(WORDS, 20)),
        lambda: "".join(rng.choice(WALKS) for _ in range(20)),
        lambda: "".join(rng.choice(string.printable[:94]) for _ in range(MAX_LENGTH)),
        lambda: "".join(chr(rng.randint(0x400, 0x4FF)) for _ in range(MAX_LENGTH)),
        lambda: near_repeat(rng, "".join(rng.sample(L33T, rng.randint(3, 12)))),
        lambda: near_repeat(rng, rng.choice(WORDS) + rng.choice(L33T)),
        lambda: "".join(c * rng.randint(8, 12) for c in rng.choices(L33T + "abc", k=16)),
        lambda: "".join(w * 2 for w in rng.sample(WORDS, 12)),
        lambda: "".join(chr(ord("a") + (i * rng.randint(1, 5)) % 26) for i in range(MAX_LENGTH)),
        lambda: "".join(
            rng.choice(("abcdefgh", "12345678", "ABCDEFGH", "87654321")) + rng.choice(L33T)
            for _ in range(16)
        ),
    ]
    for generate in generators:
        for length in lengths:
            for _ in range(3):
                yield generate()[:length]


def near_repeat(rng: random.Random, unit: str) -> str:
    """Copies of a unit with one character changed in each: never a clean repeat."""
    copies = []
    for _ in range(MAX_LENGTH // max(len(unit), 1) + 1):
        i = rng.randrange(len(unit))
        copies.append(unit[:i] + rng.choice(L33T) + unit[i + 1 :])
    return "".join(copies)


def mutate(rng: random.Random, password: str) -> str:
    i = rng.randrange(len(password))
    j = rng.randrange(len(password))
    i, j = min(i, j), max(i, j)
    pick = rng.randrange(4)
    if pick == 0:
        result = password[:i] + rng.choice(L33T + string.ascii_lowercase) + password[i:]
    elif pick == 1:
        result = password[:i] + rng.choice(L33T + string.ascii_letters) + password[i + 1 :]
    elif pick == 2:
        result = password[:i] + password[j:] + password[i:j]
    else:
        result = password[:j] + password[i:j] + password[j:]
    return result[:MAX_LENGTH] if len(result) >= 8 else password


def seconds(password: str, runs: int) -> float:
    """The least CPU time of `runs` checks of one password (a refusal is a verdict too)."""
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        with contextlib.suppress(InvalidInput):
            check_password_strength(password, EMAIL)
        best = min(best, time.process_time() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--search", type=int, default=400, help="mutations tried (step 2)")
    parser.add_argument("--runs", type=int, default=3, help="timings per password (best kept)")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    seconds("warm up: zxcvbn loads its lists once", 1)
    timed = {p: seconds(p, args.runs) for p in dict.fromkeys(corpus(rng)) if len(p) >= 8}
    print(f"corpus: {len(timed)} passwords")
    for start in sorted(timed, key=timed.__getitem__, reverse=True)[:4]:
        worst = start
        for _ in range(args.search // 4):
            candidate = mutate(rng, worst)
            if candidate not in timed:
                timed[candidate] = seconds(candidate, args.runs)
            if timed[candidate] > timed[worst]:
                worst = candidate
    print(f"after the search: {len(timed)} passwords")

    ranking = sorted(timed, key=timed.__getitem__, reverse=True)
    for password in ranking[:5]:
        print(f"{timed[password] * 1000:7.1f} ms  {len(password):3} chars  {password!r}")
    worst_s = timed[ranking[0]]
    verdict = "PASS" if worst_s < TARGET_S else "MISS"
    print(
        f"worst-case strength check: {worst_s * 1000:.1f} ms of CPU "
        f"(target < {TARGET_S * 1000:.0f} ms) {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
