# Leave state in the warm sandbox for the next submission of the slot: System V shared memory,
# a POSIX message queue, a named abstract Unix socket, an extended attribute, a 3000-deep chain
# of folders and thousands of files in /tmp, an unreadable folder; then flood PID 1 with SIGCHLD.
# %% new
import ctypes
import os
import signal
import socket

libc = ctypes.CDLL(None, use_errno=True)
blocked = []
if libc.shmget(0, 1 << 20, 0o1000 | 0o600) == -1:
    blocked.append("shm")
if libc.syscall(240 if os.uname().machine == "x86_64" else 180, b"/ag-left", 0o100 | 0o2, 0o600, None) == -1:
    blocked.append("mqueue")
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\0ag-left-behind")
    s.listen(1)
except OSError:
    blocked.append("bind")
with open("/tmp/x", "w") as handle:
    handle.write("x")
try:
    os.setxattr("/tmp/x", "user.big", b"x" * 60000)
except OSError:
    blocked.append("xattr")
path = "/tmp/deep"
os.mkdir(path)
fd = os.open(path, os.O_RDONLY)
for _ in range(3000):
    os.mkdir("d", dir_fd=fd)
    child = os.open("d", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = child
os.close(fd)
for i in range(3000):
    open(f"/tmp/f{i}", "w").close()
os.mkdir("/tmp/locked")
os.chmod("/tmp/locked", 0)
for _ in range(20000):
    try:
        os.kill(1, signal.SIGCHLD)
    except OSError:
        break
raise RuntimeError("LEFT: blocked " + ",".join(blocked))
# %% softmax
import torch


def softmax(X):
    return X.clone()
