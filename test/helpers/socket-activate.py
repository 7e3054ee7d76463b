"""Holds a listening socket and hands it to meshd processes as systemd does.

Like systemd's socket activation: the socket stays open across restarts, so a
connection that arrives between two meshd processes waits in the backlog. It
reads JSON commands on stdin ({"op": "start", "argv": [...]} or
{"op": "stop", "pid": N}) and prints JSON events; the children's output goes
to this process's stdout.
"""
import json, os, signal, socket, subprocess, sys, threading

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(4096)
# systemd passes sockets from fd 3 on: put ours there.
os.dup2(sock.fileno(), 3)
os.set_inheritable(3, True)
out_lock = threading.Lock()


def emit(event):
    with out_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


emit({"port": sock.getsockname()[1]})
children = {}


def reap(proc):
    code = proc.wait()
    emit({"exited": proc.pid, "code": code})


def stop_all(*_):
    # A test that failed kills this harness: take its meshd processes along (their workers
    # leave on their own when the supervisor's channel closes).
    for proc in list(children.values()):
        if proc.poll() is None:
            proc.kill()
    os._exit(0)


signal.signal(signal.SIGTERM, stop_all)

for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "start":
        env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="outbound")
        proc = subprocess.Popen(cmd["argv"], env=env, pass_fds=(3,), stdout=sys.stdout, stderr=sys.stderr)
        children[proc.pid] = proc
        threading.Thread(target=reap, args=(proc,), daemon=True).start()
        emit({"started": proc.pid})
    elif cmd["op"] == "stop":
        children[cmd["pid"]].send_signal(signal.SIGTERM)
stop_all()
