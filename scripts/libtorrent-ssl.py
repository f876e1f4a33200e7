#!/usr/bin/env python3
"""Reference for scripts/bench, scripts/bench-swarm and scripts/netlab: libtorrent's "SSL
torrents" (every peer presents a certificate signed by the torrent's root CA), run the way a
deployment would run them: ONE PROCESS PER PEER, peer encryption disabled (TLS already encrypts;
libtorrent's default policy would add RC4 inside TLS), TCP only, no DHT, LSD, UPnP or NAT-PMP, and
a torrent of version 1 or version 2 (not hybrid).

Pieces are as large as MiniTorrent's for the same file (--piece-kib to choose).

usage:
  libtorrent-ssl.py make DATA_FILE CA_CERT OUT_TORRENT [--version 1|2] [--piece-kib N]
      Writes a torrent of DATA_FILE whose root certificate is CA_CERT.
  libtorrent-ssl.py peer --torrent T --save DIR --cert C --key K --listen IP:PORT --stat FILE
                         [--seed] [--go FILE] [--connect IP:PORT ...] [--deadline SECONDS]
      One peer in a process of its own. It listens for SSL connections on IP:PORT, then writes
      "ready" to FILE. A leecher waits until the file --go exists, then adds the torrent and
      connects to every --connect address. Every 0.2 s it replaces FILE with one line:
      "uploaded downloaded progress done_at cpu_seconds" (payload bytes; done_at is the wall
      clock time the torrent completed, or 0). It runs until SIGTERM/SIGINT or the deadline.
  libtorrent-ssl.py swarm CA_CERT CERT KEY DATA_FILE WORK_DIR [SEEDERS LEECHERS] [--version 1|2]
                          [--piece-kib N]
      SEEDERS seeders and LEECHERS leechers on 127.0.0.1, each a `peer` process, every leecher
      connected to every other peer. Prints the seconds from the leechers' start until the last
      one completed, and the bytes the seeders uploaded in all.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

import libtorrent as lt


def default_piece_kib(size):
    """The piece size MiniTorrent picks: the smallest power of two from 256 KiB that cuts the file
    into at most 1024 pieces."""
    kib = 256
    while kib < 65536 and size > kib * 1024 * 1024:
        kib *= 2
    return kib


def make_torrent(data, ca, version, piece_kib):
    piece_kib = piece_kib or default_piece_kib(os.path.getsize(data))
    files = lt.file_storage()
    lt.add_files(files, data)
    flags = lt.create_torrent.v1_only if version == 1 else lt.create_torrent.v2_only
    creator = lt.create_torrent(files, piece_kib * 1024, flags=flags)
    with open(ca) as handle:
        creator.set_root_cert(handle.read())
    lt.set_piece_hashes(creator, os.path.dirname(os.path.abspath(data)))
    return lt.bencode(creator.generate())


def command_make(argv):
    parser = argparse.ArgumentParser(prog="libtorrent-ssl.py make")
    parser.add_argument("data")
    parser.add_argument("ca")
    parser.add_argument("out")
    parser.add_argument("--version", type=int, choices=(1, 2), default=1)
    parser.add_argument("--piece-kib", type=int, default=0)
    args = parser.parse_args(argv)
    with open(args.out, "wb") as handle:
        handle.write(make_torrent(args.data, args.ca, args.version, args.piece_kib))


def endpoint(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def write_atomically(path, text):
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def cpu_seconds():
    usage = os.times()
    return usage.user + usage.system


def command_peer(argv):
    parser = argparse.ArgumentParser(prog="libtorrent-ssl.py peer")
    parser.add_argument("--torrent", required=True)
    parser.add_argument("--save", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--stat", required=True)
    parser.add_argument("--seed", action="store_true")
    parser.add_argument("--go")
    parser.add_argument("--connect", nargs="*", default=[])
    parser.add_argument("--deadline", type=float, default=900)
    args = parser.parse_args(argv)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    deadline = time.monotonic() + args.deadline
    host, port = endpoint(args.listen)
    session = lt.session({
        "listen_interfaces": f"{host}:{port}s",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "out_enc_policy": int(lt.enc_policy.disabled), "in_enc_policy": int(lt.enc_policy.disabled),
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
    })
    info = lt.torrent_info(args.torrent)

    def add():
        params = {"ti": info, "save_path": args.save}
        if args.seed:
            params["flags"] = lt.torrent_flags.seed_mode
        handle = session.add_torrent(params)
        handle.set_ssl_certificate(args.cert, args.key, "")
        return handle

    def report(handle, done_at):
        if handle is None:
            return
        status = handle.status()
        write_atomically(args.stat, f"{status.total_payload_upload} {status.total_payload_download} "
                                    f"{status.progress:.4f} {done_at:.3f} {cpu_seconds():.2f}\n")

    handle = add() if args.seed else None
    for _ in range(500):  # at most 5 s until the listen socket is up
        if any(isinstance(alert, lt.listen_succeeded_alert) for alert in session.pop_alerts()):
            break
        time.sleep(0.01)
    else:
        sys.exit(f"libtorrent peer could not listen on {args.listen}")
    write_atomically(args.stat, "ready\n")
    if not args.seed:
        while args.go and not os.path.exists(args.go) and not stopping:
            if time.monotonic() > deadline:
                sys.exit("libtorrent peer: no start signal")
            time.sleep(0.005)
        handle = add()
        for other in args.connect:
            handle.connect_peer(endpoint(other))
    done_at = 0.0
    last_report = 0.0
    while not stopping and time.monotonic() < deadline:
        if not done_at and handle.status().is_seeding:
            done_at = time.time()
            report(handle, done_at)
        for alert in session.pop_alerts():
            if alert.category() & lt.alert.category_t.error_notification:
                print(alert.message(), file=sys.stderr)
        if time.monotonic() - last_report >= 0.2:
            report(handle, done_at)
            last_report = time.monotonic()
        time.sleep(0.01)
    report(handle, done_at)


def read_stat(path):
    try:
        with open(path) as handle:
            return handle.read().split()
    except FileNotFoundError:
        return []


def command_swarm(argv):
    parser = argparse.ArgumentParser(prog="libtorrent-ssl.py swarm")
    parser.add_argument("ca")
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("data")
    parser.add_argument("work")
    parser.add_argument("seeders", type=int, nargs="?", default=1)
    parser.add_argument("leechers", type=int, nargs="?", default=1)
    parser.add_argument("--version", type=int, choices=(1, 2), default=1)
    parser.add_argument("--piece-kib", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=900)
    args = parser.parse_args(argv)
    work = os.path.join(os.path.abspath(args.work), f"libtorrent-v{args.version}-{os.getpid()}")
    os.makedirs(work)
    torrent = os.path.join(work, "data.torrent")
    with open(torrent, "wb") as handle:
        handle.write(make_torrent(args.data, args.ca, args.version, args.piece_kib))
    go = os.path.join(work, "go")
    base = 20000 + os.getpid() % 20000
    names = [f"seed{n}" for n in range(args.seeders)] + [f"leech{n}" for n in range(args.leechers)]
    ports = {name: base + number for number, name in enumerate(names)}
    processes = {}
    try:
        for name in names:
            seed = name.startswith("seed")
            save = os.path.dirname(os.path.abspath(args.data)) if seed else os.path.join(work, name)
            os.makedirs(save, exist_ok=True)
            command = [sys.executable, os.path.abspath(__file__), "peer", "--torrent", torrent,
                       "--save", save, "--cert", args.cert, "--key", args.key,
                       "--listen", f"127.0.0.1:{ports[name]}", "--stat", os.path.join(work, name + ".stat"),
                       "--deadline", str(args.deadline + 60)]
            if seed:
                command.append("--seed")
            else:
                command += ["--go", go, "--connect"] + [f"127.0.0.1:{ports[other]}" for other in names if other != name]
            with open(os.path.join(work, name + ".log"), "w") as log:
                processes[name] = subprocess.Popen(command, stdout=log, stderr=log)
        limit = time.monotonic() + 60
        while not all(read_stat(os.path.join(work, name + ".stat")) for name in names):
            for name, process in processes.items():
                if process.poll() is not None:
                    sys.exit(f"libtorrent peer {name} exited: see {work}/{name}.log")
            if time.monotonic() > limit:
                sys.exit("libtorrent peers did not start")
            time.sleep(0.01)
        start = time.time()
        with open(go, "w"):
            pass
        limit = time.monotonic() + args.deadline
        leechers = [name for name in names if name.startswith("leech")]
        while True:
            stats = {name: read_stat(os.path.join(work, name + ".stat")) for name in names}
            done = [float(stats[name][3]) for name in leechers if len(stats[name]) == 5 and float(stats[name][3]) > 0]
            if len(done) == len(leechers):
                break
            if time.monotonic() > limit:
                sys.exit("libtorrent did not finish: " + ", ".join(
                    stats[name][2] if len(stats[name]) == 5 else "?" for name in leechers))
            time.sleep(0.02)
        seconds = max(done) - start
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=30)
        uploaded = sum(int(read_stat(os.path.join(work, name + ".stat"))[0]) for name in names if name.startswith("seed"))
        print(f"{seconds:.3f} {uploaded}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        subprocess.run(["rm", "-rf", work], check=False)


def main():
    commands = {"make": command_make, "peer": command_peer, "swarm": command_swarm}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
