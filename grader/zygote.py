"""The grader's fork server, the one way a sandbox starts: import torch and the kit's libraries once, then
fork one sandbox per run, built from an allowlist.

Starting Python and importing torch, torchvision and matplotlib costs about 8 s of one core here, and was
paid by every submission (bench/grade_speed.py). This process pays it once per batch, then forks:

    zygote (the grader's user; third-party libraries only, never hw3_utils or the grader)
      -> C: joins the run's cgroup (root), takes read-only copies of the allowlisted folders, enters new
            user, mount, PID, network, IPC and UTS namespaces; waits for G, reports its exit status
           -> G: PID 1 of the new PID namespace: builds the new root (a capped tmpfs holding /tmp, /var/tmp,
                 /dev/shm and HOME; the allowlisted folders and the kit read-only; a new /proc), pivots into
                 it, forbids further user namespaces, drops to a uid without capabilities, takes a new
                 session keyring, sets the rlimits, then runs the command in this already warm interpreter.

Why not bubblewrap, which builds the same kind of root: it starts a new process per sandbox, so every run
would pay the 8 s of imports again (300 submissions: about 20 minutes on 2 cores instead of under 2). The
system calls are the ones bubblewrap uses; mount trees are copied with open_tree/move_mount (Linux >= 5.2).

Started by grader/sandbox.py as `python -I zygote.py FD`, FD a SOCK_SEQPACKET socket. A request is a JSON
message with four file descriptors attached (stdout, stderr, results, status); the reply is {"pid": C}.
Killing C with SIGTERM kills G, and with it the PID namespace. Nothing secret is in this process: it
imports only third-party code, and runs no student code itself.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import runpy
import select
import signal
import socket
import sys
import traceback

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.syscall.restype = ctypes.c_long

CLONE = {"user": 0x10000000, "mount": 0x00020000, "pid": 0x20000000, "net": 0x40000000, "ipc": 0x08000000,
         "uts": 0x04000000}
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
# x86-64 system call numbers (the grader runs on x86-64 Linux)
SYS_KEYCTL, SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 250, 428, 429, 442
OPEN_TREE_CLONE, O_CLOEXEC, AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = 1, 0o2000000, -100, 0x1000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
KEYCTL_JOIN_SESSION_KEYRING = 1
HERE = os.path.dirname(os.path.abspath(__file__))


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def preload() -> None:
    """What every run imports: paid here once. No hw3_utils, nothing of the grader's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import numpy  # noqa: F401
    import PIL.Image  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    import torchvision.transforms  # noqa: F401
    import torchvision.utils  # noqa: F401
    import tqdm.auto  # noqa: F401


def _check(rc: int, what: str) -> int:
    """A system call's result: every one used here returns -1 on failure (errno set), else 0 or an fd."""
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags, data and data.encode()),
           f"mount {fstype or src} on {dst}")


def unshare(names) -> None:
    _check(libc.unshare(sum(CLONE[n] for n in names)), f"unshare {names}")


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def clone_tree(path: str, attrs: int) -> int:
    """A detached, recursive copy of the mount tree at `path` with `attrs` set (read-only...): an fd."""
    fd = _check(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | AT_RECURSIVE | O_CLOEXEC),
                f"open_tree {path}")
    attr = MountAttr(attrs, 0, 0, 0)
    _check(libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, ctypes.byref(attr),
                        ctypes.sizeof(attr)), f"mount_setattr {path}")
    return fd


def clone_trees(binds: list[dict]) -> list[tuple[dict, int]]:
    """Every bind of the request as a detached read-only tree (devices: usable, so not nodev)."""
    out = []
    for b in binds:
        if "link" in b:
            out.append((b, -1))
            continue
        attrs = MOUNT_ATTR_NOSUID | (MOUNT_ATTR_NOEXEC if b["dev"] else MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV)
        out.append((b, clone_tree(b["src"], attrs)))
    return out


ROOT = "/tmp"  # where the new root is assembled: any folder everyone may traverse (this namespace's own view)


