"""Device facts in every report: the CPU and its SIMD features (int8 and fp16 speed depend on them) and the
board, read from a Raspberry Pi 5's and a Jetson's files as well as this machine's."""

from __future__ import annotations

from edgeseq import fingerprint

PI5_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
    "CPU part\t: 0xd0b\nCPU revision\t: 1\n\n" for i in range(4)
) + "Revision\t: d04170\nSerial\t\t: 0000000000000000\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"


def test_a_pi5_is_named_by_its_core_features_and_board(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(PI5_CPUINFO)
    monkeypatch.setattr(fingerprint, "CPUINFO", str(info))
    monkeypatch.setattr(fingerprint, "_read", lambda path: None)  # no device tree, no L4T: the cpuinfo Model line
    host = fingerprint.host()
    assert host["cpu"] == "ARM Cortex-A76"
    assert host["cpu_flags"] == ["asimd", "asimddp", "asimdhp", "asimdrdm", "fphp"]
    assert host["board"] == "Raspberry Pi 5 Model B Rev 1.0"


def test_a_jetson_names_its_module_and_l4t_release(monkeypatch):
    files = {"/proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit",
             "/etc/nv_tegra_release": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64"}
    monkeypatch.setattr(fingerprint, "_read", files.get)
    assert fingerprint.board() == "NVIDIA Jetson AGX Orin Developer Kit (L4T R35.4.1)"


def test_x86_flags_keep_the_simd_ones_only(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse2 smep avx2 fma avx512_vnni amx_int8\n")
    monkeypatch.setattr(fingerprint, "CPUINFO", str(info))
    assert fingerprint.cpu_name() == "Some Xeon"
    assert fingerprint.cpu_flags() == ["amx_int8", "avx2", "avx512_vnni", "fma"]
