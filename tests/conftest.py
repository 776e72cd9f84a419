import os

# Small MLPs and numpy batches run fastest single-threaded on a 2-core machine (see shared FACTS).
os.environ.setdefault("OMP_NUM_THREADS", "1")
