"""Every benchmark in one command: ``python bench/run_all.py``.

Runs ``bench_env.py --order-book-bound`` (simulation speed against mpe2, and the most a compiled order book could
give), ``bench_lp.py`` (optimal LP build/solve times), ``bench_simbench.py`` (both on SimBench's largest LV grid;
needs the simbench extra) and ``bench_learners.py`` (training throughput against the core alone), each in its own
process so that one's memory and threads do not disturb the other's timings, and prints their tables.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = (("bench_env.py", "--order-book-bound"), ("bench_lp.py",), ("bench_simbench.py",), ("bench_learners.py",))


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = [name for name, *args in BENCHES
              if subprocess.run([sys.executable, str(here / name), *args]).returncode != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
