"""End-to-end factory provisioning rate: the real ``didctl provision`` against a real node on loopback.

Starts ``didnode serve`` (port 0, temporary data directory, durable acks:
every batch is fsync'd before it is acknowledged), creates a keystore and a
manufacturer DID with ``didctl``, then times one ``didctl provision`` process
from start to exit for --count devices (default 20,000): tool-generated
keys, key-agreement keys, passphrase-sealed bundles, one attestation
credential and status list entry per device, recovery keys into the
keystore, journal, manifests, bundles. The tool and the node share the
machine, as on a factory line PC.

Reported: devices per second over the whole process (start-up and
keystore unlock included), the run's own time, the CPU each process spent
per device, and the share of the machine other processes took meanwhile
(the tool and the node saturate two cores, so that share lowers the rate).
The output is checked: exactly --count manifest rows and bundles.

With --governed, the same run is timed twice in one invocation, each on its
own node: on an open network (as above) and on a ``registrars`` network
(issue #18) whose genesis (bench/governed.py) lists a governor and the
manufacturer as a registrar with a quota (per window and total) the run
fits in, so every device create passes the registrar check and is counted
against the quota. The runs alternate (open, registrars, open, registrars
with --rounds 2), and the figures are ``devices_per_s_open``,
``devices_per_s_registrars`` and ``provision_registrars_vs_open`` (target:
within 10%, >= 0.9). Both manufacturers are created the same way (one
Ed25519 key for every purpose, keys in the keystore), so each device create
carries the same two signatures on both networks.

Last stdout line: one JSON object {"devices", "devices_per_s", "seconds", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, emit  # noqa: E402
from governed import Member, new_member, write_governed_node  # noqa: E402

from didnode.core.governance.policy import REGISTRARS, CreateQuota  # noqa: E402

BIN = Path(sys.executable).parent


def tree_cpu(pid: int) -> float:
    """user+system CPU seconds of ``pid`` and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return total / tick


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


NETWORK = "bench"


