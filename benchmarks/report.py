"""Renders the results (the JSON file) as `docs/benchmarks.md`."""

from __future__ import annotations

from typing import Any

from benchmarks import decode_cache, evaluate_pipeline, runner_overhead
from benchmarks._common import MIB


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _s(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def _mib(value: float) -> str:
    return f"{value:.1f} MiB"


def _met(met: bool) -> str:
    return "met" if met else "**missed**"


def _provenance(entry: dict[str, Any]) -> str:
    load = entry.get("load_average_1min")
    shown = f" Load average (1 min) {load['before']} before, {load['after']} after." if load else ""
    return f"Measured {entry['measured_at']} with `{entry['command']}`.{shown}"


def _summary(benchmarks: dict[str, Any]) -> list[str]:
    rows = [
        "| what | Assay | reference (MLflow; fairlearn in the fairness rows) | "
        "Assay ÷ reference | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    large = benchmarks.get("large-artifact")
    if large:
        size = f"{large['artifact_bytes'] / 1e6:.0f} MB"
        a, m = large["assay"], large["mlflow"]
        rows.append(
            f"| {size} artifact: wall time (median) | {_s(a['wall_s_median'])} | "
            f"{_s(m['wall_s_median'])} | {_ratio(large['ratios']['time_assay_over_mlflow'])} | |"
        )
        rows.append(
            f"| {size} artifact: peak RSS growth | server {_mib(a['server_peak_growth_mib_max'])} "
            f"(intake child peak {_mib(a['intake_child_peak_rss_mib_max'])}) | "
            f"{_mib(m['process_peak_growth_mib_max'])} | "
            f"{_ratio(large['ratios']['memory_assay_over_mlflow'])} | "
            f"server < {large['target_server_growth_mib']} MiB: {_met(large['target_met'])} |"
        )
    latency = benchmarks.get("submission-latency")
    if latency:
        a, m = latency["assay"], latency["mlflow"]
        for key, label in (("p50", "p50"), ("p99", "p99")):
            rows.append(
                f"| small model submission {label} ({latency['count']} sequential) | "
                f"{_ms(a[key + '_s'])} | {_ms(m[key + '_s'])} | "
                f"{_ratio(latency['ratios'][key + '_assay_over_mlflow'])} | |"
            )
    startup = benchmarks.get("startup")
    if startup:
        med = startup["median_s"]
        rows.append(
            f"| `assay --help` vs `mlflow --help` (median of {startup['runs']}) | "
            f"{_ms(med['assay'])} | {_ms(med['mlflow'])} | "
            f"{_ratio(startup['ratios']['assay_over_mlflow'])} | "
            f"< {startup['target_s'] * 1000:.0f} ms: {_met(startup['target_met'])} |"
        )
    fairness = benchmarks.get("fairness")
    if fairness:
        a, f = fairness["assay"], fairness["fairlearn"]
        ref, met, targets = a["reference"], fairness["target_met"], fairness["targets"]
        speedup = fairness["speedup_fairlearn_over_assay"]["intersection"]
        rows.append(
            f"| fairness reference job ({fairness['rows']:,} cases, {ref['groups']} groups, "
            f"{fairness['replicates']:,} replicates): wall time (median) | "
            f"{_s(ref['wall_s_median'])} | — | | "
            f"< {targets['reference_wall_s']:.0f} s: {_met(met['time'])} |"
        )
        rows.append(
            f"| fairness reference job: peak RSS of the process | "
            f"{_mib(ref['peak_rss_mib_max'])} | — | | "
            f"< {targets['reference_peak_rss_mib']:.0f} MiB: {_met(met['memory'])} |"
        )
        rows.append(
            f"| bootstrap time per replicate, fairlearn's {f['groups']} groups "
            f"(`MetricFrame`, n_boot={f['replicates']}) | "
            f"{_ms_fine(a['intersection']['per_replicate_s'])} | "
            f"{_ms(f['per_replicate_s'])} | {_ratio_fine(_inverse(speedup))} | "
            f"fairlearn ÷ Assay {_speedup(speedup)}: >= {targets['speedup_floor']:.0f} "
            f"{_met(met['speedup_floor'])}, >= {targets['speedup_aim']:.0f} "
            f"{_met(met['speedup_aim'])} |"
        )
    reads = benchmarks.get("http-reads")
    if reads:
        now, before = reads["sqlite"]["100"], reads["sqlite_immediate_reads"]["100"]
        rows.append(
            "| authenticated `GET /models`, 100 connections, SQLite: requests/s (reference: "
            "every transaction `BEGIN IMMEDIATE`, as before) | "
            f"{now['requests_per_s']:.0f} | {before['requests_per_s']:.1f} | "
            f"{_ratio(reads['ratios']['deferred_over_immediate_rps_100'])} | "
            f"no errors: {_met(now['status_errors'] + now['socket_errors'] == 0)} |"
        )
        protocol = reads["protocol"]
        rows.append(
            "| `GET /health`, 10 connections: requests/s, h11 with the limits "
            "(reference: uvicorn's default httptools) | "
            f"{protocol['h11']['health']['requests_per_s']:.0f} | "
            f"{protocol['httptools']['health']['requests_per_s']:.0f} | "
            f"{_ratio(reads['ratios']['h11_over_httptools_health_rps'])} | |"
        )
    return rows


def _reads_row(label: str, run: dict[str, Any]) -> str:
    # wrk reports zero latencies when no request completed: there is no latency to show.
    answered = run["requests"] > 0
    p50, p99, top = (
        (f"{run['p50_ms']:.1f} ms", f"{run['p99_ms']:.1f} ms", f"{run['max_ms']:.0f} ms")
        if answered
        else ("none answered",) * 3
    )
    return (
        f"| {label} | {run['connections']} | {run['requests']:,} | "
        f"{run['requests_per_s']:.1f} | {p50} | {p99} | {top} | "
        f"{run['status_errors']} / {run['socket_errors']} |"
    )


def _p99_ratio(entry: dict[str, Any], connections: int) -> str:
    now = entry["sqlite"][str(connections)]
    before = entry["sqlite_immediate_reads"][str(connections)]
    if not now["requests"] or not before["requests"]:
        return "n/a"
    return _ratio(now["p99_ms"] / before["p99_ms"])


def _reads_section(entry: dict[str, Any]) -> list[str]:
    configurations = [
        ("SQLite, `assay serve`", entry["sqlite"]),
        ("SQLite, every transaction `BEGIN IMMEDIATE` (before)", entry["sqlite_immediate_reads"]),
    ]
    if "postgresql" in entry:
        configurations.append(("PostgreSQL, `assay serve`", entry["postgresql"]))
    protocol, ratios = entry["protocol"], entry["ratios"]
    lines = [
        "## 5. Authenticated reads under concurrency, and the HTTP protocol",
        "",
        _provenance(entry),
        "",
        f"The real server in its own process on a fresh installation (a vendor token and five "
        f"models), loaded by `wrk` ({entry['wrk_version']}) for {entry['duration_s']} s per row "
        "with `Authorization: Bearer <vendor token>` on `GET /api/v1/models` (one token lookup "
        "and one list query per request), 1 thread for 1 connection, 2 otherwise, `--timeout "
        "10s`. The last_used_at of the token is fresh before the runs, so they measure reads "
        "only. Errors are wrk's count of responses with a status of 400 or more, then of socket "
        "errors (connect, read, write, timeout). wrk and the server share the machine's cores "
        "(and other work on it: see the load average), so the figures are for comparing rows "
        "of the same run, not for capacity planning. The 'before' server patches `registry.db` "
        "in its process to begin every transaction `BEGIN IMMEDIATE` with a pool of 5 + 10 "
        "connections, as Assay did before reads stopped taking the write lock; it ran beside "
        "`assay serve` (both idle but for the run in progress), the two servers' runs "
        "alternating, its 100-connection run last.",
        "",
        "| configuration | connections | requests | requests/s | p50 | p99 | max | errors "
        "(status / socket) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(
            _reads_row(label, runs[str(connections)])
            for label, runs in configurations
            for connections in entry["connections"]
        ),
        "",
        "Requests/s now ÷ before, at 1, 10 and 100 connections: "
        + ", ".join(
            _ratio(ratios[f"deferred_over_immediate_rps_{c}"]) for c in entry["connections"]
        )
        + "; p99 now ÷ before: "
        + ", ".join(_p99_ratio(entry, c) for c in entry["connections"])
        + ". Before, at 100 connections the requests queued on SQLite's write lock (its busy "
        "handler polls, so waiting readers starve) and the few answered in the run, if any, are "
        "all there is; past 30 s they failed with `500 database is locked`. Where the serialized "
        "server answers more per second, its p99 shows what the waiting readers pay for it.",
        "",
        f"What h11 costs: `assay serve` runs uvicorn's h11 protocol, the only one that caps the "
        "request head (64 KiB) and to which the head deadline is added (docs/security.md); "
        "uvicorn's default is httptools. Both servers ran side by side on "
        f"installations of the same content, their runs alternating, {protocol['connections']} "
        "connections:",
        "",
        "| endpoint | h11 with the limits: requests/s (p99) | httptools: requests/s (p99) | "
        "h11 ÷ httptools |",
        "| --- | --- | --- | --- |",
        *(
            f"| `GET /api/v1/{path}` | {protocol['h11'][key]['requests_per_s']:.0f} "
            f"({protocol['h11'][key]['p99_ms']:.0f} ms) | "
            f"{protocol['httptools'][key]['requests_per_s']:.0f} "
            f"({protocol['httptools'][key]['p99_ms']:.0f} ms) | "
            f"{_ratio(ratios[f'h11_over_httptools_{key}_rps'])} |"
            for key, path in (("health", "health"), ("models", "models"))
        ),
        "",
        "The difference is the HTTP parser (h11 is pure Python, httptools is C): it shows on "
        "`/health`, which does nothing else, and shrinks on a request that reads the "
        "database. The servers' commands: "
        + "; ".join(f"{name}: `{command}`" for name, command in entry["server_commands"].items())
        + ".",
        "",
    ]
    return lines


def _inverse(value: float | None) -> float | None:
    return None if not value else 1.0 / value


def _ratio_fine(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.5f}x"


def _ms_fine(value: float) -> str:
    return f"{value * 1000:.2f} ms"


def _speedup(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}x"


NOISE_MIB = 8.0


def _noise_note(assay: dict[str, Any], mlflow: dict[str, Any]) -> str:
    if max(assay["server_peak_growth_mib_max"], mlflow["process_peak_growth_mib_max"]) >= NOISE_MIB:
        return ""
    return (
        f" Both processes stay flat (growth under {NOISE_MIB:.0f} MiB, the size of allocator "
        "and SQLite cache noise), so the memory ratio compares noise: what it shows is that "
        "neither side's memory grows with the artifact."
    )


def _large_section(entry: dict[str, Any]) -> list[str]:
    a, m = entry["assay"], entry["mlflow"]
    size_mb = entry["artifact_bytes"] / 1e6
    lines = [
        f"## 1. A {size_mb:.0f} MB artifact through the API",
        "",
        _provenance(entry),
        "",
        f"A valid ONNX model of {entry['artifact_bytes']:,} bytes (Flatten → MatMul → MatMul → "
        "Add; almost all of it one float32 initializer; no external data; accepted by "
        "`onnx.checker` with `full_check=True`), with a binary manifest "
        '(`[N, 1, 64, 64]` in, `["N", 1]` logits out).',
        "",
        f"- **Assay**: a fresh installation in a temporary `ASSAY_HOME`, the real server started "
        f"as its own process (`{entry['server_command']}`); vendor, token and model created "
        "over HTTP; one small submission to warm the server up; then the artifact streamed from "
        "disk with httpx (multipart). The server's RSS is sampled every 20 ms with psutil from "
        "just before the request until just after the response; growth = peak - RSS just "
        "before. The intake child process (ONNX parsing and full check, apart from the server "
        "by design, under an address-space limit) is sampled on its own. Wall time is the "
        "client's, request to response.",
        "- **MLflow**: `mlflow.log_artifact` in a new run, then `mlflow.register_model` of the "
        "logged artifact's URI, on a local SQLite tracking/registry database with artifacts on "
        "local disk, in its own process (after a warm-up registration), sampled the same way.",
        "",
        f"| {entry['repeats']} run{'s' if entry['repeats'] > 1 else ''} each | Assay | MLflow |",
        "| --- | --- | --- |",
        f"| wall time, median | {_s(a['wall_s_median'])} | {_s(m['wall_s_median'])} |",
        "| wall time, each run | "
        + ", ".join(_s(r["wall_s"]) for r in a["runs"])
        + " | "
        + ", ".join(_s(r["wall_s"]) for r in m["runs"])
        + " |",
        f"| peak RSS growth of the process, max over runs | "
        f"{_mib(a['server_peak_growth_mib_max'])} (server) | "
        f"{_mib(m['process_peak_growth_mib_max'])} |",
        "| RSS before → peak, first run | "
        f"{_mib(a['runs'][0]['baseline_rss_mib'])} → {_mib(a['runs'][0]['peak_rss_mib'])} | "
        f"{_mib(m['runs'][0]['baseline_rss_mib'])} → {_mib(m['runs'][0]['peak_rss_mib'])} |",
        f"| intake child, peak RSS | {_mib(a['intake_child_peak_rss_mib_max'])} | — |",
        *(
            f"| {label} | {_s(a[key])} | — |"
            for key, label in (
                ("intake_alone_s", "intake child alone (called directly)"),
                ("sha256_alone_s", "for scale: SHA-256 of the file alone"),
                ("copy_fsync_alone_s", "for scale: copy + fsync of the file alone"),
            )
            if key in a
        ),
        "",
        f"Ratios (Assay ÷ MLflow): time {_ratio(entry['ratios']['time_assay_over_mlflow'])}, "
        f"memory growth {_ratio(entry['ratios']['memory_assay_over_mlflow'])}. "
        f"Target: the server grows by less than {entry['target_server_growth_mib']} MiB — "
        f"{_met(entry['target_met'])}.{_noise_note(a, m)}",
        "",
        "What each side does for that time: MLflow copies the file into its artifact directory "
        "(`shutil.copy`, which the kernel does without passing the bytes through Python) and "
        "writes a run and a model-version row; it does not look inside the file, hash it or "
        "fsync it. Assay receives the upload over HTTP, writes it to a staging file while "
        "hashing it (SHA-256), fsyncs it, parses the manifest, runs static intake in a child "
        "process (protobuf parse of the whole model and `onnx.checker` full check, which holds "
        "the model in memory: the child's peak is "
        f"{a['intake_child_peak_rss_mib_max'] * MIB / entry['artifact_bytes']:.1f}x the "
        "artifact's size, bounded by `ASSAY_INSPECTION_MEMORY_BYTES`), moves the file into the "
        "content-addressed store, and writes the version row, the audit event and the "
        "idempotency record in one SQLite transaction (`synchronous=FULL`).",
        "",
    ]
    return lines


def _latency_section(entry: dict[str, Any]) -> list[str]:
    a, m = entry["assay"], entry["mlflow"]
    sizes = ", ".join(f"{s:,}" for s in entry["artifact_bytes"])
    return [
        "## 2. Submission latency of a small model",
        "",
        _provenance(entry),
        "",
        f"{entry['count']} submissions, one after the other, of files of {sizes} bytes that "
        f"differ only in their digest ({entry['variants']}). Assay: over HTTP to the real "
        "server after one warm-up submission, timed from the client. MLflow: the same files, "
        "`log_artifact` + `register_model` in a new run each, in its own process after a "
        "warm-up, timed from the driving process.",
        "",
        "| | Assay | MLflow | Assay ÷ MLflow |",
        "| --- | --- | --- | --- |",
        f"| p50 | {_ms(a['p50_s'])} | {_ms(m['p50_s'])} | "
        f"{_ratio(entry['ratios']['p50_assay_over_mlflow'])} |",
        f"| p99 | {_ms(a['p99_s'])} | {_ms(m['p99_s'])} | "
        f"{_ratio(entry['ratios']['p99_assay_over_mlflow'])} |",
        f"| min / max | {_ms(a['min_s'])} / {_ms(a['max_s'])} | "
        f"{_ms(m['min_s'])} / {_ms(m['max_s'])} | |",
        "",
        "An Assay submission includes an HTTP round trip, a new intake child process (a Python "
        "interpreter that imports onnx and checks the model"
        + (
            f": about {_ms(a['intake_alone_s_median'])} when timed on its own (median of 5), "
            "most of a submission's time"
            if "intake_alone_s_median" in a
            else ""
        )
        + "), an fsync of the artifact "
        "and a SQLite commit with `synchronous=FULL`; MLflow's is an in-process file copy and "
        "a few SQLite writes. "
        + (
            "With fewer than 100 submissions the p99 is close to the slowest one."
            if entry["count"] < 100
            else "The p99 of 100 submissions is the slowest one or two."
        ),
        "",
    ]


def _startup_section(entry: dict[str, Any]) -> list[str]:
    med, cmds = entry["median_s"], entry["commands"]
    return [
        "## 3. Start-up: `assay --help`",
        "",
        _provenance(entry),
        "",
        f"Each command run {entry['runs']} times as a fresh process, alternating, after one "
        "untimed run each; wall time from spawn to exit.",
        "",
        "| command | median | fastest | all runs |",
        "| --- | --- | --- | --- |",
        *(
            f"| `{cmds[name]}` | {_ms(med[name])} | {_ms(min(entry['timings_s'][name]))} | "
            + ", ".join(f"{v * 1000:.0f}" for v in entry["timings_s"][name])
            + " ms |"
            for name in ("assay", "mlflow", "python")
        ),
        "",
        f"Assay ÷ MLflow: {_ratio(entry['ratios']['assay_over_mlflow'])}. Target: under "
        f"{entry['target_s'] * 1000:.0f} ms — {_met(entry['target_met'])}. The bare "
        "interpreter is the floor both commands start from.",
        "",
    ]


def _fairness_section(entry: dict[str, Any]) -> list[str]:
    a, f, speedups = entry["assay"], entry["fairlearn"], entry["speedup_fairlearn_over_assay"]
    descriptions = {
        "reference": "the reference job: overall and the 10 groups of sex, site and age band",
        "intersection": "the same plus the sex x site x age-band intersection (fairlearn's groups)",
        "complete": "the reference groups with every overall metric and curve (`assay score`)",
    }
    metrics = ", ".join(entry["metrics"])
    lines = [
        "## 4. Subgroup metrics with bootstrap intervals, beside fairlearn",
        "",
        _provenance(entry),
        "",
        f"{entry['rows']:,} synthetic cases (prevalence 0.2, scores with ties), sex (2 levels), "
        f"site (4) and age (banded 0-18, 18-40, 40-65, 65+); {metrics} at threshold "
        f"{entry['threshold']}, overall and per group, with {entry['replicates']:,} percentile "
        "bootstrap replicates, and with them the paired disparities (to overall and to the "
        "largest group) and the three fairness gaps. Assay's side is "
        "`validators.evaluation.evaluate_binary_with_subgroups`, each configuration in a fresh "
        "process that times one call after building the data and importing the library; peak "
        "RSS is the process's `ru_maxrss` (interpreter and data included). fairlearn's side is "
        "`MetricFrame(metrics={auroc, sensitivity, specificity, ppv}, y_pred=scores, "
        "sensitive_features=<the three columns>)` (sklearn's metrics, which gives the "
        f"{f['groups']} intersection groups), run without and with `n_boot={f['replicates']}`; "
        "its time per replicate is the difference divided by `n_boot`, while Assay's is the "
        "whole call (point estimates included) divided by the replicates.",
        "",
        "| Assay configuration | groups | disparities, gaps | wall time (median; runs) "
        "| per replicate | peak RSS | fairlearn ÷ Assay per replicate |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {descriptions[name]} | {a[name]['groups']} | {a[name]['disparities']}, "
            f"{a[name]['fairness_gaps']} | {_s(a[name]['wall_s_median'])} ("
            + ", ".join(f"{v:.2f}" for v in a[name]["wall_s_runs"])
            + f") | {_ms_fine(a[name]['per_replicate_s'])} | {_mib(a[name]['peak_rss_mib_max'])} "
            f"| {_speedup(speedups[name])} |"
            for name in ("reference", "intersection", "complete")
        ),
        "",
        f"fairlearn: point estimates {_s(f['point_estimates_s'])}, with n_boot={f['replicates']} "
        f"{_s(f['with_bootstrap_s'])}: {_ms(f['per_replicate_s'])} per replicate. The ratio "
        "that counts is the intersection configuration's, where Assay computes at least "
        "fairlearn's groups (and 10 more, with disparities and gaps).",
        "",
        "Why the difference: fairlearn draws each replicate as a resampled DataFrame and calls "
        "every metric on every group (sklearn validates and sorts each time). Assay draws integer "
        "resampling weights for a block of replicates and computes each group's metrics for the "
        "whole block from sufficient statistics: one sort of the scores before resampling, then "
        "per group a gather and running sum of the weights (AUROC and the confusion counts at "
        "once); no Python loop over replicates. See docs/statistics.md and docs/fairness.md.",
        "",
    ]
    return lines


