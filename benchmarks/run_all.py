"""Run every benchmark in this folder, one after another (``make bench``).

Each prints its own table with ratios against its baseline measured in the same run.
Pass ``--quick`` for a smoke run.
"""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = ["bench_throughput.py", "bench_openmm_bridge.py", "bench_openmm_executor.py",
              "bench_analysis.py", "bench_distributed.py", "bench_forcefield.py",
              "bench_tempering.py", "bench_preconditioned.py", "bench_constraints.py", "bench_vs_openmm.py"]


def main() -> int:
    here = Path(__file__).parent
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        rc = subprocess.call([sys.executable, str(here / name)] + sys.argv[1:])
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
