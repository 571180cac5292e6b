"""Ascend rank tables: validation (one line per problem, naming the field), this
host's ranks derived from the table, the generator and its device-range rules.

Everything runs without an Ascend device: ``RANK_TABLE_HOST_IP`` / ``host_ip``
stands in for the host's addresses and hccn.conf is a file in tmp.
"""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from src.distributed import rank_table as rt  # noqa: E402

CLI = REPO / "scripts" / "rank_table.py"
HCCN_CONF = "".join(f"address_{d}=192.98.{92 + d % 4}.{100 + d // 4}\nnetmask_{d}=255.255.255.0\n"
                    for d in range(8))


def two_server_table():
    """server 10.0.0.1 has devices 0-3 (ranks 0-3), 10.0.0.2 devices 4-7 (ranks 4-7)."""
    servers = []
    for s, (server, first) in enumerate((("10.0.0.1", 0), ("10.0.0.2", 4))):
        devices = [{"device_id": str(first + k), "device_ip": f"192.168.{s}.{k + 1}",
                    "rank_id": str(4 * s + k)} for k in range(4)]
        servers.append({"server_id": server, "device": devices, "host_nic_ip": "reserve"})
    return {"version": "1.0", "server_count": "2", "server_list": servers, "status": "completed"}


def write(tmp_path, table, name="table.json"):
    path = tmp_path / name
    path.write_text(table if isinstance(table, str) else json.dumps(table))
    return str(path)


def problems_of(tmp_path, table, host_ip="10.0.0.1"):
    plan, problems, _ = rt.plan_local_ranks(write(tmp_path, table), host_ip=host_ip)
    assert (plan is None) == bool(problems)
    return problems


def run_cli(*args, cwd=None, env_extra=None):
    import os
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=60)


# --------------------------------------------------------------------------- validation

def test_good_table_gives_this_hosts_ranks(tmp_path):
    plan, problems, warnings = rt.plan_local_ranks(write(tmp_path, two_server_table()),
                                                   host_ip="10.0.0.2")
    assert problems == [] and warnings == []
    assert plan.rank_size == 8 and plan.server_index == 1 and plan.server_id == "10.0.0.2"
    # local device count and global rank ids come from the table, not a hard-coded 8
    assert plan.devices == [(4, 4), (5, 5), (6, 6), (7, 7)]


def test_integer_fields_are_accepted_as_well_as_strings(tmp_path):
    table = two_server_table()
    for server in table["server_list"]:
        for dev in server["device"]:
            dev["device_id"], dev["rank_id"] = int(dev["device_id"]), int(dev["rank_id"])
    table["server_count"] = 2
    assert problems_of(tmp_path, table) == []


def test_bad_json_names_line_and_column(tmp_path):
    path = write(tmp_path, '{"server_count": "1",\n "server_list": [}')
    (problem,) = problems_of(tmp_path, open(path).read())
    assert "not valid JSON at line 2 column" in problem
    assert problem.startswith(f"rank table {tmp_path / 'table.json'}:")


def test_missing_file(tmp_path):
    _, problems, _ = rt.plan_local_ranks(str(tmp_path / "nope.json"), host_ip="10.0.0.1")
    assert len(problems) == 1 and "file not found" in problems[0] and "generate" in problems[0]


def test_server_count_mismatch(tmp_path):
    table = two_server_table()
    table["server_count"] = "3"
    (problem,) = problems_of(tmp_path, table)
    assert "server_count 3 does not match server_list, which has 2 server(s)" in problem


def test_duplicate_device_id(tmp_path):
    table = two_server_table()
    table["server_list"][0]["device"][3]["device_id"] = "1"
    (problem,) = problems_of(tmp_path, table)
    assert ("server_list[0].device[3].device_id 1 duplicates server_list[0].device[1].device_id"
            in problem)


def test_duplicate_rank_id(tmp_path):
    table = two_server_table()
    table["server_list"][1]["device"][2]["rank_id"] = "3"
    problems = problems_of(tmp_path, table)
    assert any("server_list[1].device[2].rank_id 3 duplicates server_list[0].device[3].rank_id"
               in p for p in problems)
    assert any("rank_id values must be exactly 0..7; missing 6" in p for p in problems)


def test_gapped_rank_ids(tmp_path):
    table = two_server_table()
    table["server_list"][1]["device"][3]["rank_id"] = "9"
    problems = problems_of(tmp_path, table)
    assert len(problems) == 2
    assert "server_list[1].device[3].rank_id 9 is outside 0..7" in problems[0]
    assert "missing 7" in problems[1]


