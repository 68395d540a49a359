"""The grader's fork server: import torch and the kit's other libraries once, fork a sandbox per run.

Starting Python and importing torch, torchvision and matplotlib costs about 8 s of one core here, and
was paid by every submission (bench/grade_speed.py). This process pays it once per batch, then forks:

    zygote (the grader's user; third-party libraries only, never hw3_utils or the grader)
      -> C: new namespaces (as sandbox.py's mode says), waits for G, reports its exit status on a pipe
           -> G: PID 1 of the new PID namespace: runs the setup shell (mounts, as in the exec path), sets
                 the rlimits, drops to the mode's user without capabilities, then runs the command
                 (`-m module args` or `-c code`) in this already warm interpreter.

Started by grader/sandbox.py as `python -I zygote.py FD`, FD a SOCK_SEQPACKET socket. A request is a
JSON message with four file descriptors (stdout, stderr, results, status) attached; the reply is
{"pid": C}. Killing C with SIGTERM kills G, and with it the PID namespace. Nothing secret is in this
process: it imports only third-party code, and it runs no student code itself.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import runpy
import select
import signal
import socket
import subprocess
import sys
import traceback

FLAGS = {"user": 0x10000000, "mount": 0x00020000, "pid": 0x20000000, "net": 0x40000000, "ipc": 0x08000000}
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
HERE = os.path.dirname(os.path.abspath(__file__))
libc = ctypes.CDLL(None, use_errno=True)


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


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(names) -> None:
    _check(libc.unshare(sum(FLAGS[n] for n in names)), "unshare")


def map_self(inner: int, outer_uid: int, outer_gid: int) -> None:
    """Map `inner` in a new user namespace to our own ids in its parent (allowed to anyone)."""
    for path, text in (("setgroups", "deny"), ("uid_map", f"{inner} {outer_uid} 1\n"),
                       ("gid_map", f"{inner} {outer_gid} 1\n")):
        with open(f"/proc/self/{path}", "w") as f:
            f.write(text)


def drop_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _close_fds(keep) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def grandchild(req: dict, results: int) -> None:
    """G: set up the sandbox, then run the command here; never returns."""
    code = 1
    try:
        if req["setup"]:
            rc = subprocess.run(req["setup"], stdin=subprocess.DEVNULL).returncode
            if rc:
                os._exit(rc)
        os.chdir(req["cwd"])
        for name, (soft, hard) in req["limits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        if req["drop"] == "nobody":
            os.setgroups([])
            os.setresgid(req["uid"], req["uid"], req["uid"])
            os.setresuid(req["uid"], req["uid"], req["uid"])
        elif req["drop"] == "nested":  # the mounts locked, no capabilities, no further user namespace
            unshare(["user", "mount"])
            map_self(req["uid"], 0, 0)
            os.setresgid(req["uid"], req["uid"], req["uid"])
            os.setresuid(req["uid"], req["uid"], req["uid"])
        if req["drop"]:
            drop_capabilities()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
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


def child(req: dict, fds: list[int]) -> None:
    """C: the namespaces, then G; reports G's exit status; never returns."""
    out, err, results, status = fds
    try:
        os.dup2(out, 1)
        os.dup2(err, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        _close_fds({0, 1, 2, results, status})
        os.setsid()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # the zygote gone: the sandbox goes too
        uid, gid = os.getuid(), os.getgid()
        if req["namespaces"]:
            unshare(req["namespaces"])
            if "user" in req["namespaces"]:
                map_self(0, uid, gid)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        g = os.fork()
        if g == 0:
            os.close(status)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            grandchild(req, results)
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


if __name__ == "__main__":
    preload()
    serve(socket.socket(fileno=int(sys.argv[1])))
