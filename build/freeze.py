"""Build the shipped `pyflannel` and `flanneld` executables into build/dist/, when stale.

    python -m build.freeze [--force] [--verify]

PyInstaller (pinned by pyproject.toml's `build` extra) runs build/binaries.spec over the
source tree: two onedir bundles, build/dist/pyflannel/ and build/dist/flanneld/, each its
executable and _internal/ (build/README.md says why onedir and what the image holds).

- Skipped while build/dist/ is up to date: build/dist/fingerprint holds a sha256 of every
  input (the sources of cni/ and flanneld/, pyproject.toml, the spec, its run-time hook,
  this file) and of the toolchain (the interpreter, every installed distribution).
- Reproducible: PYTHONHASHSEED=0, a fresh PyInstaller work and cache directory, and
  every file's time set to SOURCE_DATE_EPOCH (default: the time of the last commit that
  touched an input). `--verify` builds a second time and compares every file's sha256.
- Bounded: PyInstaller gets 300 s (a build takes well under a minute on 2 cores).
- Safe beside other builds and test runs: a lock serializes builds, and each bundle is
  renamed into build/dist/ whole; the fingerprint is written last.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build" / "binaries.spec"
DIST = ROOT / "build" / "dist"
WORK = ROOT / "build" / "work"
STAMP = DIST / "fingerprint"
PROGRAMS = ("pyflannel", "flanneld")
INPUT_FILES = ("pyproject.toml", "build/binaries.spec", "build/rthook_library_path.py",
               "build/rthook_deferred.py",
               "build/freeze.py")
INPUT_PACKAGES = ("cni", "flanneld")
TIMEOUT = 300


class BuildError(RuntimeError):
    """PyInstaller failed or ran out of time; the message ends with its log."""


# --- deciding (pure) ---------------------------------------------------------------------

def fingerprint(files: Mapping[str, bytes], toolchain: Mapping[str, str]) -> str:
    """One sha256 over every input file (path and content) and every toolchain fact."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"file {path} {hashlib.sha256(files[path]).hexdigest()}\n".encode())
    for key in sorted(toolchain):
        h.update(f"tool {key} {toolchain[key]}\n".encode())
    return h.hexdigest()


def rebuild_reason(stamp: str | None, current: str, missing: list[str]) -> str | None:
    """Why build/dist/ must be built (again); None while it is up to date."""
    if stamp is None:
        return "no finished build"
    if missing:
        return f"{', '.join(missing)} missing"
    if stamp.strip() != current:
        return "an input changed"
    return None


def differences(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    """The paths whose digests differ between two trees, or that only one tree has."""
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


# --- reading and building ----------------------------------------------------------------

def executable(name: str) -> Path:
    """Where the built executable of program `name` is (inside its onedir bundle)."""
    return DIST / name / name


def read_inputs() -> dict[str, bytes]:
    files = {path: (ROOT / path).read_bytes() for path in INPUT_FILES}
    for package in INPUT_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            files[str(path.relative_to(ROOT))] = path.read_bytes()
    return files


def toolchain() -> dict[str, str]:
    """The interpreter and every distribution it can import: what PyInstaller bundles."""
    facts = {"python": f"{sys.version} {platform.machine()} {sys.base_prefix}"}
    for dist in importlib.metadata.distributions():
        facts[f"dist {dist.metadata['Name']}"] = dist.version
    return facts


def source_date_epoch() -> int:
    """$SOURCE_DATE_EPOCH, else the time of the last commit that touched an input, else 0."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%ct", "--", *INPUT_FILES,
                              *INPUT_PACKAGES], cwd=ROOT, capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return int(out) if out.isdigit() else 0


def digests(tree: Path) -> dict[str, str]:
    """Relative path -> sha256 (or symlink target) of everything under the programs' bundles."""
    out = {}
    for name in PROGRAMS:
        for path in sorted((tree / name).rglob("*")):
            key = str(path.relative_to(tree))
            if path.is_symlink():
                out[key] = f"-> {os.readlink(path)}"
            elif path.is_file():
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_pyinstaller(base: Path, epoch: int) -> Path:
    """A fresh build in `base` (emptied first); the directory holding both bundles."""
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    env = dict(os.environ, PYTHONHASHSEED="0", SOURCE_DATE_EPOCH=str(epoch),
               PYINSTALLER_CONFIG_DIR=str(base / "cache"))
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level=WARN",
           f"--distpath={base / 'dist'}", f"--workpath={base / 'pyinstaller'}", str(SPEC)]
    log = base / "pyinstaller.log"
    with open(log, "w") as out:
        try:
            code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            code = f"timed out after {TIMEOUT} s"
    if code != 0:
        raise BuildError(f"PyInstaller failed ({code}); {log}:\n{log.read_text()[-4000:]}")
    for path in (base / "dist").rglob("*"):
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    return base / "dist"


def publish(built: Path, stamp: str) -> None:
    """Rename each bundle into build/dist/ (whole), then write the fingerprint."""
    DIST.mkdir(parents=True, exist_ok=True)
    STAMP.unlink(missing_ok=True)
    for name in PROGRAMS:
        old = built.parent / f"{name}.old"
        if (DIST / name).exists():
            (DIST / name).rename(old)
        (built / name).rename(DIST / name)
        shutil.rmtree(old, ignore_errors=True)
    partial = STAMP.with_suffix(".partial")
    partial.write_text(stamp + "\n")
    partial.replace(STAMP)


@contextmanager
def locked() -> Iterator[None]:
    """One build at a time per tree (test sessions and `make build` may overlap)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure(force: bool = False) -> bool:
    """Build build/dist/ unless it is up to date (or `force`); True when it built."""
    with locked():
        current = fingerprint(read_inputs(), toolchain())
        stamp = STAMP.read_text() if STAMP.exists() else None
        missing = [name for name in PROGRAMS if not executable(name).is_file()]
        reason = "--force" if force else rebuild_reason(stamp, current, missing)
        if reason is None:
            print("build/dist is up to date")
            return False
        print(f"building {' and '.join(PROGRAMS)} into build/dist ({reason})", flush=True)
        start = time.monotonic()
        publish(run_pyinstaller(WORK / "current", source_date_epoch()), current)
        print(f"built in {time.monotonic() - start:.0f} s")
        return True


def verify() -> list[str]:
    """Build once more, in build/work/verify/: the files that differ from build/dist/."""
    with locked():
        again = run_pyinstaller(WORK / "verify", source_date_epoch())
        return differences(digests(DIST), digests(again))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m build.freeze", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--force", action="store_true", help="build even if build/dist is up to date")
    p.add_argument("--verify", action="store_true",
                   help="then build a second time and compare every file's sha256")
    args = p.parse_args(argv)
    try:
        ensure(args.force)
        if args.verify:
            differ = verify()
            print(f"second build: {len(digests(DIST))} files, "
                  + (f"{len(differ)} differ:\n  " + "\n  ".join(differ) if differ
                     else "all identical (sha256)"))
            return 1 if differ else 0
    except BuildError as e:
        print(f"build failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
