"""Similarity across a batch: copied task code, found with copydetect (MOSS-style winnowed fingerprints of the
token stream, so renamed variables and reformatting do not hide a copy), the release's own code excluded.

Every pair of submissions is compared on its task files' own lines (those not in the release's file). A pair
is listed in summary.md under "needs a human look" when the tokens found in both make up at least THRESHOLD of
either submission's own task code, with the overlapping lines. A short task written the usual way by two
honest students shares fewer than copydetect's 25-token noise threshold, so it does not count. Measured:
300 submissions in 24 s on 2 cores, most of it comparing pairs (bench/grade_speed.py's generated batch, whose
near-identical submissions are the worst case).
"""

from __future__ import annotations

import bisect
import io
import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .extract import safe_extract, task_files
from .render import safe_name

THRESHOLD = 0.6  # share of a submission's own task code (tokens) that also occurs in the other's
NOISE_TOKENS, GUARANTEE_TOKENS = 25, 30  # copydetect's k-gram length and winnowing guarantee
LINES_SHOWN = 12  # overlapping lines listed per pair
OWN_CODE_BYTES = 256 * 1024  # a task file's own code compared at most: a student's is a few KB; the tokenizer
# runs in the grader's process, so what it reads is kept far below extract.CAPS


@dataclass
class Pair:
    a: str
    b: str
    share: float  # the larger of the two shares
    tokens: int
    lines: list[str] = field(default_factory=list)  # overlapping lines of a's own code, "file: code"


def _fingerprint(code: str, name: str, boilerplate=None):
    """copydetect's fingerprint of Python `code` (tokenized, so names and layout do not matter)."""
    from copydetect import CodeFingerprint

    return CodeFingerprint(name, NOISE_TOKENS, GUARANTEE_TOKENS - NOISE_TOKENS + 1, boilerplate=boilerplate,
                           fp=io.StringIO(code))


def own_code(text: str, release: set[str]) -> str:
    """A submitted task file's own lines: those that are not lines of the release's file (the student's code)."""
    return "".join(line for line in text.splitlines(keepends=True) if line.strip() and line.strip() not in release)


def _lines(fp, slices, name: str) -> list[str]:
    """The lines of a fingerprint's code that its copied character slices touch."""
    code = fp.raw_code
    starts = [0] + [i + 1 for i, c in enumerate(code) if c == "\n"]
    lines, seen = code.splitlines(), []
    for a, b in zip(*slices):
        first, last = bisect.bisect_right(starts, a), bisect.bisect_left(starts, b)
        seen += [n for n in range(first, last + 1) if n not in seen and 0 < n <= len(lines)]
    return [f"{name}: {lines[n - 1].strip()[:100]}" for n in seen if lines[n - 1].strip()]


def _submission(z: Path, scratch: Path, release: dict, lines: dict, boilerplate: dict, cache: dict) -> dict:
    """{task file: fingerprint of its own code} of one submission zip (its task files alone extracted); files over
    OWN_CODE_BYTES are left out."""
    ex = safe_extract(z, scratch, only=set(release))
    out = {}
    for rel in release:
        if rel in ex.files:
            with open(ex.files[rel], "rb") as f:  # extract.CAPS bounds it; the tokenizer gets far less
                data = f.read(OWN_CODE_BYTES + 1)
            code = own_code(data.decode("utf-8", "replace"), lines[rel])
            if len(code) > OWN_CODE_BYTES:
                continue
            if (rel, code) not in cache:
                cache[(rel, code)] = _fingerprint(code, rel, boilerplate[rel])
            out[rel] = cache[(rel, code)]
    return out


def similar_pairs(zips: list[Path], kit: Path, scratch: Path, threshold: float = THRESHOLD,
                  ids: dict[str, str] | None = None) -> list[Pair]:
    """The pairs of submissions (zip paths) whose task code overlaps by `threshold` or more, each named by its
    student id (`ids`: {zip stem: id}, default render.safe_name of the stem); `kit` is the student release (its
    task files' lines and fingerprints are left out)."""
    from copydetect import compare_files

    release = {rel: (kit / rel).read_text() for rel in task_files() if (kit / rel).is_file()}
    lines = {rel: {line.strip() for line in text.splitlines()} for rel, text in release.items()}
    boilerplate = {rel: list(_fingerprint(text, rel).hashes) for rel, text in release.items()}
    cache: dict[tuple[str, str], object] = {}  # identical code (a stub left as it was) is fingerprinted once
    subs: dict[str, dict] = {}
    for k, z in enumerate(zips):
        name = (ids or {}).get(z.stem) or safe_name(z.stem)
        try:  # a file that cannot be fingerprinted leaves its submission out of the comparison, not the batch
            subs[name] = _submission(z, scratch / str(k), release, lines, boilerplate, cache)
        except Exception:
            subs[name] = {}
        finally:
            shutil.rmtree(scratch / str(k), ignore_errors=True)
    out = []
    for (a, fa), (b, fb) in itertools.combinations(sorted(subs.items()), 2):
        common = [rel for rel in sorted(set(fa) & set(fb)) if fa[rel].hashes & fb[rel].hashes]
        if not common:
            continue
        compared = {rel: compare_files(fa[rel], fb[rel]) for rel in common}
        shared = sum(int(tokens) for tokens, _, _ in compared.values())
        own_a = sum(fp.token_coverage for fp in fa.values()) or 1
        own_b = sum(fp.token_coverage for fp in fb.values()) or 1
        share = max(shared / own_a, shared / own_b)
        if share >= threshold:
            shown = [line for rel, (_, _, (sa, _)) in compared.items() for line in _lines(fa[rel], sa, rel)]
            out.append(Pair(a, b, share, shared, shown[:LINES_SHOWN]))
    shutil.rmtree(scratch, ignore_errors=True)
    return sorted(out, key=lambda p: -p.share)
