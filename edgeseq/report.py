"""Readable reports: Markdown tables for verify (and, later, bench), from the JSON report dicts."""

from __future__ import annotations


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
    """One artifact as table cells: id, size, vs fp32, agreement, accuracy, delta, max/mean diff, int8 MACs, verdict."""
    p = row.get("parity") or {}
    cov = row.get("coverage") or {}
    share = cov.get("int8_mac_share") if "error" not in cov else None
    return [
        row["id"],
        human_bytes(row.get("bytes")),
        f"{row['size_vs_fp32']:.2f}x" if row.get("size_vs_fp32") is not None else "-",
        _pct(p.get("agreement")),
        _pct(p.get("accuracy")),
        f"{p['accuracy_delta'] * 100:+.2f}" if "accuracy_delta" in p else "-",
        f"{p['max_abs_diff']:.1e}" if "max_abs_diff" in p else "-",
        f"{p['mean_abs_diff']:.1e}" if "mean_abs_diff" in p else "-",
        _pct(share, 1),
        "PASS" if row["passed"] else "FAIL",
    ]


VERIFY_HEADERS = ["artifact", "size", "vs fp32", "agreement", "accuracy", "Δacc pts", "max|Δ|", "mean|Δ|",
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
        lines += [f"- {r['id']}: {note}" for note in r.get("notes", [])]
        p = r.get("parity") or {}
        if "char_error_rate_vs_keras" in p:
            lines.append(f"- {r['id']}: character error rate {p['char_error_rate_vs_keras']:.3%} against Keras's words, "
                         f"{p['char_error_rate']:.3%} against the true words; char agreement {p['char_agreement']:.2%}")
    return lines
