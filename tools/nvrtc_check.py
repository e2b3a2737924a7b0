#!/usr/bin/env python3
"""Compiles src/model/gpu/kernels.cu with NVRTC, as the CUDA backend does at run time, on a
machine without a GPU (NVRTC is a compiler library: no driver, no device): the options are
src/model/gpu/mod.rs's NVRTC_OPTIONS plus --gpu-architecture=compute_<arch>, and each kernel of
its KERNELS must be an `.entry` of the PTX. It also compiles the cubin for sm_<arch>, as the
step does on a device, and prints each kernel's registers, shared memory and spills.
Standard library only (ctypes).

    python3 tools/nvrtc_check.py --install            # first run: fetch NVRTC into --prefix
    python3 tools/nvrtc_check.py [--arch 90] [--ptx kernels.ptx] [--nvrtc PATH] [--prefix DIR]

NVRTC comes from PyPI's nvidia-cuda-nvrtc wheel (CUDA 13), installed without its dependencies
into --prefix (default ~/.cache/benchgen-nvrtc) by --install, or by hand:
`python3 -m pip install -q --no-deps --target DIR "nvidia-cuda-nvrtc==13.0.*"`; the wheel puts
libnvrtc.so.13 and its libnvrtc-builtins.so.13.0 in nvidia/cu13/lib/. --nvrtc takes any other
libnvrtc.so (its builtins library beside it or on the loader's path). Exit status: 0 compiled
with every kernel present, 1 compile error or missing kernel, 2 no NVRTC library.
"""
import argparse
import ctypes
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src/model/gpu/kernels.cu"
RUST = REPO / "src/model/gpu/mod.rs"
WHEEL = "nvidia-cuda-nvrtc==13.0.*"


def rust_strs(text, name):
    """The string literals of the Rust constant `name: &[&str] = &[...];`."""
    m = re.search(rf"\b{name}\s*:[^=]*=(.*?)\];", text, re.S)
    if not m:
        sys.exit(f"no constant {name} in {RUST}")
    return re.findall(r'"([^"]*)"', m.group(1))


def find_nvrtc(prefix):
    """The wheel's libnvrtc.so.* under `prefix` (the pattern leaves out libnvrtc-builtins), or None."""
    libs = sorted(prefix.glob("**/libnvrtc.so*"))
    return libs[0] if libs else None


def load(lib):
    """libnvrtc loaded with its builtins library beside it loaded first, globally: NVRTC dlopens
    the builtins by soname and the wheel sets no rpath, so the loaded copy is the one found."""
    stem = lib.name.split(".so")[0].replace("libnvrtc", "libnvrtc-builtins", 1)
    builtins = sorted(lib.parent.glob(stem + ".so*"))
    if builtins:
        ctypes.CDLL(str(builtins[0]), mode=ctypes.RTLD_GLOBAL)
    nvrtc = ctypes.CDLL(str(lib))
    nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
    return nvrtc


def check(nvrtc, call, *args):
    """Calls nvrtc.`call`; exits 1 with NVRTC's error string unless it returns NVRTC_SUCCESS."""
    rc = getattr(nvrtc, call)(*args)
    if rc != 0:
        sys.exit(f"{call}: {nvrtc.nvrtcGetErrorString(rc).decode()} ({rc})")


