"""Where a result was produced: CPU, OS, Python and library versions. No heavy imports."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


CPUINFO = "/proc/cpuinfo"

# ARM "CPU implementer"/"CPU part" in /proc/cpuinfo -> core name (the boards edgeseq's users run).
_ARM_CORES = {("0x41", "0xd03"): "Cortex-A53", ("0x41", "0xd04"): "Cortex-A35", ("0x41", "0xd05"): "Cortex-A55",
              ("0x41", "0xd07"): "Cortex-A57", ("0x41", "0xd08"): "Cortex-A72", ("0x41", "0xd09"): "Cortex-A73",
              ("0x41", "0xd0a"): "Cortex-A75", ("0x41", "0xd0b"): "Cortex-A76", ("0x41", "0xd0c"): "Neoverse-N1",
              ("0x41", "0xd40"): "Neoverse-V1", ("0x41", "0xd41"): "Cortex-A78", ("0x41", "0xd42"): "Cortex-A78AE",
              ("0x41", "0xd49"): "Neoverse-N2", ("0x4e", "0x004"): "NVIDIA Carmel"}


def _cpuinfo() -> dict[str, str]:
    """The first value of each /proc/cpuinfo key (every core repeats them)."""
    found: dict[str, str] = {}
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                found.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return found


def cpu_name() -> str:
    """The CPU's model name: x86's "model name", an ARM core's name from its part number (a Pi's cpuinfo
    names the board, not the core), else what ``platform`` knows."""
    info = _cpuinfo()
    if info.get("model name"):
        return info["model name"]
    core = _ARM_CORES.get((info.get("CPU implementer", ""), info.get("CPU part", "")))
    if core:
        return f"ARM {core}"
    return info.get("Hardware") or platform.processor() or platform.machine()


def board() -> str | None:
    """The board or module: "Raspberry Pi 5 Model B Rev 1.0", "NVIDIA Jetson Orin Nano Developer Kit"
    (device tree, else the Pi's cpuinfo "Model" line), with the Jetson's L4T release when there is one."""
    name = _read("/proc/device-tree/model") or _cpuinfo().get("Model") or None
    release = _read("/etc/nv_tegra_release")  # "# R35 (release), REVISION: 4.1, GCID: ..."
    if release and release.startswith("# R"):
        l4t = release[2:].split(",")[0].replace(" (release)", "")
        revision = release.split("REVISION:")[1].split(",")[0].strip() if "REVISION:" in release else ""
        name = f"{name or 'NVIDIA Jetson'} (L4T {l4t}{'.' + revision if revision else ''})"
    return name


def package_versions(*names: str) -> dict[str, str]:
    """Installed distribution versions, without importing the packages; missing ones are left out."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def host() -> dict:
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu_flags": cpu_flags(),
        "board": board(),
    }


def cpu_flags() -> list[str]:
    """The SIMD and matrix features that decide which kernels run (AVX-512 VNNI or plain AVX2, NEON dot
    product, ...): two machines of one name can differ, so every figure records them."""
    try:
        text = Path(CPUINFO).read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith(("flags", "Features"))), [])
    # x86: AVX2 / AVX-512 (VNNI, FP16, BF16) / AMX; ARM: asimddp (int8 dot product), asimdhp and fphp (fp16
    # arithmetic), i8mm, bf16, SVE, SME
    return sorted(f for f in flags if f.startswith(("avx", "fma", "f16c", "amx", "asimd", "fphp", "sve", "sme2", "i8mm",
                                                    "bf16", "vnni")) or f == "sme")


# Raspberry Pi `vcgencmd get_throttled` bits: (bit, meaning); bits 16-19 say the same "has occurred".
_PI_THROTTLE_BITS = ((0, "under-voltage"), (1, "arm frequency capped"), (2, "throttled"), (3, "soft temperature limit"))


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip().rstrip("\x00") or None
    except OSError:
        return None


def _command(*args: str) -> str | None:
    import shutil
    import subprocess

    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def temperatures_c() -> dict[str, float]:
    """Thermal zones in degrees Celsius (Linux), by zone type."""
    import glob

    found = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        raw, kind = _read(f"{zone}/temp"), _read(f"{zone}/type") or os.path.basename(zone)
        if raw and raw.lstrip("-").isdigit():
            found[kind] = round(int(raw) / 1000, 1)
    return found


def pi_throttling(raw: str | None) -> dict | None:
    """Parse ``throttled=0x50005`` into flags now and since boot; None without vcgencmd."""
    if not raw or "=" not in raw:
        return None
    try:
        value = int(raw.split("=", 1)[1], 16)
    except ValueError:
        return None
    now = [name for bit, name in _PI_THROTTLE_BITS if value >> bit & 1]
    since_boot = [name for bit, name in _PI_THROTTLE_BITS if value >> (bit + 16) & 1]
    return {"raw": hex(value), "now": now, "since_boot": since_boot}


def device() -> dict:
    """Everything that makes a latency figure comparable across machines, and what can spoil it."""
    info = host()
    info["governor"] = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    info["cpu_max_mhz"] = int(max_khz) // 1000 if max_khz and max_khz.isdigit() else None
    info["temperatures_c"] = temperatures_c()
    info["pi_throttled"] = pi_throttling(_command("vcgencmd", "get_throttled"))
    power = _command("nvpmodel", "-q")
    info["jetson_power_mode"] = power.splitlines()[0].split(":", 1)[-1].strip() if power else None
    mem = _read("/proc/meminfo")
    info["memory_mb"] = int(mem.split()[1]) // 1024 if mem and mem.startswith("MemTotal") else None
    return info


def warnings(info: dict) -> list[str]:
    """What in a fingerprint makes its timings suspect."""
    found = []
    throttled = info.get("pi_throttled")
    if throttled and (throttled["now"] or throttled["since_boot"]):
        found.append(f"Raspberry Pi reports {', '.join(throttled['now'] or throttled['since_boot'])} "
                     f"({'now' if throttled['now'] else 'since boot'}; {throttled['raw']})")
    if info.get("governor") not in (None, "performance"):
        found.append(f"CPU governor is {info['governor']!r}, not 'performance': clocks may change during the run")
    hot = {k: t for k, t in (info.get("temperatures_c") or {}).items() if t >= 80}
    if hot:
        found.append("hot: " + ", ".join(f"{k} {t:.0f} C" for k, t in hot.items()))
    return found
