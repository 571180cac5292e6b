"""Ascend HCCL rank tables: validate one before a launch, generate one for this host.

A rank table (``RANK_TABLE_FILE``) lists every NPU of a multi-device Ascend
run. The format is the one MindSpore's ``hccl_tools`` writes (version 1.0)::

    {"version": "1.0",
     "server_count": "1",
     "server_list": [{"server_id": "10.0.0.1",
                      "device": [{"device_id": "0", "device_ip": "192.98.92.100",
                                  "rank_id": "0"}, ...],
                      "host_nic_ip": "reserve"}],
     "status": "completed"}

Upstream launchers trust the file and hard-code 8 devices per host; a bad table
then surfaces minutes later as an HCCL timeout. :func:`plan_local_ranks`
checks the table up front, reports every problem as one line naming the field,
and derives the ranks this host must start from the table itself.

Command line (``scripts/rank_table.py`` is a thin wrapper)::

    python scripts/rank_table.py validate rank_table.json [--format shell]
    python scripts/rank_table.py generate --device_range "[0,8)" [--hccn_conf /etc/hccn.conf]
    python scripts/rank_table.py merge host1.json host2.json --output rank_table_16p.json

The host this runs on is found by matching ``server_id`` (or ``host_ip``)
against its hostname and addresses; set ``RANK_TABLE_HOST_IP`` (or pass
``--host_ip``) to choose the server explicitly, e.g. behind NAT or in tests.
"""
import argparse
import dataclasses
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from src.errors import ZooError

HOST_IP_VARIABLE = "RANK_TABLE_HOST_IP"
DEFAULT_HCCN_CONF = "/etc/hccn.conf"
# Ascend 910 servers hold 8 NPUs in two HCCS groups, [0,4) and [4,8); HCCL can
# only ring devices inside one group, or all 8 (hccl_tools README).
DEVICES_PER_SERVER = 8
HCCS_GROUP = 4
GENERATE_HINT = ('make one for this host with: python scripts/rank_table.py generate '
                 '--device_range "[0,8)"')


class RankTableError(ZooError):
    """A rank table, hccn.conf or device range that cannot be used."""

    exit_code = 1


@dataclasses.dataclass
class LocalPlan:
    """What this host starts: its server entry and its (device_id, rank_id) pairs."""

    rank_size: int
    server_index: int
    server_id: str
    devices: List[Tuple[int, int]]  # (device_id, global rank_id), sorted by device id


# --------------------------------------------------------------------------- reading

def _as_int(value) -> Optional[int]:
    """A non-negative int from an int or a digit string (hccl_tools writes strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    # ASCII digits only (isdigit() accepts '\u00b2', which int() refuses), and at most
    # 18 of them: int() raises past 4300 and no device or rank number gets near.
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def _is_ip(value) -> bool:
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return False
    return True



def _as_ip(value) -> Optional[str]:
    text = str(value).strip()
    return text if _is_ip(text) else None


def _check_unique(dev, key, parse, kind, field, seen, problems, name):
    """Parse ``dev[key]``; report a bad or repeated value; remember a good one's field in ``seen``."""
    if key not in dev:
        return
    value = parse(dev[key])
    if value is None:
        problems.append(f"{name}: {field}.{key} {dev[key]!r} is not {kind}")
    elif value in seen:
        problems.append(f"{name}: {field}.{key} {value} duplicates {seen[value]}.{key}")
    else:
        seen[value] = field


def load_rank_table(path: str) -> Tuple[Optional[dict], List[str]]:
    """Parse ``path``; return (table or None, problems)."""
    name = f"rank table {path}"
    if not os.path.isfile(path):
        return None, [f"{name}: file not found; {GENERATE_HINT}"]
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        return None, [f"{name}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{name}: cannot read it ({exc})"]
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, nesting too deep
        return None, [f"{name}: not a usable JSON file ({type(exc).__name__}: {str(exc)[:120]})"]
    if not isinstance(data, dict):
        return None, [f"{name}: the top level must be a JSON object with server_count and "
                      f"server_list, got {type(data).__name__}"]
    return data, []


