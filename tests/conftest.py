import csv
import os
import random
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from p2p_marl.sim.profiles import ProfileSet

# Small MLPs and numpy batches run fastest single-threaded on a 2-core machine (see shared FACTS).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def launch_twice_at_once(command: list[str], cwd: Path) -> None:
    """Start ``command`` twice at the same moment (a shell loop launching runs in the background) and check that
    both finish without error."""
    launches = [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    for launch in launches:
        _, stderr = launch.communicate(timeout=300)
        assert launch.returncode == 0, stderr[-2000:]


def write_profile_csv(path, profiles: ProfileSet, year: int = 2023, shuffle: bool = False) -> None:
    """Write ``profiles`` in the profile CSV format (rows in a seeded random order with ``shuffle``)."""
    rows = []
    for d, day_of_year in enumerate(profiles.day_of_year):
        midnight = datetime(year, 1, 1) + timedelta(days=int(day_of_year))
        for t in range(profiles.steps_per_day):
            stamp = (midnight + timedelta(hours=t * profiles.dt_h)).isoformat()
            for n, household in enumerate(profiles.household_ids):
                rows.append([stamp, household, repr(float(profiles.load_kw[d, t, n])),
                             repr(float(profiles.pv_kw[d, t, n]))])
    if shuffle:
        random.Random(0).shuffle(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "household", "load_kw", "pv_kw"])
        writer.writerows(rows)
