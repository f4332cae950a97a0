#!/usr/bin/env python3
"""End-to-end benchmark: fairgate against an independent pass-through.

Every participant is a process of its own, so that its CPU time can be read
from /proc/PID/stat:

* the broker: nisshi, started here (in memory);
* the input: `fairgate loadgen` (decisions of ~1 KB keyed by campaign);
* the baseline: `examples/passthrough.rs`, the plainest at-least-once
  consume-produce-commit loop with rdkafka, sharing no code with fairgate;
* fairgate: `fairgate run` with config/fairgate.toml as shipped, only the
  brokers, group, topics, HTTP address and policy path replaced;
* progress and read-back: `examples/bench_probe.rs`.

Throughput passes run in ABBA order (baseline, fairgate, fairgate, baseline)
over the same input topic, each with its own group and output topic; a pass
ends when the group's committed offsets reach the input's end. Then fairgate
with 1 and with 2 judge threads; then latency at half the baseline's rate;
then (unless --skip-in-process) the product's own in-process comparison,
`fairgate bench-e2e`, reported apart.

Run it through scripts/bench-e2e, which builds the binaries first.
"""

import argparse
import json
import os
import re
import signal
import statistics
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
FAIRGATE = TARGET / "fairgate"
PASSTHROUGH = TARGET / "examples" / "passthrough"
PROBE = TARGET / "examples" / "bench_probe"
TICK = os.sysconf("SC_CLK_TCK")

# The one setting in which the baseline departs from librdkafka's defaults
# besides what at-least-once needs, matched to fairgate's own consumer
# (src/kafka/client.rs). nisshi does not wake a waiting Fetch when records
# arrive: it re-reads storage after half the time left, so with the 500 ms
# default a record on a quiet topic waits up to ~250 ms at the broker, which
# would be counted against the baseline's latency (2000/s: p50 130 ms, p99
# 267 ms with the default; fairgate 32 / 66 ms).
BASELINE_CONSUMER = ["fetch.wait.max.ms=100"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def now_ms():
    return time.time() * 1000.0


def cpu_seconds(pid):
    """utime + stime of a live process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5); the split drops the first two.
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid):
    """CPU seconds of a live process's threads, summed by thread name."""
    by_name = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1]
        fields = tail.split()
        by_name[name] = by_name.get(name, 0) + (int(fields[11]) + int(fields[12])) / TICK
    return dict(sorted(((k, round(v, 2)) for k, v in by_name.items() if v > 0),
                       key=lambda kv: -kv[1]))


def machine_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- config


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string for what configs hold
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def toml_key(k):
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def toml_dump(doc, prefix=()):
    lines = []
    tables = []
    for k, v in doc.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{toml_key(k)} = {toml_value(v)}")
    for k, v in tables:
        name = ".".join(toml_key(x) for x in prefix + (k,))
        lines.append(f"\n[{name}]")
        lines.extend(toml_dump(v, prefix + (k,)))
    return lines


def fairgate_config(shipped, path, brokers, group, topics, workers=None):
    """The shipped configuration with only what a run must change replaced."""
    doc = tomllib.loads(Path(shipped).read_text())
    doc["policy"] = str((Path(shipped).parent / doc["policy"]).resolve())
    kafka = doc.setdefault("kafka", {})
    kafka["brokers"] = brokers
    kafka["group_id"] = group
    kafka["topics"] = topics
    doc.setdefault("http", {})["listen"] = f"127.0.0.1:{free_port()}"
    if workers is not None:
        doc.setdefault("pipeline", {})["workers"] = workers
    Path(path).write_text("\n".join(toml_dump(doc)) + "\n")


def fairgate_topics(inp, out):
    return {
        "input": inp,
        "output": out,
        "blocked": f"{out}.blocked",
        "dead_letter": f"{out}.dlq",
        "alerts": f"{out}.alerts",
        "campaigns": f"{out}.campaigns",
        "exposure": f"{out}.exposure",
    }


# The state key of the runs (the shipped config reads it from this variable).
STATE_KEY = "bench-state-key-0123456789abcdef"


# ---------------------------------------------------------------- bench


