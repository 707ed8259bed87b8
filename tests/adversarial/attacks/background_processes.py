# Leave processes behind: a daemon (double fork, new session, ignoring SIGTERM and SIGHUP) that
# would outlive the grading and interfere with the next submission in this slot, plus a
# detached `sleep`.
# %% new
import os
import signal
import subprocess
import time

pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            time.sleep(1)
    os._exit(0)
os.waitpid(pid, 0)
subprocess.Popen(["sleep", "1000000"], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
raise RuntimeError("DAEMON: started")
# %% softmax
import torch


def softmax(X):
    return X.clone()