def start_node(data: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "cli.didnode", "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--network", NETWORK, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise SystemExit("didnode did not start")
    return proc, line


def didctl_provision_cmd() -> list[str]:
    """``didctl provision`` once it is registered on the installed didctl; until then the same group via -m."""
    sys.path.insert(0, ROOT)
    from cli.didctl import main as didctl_main

    if "provision" in didctl_main.commands:
        return didctl()
    return [sys.executable, "-m", "cli.didctl_provision"]


def didctl() -> list[str]:
    """didctl from this checkout (``python -m``, run in ROOT: the code beside this script, installed or not)."""
    return [sys.executable, "-m", "cli.didctl"]


def stop_node(node: subprocess.Popen[str]) -> None:
    node.terminate()
    try:
        node.wait(15)
    except subprocess.TimeoutExpired:
        node.kill()


def governed_node(data: Path, count: int, keystore: Path, env: dict[str, str]) -> Member:
    """A registrars network's node data dir (genesis: a governor, the manufacturer as registrar with a
    quota per hour and in total that ``count`` devices fit in); the manufacturer's keys go into ``keystore``."""
    from didnode.keystore import Keystore

    governor, mfr = new_member(NETWORK), new_member(NETWORK)
    quota = CreateQuota(window_s=3600, per_window=4 * count + 1000, total=100 * count + 1000)
    write_governed_node(data, NETWORK, [governor, mfr], [governor], REGISTRARS, {mfr.did: quota})
    ks = Keystore.open(keystore, env["DIDCTL_PASSPHRASE"], create=True, kdf=env["DIDCTL_KDF"])  # type: ignore[arg-type]
    ks.put(mfr.secrets())
    return mfr


def one_run(base: Path, args: argparse.Namespace, count: int, governed: bool) -> dict[str, float]:
    """Start a node (open, or a registrars network), provision ``count`` devices with one didctl process; the figures."""
    keystore = base / "keystore"
    env = {
        **os.environ,
        "DIDCTL_KEYSTORE": str(keystore),
        "DIDCTL_PASSPHRASE": "bench keystore passphrase",
        "DIDCTL_KDF": args.kdf,
        "DIDCTL_TRUST_DIR": str(base / "trust"),
        "BENCH_BUNDLE_PASS": "bench bundle passphrase",
    }
    env.pop("DIDCTL_TRUST", None)
    mfr_member = governed_node(base / "node", count, keystore, env) if governed else None
    node, address = start_node(base / "node")
    env["DIDNODE_ADDR"] = address
    try:
        subprocess.run(didctl() + ["trust", "add", "--yes"], env=env, check=True, capture_output=True, cwd=ROOT)
        if mfr_member is None:
            subprocess.run(didctl() + ["keystore", "init"], env=env, check=True, capture_output=True, cwd=ROOT)
            # Created as the genesis manufacturer is: one key for every purpose (no key-agreement key).
            mfr = subprocess.run(didctl() + ["did", "create", "--no-key-agreement"], env=env, check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        else:
            mfr = mfr_member.did
        out = base / "run"
        cmd = didctl_provision_cmd() + [
            "--json", "provision", "--manufacturer", mfr, "--model", "BENCH-1", "--count", str(count), "--out", str(out),
            "--hardware-version", "rev-b", "--firmware-version", "1.0.0", "--bundle-passphrase-env", "BENCH_BUNDLE_PASS",
            "--chunk-size", str(args.chunk_size),
        ] + ({"auto": [], "yes": ["--helper"], "no": ["--no-helper"]}[args.helper])  # fmt: skip
        node_cpu0 = tree_cpu(node.pid)
        busy0 = machine_busy()
        tool_cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - t0
        tool_cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        node_cpu = tree_cpu(node.pid) - node_cpu0
        busy = machine_busy() - busy0
    finally:
        stop_node(node)
    if done.returncode != 0:
        raise SystemExit(f"didctl provision failed ({done.returncode}): {done.stderr.strip()}")
    result = json.loads(done.stdout)
    tool_cpu = (tool_cpu1.ru_utime - tool_cpu0.ru_utime) + (tool_cpu1.ru_stime - tool_cpu0.ru_stime)
    rows = sum(1 for _ in open(out / "manifest.jsonl"))
    bundles = sum(1 for _ in os.scandir(out / "bundles"))
    if result["devices"] != count or rows != count or bundles != count:
        raise SystemExit(f"expected {count} devices, got {result['devices']} (manifest rows {rows}, bundles {bundles})")
    # What the rest of the machine took meanwhile: on a shared machine the rate falls
    # with it, since the tool and the node alone saturate two cores.
    others = max(0.0, busy - tool_cpu - node_cpu) / (seconds * (os.cpu_count() or 1)) * 100
    return {
        "seconds": seconds,
        "run_seconds": result["seconds"],
        "run_devices_per_s": result["devicesPerSecond"],
        "tool_cpu": tool_cpu,
        "node_cpu": node_cpu,
        "others": others,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--kdf", default="interactive", choices=["interactive", "moderate", "sensitive"], help="Argon2id cost of the keystore and of the bundle passphrase (each runs once)")
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="2,000 devices (CI smoke)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--helper", choices=["auto", "yes", "no"], default="auto", help="the key/signature helper process (didctl's default: auto)")
    ap.add_argument("--governed", action="store_true", help="also run on a registrars network and report the ratio (module docstring)")
    ap.add_argument("--rounds", type=int, default=1, help="with --governed: alternating open/registrars rounds (their times are summed)")
    args = ap.parse_args()
    count = 2_000 if args.quick else args.count
    base = Path(tempfile.mkdtemp(prefix="didnode-bench-provision-"))
    try:
        kinds = [False, True] * max(1, args.rounds) if args.governed else [False]
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for i, governed in enumerate(kinds):
            runs[governed].append(one_run(base / f"{i}-{'registrars' if governed else 'open'}", args, count, governed))
        report(count, runs)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def report(count: int, runs: dict[bool, list[dict[str, float]]]) -> None:
    """Print the table and the JSON line; the main figures are the open runs' (summed over rounds)."""
    def summed(rs: list[dict[str, float]]) -> dict[str, float]:
        n = count * len(rs)
        seconds = sum(r["seconds"] for r in rs)
        run_seconds = sum(r["run_seconds"] for r in rs)
        return {
            "rate": n / seconds,
            "seconds": seconds / len(rs),
            "run_seconds": run_seconds / len(rs),
            "run_rate": n / run_seconds,
            "tool": sum(r["tool_cpu"] for r in rs) / n * 1e6,
            "node": sum(r["node_cpu"] for r in rs) / n * 1e6,
            "others": sum(r["others"] * r["seconds"] for r in rs) / seconds,
        }

    o = summed(runs[False])
    print(f"devices          {count:>10,}")
    print(f"end to end       {o['seconds']:>10.2f} s   {o['rate']:,.0f} devices/s (didctl process start to exit)")
    print(f"run              {o['run_seconds']:>10.2f} s   {o['run_rate']:,.0f} devices/s (inside the run)")
    print(f"tool cpu         {o['tool']:>10.0f} us/device")
    print(f"node cpu         {o['node']:>10.0f} us/device   on {os.cpu_count()} cores")
    print(f"other processes  {o['others']:>10.0f} % of the machine meanwhile")
    figures = {
        "devices": count,
        "devices_per_s": o["rate"],
        "seconds": o["seconds"],
        "run_seconds": o["run_seconds"],
        "run_devices_per_s": o["run_rate"],
        "tool_cpu_us_per_device": o["tool"],
        "node_cpu_us_per_device": o["node"],
        "other_processes_cpu_pct": o["others"],
    }
    if runs[True]:
        g = summed(runs[True])
        print(f"registrars network, {len(runs[True])} round(s) alternating with the open one:")
        print(f"  end to end     {g['seconds']:>10.2f} s   {g['rate']:,.0f} devices/s  ({g['rate'] / o['rate']:.2f} of open)")
        print(f"  run            {g['run_seconds']:>10.2f} s   {g['run_rate']:,.0f} devices/s  ({g['run_rate'] / o['run_rate']:.2f} of open)")
        print(f"  node cpu       {g['node']:>10.0f} us/device  (open: {o['node']:.0f})")
        figures.update(
            {
                "rounds": len(runs[True]),
                "devices_per_s_open": o["rate"],
                "devices_per_s_registrars": g["rate"],
                "provision_registrars_vs_open": g["rate"] / o["rate"],
                "run_devices_per_s_registrars": g["run_rate"],
                "run_registrars_vs_open": g["run_rate"] / o["run_rate"],
                "node_cpu_us_per_device_registrars": g["node"],
                "other_processes_cpu_pct_registrars": g["others"],
            }
        )
    emit(figures)


if __name__ == "__main__":
    main()