@pytest.mark.parametrize("field", ["device_id", "device_ip", "rank_id"])
def test_missing_device_field(tmp_path, field):
    table = two_server_table()
    del table["server_list"][0]["device"][2][field]
    problems = problems_of(tmp_path, table)
    assert f"server_list[0].device[2] has no {field}" in problems[0]


def test_missing_server_list_is_the_old_format(tmp_path):
    problems = problems_of(tmp_path, {"board_id": "0x0000", "group_count": "1"})
    assert any("has no server_list" in p and "generate" in p for p in problems)
    assert any("has no server_count" in p for p in problems)


def test_wrong_types_and_status(tmp_path):
    table = two_server_table()
    table["status"] = "initializing"
    table["server_list"][0]["device"][0]["device_ip"] = "not-an-ip"
    table["server_list"][0]["device"][1]["device_id"] = "-1"
    problems = problems_of(tmp_path, table)
    assert any("status is 'initializing'" in p for p in problems)
    assert any("server_list[0].device[0].device_ip 'not-an-ip' is not an IP address" in p
               for p in problems)
    assert any("server_list[0].device[1].device_id '-1' is not a non-negative integer" in p
               for p in problems)


def test_host_not_in_table(tmp_path):
    (problem,) = problems_of(tmp_path, two_server_table(), host_ip="10.9.9.9")
    assert "this host (10.9.9.9) is not in server_list (server_id: 10.0.0.1, 10.0.0.2)" in problem
    assert rt.HOST_IP_VARIABLE in problem


def test_host_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(rt.HOST_IP_VARIABLE, "10.0.0.1")
    plan, problems, _ = rt.plan_local_ranks(write(tmp_path, two_server_table()))
    assert not problems and plan.server_index == 0


def test_host_matched_by_its_own_addresses(tmp_path, monkeypatch):
    monkeypatch.delenv(rt.HOST_IP_VARIABLE, raising=False)
    table = two_server_table()
    table["server_list"][1]["server_id"] = rt.host_identities()[0]
    plan, problems, _ = rt.plan_local_ranks(write(tmp_path, table))
    assert not problems and plan.server_index == 1


def test_devices_crossing_groups_only_warn(tmp_path):
    table = rt.build_rank_table({3: "192.168.0.3", 4: "192.168.0.4"}, 3, 5, "10.0.0.1")
    _, problems, warnings = rt.plan_local_ranks(write(tmp_path, table), host_ip="10.0.0.1")
    assert problems == []
    assert len(warnings) == 1 and "cross the [0,4)/[4,8)" in warnings[0]


def test_cli_validate_prints_one_line_per_problem(tmp_path):
    table = two_server_table()
    table["server_count"] = "5"
    table["server_list"][0]["device"][1]["device_id"] = "0"
    proc = run_cli("validate", write(tmp_path, table), "--host_ip", "10.0.0.1")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all(l.startswith(f"error: rank table {tmp_path}") for l in lines)