def check_rank_table(data: dict, name: str) -> Tuple[List[str], List[str]]:
    """Structural checks of a parsed table; return (problems, warnings).

    Problems make the table unusable: missing or mistyped fields, a
    ``server_count`` that disagrees with ``server_list``, duplicate device ids
    on one server, duplicate device IPs, and rank ids that are not exactly
    0..N-1. Warnings are device sets that Ascend 910 HCCL cannot ring.
    """
    problems, warnings = [], []
    status = data.get("status")
    if status is not None and status != "completed":
        problems.append(f"{name}: status is {status!r}, HCCL only accepts 'completed'")
    servers = data.get("server_list")
    if servers is None:
        problems.append(f"{name}: has no server_list (an old-format table? {GENERATE_HINT})")
        servers = []
    elif not isinstance(servers, list) or not servers:
        problems.append(f"{name}: server_list must be a non-empty list of servers")
        servers = []
    if "server_count" not in data:
        problems.append(f"{name}: has no server_count")
    else:
        count = _as_int(data["server_count"])
        if count is None:
            problems.append(f"{name}: server_count {data['server_count']!r} is not a "
                            f"non-negative integer")
        elif servers and count != len(servers):
            problems.append(f"{name}: server_count {count} does not match server_list, "
                            f"which has {len(servers)} server(s)")

    server_ids: Dict[str, int] = {}
    ranks: Dict[int, str] = {}  # rank_id -> field that declared it first
    device_ips: Dict[str, str] = {}
    total = 0
    for i, server in enumerate(servers):
        where = f"{name}: server_list[{i}]"
        if not isinstance(server, dict):
            problems.append(f"{where} must be an object with server_id and device")
            continue
        sid = server.get("server_id")
        if sid is None or not str(sid).strip():
            problems.append(f"{where} has no server_id (the host's IP address)")
        elif str(sid) in server_ids:
            problems.append(f"{where}.server_id {sid} duplicates "
                            f"server_list[{server_ids[str(sid)]}].server_id")
        else:
            server_ids[str(sid)] = i
        devices = server.get("device")
        if not isinstance(devices, list) or not devices:
            problems.append(f"{where} has no device list (\"device\": [{{device_id, device_ip, "
                            f"rank_id}}, ...])")
            continue
        seen_ids: Dict[int, str] = {}
        for j, dev in enumerate(devices):
            field = f"server_list[{i}].device[{j}]"
            if not isinstance(dev, dict):
                problems.append(f"{name}: {field} must be an object with device_id, device_ip "
                                f"and rank_id")
                continue
            total += 1
            missing = [k for k in ("device_id", "device_ip", "rank_id") if k not in dev]
            for key in missing:
                problems.append(f"{name}: {field} has no {key}")
            for key, parse, kind, seen in (("device_id", _as_int, "a non-negative integer", seen_ids),
                                           ("device_ip", _as_ip, "an IP address", device_ips),
                                           ("rank_id", _as_int, "a non-negative integer", ranks)):
                _check_unique(dev, key, parse, kind, field, seen, problems, name)
        warning = _device_group_warning(sorted(seen_ids))
        if warning:
            warnings.append(f"{where}: devices {sorted(seen_ids)} {warning}")
    if ranks and total:
        outside = sorted(r for r in ranks if r >= total)
        for rank in outside:
            problems.append(f"{name}: {ranks[rank]}.rank_id {rank} is outside 0..{total - 1} "
                            f"({total} devices in the table)")
        missing = sorted(set(range(total)) - set(ranks))
        if missing:
            problems.append(f"{name}: rank_id values must be exactly 0..{total - 1}; missing "
                            f"{_ranges(missing)}")
    # Device-group advice only makes sense once the device lists themselves are right.
    return problems, ([] if problems else warnings)


def _device_group_warning(device_ids: List[int]) -> Optional[str]:
    """Why Ascend 910 HCCL cannot ring these devices of one server (None if it can)."""
    if not device_ids or max(device_ids) >= DEVICES_PER_SERVER:
        return None  # other server types: nothing known to check
    first, last = device_ids[0], device_ids[-1] + 1
    if device_ids != list(range(first, last)):
        return ("are not contiguous; Ascend 910 HCCL needs a contiguous range "
                "inside [0,4) or [4,8), or all of [0,8)")
    return _range_problem(first, last)


