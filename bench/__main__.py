"""python -m bench NAME [ARGS]: run one bench; `python -m bench --help` lists them, `NAME --help` its options."""

from __future__ import annotations

import importlib
import sys

from bench import benches

HEADINGS = {
    "": "Benches (any machine; a CPU figure names its CPU)",
    "gpu.": "GPU benches (bench/gpu/: made for the GPU machine, bench/gpu/run.sh runs them there in one call; "
            "each also runs on a CPU in a tiny config)",
}
TOOLS = ("report",)  # commands over the records, not measurements


def usage(found: dict[str, str]) -> str:
    width = max(map(len, found))
    lines = [__doc__.split(";", 1)[0], ""]
    for prefix, title in HEADINGS.items():
        names = [n for n in found if n.startswith(prefix) and n.count(".") == prefix.count(".") and n not in TOOLS]
        lines += [f"{title}:", *(f"  {n:<{width}}  {found[n]}" for n in names), ""]
    lines += ["Records:", *(f"  {n:<{width}}  {found[n]}" for n in TOOLS if n in found)]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    found = benches()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(found))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in found:
        print(f"no bench named {name!r}; `python -m bench --help` lists them: {', '.join(found)}", file=sys.stderr)
        return 2
    sys.argv[0] = f"python -m bench {name}"  # what argparse names in the bench's usage line
    code = importlib.import_module(f"bench.{name}").main(rest)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
