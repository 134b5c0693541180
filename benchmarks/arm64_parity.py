"""Parity on ARM kernels: verify (and briefly bench) the zoo bundles in an emulated arm64 userland.

    sudo python benchmarks/arm64_parity.py [--models lstm gru] [--cpus cortex-a76 cortex-a72] [--images N]

A verdict measured on x86 is not proof for a Raspberry Pi: XNNPACK and MLAS have separate NEON paths, and
a Cortex-A76 (Pi 5) has fp16 arithmetic that ONNX Runtime uses. This script

1. builds (once, cached in ``--root``) a Debian arm64 root file system (``--suite``: bookworm, the base of
   Raspberry Pi OS Bookworm with Python 3.11, or bullseye, Python 3.9) with ``debootstrap`` and a
   venv in it, run through ``qemu-user-static`` and binfmt_misc (root is needed for debootstrap, chroot
   and the mounts; the tools come from Debian: ``apt-get install debootstrap qemu-user-static``);
2. builds the edgeseq wheel from a clean copy of the committed tree (``git archive HEAD``) and installs it
   in the userland with its CPU runtimes (``edgeseq[cpu]``: aarch64 wheels of onnxruntime and LiteRT);
3. for each CPU model (``QEMU_CPU``, with a ``/proc/cpuinfo`` of that CPU bind-mounted over the host's:
   qemu 7.2 passes the x86 one through, and ``import onnxruntime`` crashes on it), runs ``edgeseq verify``
   on each bundle with no MNIST in the userland (the bundle carries the test set) and a short
   ``edgeseq bench``; the same verify runs on this x86 host, in the same run, for the comparison;
4. writes ``benchmarks/results/arm64_parity.{json,md}``: every artifact's verdict, agreement and max
   difference on ARM beside x86, and every difference called out.

Emulation is 50-300x slower than the device: its timings mean nothing (they are not reported), its
numerics are the ARM kernels'. ``--images`` verifies on the first N test images only (each agreement's
95 % interval says what N can tell).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ZOO = ("mlp", "rnn", "rnn128", "lstm", "gru", "seq2seq")
SUITES = {"bookworm": "Raspberry Pi OS Bookworm (Python 3.11)", "bullseye": "Raspberry Pi OS Bullseye (Python 3.9)"}
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
VENV = "/opt/edgeseq"
READY = ".edgeseq-userland"

# What /proc/cpuinfo says on each board (one core shown per CPU; the Features line is the kernel's hwcaps).
CPUS = {
    "cortex-a76": {"board": "Raspberry Pi 5 Model B Rev 1.0", "part": "0xd0b", "variant": "0x4", "revision": "1",
                   "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                               "lrcpc dcpop asimddp"},
    "cortex-a72": {"board": "Raspberry Pi 4 Model B Rev 1.5", "part": "0xd08", "variant": "0x0", "revision": "3",
                   "features": "fp asimd evtstrm crc32 cpuid"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(ZOO), help="zoo models whose bundles to verify")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "zoo", help="run directories (RUN/MODEL/bundle)")
    parser.add_argument("--bundles", nargs="+", type=Path, default=None, help="bundle directories instead of --models")
    parser.add_argument("--cpus", nargs="+", default=list(CPUS), choices=list(CPUS))
    parser.add_argument("--images", type=int, default=None, help="verify on the first N test images only")
    parser.add_argument("--bench-runs", type=int, default=20, help="timed runs per artifact in the short bench (0: none)")
    parser.add_argument("--suite", default="bookworm", choices=list(SUITES), help="Debian release of the userland: "
                        + ", ".join(f"{k} = {v}" for k, v in SUITES.items()))
    parser.add_argument("--root", type=Path, default=None, help="the userland (default: "
                        "$EDGESEQ_ARM64_ROOT, else ~/.cache/edgeseq/arm64-SUITE)")
    parser.add_argument("--out", type=Path, default=RESULTS / "arm64_parity", help="results stem (.json and .md)")
    parser.add_argument("--render", type=Path, default=None, help="only write the markdown of an existing results JSON")
    parser.add_argument("--jobs", type=int, default=2, help="emulated verifies run side by side")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads in the userland (emulated idle "
                                                               "threads spin at full cost)")
    args = parser.parse_args()
    if args.render:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.render.read_text())))
        return 0
    bundles = args.bundles or [args.runs / m / "bundle" for m in args.models]
    missing = [str(b) for b in bundles if not (b / "manifest.json").is_file()]
    if missing:
        sys.exit(f"error: no bundle at {', '.join(missing)} (benchmarks/export_matrix.py writes the zoo's)")
    root = args.root or Path(os.environ.get("EDGESEQ_ARM64_ROOT") or Path.home() / ".cache" / "edgeseq" / f"arm64-{args.suite}")
    check_tools()
    userland(root, args.suite)
    wheel_versions = install_edgeseq(root)
    started = time.perf_counter()
    x86 = {b: verify_here(b, args.images) for b in bundles}
    jobs = [(cpu, b) for cpu in args.cpus for b in bundles]
    arm = run_emulated(root, jobs, args.images, args.bench_runs, args.jobs, args.threads)
    report = {"schema": "edgeseq.arm64-parity/1", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "host": host_facts(), "userland": {"suite": args.suite, "python": wheel_versions.pop("python"),
                                                 "packages": wheel_versions},
              "images": args.images, "threads": args.threads, "seconds": round(time.perf_counter() - started),
              "models": [model_entry(b, x86[b], {cpu: arm[(cpu, b)] for cpu in args.cpus}) for b in bundles]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def sh(*cmd, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=check, text=True, capture_output=True, **kw)


def check_tools() -> None:
    if os.geteuid() != 0:
        sys.exit("error: run as root (debootstrap, chroot and bind mounts need it)")
    for tool in ("debootstrap", "qemu-aarch64-static", "unshare", "chroot"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} not found; install it with: apt-get install debootstrap qemu-user-static")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        sh("mount", "-t", "binfmt_misc", "binfmt_misc", binfmt)
    if not (binfmt / "qemu-aarch64").exists():
        sh("update-binfmts", "--enable", "qemu-aarch64", check=False)
    if not (binfmt / "qemu-aarch64").exists():
        sys.exit("error: no binfmt_misc entry for qemu-aarch64 (update-binfmts --enable qemu-aarch64 failed)")


def userland(root: Path, suite: str) -> None:
    """The arm64 root file system with a venv, built once (a partial build is redone, never reused)."""
    if (root / READY).is_file():
        return
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the arm64 userland in {root} (debootstrap, a few minutes)", flush=True)
    sh("debootstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", suite, partial, MIRROR)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    (root / READY).write_text(f"debootstrap --arch=arm64 --variant=minbase --include={PACKAGES} {suite}\n")


def chroot(root: Path, command: str, cpu: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``command`` (sh) inside the userland, in a private mount namespace with /proc, /dev, /sys (ORT's
    cpuinfo reads the present CPUs there) and, for a CPU
    model, that CPU's /proc/cpuinfo; the host's CA bundle and resolver so pip can reach PyPI."""
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc" / "edgeseq-host-ca.crt")
    mounts = [f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev", f"mount --rbind /sys {root}/sys"]
    env = ["PIP_CERT=/etc/edgeseq-host-ca.crt", "SSL_CERT_FILE=/etc/edgeseq-host-ca.crt", "HOME=/root",
           "PATH=/usr/bin:/bin", "PIP_DISABLE_PIP_VERSION_CHECK=1", "LC_ALL=C.UTF-8"]
    if cpu:
        info = root / "tmp" / f"cpuinfo-{cpu}"
        info.write_text(cpuinfo(cpu))
        mounts.append(f"mount --bind {info} {root}/proc/cpuinfo")
        env.append(f"QEMU_CPU={cpu}")
    inner = " && ".join(mounts) + f" && exec chroot {root} env -i {' '.join(env)} sh -c {shquote(command)}"
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner], text=True,
                          capture_output=True, timeout=timeout)


