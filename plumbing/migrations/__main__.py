"""``python -m plumbing.migrations revision BRANCH MESSAGE``: write the next revision of a branch
(outbox, renewal, messaging) from the models' changes; review it, then commit it."""

import argparse
import tempfile
from pathlib import Path

from plumbing.migrations import BRANCHES, revision


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m plumbing.migrations")
    commands = parser.add_subparsers(dest="command", required=True)
    revising = commands.add_parser("revision", help="autogenerate a branch's next revision")
    revising.add_argument("branch", choices=sorted(BRANCHES))
    revising.add_argument("message", help="what the revision changes, as a sentence")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        revision(arguments.branch, arguments.message, Path(workdir))


if __name__ == "__main__":
    main()
