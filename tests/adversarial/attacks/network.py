# Phone home: connect to a server the grader's machine runs on its loopback interface (the test
# listens there), to the internet (TCP and DNS over UDP), over IPv6, and open netlink and raw
# packet sockets; report every socket that could be opened or connected.
# %% new
import socket

opened = []
targets = [(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", __LISTENER_PORT__)),
           (socket.AF_INET, socket.SOCK_STREAM, ("1.1.1.1", 443)),
           (socket.AF_INET, socket.SOCK_DGRAM, ("8.8.8.8", 53)),
           (socket.AF_INET6, socket.SOCK_STREAM, ("::1", __LISTENER_PORT__)),
           (socket.AF_NETLINK, socket.SOCK_RAW, None),
           (socket.AF_PACKET, socket.SOCK_RAW, None)]
for family, kind, address in targets:
    try:
        sock = socket.socket(family, kind)
    except OSError:
        continue
    opened.append(f"socket {family.name}")
    if address is not None:
        try:
            sock.settimeout(2)
            sock.connect(address)
            if kind == socket.SOCK_DGRAM:
                sock.send(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")
                sock.recv(512)
            else:
                sock.sendall(b"hello from the sandbox\n")
            opened.append(f"connected to {address}")
        except OSError:
            pass
    sock.close()
try:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect("\0autograder")  # an abstract socket of the host, if one could be reached
    opened.append("abstract unix socket")
except OSError:
    pass
raise RuntimeError("NET: " + ("; ".join(opened) if opened else "all blocked"))
# %% softmax
import torch


def softmax(X):
    return X.clone()