def shquote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def cpuinfo(cpu: str) -> str:
    spec = CPUS[cpu]
    cores = [f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {spec['features']}\nCPU implementer\t: 0x41\n"
             f"CPU architecture: 8\nCPU variant\t: {spec['variant']}\nCPU part\t: {spec['part']}\n"
             f"CPU revision\t: {spec['revision']}\n" for i in range(4)]
    return "\n".join(cores) + f"\nRevision\t: d04170\nSerial\t\t: 0000000000000000\nModel\t\t: {spec['board']}\n"


def install_edgeseq(root: Path) -> dict:
    """The wheel of the committed tree (``git archive HEAD``: building in the work tree writes build/ into
    it), installed with ``[cpu]`` into the userland's venv. Returns the versions the userland resolved."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", Path(tmp) / "dist", src)
        (wheel,) = (Path(tmp) / "dist").glob("edgeseq-*.whl")
        for old in (root / "tmp").glob("edgeseq-*.whl"):
            old.unlink()
        shutil.copy(wheel, root / "tmp" / wheel.name)
    print(f"installing {wheel.name}[cpu] in the arm64 userland", flush=True)
    # a fresh pip first, as the README says: Bullseye's pip 20.3 backtracks for many minutes over old releases
    done = chroot(root, f"[ -x {VENV}/bin/python ] || python3 -m venv {VENV}; {VENV}/bin/pip install -q --upgrade pip && "
                        f"{VENV}/bin/pip install -q --force-reinstall --no-deps /tmp/{wheel.name} && "
                        f"{VENV}/bin/pip install -q '/tmp/{wheel.name}[cpu]' && "
                        f"{VENV}/bin/python -c 'import json, platform, importlib.metadata as m; print(json.dumps("
                        "{\"python\": platform.python_version(), **{d: m.version(d) for d in "
                        "(\"edgeseq\", \"numpy\", \"onnxruntime\", \"ai-edge-litert\")}}))'", cpu="cortex-a72")
    if done.returncode != 0:
        sys.exit(f"error: installing edgeseq in the arm64 userland failed: {(done.stderr or done.stdout).strip()[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def verify_here(bundle: Path, images: int | None) -> dict:
    """The same verify on this host (x86 kernels), into a temporary folder."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "edgeseq", "verify", str(bundle), "--out", out, "--json", "--quiet"]
        done = subprocess.run(cmd + (["--images", str(images)] if images else []), text=True, capture_output=True,
                              env={**os.environ, "EDGESEQ_DATA_DIR": str(Path(out) / "no-mnist")})
        return _report(done, f"verify of {bundle} on x86")


