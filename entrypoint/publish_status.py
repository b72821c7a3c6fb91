"""Say which runner/platform failed to publish (used by the build-stacks workflow's merge job).

Each publish job uploads ``publish-status.json`` as the artifact ``<prefix>-status-<n>`` ({"runner", "platform",
"outcome"}) even when it fails. A matrix job's ``needs.publish.result`` only says that
*something* failed; this turns the status files into a table (step summary) and one error
annotation per failed runner. Exit 1 unless every publish job succeeded.

Usage: PUBLISH_RESULT=<needs.publish.result> python3 publish_status.py STATUS_DIR
Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def load(status_dir: Path) -> list[dict[str, object]]:
    rows = []
    # one status artifact is unpacked into STATUS_DIR itself, several into STATUS_DIR/<name>/
    for path in sorted(status_dir.rglob("publish-status.json")):
        try:
            rows.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            rows.append(
                {"runner": path.parent.name, "platform": "", "outcome": "unreadable status"}
            )
    return rows


def main(argv: list[str]) -> int:
    rows = load(Path(argv[0]))
    result = os.environ.get("PUBLISH_RESULT", "")
    lines = [
        "### venvlayers publish per runner\n",
        "| runner | platform | outcome |",
        "|---|---|---|",
    ]
    failed = False
    for row in rows:
        runner = json.dumps(row.get("runner"))
        outcome = str(row.get("outcome") or "did not finish")
        lines.append(f"| `{runner}` | `{row.get('platform') or '?'}` | {outcome} |")
        if outcome != "success":
            failed = True
            print(
                f"::error::publish failed on runner {runner} (platform {row.get('platform') or 'unknown'}): {outcome}"
            )
    if result != "success" and not failed:
        failed = True  # a job died before recording its status (runner lost, cancelled)
        print(f"::error::publish jobs ended with '{result}'; only {len(rows)} reported a result")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
