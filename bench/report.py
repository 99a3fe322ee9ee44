"""The suite's table and report: figures next to same-run references, ratios, targets, the JSON report.

bench/run_all.py runs the scripts and hands their results here
(:class:`ScriptResult`, one per script); this turns them into the table

    capability | figure | reference (same run) | ratio | target | met?

(:data:`ROWS`: which figure of which script is compared with which
reference, against which target), the list of references, the failures
with the tail of their stderr, and the JSON report (:func:`assemble`).
Nothing here runs a script or measures anything: tests/bench/test_run_all.py
checks it on canned results.
"""

from __future__ import annotations

import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent

OK, FAILED, SKIPPED, UNAVAILABLE = "ok", "failed", "skipped", "unavailable"


# --------------------------------------------------------------------------
# what a script did
# --------------------------------------------------------------------------


@dataclass
class ScriptResult:
    """What one script did: its figures (last stdout line) or why there are none."""

    name: str
    status: str  # ok / failed / skipped / unavailable
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    stderr_tail: str = ""
    command: str = ""

    def to_json(self) -> dict[str, Any]:
        """The script's entry in the report (stderr only when it did not succeed)."""
        out: dict[str, Any] = {"status": self.status, "seconds": round(self.seconds, 1), "command": self.command}
        if self.figures:
            out["figures"] = self.figures
        if self.error:
            out["error"] = self.error
        if self.stderr_tail and self.status != OK:
            out["stderr_tail"] = self.stderr_tail
        return out


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """``figure`` or ``ratio`` compared with ``value`` by ``op`` (>=, >, <=, <)."""

    on: str
    op: str
    value: float

    def met(self, figure: float | None, ratio: float | None) -> bool | None:
        """Whether the target holds; None when its value is unknown."""
        x = figure if self.on == "figure" else ratio
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return None
        return {">=": x >= self.value, ">": x > self.value, "<=": x <= self.value, "<": x < self.value}[self.op]

    def text(self, unit: str) -> str:
        """The target as the table shows it."""
        sym = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}[self.op]
        if self.on == "ratio":
            return f"ratio {sym} {fmt(self.value)}"
        return f"{sym} {fmt(self.value)}{_unit(unit)}"


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure of one script, optionally a reference figure of (usually) another."""

    capability: str
    label: str  # str.format'ed with the script's figures
    script: str
    key: str
    unit: str = "/s"
    ref_script: str = ""
    ref_key: str = ""
    ref_label: str = ""
    targets: tuple[Target, ...] = ()


ROWS: tuple[Row, ...] = (
    Row("durable ledger apply", "creates/s, ledger alone, fsync per batch, on {prefill_dids:,} DIDs", "ledger", "creates_per_s", "/s",
        "ref_ed25519", "verify_per_s", "raw Ed25519 verify/s (pynacl)", (Target("figure", ">=", 12000), Target("ratio", ">=", 0.5))),
    Row("durable ledger apply", "creates/s with both transparency trees (the node's write path)", "ledger", "creates_with_trees_per_s", "/s",
        "ref_ed25519", "verify_per_s", "raw Ed25519 verify/s (pynacl)", (Target("figure", ">=", 9000),)),
    Row("durable ledger apply", "creates/s against the storage ceiling", "ledger", "creates_per_s", "/s",
        "ref_lmdb", "puts_per_s", "LMDB synced group-commit puts/s"),
    Row("durable ledger apply", "controller-signed creates/s", "ledger", "controller_creates_per_s", "/s",
        "ref_ed25519", "verify_per_s", "raw Ed25519 verify/s (pynacl)", (Target("figure", ">=", 8000),)),
    Row("durable ledger apply", "creates/s on a registrars network, signed by the registrar (issue #18: admission and quota)", "ledger",
        "creates_per_s_registrars", "/s", "ledger", "creates_per_s_open_controller", "controller-signed creates/s on the open network, same run",
        (Target("ratio", ">=", 0.9),)),
    Row("durable ledger apply", "rotations/s, ledger alone", "ledger", "rotations_per_s", "/s", "ref_ed25519", "verify_per_s", "raw Ed25519 verify/s (pynacl)"),
    Row("durable ledger apply", "rotations/s with both trees", "ledger", "rotations_with_trees_per_s", "/s", "ref_ed25519", "verify_per_s", "raw Ed25519 verify/s (pynacl)"),
    Row("resolution over gRPC", "resolves/s, {concurrency} callers, {dids:,} DIDs", "resolve", "resolve_per_s", "/s",
        "resolve", "echo_unary_per_s", "gRPC echo unary calls/s (right after)"),
    Row("resolution over gRPC", "resolve p50, {dids:,} DIDs", "resolve", "resolve_p50_ms", "ms", "resolve", "echo_unary_p50_ms", "gRPC echo unary p50"),
    Row("resolution over gRPC", "resolve p99, {dids:,} DIDs", "resolve", "resolve_p99_ms", "ms", "resolve", "echo_unary_p99_ms", "gRPC echo unary p99"),
    Row("resolution over HTTP", "GET /1.0/identifiers resolves/s, {concurrency} callers, {dids:,} DIDs (rounds alternating with gRPC)", "resolve",
        "http_resolve_per_s", "/s", "resolve", "grpc_resolve_per_s", "gRPC Resolve/s, the same rounds", (Target("ratio", ">=", 0.8),)),
    Row("resolution over HTTP", "HTTP resolve p99", "resolve", "http_resolve_p99_ms", "ms", "resolve", "grpc_resolve_p99_ms", "gRPC resolve p99, the same rounds"),
    # Issue #8 sets the p99-growth and RSS targets on `make bench-scale` (10k -> 1M DIDs and a
    # memory-limited run, bench/scale.py); at these smaller sizes they are shown for information.
    Row("resolution over gRPC", "p99 at largest / smallest size ({sizes}); target judged at 1M by make bench-scale", "resolve", "p99_growth", "×"),
    Row("resolution over gRPC", "node VmRSS under resolve load, {dids:,} DIDs (counts LMDB's mapped page cache)", "resolve", "rss_mb", "MB"),
    Row("resolution over gRPC", "  the node's own memory (RssAnon)", "resolve", "rss_anon_mb", "MB", targets=(Target("figure", "<", 300),)),
    Row("resolution over gRPC", "LMDB bytes per DID in use, {dids:,} DIDs", "resolve", "lmdb_used_bytes_per_did", "B", targets=(Target("figure", "<", 2048),)),
    Row("credential verification", "offline verify/s, warm cache", "credentials", "verify_per_s", "/s",
        "credentials", "raw_verify_per_s", "raw Ed25519 verify/s (alternating rounds)", (Target("figure", ">=", 9000), Target("ratio", ">=", 0.4))),
    Row("credential verification", "issue/s", "credentials", "issue_per_s", "/s", "ref_ed25519", "sign_per_s", "raw Ed25519 sign/s (pynacl)",
        (Target("figure", ">=", 10000),)),
    Row("handshakes", "mutual handshakes/s, {concurrency} initiators", "auth", "handshakes_per_s", "/s",
        "auth", "mtls_handshakes_per_s", "Python ssl mutual TLS 1.3 handshakes/s", (Target("figure", ">=", 1500), Target("ratio", ">=", 1.3))),
    Row("handshakes", "handshake p99", "auth", "p99_ms", "ms", "auth", "mtls_p99_ms", "mutual TLS 1.3 p99", (Target("figure", "<", 25),)),
    # Issue #5 set 1,500/s where a bare prototype of the protocol made about 1,750/s: against the bare
    # protocol measured in the same run (bench/ref_bare_handshake.py) that is a ratio of 0.86 on any machine.
    Row("handshakes", "mutual handshakes/s against the bare protocol (#5: 1,500 of the prototype's 1,750)", "auth", "handshakes_per_s", "/s",
        "auth", "bare_handshakes_per_s", "the same four messages and cryptography over grpc.aio, nothing else", (Target("ratio", ">=", 0.86),)),
    Row("handshakes", "  the same against the bare protocol with didnode's header carriage (what the ledger, nonces, protobuf and policy cost)", "auth",
        "handshakes_per_s", "/s", "auth", "bare_headers_handshakes_per_s", "the bare protocol, hello/challenge/session in headers"),
    Row("handshakes", "mutual handshakes/s over TLS (a node with --tls-cert; channels reused, as devices do)", "auth", "tls_handshakes_per_s", "/s",
        "auth", "plaintext_handshakes_per_s", "the same over plaintext, alternating rounds"),
    Row("provisioning end to end", "devices/s, didctl provision of {devices:,}", "provision", "devices_per_s", "/s",
        "ledger", "creates_with_trees_per_s", "in-process durable creates/s (node write path)", (Target("figure", ">=", 3000),)),
    Row("provisioning end to end", "devices/s on a registrars network (the manufacturer a registrar with a quota; --governed)", "provision",
        "devices_per_s_registrars", "/s", "provision", "devices_per_s_open", "devices/s on an open network, alternating runs", (Target("ratio", ">=", 0.9),)),
    Row("audit replay", "entries/s, didctl audit of {audit_entries:,}", "transparency", "audit_per_s", "/s",
        "ref_ed25519", "verify_per_s", "raw Ed25519 verify/s, 1 thread", (Target("figure", ">=", 15000),)),
    Row("witnessed checkpoints", "checkpoints cosigned by 3 witnesses/s (loopback, one log, sequential rounds)", "witness", "cosigned_checkpoints_per_s", "/s",
        "witness", "ref_get_rounds_per_s", "plain GET checkpoint of the same 3 witnesses at once, rounds/s"),
    Row("witnessed checkpoints", "latency to the k-th cosignature (k={k} of {witnesses}), p50", "witness", "kth_cosign_p50_ms", "ms", "witness", "ref_kth_get_p50_ms", "2nd of 3 plain GETs, p50"),
    Row("witnessed checkpoints", "latency to the k-th cosignature (k={k} of {witnesses}), p99", "witness", "kth_cosign_p99_ms", "ms", "witness", "ref_kth_get_p99_ms", "2nd of 3 plain GETs, p99"),
    Row("witnessed checkpoints", "cosigned state proofs verified/s, note cache (2-of-3 witnesses, {dids:,} proofs)", "witness", "cached_proofs_per_s", "/s",
        "witness", "raw_verify_per_s", "raw Ed25519 verify/s, same run", (Target("ratio", ">=", 2),)),
    Row("witnessed checkpoints", "  the same without the cache (a fresh TrustedLog per proof)", "witness", "uncached_proofs_per_s", "/s",
        "witness", "raw_verify_per_s", "raw Ed25519 verify/s, same run"),
    Row("cluster throughput", "durable creates/s, 3 nodes + 3 NATS (R3)", "cluster", "creates_per_s", "/s",
        "ledger", "creates_with_trees_per_s", "one node, in-process durable creates/s (node write path)", (Target("figure", ">=", 2000),)),
    Row("revocation propagation", "ack on A → revoked on B and C, p99", "cluster", "revocation_propagation_p99_ms", "ms", targets=(Target("figure", "<", 200),)),
    Row("abuse resistance", "legitimate creates and handshakes under the worst flood, ratio to unloaded (bench/abuse.py)", "abuse", "min_ratio", "×",
        targets=(Target("figure", ">=", 0.5),)),
    Row("abuse resistance", "legitimate calls refused during the floods (lockouts)", "abuse", "lockouts", "", targets=(Target("figure", "<", 1),)),
    Row("abuse resistance", "node peak RSS (node + workers) under the floods", "abuse", "max_peak_rss_mb", "MB", targets=(Target("figure", "<", 500),)),
    Row("key event logs vs keripy", "icp + 2 rot, durable validate+apply (ledger alone, keripy's scope), events/s ({identifiers:,} ids)", "kel", "events_per_s", "/s",
        "keri_peer", "keri_events_per_s", "keripy validating the same workload into its LMDB, events/s", (Target("ratio", ">=", 50),)),
    Row("key event logs vs keripy", "  the same with both transparency trees (the node's write path)", "kel", "events_with_trees_per_s", "/s",
        "keri_peer", "keri_events_per_s", "keripy validating the same workload into its LMDB, events/s"),
    Row("device data", "anchored segment heads/s, anchors of {heads_per_anchor} heads from {devices:,} devices (node write path)", "data", "heads_per_s", "/s",
        "data", "verify_per_s", "raw Ed25519 verify/s (pynacl), same run", (Target("ratio", ">=", 0.45),)),
    Row("device data", "readings recorded/s by the device SDK, segments of {segment_readings}", "data", "readings_per_s", "/s",
        "data", "sign_per_s", "raw Ed25519 sign/s (pynacl), same run", (Target("ratio", ">=", 10),)),
    Row("device data", "receipts verified/s offline", "data", "receipts_verified_per_s", "/s"),
    Row("device data", "ledger bytes per anchored reading, 60 s segments, 1 reading/s", "data", "bytes_per_reading_1hz", "B", targets=(Target("figure", "<", 2),)),
    Row("device data", "ledger bytes per anchored reading, 60 s segments, 10 readings/s", "data", "bytes_per_reading_10hz", "B", targets=(Target("figure", "<", 2),)),
)  # fmt: skip

# The references, listed under the table with what they measure.
REFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("ref_ed25519", "sign_per_s", "/s", "raw Ed25519 sign, pynacl, 1 thread"),
    ("ref_ed25519", "verify_per_s", "/s", "raw Ed25519 verify, pynacl, 1 thread"),
    ("ref_lmdb", "puts_per_s", "/s", "LMDB synced group-commit puts (batches of {batch:,}, {prefill:,}-entry env)"),
    ("ref_grpc_echo", "unary_per_s", "/s", "plain gRPC echo, unary, {concurrency} callers"),
    ("ref_grpc_echo", "stream_msgs_per_s", "/s", "plain gRPC echo, one bidi stream"),
    ("resolve", "echo_unary_per_s", "/s", "plain gRPC echo, unary, {concurrency} callers, right after the resolves"),
    ("auth", "mtls_handshakes_per_s", "/s", "Python ssl mutual TLS 1.3 handshakes (Ed25519 certs)"),
    ("auth", "bare_handshakes_per_s", "/s", "the bare handshake protocol over grpc.aio (no ledger, nonce stores, protobuf or policy)"),
    ("auth", "bare_headers_handshakes_per_s", "/s", "the same with hello, challenge and session in headers (didnode's carriage)"),
    ("keri_peer", "keri_events_per_s", "/s", "keripy {keri_version} validate into its LMDB (fsync per write txn)"),
    ("keri_peer", "keri_nosync_events_per_s", "/s", "keripy {keri_version}, its LMDB without fsync (not its normal way)"),
)


def _unit(unit: str) -> str:
    """How a unit follows a number: "/s" directly, others after a space."""
    return unit if unit.startswith("/") or not unit else f" {unit}"


def fmt(x: Any) -> str:
    """A figure for the table: thousands separators for large values, 2-3 significant decimals for small ones."""
    if x is None:
        return "—"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, float) and math.isnan(x):
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _number(figures: Mapping[str, Any], key: str) -> float | None:
    """``figures[key]`` as a float, or None when absent or not a number."""
    v = figures.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _label(template: str, figures: Mapping[str, Any]) -> str:
    """``template`` filled from ``figures``; the bare template text when a field is missing."""
    try:
        return template.format(**{k: (",".join(str(x) for x in v) if isinstance(v, list) and k == "sizes" else v) for k, v in figures.items()})
    except (KeyError, ValueError, IndexError):
        return re.sub(r"\{[^}]*\}", "…", template)


def build_rows(results: Mapping[str, ScriptResult], rows: Sequence[Row] = ROWS) -> list[dict[str, Any]]:
    """One table row per :class:`Row` whose script belongs to the run: figure, reference, ratio, target, met."""
    out: list[dict[str, Any]] = []
    for row in rows:
        res = results.get(row.script)
        if res is None:
            continue
        entry: dict[str, Any] = {
            "capability": row.capability,
            "metric": _label(row.label, res.figures),
            "script": row.script,
            "key": row.key,
            "unit": row.unit,
            "figure": None,
            "reference": None,
            "reference_label": row.ref_label or None,
            "ratio": None,
            "target": "; ".join(t.text(row.unit) for t in row.targets) or None,
            "met": None,
            "status": res.status,
            "note": "",
        }
        if res.status != OK:
            entry["note"] = f"{row.script}: {res.error}"
            out.append(entry)
            continue
        figure = _number(res.figures, row.key)
        if figure is None:
            entry["status"] = FAILED
            entry["note"] = f"{row.script} printed no figure {row.key!r}"
            out.append(entry)
            continue
        entry["figure"] = figure
        ratio = None
        if row.ref_script:
            ref = results.get(row.ref_script)
            if ref is None or ref.status != OK:
                why = "not run" if ref is None else f"{ref.status}: {ref.error}"
                entry["note"] = f"reference {row.ref_script} {why}"
            else:
                reference = _number(ref.figures, row.ref_key)
                if reference is None:
                    entry["note"] = f"reference {row.ref_script} printed no {row.ref_key!r}"
                else:
                    entry["reference"] = reference
                    ratio = figure / reference if reference else None
                    entry["ratio"] = ratio
        verdicts = [t.met(figure, ratio) for t in row.targets]
        if verdicts:
            entry["met"] = None if any(v is None for v in verdicts) else all(verdicts)
        out.append(entry)
    return out


def build_references(results: Mapping[str, ScriptResult]) -> list[dict[str, Any]]:
    """The reference figures of the run, each with what it measures."""
    out = []
    for script, key, unit, label in REFERENCES:
        res = results.get(script)
        if res is None or res.status != OK or _number(res.figures, key) is None:
            continue
        out.append({"script": script, "key": key, "unit": unit, "what": _label(label, res.figures), "figure": _number(res.figures, key)})
    return out


def _met_text(entry: Mapping[str, Any]) -> str:
    """The met? column: yes / NO / — or the script's status."""
    if entry["status"] in (FAILED, SKIPPED, UNAVAILABLE):
        return entry["status"].upper()
    return {True: "yes", False: "NO", None: "—"}[entry["met"]]


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as an aligned plain-text table (capability | figure | reference | ratio | target | met?)."""
    header = ("capability", "figure", "reference (same run)", "ratio", "target", "met?")
    lines: list[tuple[str, ...]] = []
    for e in rows:
        unit = e["unit"]
        if e["figure"] is None:
            figure = f"{e['metric']}: —"
        else:
            figure = f"{e['metric']}: {fmt(e['figure'])}{_unit(unit)}"
        if e["reference_label"] is None:
            reference = ""
        elif e["reference"] is None:
            reference = f"{e['reference_label']}: —"
        else:
            reference = f"{e['reference_label']}: {fmt(e['reference'])}"
        lines.append((e["capability"], figure, reference, fmt(e["ratio"]) if e["ratio"] is not None else "", e["target"] or "", _met_text(e)))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    sep = "-+-".join("-" * w for w in widths)
    text = [" | ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), sep]
    text += [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines]
    notes = [f"  {e['note']}" for e in rows if e["note"]]
    if notes:
        text += ["", "notes:", *dict.fromkeys(notes)]
    return "\n".join(text)


def render_failures(results: Mapping[str, ScriptResult]) -> str:
    """For each failed script: its command, why, and the tail of its stderr."""
    parts = []
    for res in results.values():
        if res.status == FAILED:
            body = "\n".join("    " + line for line in res.stderr_tail.splitlines()) or "    (no stderr)"
            parts.append(f"== {res.name} FAILED ({res.error}): {res.command}\n{body}")
    return "\n".join(parts)


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------


def _git_commit() -> str | None:
    """The checked-out commit, read from .git without running git (None when unknown)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (no host names or user names)."""
    cpu = platform.processor()
    mem_gib = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
        "commit": _git_commit(),
    }


def scaling_points(results: Mapping[str, ScriptResult]) -> dict[str, Any]:
    """The per-size points of resolve.py (for the plot), with the echo reference of the run."""
    res = results.get("resolve")
    points = res.figures.get("points", []) if res is not None and res.status == OK else []
    ref = _number(res.figures, "echo_unary_per_s") if res is not None and res.status == OK else None
    echo = results.get("ref_grpc_echo")
    if ref is None and echo is not None and echo.status == OK:
        ref = _number(echo.figures, "unary_per_s")
    lmdb = results.get("ref_lmdb")
    return {"points": points, "echo_unary_per_s": ref, "lmdb_puts_per_s": _number(lmdb.figures, "puts_per_s") if lmdb is not None and lmdb.status == OK else None}


def assemble(profile: str, results: Mapping[str, ScriptResult], machine: Mapping[str, Any], started: str, seconds: float) -> dict[str, Any]:
    """The JSON report: when, where, the table rows, the references, the scaling points, every script's figures."""
    rows = build_rows(results)
    met = [r["met"] for r in rows if r["met"] is not None]
    return {
        "suite": "didnode bench",
        "profile": profile,
        "started": started,
        "seconds": round(seconds, 1),
        "machine": dict(machine),
        "summary": {
            "rows": len(rows),
            "targets_met": sum(1 for m in met if m),
            "targets_missed": sum(1 for m in met if not m),
            "scripts_failed": sorted(n for n, r in results.items() if r.status == FAILED),
            "scripts_unavailable": sorted(n for n, r in results.items() if r.status == UNAVAILABLE),
            "scripts_skipped": sorted(n for n, r in results.items() if r.status == SKIPPED),
        },
        "rows": rows,
        "references": build_references(results),
        "scaling": scaling_points(results),
        "scripts": {name: r.to_json() for name, r in results.items()},
    }


def render(report: Mapping[str, Any], results: Mapping[str, ScriptResult]) -> str:
    """What bench/run_all.py prints: the run's heading, the table, the references, the failures, the summary."""
    m = report["machine"]
    text = [f"didnode bench, {report['profile']} profile, {report['started']}, {m['cpus']} CPUs, load {m['load_avg_1m_start']} → {m['load_avg_1m_end']}"]
    text.append(render_table(report["rows"]))
    refs = report["references"]
    if refs:
        text.append("\nreferences measured in this run:")
        text += [f"  {r['what']}: {fmt(r['figure'])}{_unit(r['unit'])}" for r in refs]
    failures = render_failures(results)
    if failures:
        text.append("\n" + failures)
    s = report["summary"]
    text.append(
        f"\n{s['targets_met']} targets met, {s['targets_missed']} missed; failed: {', '.join(s['scripts_failed']) or 'none'}; "
        f"unavailable: {', '.join(s['scripts_unavailable']) or 'none'}; {report['seconds']:.0f}s in all"
    )
    return "\n".join(text)