def _report(done: subprocess.CompletedProcess, what: str) -> dict:
    try:  # the --json envelope: {"schema": "edgeseq.cli/1", ..., "result": {...}}
        return json.loads(done.stdout)["result"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return {"error": f"{what} gave no report (rc {done.returncode}): {(done.stderr or '').strip()[-400:]}"}


def run_emulated(root: Path, jobs: list, images: int | None, bench_runs: int, parallel: int, threads: int) -> dict:
    """verify (and a short bench) of each (cpu, bundle) in the userland, ``parallel`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    for bundle in {b for _, b in jobs}:
        dest = work / "bundles" / bundle.parent.name
        dest.mkdir(parents=True)
        manifest = json.loads((bundle / "manifest.json").read_text())
        for name in ["manifest.json", "reference.npz", *(a["file"] for a in manifest["artifacts"] if a.get("file"))]:
            if (bundle / name).is_file():
                shutil.copy(bundle / name, dest / name)

    def one(job):
        cpu, bundle = job
        name = bundle.parent.name
        out = f"/work/out/{cpu}/{name}"
        limit = (f" --images {images}" if images else "") + f" --threads {threads}"
        started = time.perf_counter()
        verify = chroot(root, f"mkdir -p {out} && {VENV}/bin/edgeseq verify /work/bundles/{name} --out {out} "
                              f"--json --quiet{limit}", cpu=cpu)
        result = {"verify": _report(verify, f"verify of {name} on {cpu}"), "seconds": round(time.perf_counter() - started)}
        if bench_runs:
            bench = chroot(root, f"{VENV}/bin/edgeseq bench /work/bundles/{name} --out {out}/bench --runs {bench_runs} "
                                 f"--warmup 2 --threads {threads} --no-accuracy --no-cold-start --json --quiet", cpu=cpu)
            result["bench"] = _report(bench, f"bench of {name} on {cpu}")
        print(f"{cpu} {name}: {_summary(result['verify'])} ({result['seconds']} s)", flush=True)
        return job, result

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return dict(pool.map(one, jobs))


def _summary(report: dict) -> str:
    if "error" in report:
        return report["error"][:200]
    rows = report.get("artifacts", [])
    return f"{sum(r['passed'] for r in rows)}/{len(rows)} pass on {report.get('examples')} images"


def host_facts() -> dict:
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    qemu = sh("qemu-aarch64-static", "--version").stdout.splitlines()[0]
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "f16c", "fma")
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags], "qemu": qemu,
            "python": platform.python_version()}


def _rows(report: dict) -> dict:
    return {r["id"]: r for r in report.get("artifacts", [])}


def model_entry(bundle: Path, x86: dict, arm: dict) -> dict:
    """Per artifact: x86 and each CPU's verdict, agreement and max |diff|; the differences named."""
    x86_rows = _rows(x86)
    artifacts, differences = [], []
    hashes = {a["id"]: a.get("sha256") for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]}
    for aid, xr in x86_rows.items():
        entry = {"id": aid, "sha256": hashes.get(aid), "x86": _cell(xr)}
        for cpu, result in arm.items():
            ar = _rows(result["verify"]).get(aid)
            entry[cpu] = _cell(ar) if ar else {"status": "missing"}
            entry[cpu]["runtime"] = (ar or {}).get("runtime", {}).get("runtime")
            differences += _differences(aid, cpu, entry["x86"], entry[cpu])
        artifacts.append(entry)
    errors = {cpu: r["verify"]["error"] for cpu, r in arm.items() if "error" in r["verify"]}
    if "error" in x86:
        errors["x86"] = x86["error"]
    benches = {cpu: _bench_cells(r.get("bench")) for cpu, r in arm.items()}
    return {"model": bundle.parent.name, "bundle": str(bundle), "examples": x86.get("examples"),
            "evaluated_on": {"x86": x86.get("evaluated_on"), **{c: r["verify"].get("evaluated_on") for c, r in arm.items()}},
            "artifacts": artifacts, "differences": differences, "errors": errors, "bench": benches,
            "seconds": {cpu: r["seconds"] for cpu, r in arm.items()}}


