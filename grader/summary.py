"""The class at a glance: summary.md and summary.png beside grades.csv, and five lines for the terminal.

From the batch's `Graded` records: the score histogram, the pass rate of each task, the most common
failure messages of each task with their counts, and the submissions that need a human look (a crash
or a time limit, refused zip members, notebooks not executed, fid.json missing or not matching its
profile).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from hw3_utils.atomic import atomic_write

from .render import untrusted

TOP_MESSAGES = 3  # failure messages listed per task
PAIRS_LISTED = 50  # pairs of similar submissions listed, most similar first


def failure_kind(result) -> str:
    """A failed task's kind and the head of its message, without per-submission details (counts, file
    lines), for counting alike failures together. Display only: decisions read `result.kind`."""
    msg = result.message.removeprefix("FAIL: ").split("; ", 1)[0]
    msg = re.sub(r"\(hw3\\?_utils/[\w\\/.]+:\d+\)", "(file:line)", msg)
    return f"{result.kind.value}: " + re.sub(r"\d+ of \d+ cases", "N of M cases", msg)[:160]


def summarize(graded: list, tasks: dict, pairs=()) -> dict:
    totals = [g.total for g in graded]
    max_total = sum(t.points for t in tasks.values())
    bins = Counter(min(total * 10 // max_total, 9) if max_total else 0 for total in totals)
    per_task = {}
    for tid, t in tasks.items():
        fails = [g.tasks[tid] for g in graded if tid in g.tasks and g.tasks[tid].points < t.points]
        per_task[tid] = {"name": t.name, "passed": len(graded) - len(fails),
                         "common": Counter(failure_kind(m) for m in fails).most_common(TOP_MESSAGES)}
    look = [(g.student, reasons) for g in graded if (reasons := needs_look(g))]
    return {"n": len(graded), "totals": totals, "max_total": max_total,
            "histogram": [bins.get(k, 0) for k in range(10)], "per_task": per_task, "look": look,
            "similar": list(pairs)}


def needs_look(g) -> list[str]:
    """Why a human should look at this submission (empty: the grade speaks for itself)."""
    reasons = list(g.flags)
    if g.status != "graded":
        reasons.append(g.status)
    return reasons


def markdown(s: dict) -> str:
    n, totals = s["n"], sorted(s["totals"])
    mean = sum(totals) / n if n else 0.0
    median = totals[n // 2] if n else 0
    lines = [f"# Class summary: {n} submission(s)", "",
             f"Mean {mean:.1f} / {s['max_total']}, median {median}; {sum(t == s['max_total'] for t in totals)} "
             f"with full marks, {sum(t == 0 for t in totals)} with 0.", "", "![scores and pass rates](summary.png)", "",
             "## Pass rate per task", "", "| task | passed | rate | most common failures (count) |",
             "| --- | --- | --- | --- |"]
    for tid, row in s["per_task"].items():
        rate = row["passed"] / n if n else 0.0
        common = "<br>".join(f"{msg} ({c})" for msg, c in row["common"]) or "-"  # escaped by grader/render.py
        lines.append(f"| Task {tid} ({row['name']}) | {row['passed']} / {n} | {rate:.0%} | {common} |")
    lines += ["", f"## Needs a human look: {len(s['look'])}", ""]
    lines += [f"- **{student}**: {'; '.join(reasons)}" for student, reasons in s["look"]] or ["- none"]
    lines += ["", f"### Similar task code: {len(s['similar'])} pair(s)", "",
              "Pairs whose task code overlaps by at least the threshold of either one's own code (copydetect's "
              "fingerprints, the release's code excluded; grader/similarity.py). A lead to read, not a verdict.", ""]
    for p in s["similar"][:PAIRS_LISTED]:
        lines += [f"- `{p.a}` and `{p.b}`: {p.share:.0%} shared ({p.tokens} tokens); lines of `{p.a}`:", "",
                  "  ```", *[f"  {untrusted(line, 140)}" for line in p.lines], "  ```"]
    if len(s["similar"]) > PAIRS_LISTED:
        lines.append(f"- ... and {len(s['similar']) - PAIRS_LISTED} more pairs (the most similar are listed)")
    if not s["similar"]:
        lines.append("- none")
    lines += ["", "## Score histogram", "", "| score | submissions |", "| --- | --- |"]
    step = s["max_total"] / 10
    for k, count in enumerate(s["histogram"]):
        hi = f"{(k + 1) * step:.0f}" + ("" if k == 9 else ")")
        lines.append(f"| [{k * step:.0f}, {hi}{']' if k == 9 else ''} | {count} |")
    return "\n".join(lines) + "\n"


def headline(s: dict) -> list[str]:
    """The five lines the terminal prints after `make grade`."""
    n = s["n"]
    totals = s["totals"]
    mean = sum(totals) / n if n else 0.0
    rates = {tid: (row["passed"] / n if n else 0.0) for tid, row in s["per_task"].items()}
    worst = min(rates, key=rates.get) if rates else None
    common = [(msg, c, tid) for tid, row in s["per_task"].items() for msg, c in row["common"]]
    top = max(common, key=lambda x: x[1]) if common else None
    return [
        f"graded {n} submission(s): mean {mean:.1f} / {s['max_total']}, "
        f"{sum(t == s['max_total'] for t in totals)} with full marks",
        f"hardest task: Task {worst} ({rates[worst]:.0%} passed)" if worst else "no tasks",
        f"most common failure: Task {top[2]}: {top[0]} ({top[1]}x)" if top else "no failures",
        f"{len(s['look'])} submission(s) need a human look" + (f", e.g. {s['look'][0][0]}" if s["look"] else "")
        + (f"; {len(s['similar'])} pair(s) with similar task code" if s["similar"] else ""),
        "details: summary.md, summary.png, grades.csv, feedback/<student>.md",
    ]


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    step = s["max_total"] / 10
    ax1.bar([k * step + step / 2 for k in range(10)], s["histogram"], width=step * 0.9, color="#4c72b0")
    ax1.set(title=f"Scores ({s['n']} submissions)", xlabel="total points", ylabel="submissions",
            xlim=(0, s["max_total"]))
    ids = list(s["per_task"])
    rates = [100 * s["per_task"][t]["passed"] / s["n"] if s["n"] else 0 for t in ids]
    ax2.bar(ids, rates, color="#55a868")
    ax2.set(title="Pass rate per task", xlabel="task", ylabel="% passed", ylim=(0, 100))
    for x, r in zip(ids, rates):
        ax2.text(x, r + 2, f"{r:.0f}%", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_summary(graded: list, out: Path, tasks: dict, pairs=()) -> list[str]:
    """Write out/summary.md and out/summary.png; return the terminal's five lines."""
    s = summarize(graded, tasks, pairs)
    atomic_write(Path(out) / "summary.md", markdown(s))
    plot(s, Path(out) / "summary.png")
    return headline(s)
