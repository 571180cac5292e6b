"""Validate, generate or merge Ascend HCCL rank tables (see src/distributed/rank_table.py).

    python scripts/rank_table.py generate --device_range "[0,8)" [--hccn_conf /etc/hccn.conf]
    python scripts/rank_table.py validate hccl_8p_01234567_10.0.0.1.json
    python scripts/rank_table.py merge host1.json host2.json --output rank_table_16p.json
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.distributed.rank_table import main  # noqa: E402  (needs the repo root on sys.path)

if __name__ == "__main__":
    sys.exit(main())