class Bench:
    def __init__(self, a):
        self.a = a
        self.brokers = f"127.0.0.1:{a.port}"
        self.run_id = int(time.time()) % 100_000_000
        self.logs = ROOT / "artifacts" / "bench-e2e-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nisshi = None
        self.kids = []

    # -- processes

    def start_broker(self):
        try:
            socket.create_connection(("127.0.0.1", self.a.port), 0.2).close()
            raise SystemExit(f"port {self.a.port} is taken; choose another with --port")
        except OSError:
            pass
        nisshi = Path.home() / ".cargo" / "bin" / "nisshi"
        out = open(self.logs / "nisshi.log", "w")
        self.nisshi = subprocess.Popen(
            [
                str(nisshi),
                "--listener-url", f"tcp://127.0.0.1:{self.a.port}",
                "--advertised-listener-url", f"tcp://127.0.0.1:{self.a.port}",
                "--storage-engine", "memory://nisshi/",
                "--group-initial-rebalance-delay", "200ms",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        for _ in range(100):
            if self.nisshi.poll() is not None:
                raise SystemExit(f"nisshi exited; see {self.logs / 'nisshi.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.a.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"nisshi did not listen on {self.a.port}")

    def stop_all(self):
        for p in self.kids + ([self.nisshi] if self.nisshi else []):
            self.stop(p, 30)

    def probe(self, *args, capture=False):
        cmd = [str(PROBE), *args[:1], "--brokers", self.brokers, *args[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:2])}: {r.stderr.strip()}")
        return r.stdout if capture else None

    def create(self, *topics):
        self.probe("create", "--partitions", str(self.a.partitions),
                   "--log-append-time", *topics)

    def create_state(self, out):
        """fairgate's campaign table (compacted) and exposure topic."""
        self.probe("create", "--partitions", str(self.a.partitions), "--compact",
                   f"{out}.campaigns")
        self.probe("create", "--partitions", str(self.a.partitions), f"{out}.exposure")

    def loadgen(self, topic, count, rate, prefix, seed, pregenerate=False):
        """Produce `count` decisions at `rate` (0: unpaced). Returns the
        seconds the sending took; with `pregenerate`, every decision is made
        before the first is sent (a paced run then reaches rates that making
        them as it goes cannot), and the making is not counted."""
        cmd = [
            str(FAIRGATE), "loadgen", "--brokers", self.brokers, "--topic", topic,
            "--rate", str(rate), "--count", str(count), "--campaigns", "200",
            "--skewed", "3", "--malformed-every", "1000", "--seed", str(seed),
            "--id-prefix", prefix,
        ] + (["--pregenerate"] if pregenerate else [])
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"loadgen: {r.stderr.strip()}")
        sent = re.search(r"sent in ([0-9.]+)s\)", r.stderr)
        return float(sent.group(1)) if sent else time.time() - t0

    def spawn(self, kind, name, group, inp, out, workers=None):
        """Start the baseline or fairgate on `inp` → `out`."""
        logf = open(self.logs / f"{name}.log", "w")
        if kind == "baseline":
            cmd = [str(PASSTHROUGH), "--brokers", self.brokers, "--input", inp,
                   "--output", out, "--group", group]
            for kv in BASELINE_CONSUMER:
                cmd += ["--consumer", kv]
        else:
            cfg = self.logs / f"{name}.toml"
            fairgate_config(self.a.config, cfg, self.brokers, group,
                            fairgate_topics(inp, out), workers)
            cmd = [str(FAIRGATE), "run", "--config", str(cfg)]
        t0 = now_ms()
        env = dict(os.environ, FAIRGATE_STATE_KEY=STATE_KEY)
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        self.kids.append(p)
        return p, t0

    def watch(self, group, topic):
        p = subprocess.Popen(
            [str(PROBE), "watch", "--brokers", self.brokers, "--group", group,
             "--topic", topic, "--interval-ms", "100"],
            stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.kids.append(p)
        return p

    def wait_caught_up(self, proc, watcher, want, limit=600):
        """Follow the watch until committed ≥ want = end. Returns samples
        (epoch ms, committed, end, process CPU s, nisshi CPU s, machine)."""
        samples = []
        deadline = time.time() + limit
        for line in watcher.stdout:
            t, committed, end = (int(x) for x in line.split())
            if proc.poll() is not None:
                raise SystemExit(f"the process under test exited ({proc.returncode}); see {self.logs}")
            samples.append((t, committed, end, cpu_seconds(proc.pid),
                            cpu_seconds(self.nisshi.pid), machine_cpu()))
            if end >= want and committed >= end:
                return samples
            if time.time() > deadline:
                raise SystemExit(f"not caught up after {limit}s: {committed}/{end}")
        raise SystemExit("the watch ended early")

    @staticmethod
    def stop(p, timeout=60):
        """SIGTERM, then SIGKILL after `timeout` seconds; nothing if it has exited."""
        if p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    # -- throughput

    def throughput_pass(self, i, kind, inp, workers=None):
        name = f"pass{i}-{kind}" + (f"-w{workers}" if workers else "")
        group, out = f"b{self.run_id}-g{i}", f"b{self.run_id}.out{i}"
        outs = [out] + ([f"{out}.blocked", f"{out}.dlq"] if kind == "fairgate" else [])
        self.create(*outs, *([f"{out}.alerts"] if kind == "fairgate" else []))
        if kind == "fairgate":
            self.create_state(out)
        n = self.a.count
        m0, nisshi0 = machine_cpu(), cpu_seconds(self.nisshi.pid)
        proc, t0 = self.spawn(kind, name, group, inp, out, workers)
        watcher = self.watch(group, inp)
        s = self.wait_caught_up(proc, watcher, n)
        threads = thread_cpu(proc.pid)
        self.stop(watcher)
        self.stop(proc)
        # Every input went somewhere (at least once: duplicates are possible).
        produced = int(self.probe("ends", *outs, capture=True))
        if produced < n:
            raise SystemExit(f"{name}: {produced} records out for {n} in")
        deltas = (int(self.probe("ends", f"{out}.exposure", capture=True))
                  if kind == "fairgate" else 0)
        t_end, _, _, cpu_end, nisshi_end, m_end = s[-1]
        # Steady state: from the first sample with anything committed.
        first = next(x for x in s if x[1] > 0)
        total_s = (t_end - t0) / 1000
        steady_s = (t_end - first[0]) / 1000
        # Nothing in between (all committed at the first sample): no steady figure.
        steady_n = n - first[1] if first is not s[-1] else 0
        busy = (m_end[0] - m0[0]) / max(1, m_end[1] - m0[1])
        steady = steady_n > 0
        m1 = first[5]
        r = {
            "name": name,
            "kind": kind,
            "workers": workers,
            "records": n,
            "records_out": produced,
            # Exposure deltas published (campaign state on Kafka).
            "exposure_records": deltas,
            "exposure_per_second": round(deltas / total_s),
            "seconds": round(total_s, 3),
            "per_second": round(n / total_s),
            "steady_seconds": round(steady_s, 3) if steady else None,
            "steady_records": steady_n,
            "steady_per_second": round(steady_n / steady_s) if steady else None,
            "cpu_seconds": round(cpu_end, 3),
            "cpu_us_per_decision": round(cpu_end * 1e6 / n, 2),
            "steady_cpu_us_per_decision":
                round((cpu_end - first[3]) * 1e6 / steady_n, 2) if steady else None,
            # CPUs the process kept busy in the steady state.
            "steady_cores": round((cpu_end - first[3]) / steady_s, 2) if steady else None,
            "broker_cpu_us_per_decision": round((nisshi_end - nisshi0) * 1e6 / n, 2),
            "steady_broker_cores":
                round((nisshi_end - first[4]) / steady_s, 2) if steady else None,
            "machine_busy": round(busy, 3),
            # Where the process's CPU went, by thread name (seconds).
            "threads": threads,
            "steady_machine_busy":
                round((m_end[0] - m1[0]) / max(1, m_end[1] - m1[1]), 3) if steady else None,
        }
        log(f"  {name}: {r['per_second']}/s ({r['seconds']} s from start), steady "
            f"{r['steady_per_second']}/s, {r['cpu_us_per_decision']} CPU µs/decision, "
            f"broker {r['broker_cpu_us_per_decision']} µs/decision, machine busy {busy:.0%}; "
            f"steady: process {r['steady_cores']} CPUs, broker {r['steady_broker_cores']} CPUs, "
            f"machine busy {fmt(r['steady_machine_busy'], '.0%')}")
        return r

    # -- latency

    def read(self, topic):
        """decision id → (timestamp ms, timestamp type) of `topic`'s records."""
        got = {}
        for line in self.probe("read", "--topic", topic, capture=True).splitlines():
            _, _, ts, kind, size, did = line.split(" ", 5)
            got[did] = (int(ts), kind, int(size))
        return got

    def latency(self, kind, rate, count, run):
        base = f"b{self.run_id}.lat{run}-{kind}"
        inp, out = f"{base}.in", f"{base}.out"
        outs = [out] + ([f"{out}.blocked", f"{out}.dlq"] if kind == "fairgate" else [])
        self.create(inp, *outs, *([f"{out}.alerts"] if kind == "fairgate" else []))
        if kind == "fairgate":
            self.create_state(out)
        group = f"b{self.run_id}-lat{run}-{kind}"
        proc, _ = self.spawn(kind, f"latency{run}-{kind}-{rate}", group, inp, out)
        watcher = self.watch(group, inp)
        # Warm up (connections, assignment), then the paced load, caught up.
        warm = 2000
        self.loadgen(inp, warm, 0, "warm-", 7)
        self.wait_caught_up(proc, watcher, warm, limit=120)
        cpu0, m0 = cpu_seconds(proc.pid), machine_cpu()
        secs = self.loadgen(inp, count, rate, "lat-", 6, pregenerate=True)
        loaded = now_ms()
        samples = self.wait_caught_up(proc, watcher, warm + count, limit=max(120, 10 * secs))
        # How long after the last input the process was still catching up.
        catch_up = max(0.0, (samples[-1][0] - loaded) / 1000)
        cpu, m1 = cpu_seconds(proc.pid) - cpu0, machine_cpu()
        self.stop(watcher)
        self.stop(proc)
        ins = self.read(inp)
        outs_read = {}
        for t in outs:
            outs_read.update(self.read(t))
        lat, kinds = [], set()
        for did, (ts, k, _) in outs_read.items():
            if did.startswith("lat-") and did in ins:
                lat.append(ts - ins[did][0])
                kinds.update((k, ins[did][1]))
        want = sum(1 for d in ins if d.startswith("lat-"))
        sizes = [v[2] for d, v in ins.items() if d.startswith("lat-")]
        lat.sort()
        pick = lambda q: lat[round((len(lat) - 1) * q)] if lat else None
        r = {
            "kind": kind,
            "rate": rate,
            "records": want,
            "matched": len(lat),
            "loadgen_seconds": round(secs, 2),
            # What the load generator reached (below `rate` when it cannot keep up).
            "offered_per_second": round(count / secs),
            "catch_up_seconds": round(catch_up, 2),
            "mean_input_bytes": round(sum(sizes) / len(sizes)) if sizes else None,
            "timestamp_types": sorted(kinds),
            "p50_ms": pick(0.5),
            "p90_ms": pick(0.9),
            "p99_ms": pick(0.99),
            "max_ms": pick(1.0),
            "cpu_us_per_decision": round(cpu * 1e6 / count, 2),
            "machine_busy": round((m1[0] - m0[0]) / max(1, m1[1] - m0[1]), 3),
        }
        log(f"  latency {kind} at {rate}/s: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
            f"max {r['max_ms']} ms ({len(lat)}/{want} matched, {sorted(kinds)} timestamps; "
            f"load took {secs:.1f} s, caught up {catch_up:.1f} s after, "
            f"machine busy {r['machine_busy']:.0%})")
        return r

    # -- the product's own comparison

    def in_process(self, rate, count):
        out = self.logs / "in-process.json"
        cmd = [str(FAIRGATE), "bench-e2e", "--brokers", self.brokers,
               "--count", str(self.a.count), "--partitions", str(self.a.partitions),
               "--latency-rate", str(rate), "--latency-count", str(count),
               "--config", str(self.a.config), "--json", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        (self.logs / "in-process.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            log(f"  fairgate bench-e2e failed: {r.stderr.strip()[-500:]}")
            return {"error": r.stderr.strip()[-500:]}
        return json.loads(out.read_text())


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def revision():
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True,
                              cwd=ROOT).stdout.strip()
    rev = git("rev-parse", "--short", "HEAD")
    return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def run(a):
    b = Bench(a)
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "revision": revision(),
        "nproc": os.cpu_count(),
        "loadavg_before": loadavg(),
        "config": str(a.config),
        "decisions": a.count,
        "partitions": a.partitions,
        "baseline_consumer_settings": BASELINE_CONSUMER,
    }
    try:
        b.start_broker()
        inp = f"b{b.run_id}.in"
        b.create(inp)
        log(f"producing {a.count} decisions to {inp}")
        secs = b.loadgen(inp, a.count, 0, "dec-", 5)
        report["loadgen_seconds"] = round(secs, 2)
        passes = []
        # Each round is one ABBA; a round's ratio compares passes run
        # minutes apart, so more rounds show how far the machine moves it.
        round_ratios = []
        for rnd in range(a.rounds):
            log(f"throughput, ABBA (round {rnd + 1} of {a.rounds}):")
            ps = [b.throughput_pass(len(passes) + i, kind, inp)
                  for i, kind in enumerate(["baseline", "fairgate", "fairgate", "baseline"])]
            passes += ps
            side = {k: mean([p["per_second"] for p in ps if p["kind"] == k])
                    for k in ["baseline", "fairgate"]}
            round_ratios.append(round(side["fairgate"] / side["baseline"], 3))
        abba = list(passes)
        if not a.skip_workers:
            log("fairgate by judge threads:")
            for w in [1, 2]:
                passes.append(b.throughput_pass(len(passes), "fairgate", inp, workers=w))
        report["passes"] = passes
        summary = {"rounds": a.rounds, "round_ratios": round_ratios,
                   "round_ratio_median": statistics.median(round_ratios)}
        for kind in ["baseline", "fairgate"]:
            ps = [p for p in abba if p["kind"] == kind]
            summary[kind] = {
                k: mean([p[k] for p in ps])
                for k in ["per_second", "steady_per_second", "cpu_us_per_decision",
                          "steady_cpu_us_per_decision", "broker_cpu_us_per_decision"]
            }
        summary["ratio"] = summary["fairgate"]["per_second"] / summary["baseline"]["per_second"]
        fs, bs = (summary[k]["steady_per_second"] for k in ["fairgate", "baseline"])
        summary["steady_ratio"] = fs / bs if fs and bs else None
        report["summary"] = summary
        half = a.latency_rate or int(
            (summary["baseline"]["steady_per_second"] or summary["baseline"]["per_second"]) / 2)
        report["latency"] = []
        half_fairgate = int((summary["fairgate"]["steady_per_second"]
                             or summary["fairgate"]["per_second"]) / 2)
        extra = [half_fairgate if x == "half-fairgate" else int(x) for x in a.latency_also]
        for i, rate in enumerate([] if a.skip_latency else [half] + extra):
            count = a.latency_count or max(20_000, min(rate * a.latency_secs, 500_000))
            log(f"latency at {rate}/s, {count} decisions:")
            lb = b.latency("baseline", rate, count, i)
            lf = b.latency("fairgate", rate, count, i)
            added = {q: (lf[q] - lb[q]) if lf[q] is not None and lb[q] is not None else None
                     for q in ["p50_ms", "p99_ms"]}
            why = ("half the baseline's steady rate" if i == 0 else
                   "half fairgate's steady rate" if rate == half_fairgate else "a fixed rate")
            report["latency"].append(
                {"rate": rate, "why": why, "baseline": lb, "fairgate": lf, "added": added})
        if not a.skip_in_process:
            log("the product's own pass-through mode (fairgate bench-e2e, in-process):")
            report["in_process"] = b.in_process(a.in_process_latency_rate, 20_000)
    finally:
        b.stop_all()
    report["loadavg_after"] = loadavg()
    return report


def fmt(x, spec=".0f"):
    return "-" if x is None else format(x, spec)


def table(r):
    s = r["summary"]
    lines = [
        f"fairgate end-to-end benchmark — {r['date']}, revision {r['revision']}, "
        f"{r['nproc']} CPUs, loadavg before {r['loadavg_before']}, after {r['loadavg_after']}",
        f"{r['decisions']} decisions, {r['partitions']} partitions, config {r['config']}",
        "",
        f"{'pass':<22}{'rec/s':>9}{'steady/s':>10}{'CPU µs/dec':>12}"
        f"{'steady µs':>11}{'broker µs':>11}{'busy':>7}",
    ]
    for p in r["passes"]:
        lines.append(
            f"{p['name']:<22}{p['per_second']:>9}{fmt(p['steady_per_second']):>10}"
            f"{p['cpu_us_per_decision']:>12}{fmt(p['steady_cpu_us_per_decision'], '.2f'):>11}"
            f"{p['broker_cpu_us_per_decision']:>11}{p['machine_busy']:>7.0%}"
            + (f"  exposure {p['exposure_records']} deltas ({p['exposure_per_second']}/s)"
               if p.get("exposure_records") else ""))
    lines += [
        "",
        f"baseline (mean of {2 * s['rounds']}): {s['baseline']['per_second']:.0f}/s "
        f"(steady {fmt(s['baseline']['steady_per_second'])}/s), "
        f"{s['baseline']['cpu_us_per_decision']:.1f} CPU µs/decision",
        f"fairgate (mean of {2 * s['rounds']}): {s['fairgate']['per_second']:.0f}/s "
        f"(steady {fmt(s['fairgate']['steady_per_second'])}/s), "
        f"{s['fairgate']['cpu_us_per_decision']:.1f} CPU µs/decision",
        f"ratio fairgate/baseline: {s['ratio']:.3f} (steady {fmt(s['steady_ratio'], '.3f')}) — "
        + ("PASS" if s["ratio"] >= 0.9 else "FAIL") + " (target ≥ 0.9)",
    ]
    if s["rounds"] > 1:
        lines.append(
            "ratio by round (each one ABBA): "
            + ", ".join(f"{x:.3f}" for x in s["round_ratios"])
            + f" (median {s['round_ratio_median']:.3f}, spread "
            f"{min(s['round_ratios']):.3f}–{max(s['round_ratios']):.3f})")
    for lt in r.get("latency", []):
        lb, lf, ad = lt["baseline"], lt["fairgate"], lt["added"]
        lines += [
            "",
            f"latency at {lt['rate']}/s ({lt['why']}; offered {lb['offered_per_second']}/s and "
            f"{lf['offered_per_second']}/s), {lb['records']} decisions, "
            "input→output broker append time:",
            f"  baseline p50 {lb['p50_ms']} ms, p99 {lb['p99_ms']} ms, max {lb['max_ms']} ms, "
            f"caught up {lb['catch_up_seconds']} s after the load",
            f"  fairgate p50 {lf['p50_ms']} ms, p99 {lf['p99_ms']} ms, max {lf['max_ms']} ms, "
            f"caught up {lf['catch_up_seconds']} s after the load",
            f"  added    p50 {ad['p50_ms']} ms, p99 {ad['p99_ms']} ms",
        ]
        short = [k for k, x in (("baseline", lb), ("fairgate", lf))
                 if x["offered_per_second"] < 0.95 * lt["rate"]]
        if short:
            lines.append(
                f"  (the load generator fell short of {lt['rate']}/s for {' and '.join(short)}: "
                "the two did not see the same load; compare at a rate both reached)")
    ip = r.get("in_process")
    if ip and "error" not in ip:
        lines += [
            "",
            "the product's own pass-through mode (in one process, same pipeline, shipped config):",
            f"  pipeline without the guard {ip['pass_through_per_second']:.0f}/s, fairgate "
            f"{ip['fairgate_per_second']:.0f}/s, ratio {ip['throughput_ratio']:.3f}",
        ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("FAIRGATE_BENCH_PORT", 19192)))
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=1,
                    help="ABBA rounds of the throughput passes (each round's ratio is reported, "
                         "with their median)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "fairgate.toml")
    ap.add_argument("--latency-rate", type=int, default=0,
                    help="paced rate of the latency phase (default: half the baseline's)")
    ap.add_argument("--latency-count", type=int, default=0,
                    help="decisions in the latency phase (default: --latency-secs of them)")
    ap.add_argument("--latency-secs", type=int, default=10,
                    help="seconds of paced load per latency run (at least 20,000 decisions)")
    ap.add_argument("--latency-also", action="append", default=None,
                    help="another latency rate (decisions/s, or half-fairgate), after the "
                         "half-baseline one (default: half-fairgate and 2000)")
    ap.add_argument("--in-process-latency-rate", type=int, default=2000)
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-in-process", action="store_true")
    ap.add_argument("--json", type=Path, default=ROOT / "artifacts" / "bench-e2e.json")
    ap.add_argument("--check", action="store_true", help="exit 1 if the ratio is below 0.9")
    a = ap.parse_args()
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    a.config = a.config.resolve()
    if a.latency_also is None:
        a.latency_also = ["half-fairgate", "2000"]
    r = run(a)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(r, indent=2) + "\n")
    print(table(r))
    print(f"\n(report: {a.json}; logs: {ROOT / 'artifacts' / 'bench-e2e-logs'})")
    if a.check and r["summary"]["ratio"] < 0.9:
        sys.exit(1)


if __name__ == "__main__":
    main()
