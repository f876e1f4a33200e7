#!/usr/bin/env python3
"""Reference for scripts/bench: moves one file between two libtorrent sessions as an "SSL torrent"
(both sides present certificates signed by the torrent's root CA) on 127.0.0.1, and prints the
seconds from the leecher's start to its completion.

usage: libtorrent-ssl.py CA_CERT SEEDER_CERT SEEDER_KEY LEECHER_CERT LEECHER_KEY DATA_FILE WORK_DIR
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
    ca, seeder_cert, seeder_key, leecher_cert, leecher_key, data, work = sys.argv[1:8]
    files = lt.file_storage()
    lt.add_files(files, data)
    creator = lt.create_torrent(files, 1 << 20)
    with open(ca) as handle:
        creator.set_root_cert(handle.read())
    lt.set_piece_hashes(creator, os.path.dirname(os.path.abspath(data)))
    info = lt.torrent_info(creator.generate())

    seeder_port = free_port()
    seeder = make_session(seeder_port)
    seed = seeder.add_torrent({"ti": info, "save_path": os.path.dirname(os.path.abspath(data)), "flags": lt.torrent_flags.seed_mode})
    seed.set_ssl_certificate(seeder_cert, seeder_key, "")

    leecher = make_session(free_port())
    target = os.path.join(work, "libtorrent-download")
    os.makedirs(target, exist_ok=True)
    start = time.monotonic()
    leech = leecher.add_torrent({"ti": lt.torrent_info(info), "save_path": target})
    leech.set_ssl_certificate(leecher_cert, leecher_key, "")
    leech.connect_peer(("127.0.0.1", seeder_port))
    deadline = start + 600
    while not leech.status().is_seeding:
        if time.monotonic() > deadline:
            sys.exit(f"libtorrent did not finish: {leech.status().progress:.1%}")
        for alert in leecher.pop_alerts() + seeder.pop_alerts():
            if alert.category() & lt.alert.category_t.error_notification:
                print(alert.message(), file=sys.stderr)
        time.sleep(0.05)
    print(f"{time.monotonic() - start:.3f}")


if __name__ == "__main__":
    main()
