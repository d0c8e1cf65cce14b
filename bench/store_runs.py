"""Per bench/store_compare.sh run in OUT: push and ack latency, seconds with a push p99 over 2 ms,
the store thread's own checkpoints, the checkpoint writeback, commits over 10 ms, CPU per message.

    python3 bench/store_runs.py OUT [OUT...]
"""
import glob, json, os, re, sys

def hist(text, name):
    """(count, sum, {le: cumulative}) of a Prometheus histogram."""
    count = float(re.search(rf"^{name}_count (\S+)", text, re.M)[1]) if re.search(rf"^{name}_count", text, re.M) else 0
    total = float(re.search(rf"^{name}_sum (\S+)", text, re.M)[1]) if re.search(rf"^{name}_sum", text, re.M) else 0
    buckets = {m[0]: float(m[1]) for m in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)', text, re.M)}
    return count, total, buckets

for out in sys.argv[1:]:
    for path in sorted(glob.glob(out + "/*.json")):
        base = os.path.basename(path)[:-5]
        if base.startswith("idle-"):
            continue
        d = json.load(open(path))
        lat, ack = d["latency_us"], d["ack_latency_us"]
        secs = []
        try:
            for line in open(f"{out}/progress-{base}.log"):
                m = re.search(r"msgs/s (\d+) p99 (\d+)us max (\d+)us ack p99 (\d+)us", line)
                if m:
                    secs.append(tuple(int(x) for x in m.groups()))
        except OSError:
            pass
        over = [s for s in secs if s[1] > 2000]
        longest = run = 0
        for s in secs:
            run = run + 1 if s[1] > 2000 else 0
            longest = max(longest, run)
        worst = max((s[2] for s in secs), default=0)
        med_sec = sorted(s[1] for s in secs)[len(secs) // 2] if secs else 0
        try:
            text = open(f"{out}/metrics-{base}.txt").read()
        except OSError:
            text = ""
        sc, ss, _ = hist(text, "switchboard_store_thread_checkpoint_seconds")
        wc, ws, _ = hist(text, "switchboard_store_checkpoint_writeback_seconds")
        cc, _, cb = hist(text, "switchboard_store_checkpoint_seconds")
        commits, _, b = hist(text, "switchboard_store_commit_seconds")
        le10 = [v for k, v in b.items() if k not in ("+Inf",) and abs(float(k) - 0.01) < 1e-9]
        slow = commits - le10[0] if le10 else float("nan")
        n = max(d["msgs_per_sec"] * d["window_s"], 1)
        threads = d.get("server_threads_cpu_s") or {}
        per = lambda p: sum(v for k, v in threads.items() if k.startswith(p)) * 1e6 / n
        print(f"{base:<34} load {d['load_1m']:.1f}-{d['load_1m_end']:.1f} got {d['msgs_per_sec']:.0f}/s "
              f"push p50/p99/p999 {lat['p50']}/{lat['p99']}/{lat['p999']} us, ack p99/p999 {ack['p99']/1000:.1f}/{ack['p999']/1000:.1f} ms; "
              f"secs>2ms {len(over)}/{len(secs)} longest {longest} worst {worst/1000:.0f} ms median-sec p99 {med_sec}; "
              f"store-ckpt here {sc:.0f} x {1000*ss/max(sc,1):.1f} ms = {ss:.1f} s; bg ckpt {cc:.0f}; writeback {wc:.0f} x {1000*ws/max(wc,1):.1f} ms; "
              f"commits>10ms {slow:.0f} of {commits:.0f}; us/msg store {threads.get('store',0)*1e6/n:.1f} (ckpt {per('store-ckpt'):.1f}) reactor {per('reactor'):.1f} server {d['server_cpu_s_per_million_msgs']:.1f}; db {d.get('sqlite_dir_bytes',0)/1e6:.0f} MB")