def test_cli_validate_shell_format(tmp_path):
    proc = run_cli("validate", write(tmp_path, two_server_table()), "--format", "shell",
                   env_extra={rt.HOST_IP_VARIABLE: "10.0.0.2"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["rank_size 8", "server_index 1", "server_id 10.0.0.2",
                                        "device 4 4", "device 5 5", "device 6 6", "device 7 7"]


# --------------------------------------------------------------------------- generation

@pytest.mark.parametrize("text,expected", [("[0,8)", (0, 8)), ("[0,4)", (0, 4)),
                                           ("[4,8)", (4, 8)), ("[2,4)", (2, 4)),
                                           ("[5,6)", (5, 6)), (" [ 0 , 2 ) ", (0, 2))])
def test_allowed_device_ranges(text, expected):
    assert rt.parse_device_range(text) == expected


@pytest.mark.parametrize("text,reason", [("[3,6)", "cross the [0,4)/[4,8)"),
                                         ("[2,8)", "cross the [0,4)/[4,8)"),
                                         ("[0,9)", "0 <= first < last <= 8"),
                                         ("[4,4)", "0 <= first < last <= 8"),
                                         ("0-8", "not of the form [first,last)"),
                                         ("[0,8]", "not of the form [first,last)")])
def test_rejected_device_ranges(text, reason):
    with pytest.raises(rt.RankTableError, match=None) as info:
        rt.parse_device_range(text)
    assert reason in str(info.value)


def test_generate_from_hccn_conf_matches_hccl_tools_format(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text("# written by hccn_tool\n" + HCCN_CONF)
    proc = run_cli("generate", "--device_range", "[0,8)", "--hccn_conf", conf, cwd=tmp_path,
                   env_extra={rt.HOST_IP_VARIABLE: "10.0.0.7"})
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "hccl_8p_01234567_10.0.0.7.json"  # hccl_tools' file name
    table = json.loads(out.read_text())
    assert list(table) == ["version", "server_count", "server_list", "status"]
    assert table["version"] == "1.0" and table["server_count"] == "1"
    assert table["status"] == "completed"
    (server,) = table["server_list"]
    assert server["server_id"] == "10.0.0.7" and server["host_nic_ip"] == "reserve"
    assert server["device"][5] == {"device_id": "5", "device_ip": "192.98.93.101", "rank_id": "5"}
    assert all(list(d) == ["device_id", "device_ip", "rank_id"] for d in server["device"])
    check = run_cli("validate", out, "--host_ip", "10.0.0.7")
    assert check.returncode == 0 and "8 device(s): 0-7" in check.stdout


def test_generate_upper_group_numbers_ranks_from_zero(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text(HCCN_CONF)
    out = tmp_path / "t.json"
    proc = run_cli("generate", "--device_range", "[4,8)", "--hccn_conf", conf,
                   "--server_id", "10.0.0.1", "--output", out)
    assert proc.returncode == 0, proc.stderr
    devices = json.loads(out.read_text())["server_list"][0]["device"]
    assert [(d["device_id"], d["rank_id"]) for d in devices] == [("4", "0"), ("5", "1"),
                                                                 ("6", "2"), ("7", "3")]


def test_generate_rejects_crossing_range(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text(HCCN_CONF)
    proc = run_cli("generate", "--device_range", "[3,6)", "--hccn_conf", conf,
                   "--server_id", "10.0.0.1", cwd=tmp_path)
    assert proc.returncode == 1
    assert "cross the [0,4)/[4,8)" in proc.stderr and not list(tmp_path.glob("hccl_*.json"))


def test_generate_device_missing_from_hccn_conf(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text("".join(l + "\n" for l in HCCN_CONF.splitlines() if "_3=" not in l))
    with pytest.raises(rt.RankTableError) as info:
        rt.build_rank_table(rt.read_hccn_conf(str(conf)), 0, 4, "10.0.0.1", source=str(conf))
    assert "no address for device(s) 3 of the range [0,4)" in str(info.value)


def test_hccn_conf_errors(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.98.92.100\naddress_1=300.1.1.1\n")
    with pytest.raises(rt.RankTableError, match=r"hccn.conf .*:2: address_1='300.1.1.1'"):
        rt.read_hccn_conf(str(conf))
    with pytest.raises(rt.RankTableError, match="not found"):
        rt.read_hccn_conf(str(tmp_path / "missing.conf"))
    conf.write_text("netmask_0=255.255.255.0\n")
    with pytest.raises(rt.RankTableError, match="no address_<device_id>=<ip> lines"):
        rt.read_hccn_conf(str(conf))


def test_merge_renumbers_ranks(tmp_path):
    ips_a = {d: f"192.168.1.{d + 1}" for d in range(8)}
    ips_b = {d: f"192.168.2.{d + 1}" for d in range(8)}
    a = write(tmp_path, rt.build_rank_table(ips_a, 0, 8, "10.0.0.1"), "a.json")
    b = write(tmp_path, rt.build_rank_table(ips_b, 0, 8, "10.0.0.2"), "b.json")
    out = tmp_path / "m.json"
    proc = run_cli("merge", a, b, "--output", out)
    assert proc.returncode == 0, proc.stderr
    plan, problems, _ = rt.plan_local_ranks(str(out), host_ip="10.0.0.2")
    assert not problems and plan.rank_size == 16
    assert plan.devices == [(d, 8 + d) for d in range(8)]


def test_merge_refuses_duplicate_device_ips(tmp_path):
    table = rt.build_rank_table({d: f"192.168.1.{d}" for d in range(4)}, 0, 4, "10.0.0.1")
    other = copy.deepcopy(table)
    other["server_list"][0]["server_id"] = "10.0.0.2"
    a, b = write(tmp_path, table, "a.json"), write(tmp_path, other, "b.json")
    proc = run_cli("merge", a, b, "--output", tmp_path / "m.json")
    assert proc.returncode == 1 and "duplicates server_list[0].device[0].device_ip" in proc.stderr


def test_cli_help_and_usage_errors():
    helped = run_cli("-h")
    assert helped.returncode == 0 and "validate" in helped.stdout and "generate" in helped.stdout
    assert "examples:" in helped.stdout
    missing = run_cli("generate")
    assert missing.returncode == 2 and "--device_range" in missing.stderr
