"""The seccomp filter of the sandbox: system calls that student code never needs, denied.

bubblewrap installs the filter (``--seccomp FD``) just before it starts the worker, so every
process of the submission runs under it and cannot remove it (filters only ever add up). The
program is classic BPF, assembled here without libseccomp, for the machine's own architecture:

- a system call of another ABI (32-bit ``int 0x80`` on x86-64, x32) kills the process: the
  numbers below would mean other calls there;
- debugging other processes (``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_getfd``,
  ``kcmp``), loading kernel code (``bpf``, modules, ``kexec``, ``perf_event_open``),
  mounts and namespaces (``mount`` and the new mount API, ``pivot_root``, ``chroot``,
  ``unshare``, ``setns``, and ``clone`` with any ``CLONE_NEW*`` flag), the kernel keyring,
  ``io_uring``, ``userfaultfd``, file handles, and machine administration (reboot, swap, clock,
  quotas, ``acct``, ``syslog``) fail with ``EPERM``;
- ``socket`` works for ``AF_UNIX`` only (``EAFNOSUPPORT`` for IP, netlink, packet, ...), and no
  socket can be given a name (``bind``, ``listen``): socket pairs work, servers do not;
- what could outlive a submission in the warm sandbox's namespaces, where the reset between
  submissions could not find it or no size limit counts it: System V IPC (``shmget``, ...), POSIX
  message queues (``mq_open``, ...), extended attributes (``setxattr``, ...) fail with ``EPERM``;
- ``clone3`` fails with ``ENOSYS``, whose flags live in memory a filter cannot read: the C
  library then falls back to ``clone``, whose flags are checked above;
- resource limits, priorities and scheduling can be changed for the calling process only
  (``prlimit64``, ``setpriority``, ``sched_setscheduler``/``setparam``/``setattr``,
  ``ioprio_set`` on another target fail with ``EPERM``): every process of the sandbox has the same
  uid, which is all the kernel asks to lower another's limits or priority, and the warm sandbox's
  PID 1 forks every later submission of its slot, which would inherit them.

Everything else is allowed: the filter removes what a grading worker has no use for, while the
namespaces, the unprivileged uid and the resource limits remain the boundary (``SECURITY.md``).
"""

from __future__ import annotations

import errno
import platform
import struct

# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian machines).
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_ARG_STRIDE = 8  # args[i]'s low 32 bits at _ARG0_LOW + 8 * i (int and pid_t arguments live there)

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

AF_UNIX = 1
#: CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
X32_SYSCALL_BIT = 0x40000000

#: Denied with EPERM, by name (numbers per architecture below).
DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "bpf", "perf_event_open", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "unshare", "setns",
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "userfaultfd", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "fanotify_init",
    "reboot", "swapon", "swapoff", "acct", "syslog", "settimeofday", "clock_settime", "adjtimex", "quotactl",
    "vhangup", "iopl", "ioperm",
    # State a submission could leave behind in the sandbox's namespaces for the next one, which no
    # reset could list or no size limit counts: System V IPC, POSIX message queues, named (bound)
    # Unix sockets, abstract ones included, and extended attributes (kernel memory on the tmpfs).
    "shmget", "shmat", "shmdt", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl",
    "semget", "semop", "semtimedop", "semctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    "bind", "listen", "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
    # The batch grader pins each slot to a CPU of its own; a submission may not move off it.
    "sched_setaffinity",
)

PRIO_PROCESS = 0
IOPRIO_WHO_PROCESS = 1

#: Allowed only when these arguments (index -> value) name the calling process itself, else EPERM.
SELF_ONLY = {
    "prlimit64": {0: 0},  # pid 0: glibc's getrlimit / setrlimit
    "setpriority": {0: PRIO_PROCESS, 1: 0},  # nice(): this process; not a process group, not the uid
    "sched_setscheduler": {0: 0},
    "sched_setparam": {0: 0},
    "sched_setattr": {0: 0},
    "ioprio_set": {0: IOPRIO_WHO_PROCESS, 1: 0},
}

