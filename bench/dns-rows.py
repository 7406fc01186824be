#!/usr/bin/env python3
"""Name rows for the DNS benchmark (bench/dns.sh), without the kernel work.

Endpoints are written straight into a sandbox's berth state, as a connect
commits them (an endpoint row and its name), so the server can be measured
with 10,000 names without 10,000 veths (a bridge takes at most 1024 ports).
The rows carry the status `creating`: the supervisor leaves rows a command
is working on alone, so it does not go looking for their missing veths.
Nothing but this script may run a berth command while they exist (its
preflight would roll them back).

    dns-rows.py fill STATE_DIR NETWORK TOTAL
        endpoints r0.. on NETWORK (a /16) until it has TOTAL names,
        addresses from the subnet's 65th /24 on; prints the last name.
    dns-rows.py reload STATE_DIR NETWORK GATEWAY ROUNDS
        ROUNDS times: commit one new endpoint, send the server the line a
        connect sends (`netns INODE` on dns.sock), and ask the gateway for
        the new name until it answers; then take the endpoint away again
        (with its own notification). Prints the medians of notification to
        the server's ack, and of notification to the first answer. Run it
        in a namespace that may ask the gateway.
"""

import ipaddress
import os
import socket
import sqlite3
import statistics
import struct
import sys
import time

INODE_BASE = 7_000_000_000


def connect(state):
    db = sqlite3.connect(os.path.join(state, "berth.db"), timeout=60)
    db.isolation_level = None
    return db


def network(db, name):
    nid, subnet = db.execute(
        "SELECT id, subnet FROM networks WHERE name = ?", (name,)
    ).fetchone()
    return nid, ipaddress.ip_network(subnet)


def add(db, nid, base, i, name):
    ip = int(base) + (64 << 8) + i
    cur = db.execute(
        "INSERT INTO endpoints (network_id, name, netns, netns_inode, ip, mac,"
        " ifname, host_ifname, default_route, status)"
        " VALUES (?, ?, ?, ?, ?, ?, 'eth0', ?, 1, 'creating')",
        (
            nid,
            name,
            f"/run/netns/{name}",
            INODE_BASE + i,
            ip,
            "02:00:%02x:%02x:%02x:%02x" % tuple(ip.to_bytes(4, "big")),
            f"brow{i}",
        ),
    )
    db.execute(
        "INSERT INTO dns_names (network_id, name, endpoint_id, alias, pos)"
        " VALUES (?, ?, ?, 0, 0)",
        (nid, name, cur.lastrowid),
    )
    return INODE_BASE + i, str(ipaddress.ip_address(ip))


def fill(state, net, total):
    db = connect(state)
    nid, subnet = network(db, net)
    db.execute("BEGIN IMMEDIATE")
    (have,) = db.execute(
        "SELECT count(*) FROM dns_names WHERE network_id = ?", (nid,)
    ).fetchone()
    for i in range(total - have):
        add(db, nid, subnet.network_address, i, f"r{i}")
    db.execute("COMMIT")
    print(f"r{total - have - 1}")


def notify(state, inode):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(state, "dns.sock"))
    s.sendall(f"netns {inode}\n".encode())
    reply = s.makefile().readline()
    s.close()
    if not reply.startswith("ok"):
        sys.exit(f"the server answered {reply!r}")


def query(name):
    q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    q += bytes([len(name)]) + name.encode() + b"\0" + struct.pack(">HH", 1, 1)
    return q


def answered(sock, gateway, name, ip):
    sock.sendto(query(name), (gateway, 53))
    reply = sock.recv(512)
    return socket.inet_aton(ip) in reply[12:]


def reload(state, net, gateway, rounds):
    db = connect(state)
    nid, subnet = network(db, net)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    acks, answers = [], []
    for k in range(rounds):
        i = 40000 + k
        name = f"probe{k}"
        db.execute("BEGIN IMMEDIATE")
        inode, ip = add(db, nid, subnet.network_address, i, name)
        db.execute("COMMIT")
        t0 = time.perf_counter()
        notify(state, inode)
        t1 = time.perf_counter()
        while not answered(sock, gateway, name, ip):
            if time.perf_counter() - t0 > 5:
                sys.exit(f"{name} not answered after 5 s")
        t2 = time.perf_counter()
        acks.append(t1 - t0)
        answers.append(t2 - t0)
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM dns_names WHERE network_id = ? AND name = ?", (nid, name))
        db.execute("DELETE FROM endpoints WHERE netns_inode = ?", (inode,))
        db.execute("COMMIT")
        notify(state, inode)
    print(
        "ack %.3f ms, answered %.3f ms (medians of %d; min %.3f, max %.3f ms)"
        % (
            statistics.median(acks) * 1000,
            statistics.median(answers) * 1000,
            rounds,
            min(answers) * 1000,
            max(answers) * 1000,
        )
    )


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "fill":
        fill(args[0], args[1], int(args[2]))
    elif cmd == "reload":
        reload(args[0], args[1], args[2], int(args[3]))
    else:
        sys.exit(__doc__)