def render(results: dict[str, Any]) -> str:
    """The Markdown page for the results."""
    machine = results["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    benchmarks = results["benchmarks"]
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `make bench` (python -m benchmarks) from benchmarks.json; "
        "edit benchmarks/report.py, not this file. -->",
        "",
        "Each benchmark measures Assay beside the tool a user would otherwise pick, in the same "
        "run on the same machine, and reports the ratio Assay ÷ reference (below 1: Assay is "
        "faster or smaller). Re-run with `make bench`; `make bench BENCH_ARGS=--quick` is a "
        "smaller smoke run written to `bench-out/`, and `BENCH_ARGS='--only startup'` re-runs "
        "one benchmark and keeps the others' figures.",
        "",
        f"Last run: {results['generated_at']}, `{results['command']}`.",
        "",
        f"Machine: {machine['cpu_model']}, {machine['logical_cores']} logical cores "
        f"({machine['physical_cores']} physical), {machine['memory_gib']} GiB RAM, "
        f"{machine['os']}, Python {machine['python']}.",
        "",
        f"Versions: {packages}.",
        "",
        "## Summary",
        "",
        *_summary(benchmarks),
        *decode_cache.summary_rows(benchmarks),
        *runner_overhead.summary_rows(benchmarks),
        *evaluate_pipeline.summary_rows(benchmarks),
        "",
    ]
    if "large-artifact" in benchmarks:
        lines += _large_section(benchmarks["large-artifact"])
    if "submission-latency" in benchmarks:
        lines += _latency_section(benchmarks["submission-latency"])
    if "startup" in benchmarks:
        lines += _startup_section(benchmarks["startup"])
    if "fairness" in benchmarks:
        lines += _fairness_section(benchmarks["fairness"])
    if "http-reads" in benchmarks:
        lines += _reads_section(benchmarks["http-reads"])
    if decode_cache.NAME in benchmarks:
        lines += decode_cache.section(benchmarks[decode_cache.NAME])
    if decode_cache.PHANTOMS_NAME in benchmarks:
        lines += decode_cache.phantoms_section(benchmarks[decode_cache.PHANTOMS_NAME])
    if runner_overhead.NAME in benchmarks:
        entry = benchmarks[runner_overhead.NAME]
        lines += runner_overhead.section(entry, _provenance(entry))
    if evaluate_pipeline.NAME in benchmarks:
        entry = benchmarks[evaluate_pipeline.NAME]
        lines += evaluate_pipeline.section(entry, _provenance(entry))
    return "\n".join(lines).rstrip() + "\n"
