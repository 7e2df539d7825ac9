"""Writes the suite's case list (cases.json) from kosoku's own case index.

Run through `pnpm --filter @effect-websocket/autobahn run cases:generate`, which
creates the project venv (.venv/autobahn, kosoku pinned) and calls this script
with its interpreter. Output: JSON on stdout.

- "cases": every case id kosoku.cases.CASES holds, in the suite's numeric order.
- "informational": the cases whose own code sets both verdicts to
  INFORMATIONAL (Autobahn marks their behaviour as left open by the spec). Found
  by reading each case class's module source, so a new suite version that adds
  or drops one is picked up on regeneration.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import sys

from kosoku.cases import CASES


def informational(cls: type) -> bool:
    module = sys.modules[cls.__module__]
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return False
    return "behaviorClose = Case.INFORMATIONAL" in source


def main() -> None:
    ids = list(CASES)
    json.dump(
        {
            "suite": f"kosoku {importlib.metadata.version('kosoku')}",
            "generatedBy": "packages/autobahn/scripts/generate-cases.py",
            "count": len(ids),
            "informational": [case_id for case_id, cls in CASES.items() if informational(cls)],
            "cases": ids,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