def _range_problem(first: int, last: int) -> Optional[str]:
    if first < HCCS_GROUP < last and (first, last) != (0, DEVICES_PER_SERVER):
        return (f"cross the [0,{HCCS_GROUP})/[{HCCS_GROUP},{DEVICES_PER_SERVER}) device groups; "
                f"Ascend 910 HCCL only rings devices inside one group or all "
                f"{DEVICES_PER_SERVER}")
    return None


def _ranges(values: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``'0-2, 5'``."""
    parts, start = [], None
    for k, value in enumerate(values):
        if start is None:
            start = value
        if k + 1 == len(values) or values[k + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(parts)


# --------------------------------------------------------------------------- this host

def host_identities(host_ip: Optional[str] = None) -> List[str]:
    """Names this host may appear under in a table: override, else hostname and addresses."""
    override = host_ip or os.environ.get(HOST_IP_VARIABLE)
    if override:
        return [override.strip()]
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    names.update(_interface_addresses())
    return sorted(n for n in names if n)


def _interface_addresses() -> List[str]:
    """Addresses of this host's interfaces (``hostname -I``; empty if unavailable)."""
    tool = shutil.which("hostname")
    if not tool:
        return []
    try:
        out = subprocess.run([tool, "-I"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [a for a in out.split() if _is_ip(a)]


def find_local_server(data: dict, name: str, identities: Sequence[str]) -> Tuple[int, List[str]]:
    """Index of the server_list entry that is this host; (-1, [problem]) if none or several."""
    ids = set(identities)
    matches = [i for i, s in enumerate(data.get("server_list") or [])
               if isinstance(s, dict)
               and ({str(s.get("server_id", "")).strip(), str(s.get("host_ip", "")).strip()} & ids)]
    listed = ", ".join(str(s.get("server_id")) for s in data.get("server_list") or []
                       if isinstance(s, dict))
    if not matches:
        return -1, [f"{name}: this host ({', '.join(identities)}) is not in server_list "
                    f"(server_id: {listed}); run on a listed host, or set "
                    f"{HOST_IP_VARIABLE}=<its server_id> if it is reached under another address"]
    if len(matches) > 1:
        return -1, [f"{name}: this host matches several servers (server_list"
                    f"{matches}); set {HOST_IP_VARIABLE}=<server_id> to choose one"]
    return matches[0], []


def plan_local_ranks(path: str, host_ip: Optional[str] = None
                     ) -> Tuple[Optional[LocalPlan], List[str], List[str]]:
    """Validate ``path`` and work out this host's ranks; return (plan, problems, warnings)."""
    data, problems = load_rank_table(path)
    if data is None:
        return None, problems, []
    name = f"rank table {path}"
    problems, warnings = check_rank_table(data, name)
    if problems:
        return None, problems, warnings
    index, problems = find_local_server(data, name, host_identities(host_ip))
    if problems:
        return None, problems, warnings
    servers = data["server_list"]
    server = servers[index]
    devices = sorted((_as_int(d["device_id"]), _as_int(d["rank_id"])) for d in server["device"])
    rank_size = sum(len(s["device"]) for s in servers)
    return LocalPlan(rank_size, index, str(server["server_id"]), devices), [], warnings


# --------------------------------------------------------------------------- generating

def parse_device_range(text: str) -> Tuple[int, int]:
    """``"[0,8)"`` -> (0, 8); rejects empty ranges and ranges HCCL cannot ring."""
    match = re.fullmatch(r"\s*\[\s*(\d+)\s*,\s*(\d+)\s*\)\s*", text or "")
    if not match:
        raise RankTableError(f"device range {text!r} is not of the form [first,last), "
                             f"e.g. \"[0,8)\" for all 8 devices or \"[0,4)\" for the first 4")
    first, last = int(match.group(1)), int(match.group(2))
    if not 0 <= first < last <= DEVICES_PER_SERVER:
        raise RankTableError(f"device range {text!r} must satisfy 0 <= first < last <= "
                             f"{DEVICES_PER_SERVER}")
    problem = _range_problem(first, last)
    if problem:
        raise RankTableError(f"device range {text!r}: devices {first}..{last - 1} {problem}; "
                             f"use e.g. [0,4), [4,8), [2,4) or [0,8)")
    return first, last


def read_hccn_conf(path: str) -> Dict[int, str]:
    """Device NIC addresses from hccn.conf lines ``address_<device_id>=<ip>``."""
    if not os.path.isfile(path):
        raise RankTableError(f"hccn.conf {path!r} not found; it is written by the Ascend driver "
                             f"tools (hccn_tool -i <id> -ip -s address <ip> netmask <mask>); "
                             f"pass --hccn_conf=<file> if it is elsewhere")
    addresses: Dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            match = re.match(r"\s*address_(\d+)\s*=\s*(\S*)\s*$", line)
            if not match:
                continue
            dev, ip = int(match.group(1)), match.group(2)
            if not _is_ip(ip):
                raise RankTableError(f"hccn.conf {path}:{number}: address_{dev}={ip!r} is not an "
                                     f"IP address")
            if dev in addresses:
                raise RankTableError(f"hccn.conf {path}:{number}: address_{dev} is set twice")
            addresses[dev] = ip
    if not addresses:
        raise RankTableError(f"hccn.conf {path!r} has no address_<device_id>=<ip> lines")
    return addresses


def default_server_id() -> str:
    """This host's address for ``server_id``: RANK_TABLE_HOST_IP, else its first interface IP."""
    override = os.environ.get(HOST_IP_VARIABLE)
    if override:
        return override.strip()
    addresses = _interface_addresses()
    if addresses:
        return addresses[0]
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        address = ""
    if not address or ipaddress.ip_address(address).is_loopback:
        raise RankTableError("cannot tell this host's IP address (the hostname resolves to "
                             f"{address or 'nothing'}); pass --server_id=<IP of this host>")
    return address


def build_rank_table(device_ips: Dict[int, str], first: int, last: int, server_id: str,
                     source: str = "hccn.conf") -> dict:
    """The one-server table for devices ``first..last-1`` (rank ids 0..n-1)."""
    missing = [d for d in range(first, last) if d not in device_ips]
    if missing:
        raise RankTableError(
            f"{source} has no address for device(s) {_ranges(missing)} of the range "
            f"[{first},{last}); configure them (hccn_tool -i <id> -ip -s address <ip> netmask "
            f"<mask>) or choose a range of configured devices "
            f"({_ranges(sorted(device_ips)) or 'none'})")
    devices = [{"device_id": str(d), "device_ip": device_ips[d], "rank_id": str(r)}
               for r, d in enumerate(range(first, last))]
    return {"version": "1.0", "server_count": "1",
            "server_list": [{"server_id": server_id, "device": devices,
                             "host_nic_ip": "reserve"}],
            "status": "completed"}


def merge_rank_tables(tables: Sequence[dict]) -> dict:
    """One table for several hosts: servers in the given order, rank ids renumbered."""
    servers, rank = [], 0
    for table in tables:
        for server in table["server_list"]:
            devices = []
            for dev in sorted(server["device"], key=lambda d: _as_int(d["rank_id"])):
                devices.append({"device_id": str(dev["device_id"]),
                                "device_ip": str(dev["device_ip"]), "rank_id": str(rank)})
                rank += 1
            servers.append({"server_id": server["server_id"], "device": devices,
                            "host_nic_ip": server.get("host_nic_ip", "reserve")})
    return {"version": "1.0", "server_count": str(len(servers)), "server_list": servers,
            "status": "completed"}


def _write_table(table: dict, path: str) -> None:
    from src.utils.io import atomic_write_text  # pylint: disable=import-outside-toplevel
    atomic_write_text(path, json.dumps(table, indent=4) + "\n")


# --------------------------------------------------------------------------- command line

def _cmd_validate(args) -> int:
    plan, problems, warnings = plan_local_ranks(args.file, args.host_ip)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    if args.format == "shell":
        print(f"rank_size {plan.rank_size}")
        print(f"server_index {plan.server_index}")
        print(f"server_id {plan.server_id}")
        for device_id, rank_id in plan.devices:
            print(f"device {device_id} {rank_id}")
    else:
        ids = _ranges([d for d, _ in plan.devices])
        print(f"rank table {args.file}: ok, {plan.rank_size} rank(s); this host is "
              f"server_list[{plan.server_index}] (server_id {plan.server_id}) with "
              f"{len(plan.devices)} device(s): {ids}")
    return 0


def _cmd_generate(args) -> int:
    first, last = parse_device_range(args.device_range)
    table = build_rank_table(read_hccn_conf(args.hccn_conf), first, last,
                             args.server_id or default_server_id(),
                             source=f"hccn.conf {args.hccn_conf}")
    server_id = table["server_list"][0]["server_id"]
    output = args.output or (f"hccl_{last - first}p_{''.join(map(str, range(first, last)))}_"
                             f"{server_id}.json")
    problems, _ = check_rank_table(table, f"generated table {output}")
    if problems:  # a bug here, not a user error: the generator must write valid tables
        raise AssertionError("; ".join(problems))
    _write_table(table, output)
    print(f"wrote {output}: devices {first}..{last - 1} of server {server_id}, "
          f"{last - first} rank(s)")
    print(f"train with: scripts/run_distribute_train.sh CONFIG DATA_DIR {output}")
    return 0


def _cmd_merge(args) -> int:
    tables, problems = [], []
    for path in args.files:
        data, load_problems = load_rank_table(path)
        if data is not None:
            load_problems, _ = check_rank_table(data, f"rank table {path}")
        problems += load_problems
        tables.append(data)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    merged = merge_rank_tables(tables)
    problems, _ = check_rank_table(merged, f"merged table {args.output}")
    if problems:  # e.g. the same server or device IP in two inputs
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    _write_table(merged, args.output)
    print(f"wrote {args.output}: {merged['server_count']} server(s), "
          f"{sum(len(s['device']) for s in merged['server_list'])} rank(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``rank_table.py`` argument parser (validate / generate / merge)."""
    parser = argparse.ArgumentParser(
        prog="rank_table.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python scripts/rank_table.py generate --device_range \"[0,8)\"\n"
               "  python scripts/rank_table.py validate hccl_8p_01234567_10.0.0.1.json\n"
               "  python scripts/rank_table.py merge a.json b.json --output rank_table_16p.json")
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser("validate", help="check a table and list this host's ranks")
    val.add_argument("file")
    val.add_argument("--host_ip", default=None,
                     help=f"this host's server_id in the table (default: env {HOST_IP_VARIABLE}, "
                          f"else matched against the hostname and its addresses)")
    val.add_argument("--format", choices=("text", "shell"), default="text",
                     help="shell: 'rank_size N', 'server_index I', 'server_id S', then "
                          "'device <device_id> <rank_id>' per local device (for launchers)")
    gen = sub.add_parser("generate", help="write the table of this host from hccn.conf")
    gen.add_argument("--device_range", "--device_num", required=True,
                     help="devices [first,last), e.g. \"[0,8)\"; inside [0,4) or [4,8), or [0,8)")
    gen.add_argument("--hccn_conf", default=DEFAULT_HCCN_CONF,
                     help=f"file with address_<id>=<ip> lines (default {DEFAULT_HCCN_CONF})")
    gen.add_argument("--server_id", default=None,
                     help=f"this host's IP (default: env {HOST_IP_VARIABLE}, else its first "
                          f"interface address)")
    gen.add_argument("--output", default=None,
                     help="output file (default hccl_<n>p_<ids>_<server_id>.json, as hccl_tools)")
    mer = sub.add_parser("merge", help="combine one-host tables into a multi-host table")
    mer.add_argument("files", nargs="+")
    mer.add_argument("--output", required=True)
    return parser


def main(argv: Sequence[str] = None) -> int:
    """Run the command line; problems are printed one per line, exit status 1."""
    args = build_parser().parse_args(argv)
    handler = {"validate": _cmd_validate, "generate": _cmd_generate, "merge": _cmd_merge}
    try:
        return handler[args.command](args)
    except ZooError as exc:  # RankTableError, or an unwritable --output
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
