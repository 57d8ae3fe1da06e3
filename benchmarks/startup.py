"""How long `zoo list` takes, as a user types it: median wall time of the console script, beside bare Python."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def wall_times(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    zoo = shutil.which("zoo")
    if zoo is None:
        sys.exit("the zoo console script is not on PATH: pip install -e . first")
    rows = {
        "zoo list": wall_times([zoo, "list"], args.runs),
        "zoo list --json": wall_times([zoo, "list", "--json"], args.runs),
        "python -c pass": wall_times([sys.executable, "-c", "pass"], args.runs),
    }
    print(f"{'command':<18} {'median s':>9} {'min s':>7} {'max s':>7}   ({args.runs} runs each)")
    for name, times in rows.items():
        print(f"{name:<18} {statistics.median(times):>9.3f} {min(times):>7.3f} {max(times):>7.3f}")
    ratio = statistics.median(rows["zoo list"]) / 0.3
    print(f"zoo list median / 0.3 s budget = {ratio:.2f}")


if __name__ == "__main__":
    main()