def compile_ptx(nvrtc, src, options):
    """(result code of nvrtcCompileProgram, log, PTX or None)."""
    prog = ctypes.c_void_p()
    check(nvrtc, "nvrtcCreateProgram", ctypes.byref(prog), src.encode(), b"kernels.cu", 0, None, None)
    try:
        opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        rc = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        check(nvrtc, "nvrtcGetProgramLogSize", prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        check(nvrtc, "nvrtcGetProgramLog", prog, log)
        ptx = None
        if rc == 0:
            check(nvrtc, "nvrtcGetPTXSize", prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            check(nvrtc, "nvrtcGetPTX", prog, buf)
            ptx = buf.value.decode()
        return rc, log.value.decode(errors="replace"), ptx
    finally:
        check(nvrtc, "nvrtcDestroyProgram", ctypes.byref(prog))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvrtc", type=Path, help="libnvrtc.so.* to use instead of the one under --prefix")
    ap.add_argument("--prefix", type=Path, default=Path.home() / ".cache/benchgen-nvrtc",
                    help="pip --target directory of the nvidia-cuda-nvrtc wheel")
    ap.add_argument("--install", action="store_true", help=f"pip-install {WHEEL} into --prefix if absent")
    ap.add_argument("--arch", default="90", help="compute capability, e.g. 90 (H100/H200), 80 (A100)")
    ap.add_argument("--ptx", type=Path, help="write the PTX here")
    args = ap.parse_args()

    lib = args.nvrtc
    if lib is None:
        lib = find_nvrtc(args.prefix)
        if lib is None and args.install:
            pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(args.prefix), WHEEL]
            if subprocess.run(pip).returncode != 0:
                print(f"pip could not install {WHEEL}", file=sys.stderr)
                sys.exit(2)
            lib = find_nvrtc(args.prefix)
    if lib is None or not lib.is_file():
        print(f"no NVRTC library ({lib or f'no libnvrtc.so* under {args.prefix}'}); run with --install "
              f"to pip-install {WHEEL} into --prefix, or give --nvrtc PATH", file=sys.stderr)
        sys.exit(2)
    try:
        nvrtc = load(lib)
    except OSError as e:
        print(f"cannot load {lib}: {e}", file=sys.stderr)
        sys.exit(2)

    major, minor = ctypes.c_int(), ctypes.c_int()
    check(nvrtc, "nvrtcVersion", ctypes.byref(major), ctypes.byref(minor))
    print(f"NVRTC {major.value}.{minor.value} ({lib})")

    rust = RUST.read_text()
    options = rust_strs(rust, "NVRTC_OPTIONS") + [f"--gpu-architecture=compute_{args.arch}"]
    print("options:", " ".join(options))
    rc, log, ptx = compile_ptx(nvrtc, SOURCE.read_text(), options)
    if log.strip():
        print(log.rstrip())
    if rc != 0:
        print(f"{SOURCE.relative_to(REPO)}: {nvrtc.nvrtcGetErrorString(rc).decode()}", file=sys.stderr)
        sys.exit(1)
    if args.ptx:
        args.ptx.write_text(ptx)
        print(f"PTX written to {args.ptx}")

    # The machine code the step loads (a cubin for sm_<arch>), with ptxas's account of each
    # kernel's registers, shared memory and spills.
    cubin_options = rust_strs(rust, "NVRTC_OPTIONS") + [f"--gpu-architecture=sm_{args.arch}",
                                                        "--ptxas-options=--verbose"]
    rc, log, _ = compile_ptx(nvrtc, SOURCE.read_text(), cubin_options)
    if rc != 0:
        print(log.rstrip())
        print(f"{SOURCE.relative_to(REPO)}: the sm_{args.arch} compile failed", file=sys.stderr)
        sys.exit(1)
    for name, body in re.findall(r"Compiling entry function '(\w+)' for '\w+'(.*?)(?=Compiling entry|\Z)", log, re.S):
        regs = re.search(r"Used (\d+) registers", body)
        smem = re.search(r"(\d+) bytes smem", body)
        spill = re.search(r"(\d+) bytes spill stores", body)
        print(f"sm_{args.arch} {name}: {regs.group(1) if regs else '?'} registers, "
              f"{smem.group(1) if smem else 0} bytes shared, {spill.group(1) if spill else '?'} bytes spilled")

    missing = 0
    for name in rust_strs(rust, "KERNELS"):
        found = re.search(rf"\.entry\s+{re.escape(name)}\s*\(", ptx)
        print(("ok " if found else "missing ") + name)
        missing += not found
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
