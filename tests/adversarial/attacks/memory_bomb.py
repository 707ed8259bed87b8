# Memory bomb: one huge allocation (torch and bytearray), then growing a list of 256 MiB blocks
# until something gives; report how far it got (at the first call; later calls repeat the report).
# %% softmax
import torch

report = None


def softmax(X):
    global report
    if report is None:
        failures = []
        for attempt in (lambda: torch.ones(2**31, dtype=torch.float64), lambda: bytearray(64 << 30)):
            try:
                attempt()
            except (MemoryError, RuntimeError) as error:
                failures.append(type(error).__name__)
        blocks = []
        try:
            while len(blocks) < 400:
                blocks.append(bytearray(256 << 20))
        except MemoryError:
            pass
        total = len(blocks) * 256
        del blocks
        state = "capped" if len(failures) == 2 and total < 100 * 256 else "NOT capped"
        report = f"BOMB: {state} (huge allocations: {failures}; grew to {total} MiB)"
    raise RuntimeError(report)
