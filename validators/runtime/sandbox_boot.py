"""The sandbox's bootstrap: set up the child's isolation, then run the target module in-process.

Started by `validators.runtime.sandbox.start` as `python -s -m validators.runtime.sandbox_boot
CONFIG_FD STATUS_FD`, normally as PID 1 of fresh network, mount and PID namespaces made by
util-linux `unshare`. It reads its JSON configuration from CONFIG_FD, and then, still privileged:

1. makes every mount private, so nothing done here reaches the host;
2. keeps the Python runtime and the `validators` package reachable for the unprivileged user
   (a directory it cannot traverse, such as a 0700 `/root` above a pyenv Python, is covered by
   an empty tmpfs into which only the needed directories are bound back, read-only);
3. mounts a size-capped tmpfs on `/tmp` (the working directory) and copies the input files in,
   and small private ones on `/dev/shm` and `/var/tmp`;
4. covers every hidden path (ASSAY_HOME, dataset roots, the database directory...) with an empty
   read-only tmpfs;
5. forks the target: it sets the resource limits, drops to `nobody` (setgroups, setgid, setuid,
   no-new-privileges; started without root, it moves into a user namespace of its own instead)
   and runs the module with `runpy`, seeing only what was left.

PID 1 stays behind as a minimal init: it reaps orphans, and when the target ends it reports the
target's exit status on STATUS_FD and exits, which makes the kernel kill every process left in the
namespace (a forked grandchild that escaped its process group included). The target is not PID 1
on purpose: the kernel does not deliver default-action signals such as SIGXCPU to a namespace's
init.

Standard library only; nothing here imports numpy or the service.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import resource
import runpy
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

NOBODY = 65534
SCRATCH = Path("/tmp")
INPUT_DIR_NAME = "inputs"

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWUSER = 0x10000000
_O_PATH = getattr(os, "O_PATH", 0o10000000)


class SetupFailed(Exception):
    """A measure could not be applied; `measure` names it for the parent's message."""

    def __init__(self, measure: str, detail: str) -> None:
        super().__init__(detail)
        self.measure = measure
        self.detail = detail


