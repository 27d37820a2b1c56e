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


def _ratio(r: dict[str, Any], sdk: dict[str, Any], key: str) -> str:
    if key not in r or key not in sdk:
        return "–"
    return f"{r[key] / max(sdk[key], 1e-9):.2f}×"


def ratios(rows: list[dict[str, Any]], sizes: list[int], clients: list[str]) -> str:
    """Each client's figures divided by the SDK's, per N (same run)."""
    head = (
        "| N | client | CPU ÷ SDK | RSS ÷ SDK | send lag p99 ÷ SDK "
        "| worst chunk per session p99 ÷ SDK | first audio p99 ÷ SDK |\n"
        "|---:|---|---:|---:|---:|---:|---:|\n"
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
                f"| {_ratio(r, sdk, 'send_lag_worst_p99_s')} "
                f"| {r['first_audio_p99_s'] / max(sdk['first_audio_p99_s'], 1e-9):.2f}× |"
            )
    return head + "\n".join(lines) + "\n"


def targets(rows: list[dict[str, Any]], sizes: list[int]) -> tuple[str, list[tuple[str, bool]]]:
    """The targets, checked against this run's medians, at every N: CPU per session
    ≤ 0.8× the SDK's, RSS per session ≤ 0.7×, send-lag p99 (the SDK's measure) ≤ the
    SDK's and ≤ 20 ms up to N = 500, speak→first-audio p99 ≤ the SDK's, no failures."""
    checks: list[tuple[str, bool, str]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append((name, ok, detail))

    for n in sizes:
        s, k = _row(rows, "saynad", n), _row(rows, "sdk", n)
        if not (s and k):
            continue
        ratio = s["cpu_ms_per_session"] / k["cpu_ms_per_session"]
        add(
            f"N={n}: CPU/session ≤ 0.8× SDK",
            ratio <= 0.8,
            f"{s['cpu_ms_per_session']:.2f} vs {k['cpu_ms_per_session']:.2f} ms ({ratio:.2f}×)",
        )
        ratio = s["rss_kb_per_session"] / max(k["rss_kb_per_session"], 1e-9)
        add(
            f"N={n}: RSS/session ≤ 0.7× SDK",
            ratio <= 0.7,
            f"{s['rss_kb_per_session']:.0f} vs {k['rss_kb_per_session']:.0f} KB ({ratio:.2f}×)",
        )
        lag, sdk_lag = s["send_lag_p99_s"], k["send_lag_p99_s"]
        if n <= 500:
            add(
                f"N={n}: send lag p99 ≤ SDK and ≤ 20 ms",
                lag <= sdk_lag and lag <= 0.020,
                f"{_ms(lag)} vs {_ms(sdk_lag)} ms",
            )
        else:
            add(f"N={n}: send lag p99 ≤ SDK", lag <= sdk_lag, f"{_ms(lag)} vs {_ms(sdk_lag)} ms")
        add(
            f"N={n}: speak→first audio p99 ≤ SDK",
            s["first_audio_p99_s"] <= k["first_audio_p99_s"],
            f"{_ms(s['first_audio_p99_s'])} vs {_ms(k['first_audio_p99_s'])} ms",
        )
        add(
            f"N={n}: zero failures (saynad, every run)",
            int(s["failures_total"]) == 0,
            f"{int(s['failures_total'])} failed sessions",
        )
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
