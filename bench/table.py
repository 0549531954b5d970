#!/usr/bin/env python3
"""Turns bench/run's raw results (one JSON line per wrk run) into the
Markdown tables it prints, and with --write FILE puts each table into FILE
between its markers (text outside them stays): the main table between
`bench:begin` / `bench:end`, the Redis one (issue 15) between
`bench:redis:begin` / `bench:redis:end`. A run that measured only one of
them (BENCH_ONLY=redis) leaves the other as it was.

Usage: table.py RESULTS.jsonl META.json [--write bench/RESULTS.md]
"""

import json
import statistics
import sys
from collections import defaultdict

BEGIN = "<!-- bench:begin (written by bench/run; edit outside the markers) -->"
END = "<!-- bench:end -->"
REDIS_BEGIN = "<!-- bench:redis:begin (written by bench/run; edit outside the markers) -->"
REDIS_END = "<!-- bench:redis:end -->"

# scenario: (title, baseline side, measured side, {side: label})
SCENARIOS = {
    "floor": ("floor (no gateway)", "nginx", "hyper", {
        "nginx": "nginx `return 200`",
        "hyper": "bare hyper 1.x, authgate's listener setup, empty 200",
    }),
    "fa": ("forward-auth direct", "nginx", "authgate", {
        "nginx": "nginx `return 200`",
        "authgate": "authgate `GET /_authgate/auth-request`",
    }),
    "ar": ("nginx auth_request", "nginx", "authgate", {
        "nginx": "nginx → auth_request to an empty 200",
        "authgate": "nginx → auth_request to authgate",
    }),
    "proxy": ("reverse proxy", "nginx", "authgate", {
        "nginx": "nginx `proxy_pass` (keep-alive)",
        "floor": "the floor: bare hyper proxy (hyper-util pooled client)",
        "authgate": "authgate proxy mode",
    }),
    "unauth": ("unauthenticated", "nginx", "authgate", {
        "nginx": "nginx `return 302`",
        "authgate": "authgate 302 to the login page",
    }),
    "storm": ("login storm", "alone", "storm", {
        "alone": "authgate proxy, no storm",
        "storm": "authgate proxy during 64 wrong-password logins",
        "logins": "the storm's logins (argon2 each)",
    }),
    "many": ("many sessions", "few", "many", {
        "few": "forward-auth, {few:,} sessions",
        "many": "forward-auth, {many:,} sessions",
    }),
}


def rps(run):
    return run["requests"] / run["duration_us"] * 1e6


def ms(us):
    return f"{us / 1000:.2f} ms"


# The targets are in MB (10^6 bytes); /proc reports KiB.
MB = 1000 * 1000


def mib(kb):
    return f"{kb / 1024:.1f} MiB ({kb * 1024 / MB:.0f} MB)" if kb else "—"


def spread(values, fmt):
    if not values:
        return "—"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def times(x):
    return f"{x:.2f}×"


def load(path):
    runs = defaultdict(lambda: defaultdict(dict))  # scenario -> side -> pair -> record
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs[r["scenario"]][r["side"]][r["pair"]] = r
    return runs


def pair_values(runs, scenario, a, b, value):
    """value(B) / value(A) for each pair that has both sides."""
    sides = runs[scenario]
    out = []
    for pair in sorted(set(sides[a]) & set(sides[b])):
        va, vb = value(sides[a][pair]["run"]), value(sides[b][pair]["run"])
        if va:
            out.append(vb / va)
    return out


def pair_diffs(runs, scenario, a, b, value):
    sides = runs[scenario]
    return [value(sides[b][p]["run"]) - value(sides[a][p]["run"])
            for p in sorted(set(sides[a]) & set(sides[b]))]


def side_row(label, records, ratio_cell, target_cell):
    rs = list(records.values())
    runs = [r["run"] for r in rs]
    errors = sum(v for run in runs for k, v in run.items() if k.startswith("err_"))
    requests = sum(run["requests"] for run in runs)
    note = f" ¹" if errors else ""
    return ("| {label}{note} | {rps} | {p50} | {p99} | {rss} | {ratio} | {target} |".format(
        label=label, note=note,
        rps=f"{statistics.median(rps(r) for r in runs):,.0f}",
        p50=ms(statistics.median(r["p50_us"] for r in runs)),
        p99=ms(statistics.median(r["p99_us"] for r in runs)),
        rss=mib(max(r["peak_rss_kb"] for r in rs)),
        ratio=ratio_cell, target=target_cell), errors, requests)


def verdict(ok):
    return "met" if ok else "**missed**"


def measured_on(meta):
    return (f"Measured {meta['date']} on {meta['cpu']}, {meta['cores']} cores "
            f"(load generator on the same machine), commit `{meta['commit']}`.")


