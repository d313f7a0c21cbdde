"""Summarize py-spy raw profiles (collapsed stacks) as text: ``python -m tools.profile FILE...``.

``nuvem-ledger bench --profile DIR`` (or ``make profile``) writes these summaries itself, one per
phase and service; this re-reads the raw files it leaves in ``DIR/raw`` (a longer top list, say).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.bench.profile import summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", nargs="+", type=Path, help="py-spy --format raw output files")
    parser.add_argument("--top", type=int, default=20, help="rows per table (default 20)")
    args = parser.parse_args(argv)
    for path in args.raw:
        sys.stdout.write(summarize(path.read_text(), path.name, top=args.top) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
