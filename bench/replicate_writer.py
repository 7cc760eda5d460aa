#!/usr/bin/env python3
"""Build a benchmark database, or write to one, for bench/replicate_restore.sh (issue 14).

    replicate_writer.py make  --shape random|append --out PATH --size MB
    replicate_writer.py write --shape random|append --db PATH --tx N --rate TX_PER_S [--burst K]

Shapes:
- random: `accounts` (id, balance, owner, note of 400 bytes) and a `ledger`; each transaction
  moves a random account's balance and appends a ledger row: pages touched all over the file.
- append: `events` (id, tenant, kind, payload of 300 bytes) with an index on tenant; each
  transaction appends one event of 100 bytes: hot pages at the table's end and in 200 index regions.

`write` commits N transactions paced to RATE per second (as fast as it can when slower), in
bursts of K back to back (default 1: evenly spread), and prints the rate it achieved. Bursts
let a time-scaled run keep a real run's segment sizes: the replicator ships what it finds after
each sleep, then again at once while more keeps coming.
"""

import argparse
import random
import sqlite3
import sys
import time


def make(shape, out, size_mb):
    c = sqlite3.connect(out, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=OFF")
    if shape == "random":
        c.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER, owner TEXT, note BLOB)")
        c.execute("CREATE TABLE ledger(id INTEGER PRIMARY KEY, account INTEGER, amount INTEGER, at REAL)")
        rows = int(size_mb * 1e6 / 470)
        sql = ("INSERT INTO accounts(balance, owner, note) SELECT abs(random() % 100000), "
               "hex(randomblob(8)), randomblob(400) FROM n")
    else:
        c.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, tenant INTEGER, kind TEXT, payload BLOB)")
        c.execute("CREATE INDEX events_tenant ON events(tenant)")
        rows = int(size_mb * 1e6 / 390)
        sql = ("INSERT INTO events(tenant, kind, payload) SELECT abs(random() % 200), "
               "'seed', randomblob(300) FROM n")
    step = 50000
    done = 0
    while done < rows:
        k = min(step, rows - done)
        c.execute("BEGIN")
        c.execute(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {k}) {sql}")
        c.execute("COMMIT")
        done += k
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def write(shape, db, tx, rate, burst):
    c = sqlite3.connect(db, isolation_level=None, timeout=60)
    c.execute("PRAGMA busy_timeout=60000")
    c.execute("PRAGMA synchronous=NORMAL")
    if shape == "random":
        top = c.execute("SELECT max(id) FROM accounts").fetchone()[0]
    start = time.perf_counter()
    for i in range(tx):
        due = start + (i - i % burst) / rate
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        if shape == "random":
            a, amt = random.randint(1, top), random.randint(-500, 500)
            c.execute("BEGIN IMMEDIATE")
            c.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amt, a))
            c.execute("INSERT INTO ledger(account, amount, at) VALUES (?, ?, ?)", (a, amt, time.time()))
            c.execute("COMMIT")
        else:
            c.execute("INSERT INTO events(tenant, kind, payload) VALUES (?, 'live', randomblob(100))",
                      (random.randint(0, 199),))
    took = time.perf_counter() - start
    print(f"{tx} transactions in {took:.1f} s: {tx / took:.0f} tx/s (asked {rate})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["make", "write"])
    p.add_argument("--shape", choices=["random", "append"], required=True)
    p.add_argument("--out")
    p.add_argument("--db")
    p.add_argument("--size", type=float, default=200)
    p.add_argument("--tx", type=int, default=720000)
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--burst", type=int, default=1)
    a = p.parse_args()
    if a.what == "make":
        make(a.shape, a.out, a.size)
    else:
        write(a.shape, a.db, a.tx, a.rate, a.burst)


if __name__ == "__main__":
    sys.exit(main())