@functools.cache
def _libc() -> ctypes.CDLL:
    """Return the C library with errno kept, for mount(2) and prctl(2).

    The interpreter's own symbols include libc's; `ctypes.util.find_library` would start
    `ldconfig` and a compiler as child processes.
    """
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    """Call mount(2); raise OSError with the errno on failure."""
    result = _libc().mount(
        source.encode() if source is not None else None,
        target.encode(),
        fstype.encode() if fstype is not None else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def _traversable_by_nobody(path: Path) -> bool:
    """Return whether `nobody` may search the directory `path` (others' execute bit)."""
    mode = path.stat().st_mode
    return bool(mode & stat.S_IXOTH)


def _blocking_ancestor(path: Path) -> Path | None:
    """Return the highest directory above (or at) `path` that `nobody` cannot traverse."""
    for ancestor in [*reversed(path.parents), path]:
        if ancestor.is_dir() and not _traversable_by_nobody(ancestor):
            return ancestor
    return None


def _under(path: Path, roots: list[Path]) -> bool:
    """Return whether `path` is one of `roots` or inside one of them."""
    return any(path == root or root in path.parents for root in roots)


def _bind_back(paths: list[Path], cover: Path, tmpfs_data: str) -> None:
    """Cover `cover` with an empty tmpfs and bind each of `paths` (inside it) back, read-only."""
    handles = {path: os.open(path, _O_PATH | os.O_DIRECTORY) for path in paths}
    _mount("tmpfs", str(cover), "tmpfs", _MS_NOSUID | _MS_NODEV, tmpfs_data)
    for path, handle in handles.items():
        path.mkdir(parents=True, exist_ok=True)
        # The magic link reaches the directory the new tmpfs now hides.
        _mount(f"/proc/self/fd/{handle}", str(path), None, _MS_BIND | _MS_REC)
        _mount(None, str(path), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID)
        os.close(handle)


def _runtime_roots(config: dict[str, Any]) -> list[Path]:
    """Return the directories the target needs: the Python installation, venv and packages."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        *config["keep"],
        *(entry for entry in sys.path if entry),
    }
    roots = sorted({Path(p).resolve() for p in candidates if Path(p).is_dir()})
    # A root inside another root is reached through it.
    return [r for r in roots if not any(o != r and o in r.parents for o in roots)]


def _unreachable_runtime(config: dict[str, Any]) -> Path | None:
    """Return a directory above the runtime that `nobody` cannot traverse, or None."""
    for root in _runtime_roots(config):
        blocked = _blocking_ancestor(root)
        if blocked is not None:
            return blocked
    return None


def _set_up_mounts(config: dict[str, Any], uid: int) -> dict[str, Any]:
    """Apply steps 1-4 of the module docstring; return what was applied."""
    hide = [Path(p) for p in config["hide"]]
    roots = _runtime_roots(config)
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    covers: dict[Path, list[Path]] = {}
    for root in roots:
        blocked = _blocking_ancestor(root)
        if blocked == root:
            raise SetupFailed(
                "runtime",
                f"the Python runtime directory {root} cannot be read by the unprivileged user "
                f"(mode {oct(root.stat().st_mode & 0o777)}); make it world-readable (chmod o+rx)",
            )
        if blocked is not None:
            covers.setdefault(blocked, []).append(root)
    for cover, inside in covers.items():
        _bind_back(inside, cover, "size=1m,mode=0755")
    scratch_roots = [r for r in roots if _under(r, [SCRATCH])]
    scratch_handles = {r: os.open(r, _O_PATH | os.O_DIRECTORY) for r in scratch_roots}
    input_handles = {str(name): int(fd) for name, fd in config["inputs"].items()}
    size = int(config["tmpfs_bytes"]) + sum(os.fstat(h).st_size for h in input_handles.values())
    _mount(
        "tmpfs",
        str(SCRATCH),
        "tmpfs",
        _MS_NOSUID | _MS_NODEV,
        f"size={max(size, 4096)},nr_inodes={config['tmpfs_inodes']},mode=0700,uid={uid},gid={uid}",
    )
    for root, handle in scratch_handles.items():
        root.mkdir(parents=True, exist_ok=True)
        _mount(f"/proc/self/fd/{handle}", str(root), None, _MS_BIND | _MS_REC)
        _mount(None, str(root), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID)
        os.close(handle)
    _copy_inputs(input_handles, SCRATCH / INPUT_DIR_NAME, uid)
    # The other world-writable places would let the child leave files for, or read files of,
    # other processes on the host: each gets a private, small tmpfs.
    for shared, mode in ((Path("/dev/shm"), "1777"), (Path("/var/tmp"), "0755")):
        if shared.is_dir() and not _under(shared, roots):
            _mount("tmpfs", str(shared), "tmpfs", _MS_NOSUID | _MS_NODEV, f"size=16m,mode={mode}")
    hidden: list[str] = []
    for path in hide:
        if not path.exists():
            # Under /tmp, or absent on this host: either way the child cannot see it.
            hidden.append(str(path))
            continue
        inside = [root for root in roots if root != path and path in root.parents]
        if path in roots:
            raise SetupFailed(
                "hidden paths",
                f"{path} is to be hidden but holds the Python runtime or the `validators` "
                "package the child needs; move the data out of it",
            )
        if path.is_dir() and inside:
            # A hidden folder above the runtime (a database beside the checkout): hide all of it
            # but the runtime, bound back read-only.
            _bind_back(inside, path, "size=1m,mode=0755")
            _mount(None, str(path), None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
        elif path.is_dir():
            _mount("tmpfs", str(path), "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "size=4k")
        else:
            _mount("/dev/null", str(path), None, _MS_BIND)
            _mount(None, str(path), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        hidden.append(str(path))
    return {
        "tmpfs_bytes": size,
        "hidden": hidden,
        "runtime_binds": [str(r) for rs in covers.values() for r in rs],
    }


def _copy_inputs(handles: dict[str, int], directory: Path, uid: int) -> None:
    """Copy each input file (open descriptors from the parent) into `directory`, for `uid` only.

    A copy, not a bind mount: the originals are root's (the artifact store keeps them 0400) or
    lie under hidden paths, and the unprivileged child must read them.
    """
    directory.mkdir(mode=0o500, exist_ok=True)
    for name, handle in handles.items():
        target = directory / name
        with os.fdopen(handle, "rb") as source, target.open("wb") as copy:
            shutil.copyfileobj(source, copy, 1024 * 1024)
        os.chown(target, uid, uid)
        os.chmod(target, 0o400)
    os.chown(directory, uid, uid)


def _apply_rlimits(limits: dict[str, int | None]) -> dict[str, int]:
    """Set the target's resource limits (soft and hard); return those set."""
    applied: dict[str, int] = {}
    names = {
        "address_space_bytes": resource.RLIMIT_AS,
        "cpu_seconds": resource.RLIMIT_CPU,
        "file_size_bytes": resource.RLIMIT_FSIZE,
        "processes": resource.RLIMIT_NPROC,
        "open_files": resource.RLIMIT_NOFILE,
    }
    for key, which in names.items():
        value = limits.get(key)
        if value is None:
            continue
        # CPU time: SIGXCPU at the soft limit, SIGKILL five seconds later, so a child that
        # catches SIGXCPU still ends.
        hard = value + 5 if which == resource.RLIMIT_CPU else value
        resource.setrlimit(which, (value, hard))
        applied[key] = value
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return applied


def _drop_privileges(uid: int) -> None:
    """Become `uid` (group too, no supplementary groups) for good, with no way back up."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def _leave_capabilities() -> None:
    """Move into a user namespace of its own, keeping no capability over the mounts.

    Where the sandbox was started without root (`unshare --map-root-user`) the bootstrap is root
    of a user namespace and could undo the hiding mounts; a process in a new, unmapped user
    namespace has capabilities only over namespaces that one owns, none of the mounts, and
    appears as the overflow user (65534). Its file access stays the invoking user's.
    """
    if _libc().unshare(_CLONE_NEWUSER) != 0:
        raise OSError(
            ctypes.get_errno(), f"unshare(CLONE_NEWUSER): {os.strerror(ctypes.get_errno())}"
        )
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def _send(status_fd: int, message: dict[str, Any]) -> None:
    """Write one JSON line to the parent's status pipe."""
    os.write(status_fd, (json.dumps(message) + "\n").encode())


def _run_target(config: dict[str, Any], status_fd: int) -> None:
    """In the forked target: limits, privileges, then the module as `__main__`; never returns."""
    try:
        os.chdir(config["workdir"])
        rlimits = _apply_rlimits(config["limits"])
    except (OSError, ValueError) as exc:
        _send(
            status_fd, {"error": f"could not set the resource limits: {exc}", "measure": "rlimits"}
        )
        os._exit(0)
    user = "unchanged"
    try:
        if config["switch_user"]:
            _drop_privileges(NOBODY)
            user = "nobody"
        elif config["mount_namespace"]:
            _leave_capabilities()
            user = "own user namespace"
    except OSError as exc:
        _send(
            status_fd,
            {"error": f"could not drop to an unprivileged user: {exc}", "measure": "user"},
        )
        os._exit(0)
    ready = {"rlimits": rlimits, "uid": os.getuid(), "pid": os.getpid(), "user": user}
    _send(status_fd, {"ready": ready})
    os.close(status_fd)
    try:
        sys.argv = [config["module"], *config["args"]]
        runpy.run_module(config["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int | None):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # the target's own failure: show its traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _wait_for(target: int) -> int:
    """Reap every child until `target` ends; return its wait status."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == target:
            return status


def main(argv: list[str]) -> int:
    """Set up the sandbox, run the target, report its end on the status pipe; return 0."""
    config_fd, status_fd = int(argv[0]), int(argv[1])
    with os.fdopen(config_fd, "rb") as stream:
        config: dict[str, Any] = json.loads(stream.read())
    uid = NOBODY if config["switch_user"] else os.getuid()
    mounts: dict[str, Any] = {"hidden": [], "runtime_binds": [], "tmpfs_bytes": None}
    try:
        if config["mount_namespace"]:
            # Mounting in the host's namespace would change the host: check before touching.
            if os.readlink("/proc/self/ns/mnt") == config["parent_mount_namespace"]:
                raise SetupFailed("mount namespace", "the bootstrap is in the parent's mounts")
            try:
                mounts.update(_set_up_mounts(config, uid))
            except OSError as exc:
                raise SetupFailed("mounts", f"could not set up the private mounts: {exc}") from exc
            config["workdir"] = str(SCRATCH)
        else:
            if config["switch_user"] and _unreachable_runtime(config):
                # Without a mount namespace nothing can make the runtime reachable for nobody.
                if not config["allow_weaker"]:
                    raise SetupFailed(
                        "a switch to an unprivileged user",
                        f"the Python runtime under {_unreachable_runtime(config)} cannot be "
                        "reached by `nobody` and there is no mount namespace to bind it",
                    )
                config["switch_user"] = False
                uid = os.getuid()
                mounts["weaker"] = ["a switch to an unprivileged user"]
            handles = {str(name): int(fd) for name, fd in config["inputs"].items()}
            _copy_inputs(handles, Path(config["workdir"]) / INPUT_DIR_NAME, uid)
    except (SetupFailed, OSError) as failure:
        measure = failure.measure if isinstance(failure, SetupFailed) else "inputs"
        _send(status_fd, {"error": str(failure), "measure": measure})
        return 0
    _send(status_fd, {"mounts": mounts, "init_pid": os.getpid()})
    target = os.fork()
    if target == 0:
        _run_target(config, status_fd)
    status = _wait_for(target)
    if os.WIFSIGNALED(status):
        _send(status_fd, {"exit": -os.WTERMSIG(status)})
    else:
        _send(status_fd, {"exit": os.WEXITSTATUS(status)})
    os.close(status_fd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
