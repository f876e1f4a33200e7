#!/usr/bin/env python3
"""Reference for scripts/bench: moves one file from SEEDERS libtorrent sessions to LEECHERS
sessions as an "SSL torrent" (every session presents a certificate signed by the torrent's root
CA) on 127.0.0.1, every session connected to every other. Prints the seconds from the leechers'
start until the last one completed, and the bytes the seeders uploaded in all.

usage: libtorrent-ssl.py CA_CERT CERT KEY DATA_FILE WORK_DIR [SEEDERS LEECHERS]
"""
import os
import socket
import sys
import time

import libtorrent as lt


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_session(ssl_port):
    return lt.session({
        "listen_interfaces": f"127.0.0.1:{free_port()},127.0.0.1:{ssl_port}s",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
    })


def main():
    ca, cert, key, data, work = sys.argv[1:6]
    seeders, leechers = (int(sys.argv[6]), int(sys.argv[7])) if len(sys.argv) > 7 else (1, 1)
    files = lt.file_storage()
    lt.add_files(files, data)
    creator = lt.create_torrent(files, 1 << 20)
    with open(ca) as handle:
        creator.set_root_cert(handle.read())
    lt.set_piece_hashes(creator, os.path.dirname(os.path.abspath(data)))
    info = lt.torrent_info(creator.generate())

    sessions, seeds, leeches, ports = [], [], [], []
    for _ in range(seeders):
        port = free_port()
        session = make_session(port)
        seed = session.add_torrent({"ti": lt.torrent_info(info), "save_path": os.path.dirname(os.path.abspath(data)),
                                    "flags": lt.torrent_flags.seed_mode})
        seed.set_ssl_certificate(cert, key, "")
        sessions.append(session)
        seeds.append(seed)
        ports.append(port)
    start = time.monotonic()
    for number in range(leechers):
        port = free_port()
        session = make_session(port)
        target = os.path.join(work, f"libtorrent-download-{number}")
        os.makedirs(target, exist_ok=True)
        leech = session.add_torrent({"ti": lt.torrent_info(info), "save_path": target})
        leech.set_ssl_certificate(cert, key, "")
        for other in ports:
            leech.connect_peer(("127.0.0.1", other))
        sessions.append(session)
        leeches.append(leech)
        ports.append(port)
    deadline = start + 900
    while not all(leech.status().is_seeding for leech in leeches):
        if time.monotonic() > deadline:
            sys.exit("libtorrent did not finish: " + ", ".join(f"{leech.status().progress:.1%}" for leech in leeches))
        for session in sessions:
            for alert in session.pop_alerts():
                if alert.category() & lt.alert.category_t.error_notification:
                    print(alert.message(), file=sys.stderr)
        time.sleep(0.02)
    seconds = time.monotonic() - start
    uploaded = sum(seed.status().total_payload_upload for seed in seeds)
    print(f"{seconds:.3f} {uploaded}")


if __name__ == "__main__":
    main()
