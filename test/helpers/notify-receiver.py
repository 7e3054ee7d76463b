"""Receives sd_notify datagrams on a unix socket, printing each as one JSON line.

Node has no unix datagram sockets, so the notify tests use this tiny receiver
in place of systemd's notify socket. Ancillary data (the barrier fd that
systemd-notify may attach) is accepted with room for it and closed at once,
which is what releases a waiting sender.
"""
import json, os, socket, sys, array

path = sys.argv[1]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
print(json.dumps({"listening": path}), flush=True)
while True:
    data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            for fd in fds:
                os.close(fd)
    print(json.dumps({"message": data.decode("utf-8", "replace")}), flush=True)