def build_root(trees: list[tuple[dict, int]], size: int, files: int) -> None:
    """The new root: a capped tmpfs with the trees attached at their places, a new /proc; then pivot into it."""
    root = ROOT
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("hw3-sandbox", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},nr_inodes={files},mode=755")
    for d, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("dev/shm", 0o1777), ("proc", 0o555), ("kit", 0o755)):
        os.makedirs(f"{root}/{d}", exist_ok=True)
        os.chmod(f"{root}/{d}", mode)
    for b, fd in trees:
        dst = root + b["dst"]
        if "link" in b:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(b["link"], dst)
            continue
        if b["dir"]:
            os.makedirs(dst, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            open(dst, "w").close()
        _check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, dst.encode(), MOVE_MOUNT_F_EMPTY_PATH),
               f"move_mount {b['src']}")
        os.close(fd)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(root)
    _check(libc.pivot_root(b".", b"."), "pivot_root")  # the old root is stacked under the new one ...
    _check(libc.umount2(b".", 2), "umount the old root")  # ... and detached here (MNT_DETACH)
    os.chdir("/")


def drop_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def become_user(req: dict) -> None:
    """Drop to the code's uid with no capabilities, no further user namespaces, a session keyring of its own."""
    if req["mode"] == "root":  # a uid of this run's own range; no namespace below this one
        write("/proc/sys/user/max_user_namespaces", "0")
        os.setgroups([])
        os.setresgid(req["uid"], req["uid"], req["uid"])
        os.setresuid(req["uid"], req["uid"], req["uid"])
    elif req["mode"] == "userns":  # one more namespace, ours, mapping the code's uid to this one's 0; then none
        write("/proc/sys/user/max_user_namespaces", "1")
        unshare(["user"])
        inner = f"{req['uid']} 0 1\n"
        for name, text in (("setgroups", "deny"), ("uid_map", inner), ("gid_map", inner)):
            write(f"/proc/self/{name}", text)
        os.setresgid(req["uid"], req["uid"], req["uid"])
        os.setresuid(req["uid"], req["uid"], req["uid"])
    elif req["mode"] == "nobody":  # no namespaces: a uid and gid of the run's own, no groups
        os.setgroups([])
        os.setresgid(req["uid"], req["uid"], req["uid"])
        os.setresuid(req["uid"], req["uid"], req["uid"])
    if req["mode"] != "none":
        drop_capabilities()
        # a keyring of its own: the session keyring it inherited is the grader's, shared by every run. Where
        # keyctl is refused (Docker's default seccomp profile), it is refused to the code too: no keyring to share
        if libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None) < 0 and ctypes.get_errno() not in (
                errno.EPERM, errno.ENOSYS, errno.EACCES):
            _check(-1, "keyctl join session keyring")


SETUP_FAILED = 86  # the exit status the grader reads as "the sandbox could not start" (sandbox.SETUP_FAILED)


