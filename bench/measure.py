#!/usr/bin/env python3
"""Run one shell command; print its wall time (s) and the peak RSS (MB) of its largest process."""
import resource, subprocess, sys, time

cmd = sys.argv[1]
t = time.perf_counter()
r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd])
wall = time.perf_counter() - t
if r.returncode != 0:
    sys.exit(f"measure: command failed ({r.returncode}): {cmd}")
rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{wall:.3f} {rss_mb:.1f}")