def _cell(row: dict) -> dict:
    p = row.get("parity") or {}
    return {"status": row.get("status"), "passed": row.get("passed"), "agreement": p.get("agreement"),
            "max_abs_diff": p.get("max_abs_diff"), "accuracy": p.get("accuracy"), "reasons": row.get("reasons", [])}


def _differences(aid: str, cpu: str, x86: dict, arm: dict) -> list[str]:
    found = []
    if arm.get("passed") != x86.get("passed"):
        found.append(f"{aid} on {cpu}: {'PASS' if arm.get('passed') else 'FAIL'} against "
                     f"{'PASS' if x86.get('passed') else 'FAIL'} on x86 ({'; '.join(arm.get('reasons') or x86.get('reasons') or [])})")
    if x86.get("agreement") is not None and arm.get("agreement") is not None and arm["agreement"] != x86["agreement"]:
        found.append(f"{aid} on {cpu}: agreement {arm['agreement']:.2%} against {x86['agreement']:.2%} on x86")
    xd, ad = x86.get("max_abs_diff"), arm.get("max_abs_diff")
    if xd is not None and ad is not None and ad > 2 * xd and ad > 1e-6:
        found.append(f"{aid} on {cpu}: max |diff| {ad:.1e} against {xd:.1e} on x86 ({ad / max(xd, 1e-12):.0f}x)")
    return found