def setup_sandbox(req: dict, trees) -> None:
    """G's part before the code runs: the root, HOME, the user, the rlimits."""
    if req["mode"] in ("root", "userns"):
        build_root(trees, req["tmpfs_bytes"], req["tmpfs_files"])
    for sub in ("", "/mpl", "/torch"):
        os.makedirs(req["home"] + sub, exist_ok=True)
        if req["mode"] in ("root", "nobody"):
            os.chown(req["home"] + sub, req["uid"], req["uid"])
    os.chdir(req["cwd"])
    if req["mode"] == "nobody":  # what it writes in a shared folder is its own to read, unless it opens it up
        os.umask(0o077)
    become_user(req)
    for name, (soft, hard) in req["limits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def grandchild(req: dict, trees, results: int) -> None:
    """G: build the sandbox, then run the command here; never returns."""
    try:
        setup_sandbox(req, trees)
    except BaseException:
        traceback.print_exc()
        os._exit(SETUP_FAILED)
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(req["env"])
        sys.dont_write_bytecode = True
        sys.path[:] = [req["kit"]] + [p for p in sys.path if p and os.path.realpath(p) != HERE]
        argv = [a.replace("{results_fd}", str(results)) for a in req["argv"]]
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *argv[2:]]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        if not isinstance(err.code, (int, type(None))):
            print(err.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _close_fds(keep) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _map_from_outside(pid: int, base: int, count: int) -> tuple[int, int]:
    """Fork H, which (still root outside) writes the uid and gid maps of `pid` once it has its user namespace:
    only a process with CAP_SETUID in the parent namespace may map a range of ids (as newuidmap does)."""
    go_r, go_w = os.pipe()
    h = os.fork()
    if h == 0:
        code = 1
        try:
            os.close(go_w)
            if os.read(go_r, 1) == b"x":
                write(f"/proc/{pid}/uid_map", f"0 {base} {count}\n")
                write(f"/proc/{pid}/gid_map", f"0 {base} {count}\n")
                code = 0
        finally:
            os._exit(code)
    os.close(go_r)
    return h, go_w


def child(req: dict, fds: list[int]) -> None:
    """C: the cgroup, the namespaces, then G; reports G's exit status; never returns."""
    out, err, results, status = fds
    try:
        os.dup2(out, 1)
        os.dup2(err, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        _close_fds({0, 1, 2, results, status})
        os.setsid()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # the zygote gone: the sandbox goes too
        trees = []
        try:
            for procs in req["cgroups"]:  # root: processes and memory capped for the whole run
                write(procs, f"{os.getpid()}\n")
            if req["mode"] == "root":
                trees = clone_trees(req["binds"])  # as root outside: it can reach a Python under /root (0700)
                h, go = _map_from_outside(os.getpid(), req["uid_base"], req["uid_count"])
                unshare(list(CLONE))
                os.write(go, b"x")
                os.close(go)
                _, st = os.waitpid(h, 0)
                if os.waitstatus_to_exitcode(st) != 0:
                    raise OSError("the uid map of the sandbox could not be written")
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            elif req["mode"] == "userns":
                uid, gid = os.getuid(), os.getgid()
                unshare(list(CLONE))
                for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1\n"), ("gid_map", f"0 {gid} 1\n")):
                    write(f"/proc/self/{name}", text)
                trees = clone_trees(req["binds"])  # as this namespace's root: its own copies of the user's folders
        except BaseException:
            traceback.print_exc()
            os.write(status, f"{SETUP_FAILED}\n".encode())
            os._exit(0)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        g = os.fork()
        if g == 0:
            os.close(status)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            grandchild(req, trees, results)
        for _, fd in trees:
            if fd >= 0:
                os.close(fd)
        os.close(results)
        signal.signal(signal.SIGTERM, lambda *_: os.kill(g, signal.SIGKILL))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        _, st = os.waitpid(g, 0)
        os.write(status, f"{os.waitstatus_to_exitcode(st)}\n".encode())
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(0)


def serve(sock: socket.socket) -> None:
    # what a run leaves running is reparented here, not to PID 1 (which a container may not reap), and reaped below
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    sock.send(b'{"ready": true}')
    while True:
        ready, _, _ = select.select([sock], [], [], 0.5)
        while True:  # reap the finished children
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not ready:
            continue
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
        except OSError:
            return
        if not msg:
            return  # the grader closed its end
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            sock.close()
            child(req, fds)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())


def probe(req: dict) -> int:
    """Build one sandbox of the request's mode and run nothing in it: 0 when that works here."""
    r_st, w_st = os.pipe()
    results = os.open(os.devnull, os.O_WRONLY)
    pid = os.fork()
    if pid == 0:
        os.close(r_st)
        child(req, [1, 2, results, w_st])
    os.close(w_st)
    with open(r_st, "rb") as f:
        line = f.readline(32).strip()
    os.waitpid(pid, 0)
    return 0 if line == b"0" else 1


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        sys.exit(probe(json.loads(sys.argv[2])))
    preload()
    serve(socket.socket(fileno=int(sys.argv[1])))
