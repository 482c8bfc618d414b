import os

# Deterministic rich output in subprocesses and snapshots.
os.environ.setdefault("NO_COLOR", "1")