def render(runs, meta):
    few, many = meta["few"], meta["many"]
    lines = []
    w = lines.append
    w(measured_on(meta))
    w("")
    w(f"Command: `{meta['command']}` — wrk -t{meta['threads']} -c{meta['connections']}, "
      f"{meta['pairs']} interleaved rounds (A B A B …; the proxy: nginx, floor, authgate) of {meta['seconds']} s "
      f"per scenario after a 2 s warm-up of each side; {meta['nginx']}, {meta['wrk']}.")
    w("")
    w("req/s, p50 and p99 are medians over the pairs; peak RSS is the highest VmHWM of the "
      "process(es) serving that side during its runs (nginx: master and workers; "
      "authgate: the gateway only). The ratio is B/A per round: median (min–max).")
    w("")
    w("| scenario and side | req/s | p50 | p99 | peak RSS | ratio to baseline | target |")
    w("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    targets = []
    footnotes = []

    def errors_note(label, errors, requests):
        if errors:
            footnotes.append(f"{label}: {errors:,} of {requests:,} requests were errors or "
                             "non-2xx/3xx answers (wrk's count).")

    for key, (title, a, b, labels) in SCENARIOS.items():
        sides = runs.get(key)
        if not sides or a not in sides or b not in sides:
            continue
        labels = {s: l.format(few=few, many=many) for s, l in labels.items()}
        w(f"| **{title}** | | | | | | |")
        ratios = pair_values(runs, key, a, b, rps)
        target_b = ""
        ratio_b = spread(ratios, times) + " req/s"
        if key == "fa":
            ok = statistics.median(ratios) >= 1.0
            target_b = f"≥ 1.0× — {verdict(ok)}"
            targets.append(("forward-auth direct ≥ 1.0× nginx `return 200`",
                            times(statistics.median(ratios)), ok))
        elif key == "ar":
            ok = statistics.median(ratios) >= 0.9
            target_b = f"≥ 0.9× — {verdict(ok)}"
            targets.append(("nginx auth_request through authgate ≥ 0.9× the empty-200 baseline",
                            times(statistics.median(ratios)), ok))
        elif key == "proxy":
            ok_rps = statistics.median(ratios) >= 1.0
            target_b = f"≥ 1.0× nginx — {verdict(ok_rps)}"
            targets.append(("reverse proxy ≥ 1.0× nginx `proxy_pass` req/s (the aim)",
                            times(statistics.median(ratios)), ok_rps))
            if "floor" in sides:
                # Our own cost: authgate against a bare hyper proxy in the
                # same rounds, which stays meaningful on a noisy machine.
                floor_ratios = pair_values(runs, key, "floor", b, rps)
                diffs = pair_diffs(runs, key, "floor", b, lambda r: r["p99_us"])
                ok_floor = statistics.median(floor_ratios) >= 0.95
                ok_p99 = statistics.median(diffs) <= 500
                ratio_b += "; " + spread(floor_ratios, times) + " the floor"
                target_b += f"; ≥ 0.95× the floor — {verdict(ok_floor)}"
                targets.append(("reverse proxy ≥ 0.95× the floor (bare hyper proxy) req/s",
                                times(statistics.median(floor_ratios)), ok_floor))
                targets.append(("reverse proxy p99 ≤ the floor's + 0.5 ms",
                                "p99 difference " + spread(diffs, lambda d: f"{d / 1000:+.2f} ms"),
                                ok_p99))
        elif key == "unauth":
            ok = statistics.median(ratios) >= 0.9
            target_b = f"≥ 0.9× — {verdict(ok)}"
            targets.append(("unauthenticated 302 ≥ 0.9× nginx `return 302`",
                            times(statistics.median(ratios)), ok))
        elif key == "storm":
            p99s = pair_values(runs, key, a, b, lambda r: r["p99_us"])
            ratio_b = spread(p99s, times) + " p99"
            ok = statistics.median(p99s) < 2.0
            target_b = f"p99 < 2× — {verdict(ok)}"
            targets.append(("login storm raises the proxy's p99 by less than 2×",
                            times(statistics.median(p99s)), ok))
        elif key == "many":
            ok = statistics.median(ratios) >= 0.9
            peak = max(r["peak_rss_kb"] for r in sides[b].values())
            ok_rss = peak * 1024 < 200 * 1024 * 1024
            target_b = f"≥ 0.9×, peak RSS < 200 MiB — {verdict(ok and ok_rss)}"
            targets.append((f"{many:,} sessions: throughput within 10% of {few:,}",
                            times(statistics.median(ratios)), ok))
            targets.append((f"{many:,} sessions: peak RSS under 200 MiB while serving",
                            mib(peak), ok_rss))
        row, errors, requests = side_row(labels[a], sides[a], "baseline", "")
        w(row)
        errors_note(labels[a], errors, requests)
        if key == "proxy" and "floor" in sides:
            floor_cell = spread(pair_values(runs, key, a, "floor", rps), times) + " req/s"
            row, errors, requests = side_row(labels["floor"], sides["floor"], floor_cell, "")
            w(row)
            errors_note(labels["floor"], errors, requests)
        row, errors, requests = side_row(labels[b], sides[b], ratio_b, target_b)
        w(row)
        errors_note(labels[b], errors, requests)
        if key == "storm" and "logins" in sides:
            logins = [r["run"] for r in sides["logins"].values()]
            w("| {l} | {r:,.0f} logins/s | {p50} | {p99} | | | |".format(
                l=labels["logins"], r=statistics.median(rps(x) for x in logins),
                p50=ms(statistics.median(x["p50_us"] for x in logins)),
                p99=ms(statistics.median(x["p99_us"] for x in logins))))
    w("")
    w("Memory of the gateway (VmRSS / VmHWM from /proc):")
    w("")
    w("| | RSS |")
    w("| --- | ---: |")
    w(f"| idle, {few:,} sessions, just started | {mib(meta['idle_rss_few_kb'])} |")
    w(f"| after every scenario (the login storm last), {few:,} sessions | {mib(meta['end_rss_few_kb'])} |")
    if meta.get("idle_rss_many_kb"):
        w(f"| idle, {many:,} sessions loaded | {mib(meta['idle_rss_many_kb'])} |")
        w(f"| peak while loading {many:,} sessions at start-up | {mib(meta['start_hwm_many_kb'])} |")
        w(f"| after the runs, {many:,} sessions | {mib(meta['end_rss_many_kb'])} |")
    idle_ok = meta["idle_rss_few_kb"] * 1024 < 30 * MB
    targets.append(("idle RSS under 30 MB", mib(meta["idle_rss_few_kb"]), idle_ok))
    if footnotes:
        w("")
        for note in footnotes:
            w(f"¹ {note}")
    w("")
    w("Targets (on the medians):")
    w("")
    for name, value, ok in targets:
        w(f"- {name}: {value} — {verdict(ok)}")
    if meta.get("many") != 1_000_000 and "many" in runs:
        w("")
        w(f"(The many-sessions store held {many:,} sessions in this run, not the 1,000,000 of "
          "the target; the requests were spread over "
          f"{min(meta['cookies'], many):,} of them.)")
    elif "many" in runs:
        w("")
        w(f"(The many-sessions load spreads its requests over {min(meta['cookies'], many):,} "
          f"random sessions of the {many:,}, the 1,000 side over all 1,000.)")
    return "\n".join(lines) + "\n"


def render_redis(runs, meta):
    """The redis scenario: the same gateway on sled and on Redis, in the
    same rounds, and a cold start on Redis with many sessions."""
    lines = []
    w = lines.append
    w(measured_on(meta))
    w("")
    w(f"Command: `{meta['command']}`. The sled and Redis gateways run side by side, interleaved "
      f"(sled, redis, sled, redis …; {meta['pairs']} rounds of {meta['seconds']} s after a 2 s "
      "warm-up of each); Redis "
      f"{(meta.get('redis') or {}).get('version', '?')} on 127.0.0.1 in the run's directory, "
      "no persistence. The ratio is redis ÷ sled per round: median (min–max).")
    w("")
    w("| | sled | redis | redis ÷ sled | target |")
    w("| --- | ---: | ---: | --- | --- |")
    targets = []

    def row(title, scenario, value, fmt, target=None):
        sides = runs[scenario]
        if "sled" not in sides or "redis" not in sides:
            return
        ratios = pair_values(runs, scenario, "sled", "redis", value)
        cells = [fmt(statistics.median(value(r["run"]) for r in sides[side].values()))
                 for side in ("sled", "redis")]
        target_cell = ""
        if target is not None:
            ok = statistics.median(ratios) >= target
            target_cell = f"≥ {target}× — {verdict(ok)}"
            targets.append((title, times(statistics.median(ratios)), ok))
        w(f"| {title} | {cells[0]} | {cells[1]} | {spread(ratios, times)} | {target_cell} |")

    def errors(scenario):
        return sum(v for side in runs[scenario].values() for r in side.values()
                   for k, v in r["run"].items() if k.startswith("err_"))

    per_second = lambda x: f"{x:,.0f}"
    latency = lambda key: lambda r: r[key]
    row("forward-auth, a known session (warm cache): req/s", "redis", rps, per_second, 0.9)
    row("— p50", "redis", latency("p50_us"), ms)
    row("— p99", "redis", latency("p99_us"), ms)
    if "sled" in runs["redis"] and "redis" in runs["redis"]:
        peaks = [mib(max(r["peak_rss_kb"] for r in runs["redis"][side].values()))
                 for side in ("sled", "redis")]
        w(f"| — the gateway's peak RSS | {peaks[0]} | {peaks[1]} | | |")
    row("logins that work (argon2, then a new session stored): logins/s", "logins", rps,
        lambda x: f"{x:,.1f}")
    row("— p50", "logins", latency("p50_us"), ms)
    row("— p99", "logins", latency("p99_us"), ms)
    for scenario in ("redis", "logins"):
        if errors(scenario):
            w("")
            w(f"({scenario}: {errors(scenario):,} requests were errors or non-2xx/3xx answers.)")
    redis = meta.get("redis")
    hit_ratio = (redis or {}).get("hit_ratio")
    if hit_ratio is not None:
        w("")
        w(f"The Redis gateway's cache hit ratio after the forward-auth rounds: {hit_ratio:.4f} "
          "(`authgate_session_cache_hit_ratio`, since its start).")
    if redis:
        cold_rows(w, meta, redis)
    if targets:
        w("")
        w("Targets (on the medians):")
        w("")
        for name, value, ok in targets:
            w(f"- {name} on Redis ≥ 0.9× sled: {value} — {verdict(ok)}")
    return "\n".join(lines) + "\n"


def seconds(key):
    return lambda cold: f"{cold[key] / 1000:.1f} s"


def cold_rows(w, meta, redis):
    sled, cold = redis["sled_cold"], redis["redis_cold"]
    many, warm = cold["sessions"], cold["warm"]
    sled_up = meta.get("many_start_secs")

    def cells(value):
        if sled is not None:
            return f"{value(sled)} | {value(cold)}"
        return f"— | {value(cold)}"

    w("")
    w(f"Cold start with {many:,} sessions, a fresh gateway on each store (sled loads every "
      "session before it answers; on Redis the gateway loads nothing, its sessions are a "
      "cache filled on misses). The warm-up asks once for each of "
      f"{warm:,} sessions, one request at a time (on Redis each is a miss, a read from Redis):")
    w("")
    w("| | sled | redis |")
    w("| --- | ---: | ---: |")
    if sled is None and sled_up is not None:
        w(f"| time from spawn to the first answer | {sled_up} s (to `healthz`, in the many "
          f"scenario) | {cold['first_200_ms']:,} ms |")
        w(f"| RSS idle, just started | {mib(meta['idle_rss_many_kb'])} | {mib(cold['idle_rss_kb'])} |")
    else:
        w(f"| time from spawn to the first 200 on a known session | "
          f"{cells(lambda c: format(c['first_200_ms'], ',') + ' ms')} |")
        w(f"| RSS idle, 2 s after that | {cells(lambda c: mib(c['idle_rss_kb']))} |")
    w(f"| RSS after the warm-up; its peak during it | "
      f"{cells(lambda c: mib(c['warm_rss_kb']) + '; peak ' + mib(c['warm_hwm_kb']))} |")
    w(f"| the warm-up: {warm:,} requests | {cells(seconds('warm_ms'))} |")
    w(f"| sessions in memory after it (`authgate_live_sessions`) | "
      f"{cells(lambda c: '—' if c['cached'] is None else format(c['cached'], ','))} |")
    w(f"| seeding {many:,} sessions with `seed-sessions` (sled: 1 writer; Redis: 16 through "
      f"`RedisStore::put`) | {cells(seconds('seed_ms'))} |")
    w(f"| Redis at the end (these {many:,}, the other 1,000 and the logins' sessions): "
      "`used_memory`; the server's RSS | — | "
      f"{mib(redis['used_memory_kb'])}; {mib(redis['server_rss_kb'])} |")


def write_into(path, table, begin=BEGIN, end=END):
    block = f"{begin}\n{table}{end}\n"
    try:
        text = open(path).read()
    except FileNotFoundError:
        text = "# Benchmark results\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    runs = load(argv[0])
    meta = json.load(open(argv[1]))
    path = argv[argv.index("--write") + 1] if "--write" in argv else None
    if any(key in runs for key in SCENARIOS):
        table = render(runs, meta)
        print(table, end="")
        if path:
            write_into(path, table)
            print(f"(written to {path})", file=sys.stderr)
    if "redis" in runs or meta.get("redis"):
        table = render_redis(runs, meta)
        print(table, end="")
        if path:
            write_into(path, table, REDIS_BEGIN, REDIS_END)
            print(f"(the Redis table written to {path})", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
