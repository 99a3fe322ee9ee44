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


def start_node(data: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [str(BIN / "didnode"), "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--network", "bench", "--log-level", "warning"]
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
        return [str(BIN / "didctl")]
    return [sys.executable, "-m", "cli.didctl_provision"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--kdf", default="interactive", choices=["interactive", "moderate", "sensitive"], help="Argon2id cost of the keystore and of the bundle passphrase (each runs once)")
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="2,000 devices (CI smoke)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--helper", choices=["auto", "yes", "no"], default="auto", help="the key/signature helper process (didctl's default: auto)")
    args = ap.parse_args()
    count = 2_000 if args.quick else args.count
    base = Path(tempfile.mkdtemp(prefix="didnode-bench-provision-"))
    node, address = start_node(base / "node")
    env = {
        **os.environ,
        "DIDNODE_ADDR": address,
        "DIDCTL_KEYSTORE": str(base / "keystore"),
        "DIDCTL_PASSPHRASE": "bench keystore passphrase",
        "DIDCTL_KDF": args.kdf,
        "BENCH_BUNDLE_PASS": "bench bundle passphrase",
    }
    try:
        subprocess.run([str(BIN / "didctl"), "keystore", "init"], env=env, check=True, capture_output=True, cwd=ROOT)
        mfr = subprocess.run([str(BIN / "didctl"), "did", "create"], env=env, check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
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
        if done.returncode != 0:
            raise SystemExit(f"didctl provision failed ({done.returncode}): {done.stderr.strip()}")
        result = json.loads(done.stdout)
        tool_cpu = (tool_cpu1.ru_utime - tool_cpu0.ru_utime) + (tool_cpu1.ru_stime - tool_cpu0.ru_stime)
        rows = sum(1 for _ in open(out / "manifest.jsonl"))
        bundles = sum(1 for _ in os.scandir(out / "bundles"))
        if result["devices"] != count or rows != count or bundles != count:
            raise SystemExit(f"expected {count} devices, got {result['devices']} (manifest rows {rows}, bundles {bundles})")
        rate = count / seconds
        # What the rest of the machine took meanwhile: on a shared machine the rate falls
        # with it, since the tool and the node alone saturate two cores.
        others = max(0.0, busy - tool_cpu - node_cpu) / (seconds * (os.cpu_count() or 1)) * 100
        print(f"devices          {count:>10,}")
        print(f"end to end       {seconds:>10.2f} s   {rate:,.0f} devices/s (didctl process start to exit)")
        print(f"run              {result['seconds']:>10.2f} s   {result['devicesPerSecond']:,.0f} devices/s (inside the run)")
        print(f"tool cpu         {tool_cpu / count * 1e6:>10.0f} us/device")
        print(f"node cpu         {node_cpu / count * 1e6:>10.0f} us/device   on {os.cpu_count()} cores")
        print(f"other processes  {others:>10.0f} % of the machine meanwhile")
        emit(
            {
                "devices": count,
                "devices_per_s": rate,
                "seconds": seconds,
                "run_seconds": result["seconds"],
                "run_devices_per_s": result["devicesPerSecond"],
                "tool_cpu_us_per_device": tool_cpu / count * 1e6,
                "node_cpu_us_per_device": node_cpu / count * 1e6,
                "other_processes_cpu_pct": others,
            }
        )
    finally:
        node.terminate()
        try:
            node.wait(15)
        except subprocess.TimeoutExpired:
            node.kill()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
