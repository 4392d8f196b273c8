"""The first failure of a torchrun job, from the per-rank error files under its --log-dir, for the launchers.

    python test/first_failure.py LOG_DIR [--node-rank N]

torchrun gives every worker an error file (LOG_DIR/<run id>/attempt_<k>/<local rank>/error.json) that the
trainer fills when it fails (the `record` decorator) or when it stops because another rank failed. This prints
the one that caused the job to end: an original failure before a rank that stopped because of another, the
earliest first; its message names the file and the reason, then the end of its traceback. Prints nothing
(exit 0) when there is no error file; no torch import.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STOPPED_BY_PEER = " stops because "  # training/utils/peer_watch.py's wording for a rank ended by another's failure
TRACEBACK_LINES = 12


def read_failures(log_dir: Path) -> list[dict]:
    """Every readable error file under `log_dir`: local rank, message, traceback, timestamp."""
    failures = []
    for path in sorted(log_dir.glob("*/attempt_*/*/error.json")):
        try:
            body = json.loads(path.read_text())["message"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        extra = body.get("extraInfo", {}) if isinstance(body, dict) else {}
        failures.append(
            {
                "local_rank": path.parent.name,
                "message": message,
                "traceback": extra.get("py_callstack", ""),
                "timestamp": int(extra.get("timestamp", 0) or 0),
            }
        )
    return failures


def first_failure(failures: list[dict]) -> dict | None:
    """The root cause: original failures before peers' stops, then the earliest."""
    ranked = sorted(failures, key=lambda f: (STOPPED_BY_PEER in f["message"], f["timestamp"]))
    return ranked[0] if ranked else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log_dir", type=Path, help="torchrun's --log-dir")
    parser.add_argument("--node-rank", type=int, default=0, help="this node's rank, for the message")
    args = parser.parse_args()
    failure = first_failure(read_failures(args.log_dir))
    if failure is None:
        return
    print(f"first failure (node {args.node_rank}, local rank {failure['local_rank']}): {failure['message']}")
    tail = [line for line in failure["traceback"].splitlines() if line.strip()][-TRACEBACK_LINES:]
    if tail:
        print("  traceback (end):")
        print("\n".join(f"    {line}" for line in tail))


if __name__ == "__main__":
    main()
