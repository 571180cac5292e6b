"""Benchmark helpers: peer implementations the zoo is timed against (benchmark.py)."""

TORCH_MISSING = ("error: --peer=pytorch needs PyTorch (a test-only dependency, not in "
                 "requirements.txt): pip install torch==2.13.0")
