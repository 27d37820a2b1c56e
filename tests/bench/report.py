"""Turn session-benchmark medians into the tables, target checks and plot of
``docs/benchmarks.md``, and the headline table of the README's Performance section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README_START = "<!-- bench:headline:start -->"
README_END = "<!-- bench:headline:end -->"


def _row(rows: list[dict[str, Any]], client: str, n: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["client"] == client and r["n"] == n), None)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def ratios(rows: list[dict[str, Any]], sizes: list[int], clients: list[str]) -> str:
    """Each client's figures divided by the SDK's, per N (same run)."""
    head = (
        "| N | client | CPU ÷ SDK | RSS ÷ SDK | send lag p99 ÷ SDK | first audio p99 ÷ SDK |\n"
        "|---:|---|---:|---:|---:|---:|\n"
    )
    lines = []
    for n in sizes:
        sdk = _row(rows, "sdk", n)
        if sdk is None:
            continue
        for client in clients:
            r = _row(rows, client, n)
            if r is None or client == "sdk":
                continue
            lines.append(
                f"| {n} | {client} "
                f"| {r['cpu_ms_per_session'] / sdk['cpu_ms_per_session']:.2f}× "
                f"| {r['rss_kb_per_session'] / max(sdk['rss_kb_per_session'], 1e-9):.2f}× "
                f"| {r['send_lag_p99_s'] / max(sdk['send_lag_p99_s'], 1e-9):.2f}× "
                f"| {r['first_audio_p99_s'] / max(sdk['first_audio_p99_s'], 1e-9):.2f}× |"
            )
    return head + "\n".join(lines) + "\n"


def targets(rows: list[dict[str, Any]], sizes: list[int]) -> tuple[str, list[tuple[str, bool]]]:
    """The issue's targets, checked against this run's medians."""
    checks: list[tuple[str, bool, str]] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        if ok is not None:
            checks.append((name, ok, detail))

    for n in (1000, 5000):
        s, k = _row(rows, "saynad", n), _row(rows, "sdk", n)
        if s and k:
            ratio = s["cpu_ms_per_session"] / k["cpu_ms_per_session"]
            add(
                f"CPU/session ≤ 1.0× SDK at N={n}",
                ratio <= 1.0,
                f"{s['cpu_ms_per_session']:.2f} vs {k['cpu_ms_per_session']:.2f} ms ({ratio:.2f}×)",
            )
    lo, hi = _row(rows, "saynad", 500), _row(rows, "saynad", 5000)
    if lo and hi:
        growth = hi["cpu_ms_per_session"] / lo["cpu_ms_per_session"]
        add(
            "CPU/session at N=5000 within 25% of N=500",
            growth <= 1.25,
            f"{hi['cpu_ms_per_session']:.2f} vs {lo['cpu_ms_per_session']:.2f} ms ({growth:.2f}×)",
        )
    for n in sizes:
        s, k = _row(rows, "saynad", n), _row(rows, "sdk", n)
        if s and k:
            ratio = s["rss_kb_per_session"] / max(k["rss_kb_per_session"], 1e-9)
            add(
                f"RSS/session ≤ 0.75× SDK at N={n}",
                ratio <= 0.75,
                f"{s['rss_kb_per_session']:.0f} vs {k['rss_kb_per_session']:.0f} KB ({ratio:.2f}×)",
            )
    s, k = _row(rows, "saynad", 1000), _row(rows, "sdk", 1000)
    if s and k:
        add(
            "send lag p99 ≤ SDK at N=1000",
            s["send_lag_p99_s"] <= k["send_lag_p99_s"],
            f"{_ms(s['send_lag_p99_s'])} vs {_ms(k['send_lag_p99_s'])} ms",
        )
    s = _row(rows, "saynad", 500)
    if s:
        add(
            "send lag p99 ≤ 50 ms at N=500",
            s["send_lag_p99_s"] <= 0.050,
            f"{_ms(s['send_lag_p99_s'])} ms",
        )
    for n in sizes:
        s, k = _row(rows, "saynad", n), _row(rows, "sdk", n)
        if s and k:
            add(
                f"speak→first audio p99 ≤ SDK at N={n}",
                s["first_audio_p99_s"] <= k["first_audio_p99_s"],
                f"{_ms(s['first_audio_p99_s'])} vs {_ms(k['first_audio_p99_s'])} ms",
            )
    failures = sum(int(r["failures_total"]) for r in rows if r["client"] == "saynad")
    add("zero failures (saynad, every run)", failures == 0, f"{failures} failed sessions")
    table = "| target | holds | this run |\n|---|:---:|---|\n" + "".join(
        f"| {name} | {'✅' if ok else '❌'} | {detail} |\n" for name, ok, detail in checks
    )
    return table, [(name, ok) for name, ok, _ in checks]


def headline(rows: list[dict[str, Any]], sizes: list[int]) -> str:
    """Compact table for the README: saynad vs the official SDK per N."""
    head = (
        "| sessions in one process | CPU ms/session saynad / SDK | RSS KB/session saynad / SDK "
        "| send lag p99 saynad / SDK | speak→first audio p99 saynad / SDK |\n"
        "|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for n in sizes:
        s, k = _row(rows, "saynad", n), _row(rows, "sdk", n)
        if not (s and k):
            continue
        lines.append(
            f"| {n} | {s['cpu_ms_per_session']:.2f} / {k['cpu_ms_per_session']:.2f} "
            f"({s['cpu_ms_per_session'] / k['cpu_ms_per_session']:.2f}×) "
            f"| {s['rss_kb_per_session']:.0f} / {k['rss_kb_per_session']:.0f} "
            f"| {_ms(s['send_lag_p99_s'])} ms / {_ms(k['send_lag_p99_s'])} ms "
            f"| {_ms(s['first_audio_p99_s'])} ms / {_ms(k['first_audio_p99_s'])} ms |"
        )
    return head + "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str, note: str) -> None:
    """Replace the text between the headline markers (inside the Performance section)."""
    text = readme.read_text(encoding="utf-8")
    block = f"{README_START}\n{note}\n\n{table}{README_END}"
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise RuntimeError(f"{readme} has no {README_START} … {README_END} block")
    readme.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")


def plot(rows: list[dict[str, Any]], clients: list[str], path: Path) -> None:
    """CPU ms/session and send-lag p99 against N, one line per client."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, lag_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"saynad": "o-", "sdk": "s--", "bare": "^:"}
    for client in clients:
        points = sorted((r["n"], r) for r in rows if r["client"] == client)
        if not points:
            continue
        ns = [n for n, _ in points]
        style = styles.get(client, "x-.")
        cpu_ax.plot(ns, [r["cpu_ms_per_session"] for _, r in points], style, label=client)
        lag_ax.plot(ns, [r["send_lag_p99_s"] * 1000 for _, r in points], style, label=client)
    cpu_ax.set(
        xscale="log",
        xlabel="concurrent sessions in one process (N)",
        ylabel="client CPU (ms per session)",
        title="CPU per session",
    )
    cpu_ax.set_ylim(bottom=0)
    lag_ax.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent sessions in one process (N)",
        ylabel="send lag p99 (ms)",
        title="Send lag of 20 ms audio chunks, p99",
    )
    lag_ax.axhline(20, color="grey", linewidth=0.8, linestyle="--")
    sizes = sorted({r["n"] for r in rows})
    for ax in (cpu_ax, lag_ax):
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
