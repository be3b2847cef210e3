"""Tabulate and plot process logs (read by :mod:`pymemtrace.readers.process_log`).

:func:`table` writes the samples and a summary as text; :func:`write_gnuplot`
writes a gnuplot data file and script (and runs gnuplot if it is installed);
:func:`plot_matplotlib` draws the same with matplotlib.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from pymemtrace.readers.process_log import ProcessLog, finite_number as _number

__all__ = ["table", "write_gnuplot", "plot_matplotlib"]


# ---- table -----------------------------------------------------------------

def _fmt_int(v: float) -> str:
    return "" if math.isnan(v) else f"{int(v):,d}"


def _fmt_s(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.2f}"


def table(log: ProcessLog, out: TextIO) -> None:
    """Write a table of the samples, one row per record, then a summary."""
    recs = log.records
    if not recs:
        out.write("No process records found.\n")
        return
    t0 = recs[0].time
    many_pids = len({r.pid for r in recs}) > 1
    tree = any("nprocs" in r.data for r in recs)
    head = ["Event", "Time(s)", "Timestamp"] + (["PID"] if many_pids else []) + (["Procs"] if tree else []) + [
        "RSS", "dRSS", "VMS", "PFaults", "PageIns", "User(s)", "Sys(s)", "Label"]
    rows: List[List[str]] = []
    prev: Dict[int, float] = {}
    for r in recs:
        rss = r.mem("rss")
        if r.has_memory and not math.isnan(rss):
            d = rss - prev[r.pid] if r.pid in prev else 0.0
            prev[r.pid] = rss
            drss = f"{int(d):+,d}"
        else:
            drss = ""
        label = r.label or ""
        if "error" in r.data:
            label = (label + " " if label else "") + f"[{r.data['error']}]"
        row = [r.kind, f"{r.time - t0:.3f}", str(r.data.get("timestamp", ""))]
        if many_pids:
            row.append(str(r.pid))
        if tree:
            row.append(str(r.data.get("nprocs", "")))
        row += [_fmt_int(rss), drss, _fmt_int(r.mem("vms")), _fmt_int(r.mem("pfaults")),
                _fmt_int(r.mem("pageins")), _fmt_s(r.cpu("user")), _fmt_s(r.cpu("system")), label]
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    right = {"Time(s)", "PID", "Procs", "RSS", "dRSS", "VMS", "PFaults", "PageIns", "User(s)", "Sys(s)"}

    def fmt(cells: Sequence[str]) -> str:
        parts = []
        for i, c in enumerate(cells):
            if head[i] == "Label":
                parts.append(c)
            elif head[i] in right:
                parts.append(c.rjust(widths[i]))
            else:
                parts.append(c.ljust(widths[i]))
        return "  ".join(parts).rstrip() + "\n"

    out.write(fmt(head))
    for row in rows:
        out.write(fmt(row))
    samples = log.samples
    out.write("\n")
    if samples:
        peak = max(samples, key=lambda r: r.mem("rss"))
        low = min(samples, key=lambda r: r.mem("rss"))
        out.write(f"{len(samples)} samples over {recs[-1].time - t0:.3f} s; "
                  f"RSS min {_fmt_int(low.mem('rss'))} at {low.time - t0:.3f} s, "
                  f"max {_fmt_int(peak.mem('rss'))} at {peak.time - t0:.3f} s, "
                  f"last {_fmt_int(samples[-1].mem('rss'))}.\n")
    for r in recs:
        if r.kind != "STOP":
            continue
        sampled = _number(r.data.get("rss_max_sampled"))
        kernel = _number(r.data.get("rss_peak_kernel"))
        source = r.data.get("rss_peak_source")
        if kernel is not None and isinstance(source, str):
            pid = f" of pid {r.pid}" if many_pids else ""
            out.write(f"Peak RSS{pid}: {_fmt_int(kernel)} from the kernel ({source[:60]}); "
                      f"{_fmt_int(sampled) if sampled is not None else 'none'} sampled.\n")
    notes = []
    if log.skipped:
        notes.append(f"{log.skipped} other lines skipped")
    if log.bad:
        notes.append(f"{len(log.bad)} malformed records skipped (first at line {log.bad[0][0]})")
    if log.truncated:
        notes.append("the last line was truncated")
    if notes:
        out.write("Note: " + "; ".join(notes) + ".\n")


# ---- plots -------------------------------------------------------------------

def _dat_series(log: ProcessLog) -> Tuple[List[str], List[Tuple[int, List[List[float]]]]]:
    """Columns and, per pid in order of appearance, rows of numbers."""
    samples = log.samples
    t0 = log.records[0].time if log.records else 0.0
    cols = ["time_s", "rss_mib", "vms_mib", "pfaults", "pageins", "user_s", "system_s"]
    extra = [k for k in ("pss", "uss") if any(not math.isnan(s.mem(k)) for s in samples)]
    cols += [f"{k}_mib" for k in extra]
    series: Dict[int, List[List[float]]] = {}
    for s in samples:
        row = [s.time - t0, s.mem("rss") / 2**20, s.mem("vms") / 2**20, s.mem("pfaults"),
               s.mem("pageins"), s.cpu("user"), s.cpu("system")]
        row += [s.mem(k) / 2**20 for k in extra]
        series.setdefault(s.pid, []).append(row)
    return cols, list(series.items())


def _gp_quote(text: str) -> str:
    # gnuplot single-quoted strings: '' is a quote, no other escapes
    return "'" + text.replace("'", "''").replace("\n", " ") + "'"


def write_gnuplot(log: ProcessLog, out_dir: str, name: str, title: str = "") -> Tuple[str, str, Optional[str]]:
    """Write NAME.dat and NAME.plt into out_dir and, if gnuplot is on PATH,
    run it to make NAME.png.  Returns (dat, plt, png or None).

    NAME.dat has one block per process (gnuplot's ``index``), columns as its
    header says; NAME.plt draws RSS (and PSS/USS when logged) against time,
    CPU time on the right axis, and each label as a marker on the time axis.
    """
    os.makedirs(out_dir, exist_ok=True)
    dat = os.path.join(out_dir, name + ".dat")
    plt = os.path.join(out_dir, name + ".plt")
    png = os.path.join(out_dir, name + ".png")
    cols, series = _dat_series(log)
    with open(dat, "w") as f:
        f.write("# pymemtrace process: " + " ".join(cols) + "\n")
        for k, (pid, rows) in enumerate(series):
            if k:
                f.write("\n\n")
            f.write(f"# pid {pid}\n")
            for row in rows:
                f.write(" ".join(f"{v:.6f}" if not math.isnan(v) else "NaN" for v in row) + "\n")
    t0 = log.records[0].time if log.records else 0.0
    lines = [
        "# gnuplot script written by pymemtrace process plot",
        "set terminal pngcairo size 1200,700 noenhanced",
        f"set output {_gp_quote(os.path.basename(png))}",
        f"set title {_gp_quote(title or 'Process memory over time')}",
        "set xlabel 'Time (s)'",
        "set ylabel 'Memory (MiB)'",
        "set y2label 'CPU time (s)'",
        "set y2tics",
        "set ytics nomirror",
        "set grid",
        "set key below",
        "set yrange [0:*]",
        "set y2range [0:*]",
    ]
    for k, (t, text) in enumerate(log.labels):
        x = t - t0
        lines.append(f"set arrow {k + 1} from {x:.6f}, graph 0 to {x:.6f}, graph 1 nohead lc rgb 'gray50' dt 2")
        lines.append(f"set label {k + 1} {_gp_quote(text)} at {x:.6f}, graph 0.98 rotate by 90 right "
                     "font ',8' tc rgb 'gray30' offset -0.6,0")
    dat_name = _gp_quote(os.path.basename(dat))
    plots = []
    for k, (pid, _) in enumerate(series):
        suffix = f" pid {pid}" if len(series) > 1 else ""
        src = dat_name if not plots else "''"
        plots.append(f"{src} index {k} using 1:2 with lines lw 2 title 'RSS{suffix}'")
        for i, c in enumerate(cols[7:], 8):
            plots.append(f"'' index {k} using 1:{i} with lines title {_gp_quote(c[:-4].upper() + suffix)}")
        plots.append(f"'' index {k} using 1:($6+$7) axes x1y2 with lines dt 3 "
                     f"title 'CPU user+system{suffix} (right)'")
    if not plots:
        plots.append("NaN notitle")
    lines.append("plot " + ", \\\n     ".join(plots))
    with open(plt, "w") as f:
        f.write("\n".join(lines) + "\n")
    made = None
    gnuplot = shutil.which("gnuplot")
    if gnuplot and series:
        r = subprocess.run([gnuplot, os.path.basename(plt)], cwd=out_dir,
                           capture_output=True, text=True, timeout=120)
        if r.returncode == 0 and os.path.exists(png):
            made = png
        else:
            raise RuntimeError(f"gnuplot failed: {r.stderr.strip()[:500]}")
    return dat, plt, made


def plot_matplotlib(log: ProcessLog, path: str, title: str = "") -> str:
    """Draw RSS (and PSS/USS when logged) over time with the labels as
    markers on the time axis into a PNG.  Raises ImportError without
    matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, series = _dat_series(log)
    fig, ax = plt.subplots(figsize=(12, 7))
    try:
        ax2 = ax.twinx()
        for pid, rows in series:
            suffix = f" pid {pid}" if len(series) > 1 else ""
            t = [r[0] for r in rows]
            ax.plot(t, [r[1] for r in rows], lw=2, label="RSS" + suffix)
            for i, c in enumerate(cols[7:], 7):
                ax.plot(t, [r[i] for r in rows], label=c[:-4].upper() + suffix)
            ax2.plot(t, [r[5] + r[6] for r in rows], ls=":", label="CPU user+system" + suffix)
        ax.set_xlabel("Time (s)")
        ax.set_ylabel("Memory (MiB)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax2.set_ylabel("CPU time (s)")
        t0 = log.records[0].time if log.records else 0.0
        for lt, text in log.labels:
            x = lt - t0
            ax.axvline(x, color="gray", ls="--", lw=0.8)
            ax.text(x, 0.98, text, rotation=90, va="top", ha="right", fontsize=8,
                    color="dimgray", transform=ax.get_xaxis_transform())
        ax.plot([lt - t0 for lt, _ in log.labels], [0] * len(log.labels), "v", color="red",
                clip_on=False, label="labels" if log.labels else None)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4)
        ax.set_title(title or "Process memory over time")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
