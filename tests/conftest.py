import os
import subprocess
from pathlib import Path

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
