"""`python -m nalar_common.wire --doc` prints the protocol tables; `--update PATH` rewrites
them in a page (docs/protocol.md) and says which types have no block there."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nalar_common.wire.doc import missing, render_all, update


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nalar_common.wire", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--doc", action="store_true", help="print every table")
    group.add_argument("--update", metavar="PATH", type=Path,
                       help="rewrite the tables in PATH (docs/protocol.md)")
    args = parser.parse_args(argv)
    if args.doc:
        print(render_all())
        return 0
    text = args.update.read_text()
    new = update(text)
    if new != text:
        args.update.write_text(new)
        print(f"{args.update}: tables updated")
    lacking = missing(new)
    if lacking:
        print(f"{args.update}: no single block for {', '.join(lacking)} (add "
              f"<!-- wire:Name --><!-- /wire:Name --> where each belongs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
