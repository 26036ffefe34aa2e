"""One torchrun rank of tests/test_distributed.py: runs a list of ``sgan`` commands in-process.

Usage: torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py PLAN.json
PLAN.json: {"commands": [[name, [args…]], …], "out": folder}. Each rank writes
``out/rank{R}.json`` with every command's exit code, stdout and stderr, so the test can check
what each rank did and that only rank 0 printed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from typer.testing import CliRunner

from sgan_cli.cli import app


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    runner = CliRunner()
    results = {}
    for name, args in plan["commands"]:
        res = runner.invoke(app, args, catch_exceptions=False)
        results[name] = {"exit_code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr}
    rank = os.environ["RANK"]
    Path(plan["out"], f"rank{rank}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
