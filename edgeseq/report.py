"""Readable reports: Markdown tables for verify and bench from the JSON report dicts, and an HTML twin of
any Markdown report with its figures inline."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _pct(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def verify_row(row: dict) -> list[str]:
    """One artifact as table cells: id, size, vs fp32, agreement and its 95 % interval, accuracy, delta,
    max/mean diff, int8 MACs, verdict."""
    p = row.get("parity") or {}
    cov = row.get("coverage") or {}
    share = cov.get("int8_mac_share") if "error" not in cov else None
    return [
        row["id"],
        human_bytes(row.get("bytes")),
        f"{row['size_vs_fp32']:.2f}x" if row.get("size_vs_fp32") is not None else "-",
        _pct(p.get("agreement")),
        f"{p['agreement_low'] * 100:.2f}-{p['agreement_high'] * 100:.2f}" if "agreement_low" in p else "-",
        _pct(p.get("accuracy")),
        f"{p['accuracy_delta'] * 100:+.2f}" if "accuracy_delta" in p else "-",
        f"{p['max_abs_diff']:.1e}" if "max_abs_diff" in p else "-",
        f"{p['mean_abs_diff']:.1e}" if "mean_abs_diff" in p else "-",
        _pct(share, 1),
        ("PASS" if row["passed"] else "FAIL") + (" (not quantized)" if _unquantized(row, share) else ""),
    ]


def _unquantized(row: dict, share: float | None) -> bool:
    """A dynamic or int8 artifact whose multiply-accumulates are mostly float: the converter quantized
    next to nothing (e.g. ORT leaves Loop bodies float). Its verdict says so, whatever the thresholds."""
    return row.get("quant") in ("dynamic", "int8") and share is not None and share < 0.5


VERIFY_HEADERS = ["artifact", "size", "vs fp32", "agreement", "95% CI", "accuracy", "Δacc pts", "max|Δ|", "mean|Δ|",
                  "int8 MACs", "verdict"]


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def verify_markdown(report: dict) -> str:
    rows = report["artifacts"]
    kind_note = "agreement = exact word" if report["kind"] == "spell" else "agreement = same top-1 digit"
    out = [
        f"# Parity of {report['model']} artifacts against the Keras original",
        "",
        f"Evaluated on the {report['evaluated_on']}; {kind_note}. Verdict: "
        f"**{'all artifacts pass' if report['passed'] else 'some artifacts FAIL'}**.",
        "",
        markdown_table(VERIFY_HEADERS, [verify_row(r) for r in rows]),
        "",
    ]
    details = verify_details(rows)
    if details:
        out += ["## Reasons and notes", "", *details, ""]
    return "\n".join(out)


def verify_details(rows: list[dict]) -> list[str]:
    """Markdown bullets: why each failing artifact fails, what each left unquantized, spelling error rates."""
    lines = []
    for r in rows:
        lines += [f"- **{r['id']}** fails: {reason}" for reason in r["reasons"]]
        lines += [f"- **{r['id']}** is not worth having over fp32: {flag}" for flag in r.get("flags", [])]
        lines += [f"- {r['id']}: {note}" for note in r.get("notes", [])]
        p = r.get("parity") or {}
        if "char_error_rate_vs_keras" in p:
            lines.append(f"- {r['id']}: character error rate {p['char_error_rate_vs_keras']:.3%} against Keras's words, "
                         f"{p['char_error_rate']:.3%} against the true words; char agreement {p['char_agreement']:.2%}")
    return lines


BENCH_HEADERS = ["artifact", "runtime", "size", "accuracy", "agreement", "p50 µs", "p90 µs", "p99 µs", "mean±std µs",
                 "per s", "cold ms", "peak MB", "flags"]


def bench_row(row: dict, batch: int = 1) -> list[str]:
    """One artifact of a bench report as table cells (latency at ``batch``)."""
    if "error" in row:
        return [row["id"], "-", human_bytes(row.get("bytes"))] + ["-"] * 9 + [f"error: {row['error'][:60]}"]
    lat = next((s for s in row["latency"] if s.get("batch") == batch and "p50_us" in s), {})
    acc = row.get("accuracy") or {}
    cold = row.get("cold_start") or {}
    runtime = row["runtime"]
    name = f"{runtime['runtime']} {runtime['version']}"
    if runtime.get("node_providers"):
        name += " [" + ", ".join(f"{p.replace('ExecutionProvider', '')}:{n}" for p, n in runtime["node_providers"].items()) + "]"
    flags = [f"unstable (robust spread {lat['spread']:.0%}, p99/p50 {lat['tail_ratio']:.1f})"] if lat.get("unstable") else []
    flags += row.get("flags", [])
    if "tensorrt_engine_build_ms" in cold:
        flags.insert(0, f"TensorRT engine build {cold['tensorrt_engine_build_ms']:.0f} ms (in the cold start)")
    return [
        row["id"], name, human_bytes(row["bytes"]), _pct(acc.get("accuracy")), _pct(acc.get("agreement")),
        f"{lat['p50_us']:.1f}" if lat else "-", f"{lat['p90_us']:.1f}" if lat else "-",
        f"{lat['p99_us']:.1f}" if lat else "-", f"{lat['mean_us']:.1f}±{lat['std_us']:.1f}" if lat else "-",
        f"{lat['throughput_per_s']:.0f}" if lat else "-",
        f"{cold['load_and_first_inference_ms']:.1f}" if "load_and_first_inference_ms" in cold else "-",
        f"{cold['peak_rss_mb']:.0f}" if "peak_rss_mb" in cold else "-", ", ".join(flags) or "ok",
    ]


def bench_markdown(report: dict) -> str:
    d = report["device"]
    cfg = report["config"]
    out = ["# edgeseq bench", "",
           f"Device: {d['board'] + ', ' if d.get('board') else ''}{d['cpu']} ({d['cpu_count']} cores, {d['machine']}; "
           f"features {' '.join(d.get('cpu_flags') or []) or 'unknown'}), {d['os']}, Python {d['python']}; "
           f"governor {d.get('governor') or 'unknown'}; Jetson power mode {d.get('jetson_power_mode') or '-'}.",
           f"Runs: {cfg['warmup']} warm-up, then {'%s s' % cfg['seconds'] if cfg['seconds'] else '%d runs' % cfg['runs']} "
           f"per batch size; threads {cfg['threads'] or 'runtime default'}; created {report['created']}.", ""]
    if report.get("interrupted"):
        out += ["**Interrupted**: only the artifacts below were measured.", ""]
    out += [f"- warning: {w}" for w in report.get("warnings", [])]
    for batch in cfg["batch_sizes"]:
        out += ["", f"## Batch {batch}", "", markdown_table(BENCH_HEADERS, [bench_row(r, batch) for r in report["artifacts"]])]
    evaluated = {(r.get("accuracy") or {}).get("evaluated_on") for r in report["artifacts"]} - {None}
    if evaluated:
        out += ["", "Accuracy evaluated on: " + "; ".join(sorted(evaluated)) + "."]
    return "\n".join(out) + "\n"


def compare_markdown(diff: dict) -> str:
    rows = [[r["id"], f"{r['p50_before_us']:.1f}" if r["p50_before_us"] else "-",
             f"{r['p50_after_us']:.1f}" if r["p50_after_us"] else "-",
             f"{r['p50_change']:+.1%}" if r["p50_change"] is not None else "-",
             _pct(r["accuracy_before"]), _pct(r["accuracy_after"]), "; ".join(r["regressions"]) or "ok"] for r in diff["rows"]]
    return markdown_table(["artifact", "p50 before µs", "p50 after µs", "change", "accuracy before", "accuracy after",
                           "verdict"], rows)


def markdown_html(markdown: str, base: Path, title: str) -> str:
    """The Markdown edgeseq writes (headings, paragraphs, bullets, tables, bold, links) as one self-contained
    HTML page; every linked PNG or SVG under ``base`` is shown inline (data URI), so it opens anywhere."""
    body, table_rows, bullets = [], [], []

    def flush() -> None:
        if table_rows:
            head, *rest = table_rows
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest) + "</table>")
            table_rows.clear()
        if bullets:
            body.append("<ul>" + "".join(f"<li>{b}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table_rows.append([_inline(c, base) for c in cells])
            continue
        if line.startswith("- "):
            bullets.append(_inline(line[2:], base) + _figures(line, base))
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip(), base)}</h{level}>")
        elif line.strip():
            body.append(f"<p>{_inline(line, base)}</p>")
    flush()
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}img{max-width:100%;display:block;margin:.5em 0}"
            "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str, base: Path) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def _figures(line: str, base: Path) -> str:
    """Inline <img> of each PNG/SVG the line links to, when the file is there."""
    shown = []
    for target in re.findall(r"\]\(([^)]+\.(?:png|svg))\)", line):
        path = base / target
        if path.is_file():
            kind = "svg+xml" if path.suffix == ".svg" else "png"
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            shown.append(f'<img alt="{html.escape(target)}" src="data:image/{kind};base64,{data}">')
    return "".join(shown)