def _bench_cells(bench: dict | None) -> dict:
    if not bench:
        return {}
    if "error" in bench:
        return {"error": bench["error"][:200]}
    device = bench.get("device") or {}
    return {"device": {k: device.get(k) for k in ("cpu", "board", "cpu_flags") if device.get(k) is not None},
            "measured": sum(1 for r in bench.get("artifacts", []) if r.get("latency") and not r.get("error")),
            "artifacts": len(bench.get("artifacts", []))}


def _fmt(cell: dict) -> str:
    if cell.get("status") in (None, "missing"):
        return "-"
    if cell.get("status") != "ok":
        return f"{cell['status'].upper()}"
    verdict = "PASS" if cell["passed"] else "FAIL"
    if not cell["passed"] and any("inconclusive" in r for r in cell.get("reasons") or []):
        verdict = "FAIL (inconclusive)"
    return f"{verdict} {cell['agreement'] * 100:.2f}% / {cell['max_abs_diff']:.1e}"


def _arguments(report: dict) -> str:
    models = [m["model"] for m in report["models"]]
    cpus = sorted({c for m in report["models"] for a in m["artifacts"] for c in CPUS if c in a})
    found = "" if report["userland"]["suite"] == "bookworm" else f" --suite {report['userland']['suite']}"
    found += "" if models == list(ZOO) else " --models " + " ".join(models)
    found += "" if cpus == sorted(CPUS) else " --cpus " + " ".join(cpus)
    return found + (f" --images {report['images']}" if report.get("images") else "")


def markdown(report: dict) -> str:
    cpus = [c for c in CPUS if any(c in a for m in report["models"] for a in m["artifacts"])]
    host = report["host"]
    land = report["userland"]
    boards = {"cortex-a76": "Raspberry Pi 5", "cortex-a72": "Raspberry Pi 4"}
    out = [f"# Parity on ARM kernels (emulated arm64, Debian {land['suite']}: "
           + ", ".join(f"{boards[c]} CPU" for c in cpus) + ")", "",
           f"Reproduce: `sudo python benchmarks/arm64_parity.py{_arguments(report)}` (after "
           "`benchmarks/export_matrix.py`).", "",
           f"Host: {host['cpu']} ({host['cores']} cores; flags {', '.join(host['flags'])}); {host['qemu']}. "
           f"Userland: Debian {land['suite']} arm64, Python {land['python']}, "
           + ", ".join(f"{k} {v}" for k, v in land["packages"].items()) + ".",
           f"Each cell: verdict, agreement with Keras / max |diff|, from `edgeseq verify` on "
           f"{'the first %d' % report['images'] if report['images'] else 'all'} test images carried by the "
           "bundle (no MNIST in the userland). x86 is the same verify on this host in the same run. "
           "`cortex-a76` = Pi 5 (asimdhp, asimddp: fp16 arithmetic and dot product), `cortex-a72` = Pi 4 (neither). "
           "*Inconclusive*: a miss whose 95 % interval on this many images still holds the bar (the 10,000-image "
           "verdicts on x86 are in export_matrix.md). "
           f"Emulation timings mean nothing and are not shown. Total {report['seconds']} s.", ""]
    for m in report["models"]:
        out += [f"## {m['model']}", "", "| artifact | x86 | " + " | ".join(cpus) + " |", "|---|---|" + "---|" * len(cpus)]
        for a in m["artifacts"]:
            out.append(f"| {a['id']} | {_fmt(a['x86'])} | " + " | ".join(_fmt(a.get(c, {})) for c in cpus) + " |")
        out.append("")
        if m["errors"]:
            out += [f"- error on {where}: {why}" for where, why in m["errors"].items()]
        out += [f"- {d}" for d in m["differences"]] or ["- no difference: same verdicts, agreement and max |diff| within 2x"]
        out.append("")
    verdicts = [d for m in report["models"] for d in m["differences"] if "against PASS" in d or "against FAIL" in d]
    out += ["## Verdicts that differ from x86", ""] + ([f"- {d}" for d in verdicts] or ["- none"]) + [""]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