_X86_64 = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438, "kcmp": 312,
    "bpf": 321, "perf_event_open": 298, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "kexec_file_load": 320, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "unshare": 272, "setns": 308, "keyctl": 250, "add_key": 248, "request_key": 249,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "userfaultfd": 323,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "lookup_dcookie": 212, "fanotify_init": 300,
    "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163, "syslog": 103, "settimeofday": 164,
    "clock_settime": 227, "adjtimex": 159, "quotactl": 179, "vhangup": 153, "iopl": 172, "ioperm": 173,
    "socket": 41, "clone": 56, "clone3": 435,
    "shmget": 29, "shmat": 30, "shmdt": 67, "shmctl": 31, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
    "semget": 64, "semop": 65, "semtimedop": 220, "semctl": 66, "mq_open": 240, "mq_unlink": 241,
    "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
    "bind": 49, "listen": 50, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "setxattrat": 463,
    "sched_setaffinity": 203,
    "prlimit64": 302, "setpriority": 141, "sched_setscheduler": 144, "sched_setparam": 142, "sched_setattr": 314,
    "ioprio_set": 251,
}
_AARCH64 = {
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438, "kcmp": 272,
    "bpf": 280, "perf_event_open": 241, "init_module": 105, "finit_module": 273, "delete_module": 106,
    "kexec_load": 104, "kexec_file_load": 294, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "unshare": 97, "setns": 268, "keyctl": 219, "add_key": 217, "request_key": 218,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "userfaultfd": 282,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "lookup_dcookie": 18, "fanotify_init": 262,
    "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89, "syslog": 116, "settimeofday": 170,
    "clock_settime": 112, "adjtimex": 171, "quotactl": 60, "vhangup": 58,
    "socket": 198, "clone": 220, "clone3": 435,
    "shmget": 194, "shmat": 196, "shmdt": 197, "shmctl": 195, "msgget": 186, "msgsnd": 189, "msgrcv": 188,
    "msgctl": 187, "semget": 190, "semop": 193, "semtimedop": 192, "semctl": 191, "mq_open": 180,
    "mq_unlink": 181, "mq_timedsend": 182, "mq_timedreceive": 183, "mq_notify": 184, "mq_getsetattr": 185,
    "bind": 200, "listen": 201, "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "setxattrat": 463,
    "sched_setaffinity": 122,
    "prlimit64": 261, "setpriority": 140, "sched_setscheduler": 119, "sched_setparam": 118, "sched_setattr": 274,
    "ioprio_set": 30,
}

#: machine name -> (AUDIT_ARCH_* value, syscall numbers, whether x32 numbers must be refused)
ARCHITECTURES = {
    "x86_64": (0xC000003E, _X86_64, True),
    "aarch64": (0xC00000B7, _AARCH64, False),
}
ARCHITECTURES["amd64"] = ARCHITECTURES["x86_64"]
ARCHITECTURES["arm64"] = ARCHITECTURES["aarch64"]


class _Assembler:
    """Classic BPF with symbolic jump targets (``str`` labels), resolved by :meth:`bytes`."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int, jt: object = 0, jf: object = 0) -> None:
        self.code.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def bytes(self) -> bytes:
        out = bytearray()
        for index, (code, jt, jf, k) in enumerate(self.code):
            offsets = []
            for target in (jt, jf):
                offset = self.labels[target] - index - 1 if isinstance(target, str) else int(target)
                if not 0 <= offset <= 255:
                    raise ValueError("seccomp program too long for a conditional jump")
                offsets.append(offset)
            out += struct.pack("<HBBI", code, offsets[0], offsets[1], k)
        return bytes(out)


def program(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (default: this one) as bytes of ``struct sock_filter``, or None
    on an architecture this module has no system call table for."""
    entry = ARCHITECTURES.get((machine or platform.machine()).lower())
    if entry is None:
        return None
    audit_arch, numbers, refuse_x32 = entry
    asm = _Assembler()
    asm.op(_LD_W_ABS, _ARCH)
    asm.op(_JEQ, audit_arch, 0, "kill")
    asm.op(_LD_W_ABS, _NR)
    if refuse_x32:
        asm.op(_JGE, X32_SYSCALL_BIT, "eperm", 0)
    asm.op(_JEQ, numbers["socket"], "socket", 0)
    asm.op(_JEQ, numbers["clone"], "clone", 0)
    asm.op(_JEQ, numbers["clone3"], "enosys", 0)
    for name in DENIED:
        if name in numbers:
            asm.op(_JEQ, numbers[name], "eperm", 0)
    for name in SELF_ONLY:
        asm.op(_JEQ, numbers[name], f"self:{name}", 0)
    asm.op(_RET, RET_ALLOW)
    for name, required in SELF_ONLY.items():
        asm.label(f"self:{name}")
        for index, value in required.items():
            asm.op(_LD_W_ABS, _ARG0_LOW + _ARG_STRIDE * index)
            asm.op(_JEQ, value, 0, "eperm")
        asm.op(_RET, RET_ALLOW)
    asm.label("socket")
    asm.op(_LD_W_ABS, _ARG0_LOW)
    asm.op(_JEQ, AF_UNIX, "allow", 0)
    asm.op(_RET, RET_ERRNO | errno.EAFNOSUPPORT)
    asm.label("clone")
    asm.op(_LD_W_ABS, _ARG0_LOW)
    asm.op(_JSET, CLONE_NAMESPACES, "eperm", 0)
    asm.label("allow")
    asm.op(_RET, RET_ALLOW)
    asm.label("eperm")
    asm.op(_RET, RET_ERRNO | errno.EPERM)
    asm.label("enosys")
    asm.op(_RET, RET_ERRNO | errno.ENOSYS)
    asm.label("kill")
    asm.op(_RET, RET_KILL_PROCESS)
    return asm.bytes()
