"""`healthtwin mpi index`: key every stored Patient for `$match` (keys.py) after a bulk load, which runs no
write rules."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable


def add_parser(subparsers: Any, store_args: Callable[[argparse.ArgumentParser], None]) -> None:
    mpi = subparsers.add_parser("mpi", help="the master patient index (docs/mpi.md)")
    commands = mpi.add_subparsers(dest="mpi_command", required=True)
    index = commands.add_parser("index", help="key every stored Patient for Patient/$match (after `load`)")
    store_args(index)
    index.set_defaults(func=run)
    from .dedupe_cli import add_parser as add_dedupe
    add_dedupe(commands)


def run(args: argparse.Namespace) -> int:
    from ..security.storage import open_store
    from . import keys
    store = open_store(args.database, args.data_dir)
    try:
        started = time.perf_counter()
        done = keys.rebuild(store)
        print(f"keyed {done:,} Patients for matching in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    finally:
        store.close()
    return 0
