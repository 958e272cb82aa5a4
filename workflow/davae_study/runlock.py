"""Tell a stale Snakemake lock (left by a killed run) from a live run, before unlocking.

Snakemake locks its working directory with files under ``.snakemake/locks/`` and removes them when a run
ends. A run killed with SIGKILL (or a crash, a power loss) leaves them behind, and the next run stops with
"Directory cannot be locked" until ``snakemake --unlock`` removes them. Unlocking while a run is still going
lets two runs write the same files, and the lock files do not say which process wrote them. So before
``make demo`` and ``make unlock`` this module looks for a run that may still be alive: a Snakemake process, or
a job a Snakemake process started (its script under ``.snakemake/scripts/``, which outlives a killed
Snakemake), whose working directory is this one.

It sees this machine only: a run of the same directory on another machine (a shared file system) is
invisible to it, hence the message says so, and ``make demo`` never unlocks by itself.

Command line (the Makefile's): ``python -m davae_study.runlock [--dir DIR] [--unlock]``; exit status 0
when the run (``--unlock``: the unlock) may go ahead, 1 with one message saying what to do otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["lock_files", "live_runs", "is_snakemake", "verdict", "main"]


def lock_files(workdir: str | os.PathLike = ".") -> list[Path]:
    """Snakemake's lock files in ``workdir`` (empty when it is not locked)."""
    locks = Path(workdir, ".snakemake", "locks")
    return sorted(p for p in locks.iterdir() if p.is_file()) if locks.is_dir() else []


def is_snakemake(argv: list[str]) -> bool:
    """Whether a command line is Snakemake (``snakemake ...``, ``python [-m] snakemake ...``) or a job's
    script that Snakemake wrote (``python .snakemake/scripts/tmpXXXX.<name>.py``)."""
    if any(Path(a).name == "snakemake" for a in argv[:3]):
        return True
    return any(a.startswith(".snakemake/") or "/.snakemake/" in a for a in argv)


def _ancestors() -> set[int]:
    """This process and its parents (the make and the shell that called us)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids | {os.getppid()}


def _proc_runs(workdir: Path) -> list[tuple[int, str]]:
    own = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            if Path(os.readlink(entry / "cwd")).resolve() != workdir:
                continue
            argv = [a for a in (entry / "cmdline").read_bytes().decode(errors="replace").split("\0") if a]
        except OSError:  # gone meanwhile, or another user's process (it cannot have locked our directory)
            continue
        if argv and is_snakemake(argv):
            found.append((int(entry.name), " ".join(argv)))
    return sorted(found)


def _ps_runs() -> list[tuple[int, str]]:
    """Without /proc (macOS): every Snakemake process of the machine, wherever it runs (no cwd in ps)."""
    out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "args="], capture_output=True, text=True, check=True)
    own, found = {os.getpid(), os.getppid()}, []
    for line in out.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit() and int(pid) not in own and is_snakemake(args.split()):
            found.append((int(pid), args.strip()))
    return found


def live_runs(workdir: str | os.PathLike = ".") -> list[tuple[int, str]]:
    """``(pid, command line)`` of the Snakemake processes and jobs that may be running in ``workdir`` on
    this machine (with /proc: those whose working directory is ``workdir``; without: every Snakemake
    process, to be safe)."""
    workdir = Path(workdir).resolve()
    if Path("/proc/self/cwd").exists():
        return _proc_runs(workdir)
    return _ps_runs()


def verdict(workdir: str | os.PathLike = ".", *, unlock: bool = False) -> tuple[bool, str]:
    """``(go ahead?, message)`` for starting a run (``unlock=False``) or unlocking (``unlock=True``) in
    ``workdir``: no lock, go; a lock and a live run, stop and name it; a lock and no live run (stale),
    unlock may go, a run may not (it would stop on the lock)."""
    locks = lock_files(workdir)
    if not locks:
        return True, f"{workdir}: not locked"
    try:
        live = live_runs(workdir)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, (f"{workdir} is locked and whether a Snakemake run is still going cannot be checked here "
                       f"({exc}); if none is, remove the lock with `snakemake --unlock`")
    if live:
        runs = "; ".join(f"pid {pid}: {cmd[:120]}" for pid, cmd in live)
        return False, (f"{workdir} is locked by a run that is still going ({runs}). Wait for it to end, or stop "
                       "it (kill the pids), then run again; its lock is left alone.")
    if unlock:
        return True, f"{workdir}: stale lock ({len(locks)} lock file(s)), no Snakemake run here: unlocking"
    return False, (f"{workdir} is locked, but no Snakemake run is going on this machine: a killed or crashed "
                   "run left the lock. Remove it with `make unlock` (unless a run of this directory is going "
                   "on another machine), then run again; interrupted jobs are rerun, finished ones kept.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m davae_study.runlock", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=".", help="Snakemake working directory (default: .)")
    parser.add_argument("--unlock", action="store_true", help="check for `snakemake --unlock`, not for a run")
    args = parser.parse_args(argv)
    ok, message = verdict(args.dir, unlock=args.unlock)
    if not ok or args.unlock:
        print(message, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
