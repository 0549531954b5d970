#!/usr/bin/env python3
"""Turns bench/run's raw results (one JSON line per wrk run) into the
Markdown table it prints, and with --write FILE puts that table into FILE
between the `bench:begin` / `bench:end` markers (text outside them stays).

Usage: table.py RESULTS.jsonl META.json [--write bench/RESULTS.md]
"""

import json
import statistics
import sys
from collections import defaultdict

BEGIN = "<!-- bench:begin (written by bench/run; edit outside the markers) -->"
END = "<!-- bench:end -->"

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


def render(runs, meta):
    few, many = meta["few"], meta["many"]
    lines = []
    w = lines.append
    w(f"Measured {meta['date']} on {meta['cpu']}, {meta['cores']} cores "
      f"(load generator on the same machine), commit `{meta['commit']}`.")
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


def write_into(path, table):
    block = f"{BEGIN}\n{table}{END}\n"
    try:
        text = open(path).read()
    except FileNotFoundError:
        text = "# Benchmark results\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
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
    table = render(runs, meta)
    print(table, end="")
    if "--write" in argv:
        path = argv[argv.index("--write") + 1]
        write_into(path, table)
        print(f"(written to {path})", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
