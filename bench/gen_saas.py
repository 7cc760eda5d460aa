#!/usr/bin/env python3
"""Generate a second benchmark profile: a multi-tenant SaaS SQLite database shaped unlike the
demo generator (crates/lifeboat/src/demo.rs).

Where the demo keeps each tenant's rows together, scopes bookings only through classes, has few
indexes and a rollback journal, this profile has:

- 200 tenants (`tenants.id` TEXT uuid) with a strong Zipf skew, inserted in random order;
- `bookings` carrying `tenant_id` directly but with NO index on it, random-order TEXT uuid keys,
  and the rows of all tenants interleaved (as a live service writes them over time);
- `booking_notes` scoped only through bookings (varied text length, several per booking);
- integer keys, a composite primary key, two WITHOUT ROWID tables, AUTOINCREMENT, a
  self-reference, blobs, REAL amounts, NULLs, global tables (`users`, `plans`, `login_events`);
- 13 secondary indexes (one expression index, one partial, two unique), none on
  bookings.tenant_id;
- WAL mode on the final file (checkpointed, so the main file is self-contained).

Row counts scale linearly with --size (decimal MB); deterministic for a given --seed.

    python3 bench/gen_saas.py --out PATH [--size MB] [--seed N]
    python3 bench/gen_saas.py --print-mid-tenant PATH
"""

import argparse
import os
import random
import sqlite3
import sys
import time
import uuid
from bisect import bisect_right
from itertools import accumulate

N_TENANTS = 200
ZIPF_S = 1.1
MID_RANK = 20  # the "mid-sized" tenant: 20th by bookings count
BATCH = 5000  # bookings per executemany round (other tables follow in proportion)

# Row counts per MB of requested size (calibrated: --size 800 gives ~1.35 M bookings and a file
# of about 800 MB).
BOOKINGS_PER_MB = 1_350_000 / 800
CUSTOMERS_PER_MB = 160_000 / 800
USERS_PER_MB = 30_000 / 800
LOGINS_PER_MB = 300_000 / 800
# Per booking / per customer probabilities.
P_NOTES = 0.30  # bookings with notes get 1..6 of them (geometric)
P_INVOICE = 0.15  # bookings that start an invoice of 1..5 lines
P_PAYMENT = 0.75  # invoices with at least one payment
P_RECEIPT = 0.4  # payments with a receipt blob
P_ATTACH = 0.12  # customers with attachments (1..3)

SCHEMA = """
CREATE TABLE plans (
  id INTEGER PRIMARY KEY,
  code TEXT NOT NULL,
  name TEXT NOT NULL,
  monthly_price REAL NOT NULL,
  seat_limit INTEGER,
  features TEXT
);
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  subdomain TEXT NOT NULL,
  plan_id INTEGER NOT NULL REFERENCES plans(id),
  region TEXT NOT NULL,
  created_at TEXT NOT NULL,
  trial_ends_at TEXT,
  settings TEXT
);
CREATE TABLE tenant_settings (
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  key TEXT NOT NULL,
  value TEXT,
  updated_at REAL NOT NULL,
  PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL,
  display_name TEXT NOT NULL,
  password_hash BLOB NOT NULL,
  is_staff INTEGER NOT NULL DEFAULT 0,
  last_login_at REAL
);
CREATE TABLE login_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id INTEGER NOT NULL REFERENCES users(id),
  at REAL NOT NULL,
  ip TEXT NOT NULL,
  user_agent TEXT,
  success INTEGER NOT NULL
);
CREATE TABLE customers (
  id INTEGER PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  external_ref TEXT,
  full_name TEXT NOT NULL,
  email TEXT,
  phone TEXT,
  balance REAL NOT NULL DEFAULT 0.0,
  referred_by INTEGER REFERENCES customers(id),
  created_at TEXT NOT NULL
);
CREATE TABLE attachments (
  id TEXT NOT NULL PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  filename TEXT NOT NULL,
  mime TEXT NOT NULL,
  content BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE bookings (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  customer_id INTEGER REFERENCES customers(id),
  created_by INTEGER REFERENCES users(id),
  resource TEXT NOT NULL,
  status TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  duration_min INTEGER NOT NULL,
  price REAL,
  currency TEXT NOT NULL,
  cancel_reason TEXT,
  metadata TEXT
);
CREATE TABLE booking_notes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  booking_id TEXT NOT NULL REFERENCES bookings(id),
  author_id INTEGER REFERENCES users(id),
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at REAL NOT NULL
);
CREATE TABLE invoices (
  id INTEGER PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  number TEXT NOT NULL,
  issued_on TEXT NOT NULL,
  due_on TEXT,
  status TEXT NOT NULL,
  subtotal REAL NOT NULL,
  tax REAL NOT NULL,
  total REAL NOT NULL,
  pdf_sha256 BLOB
);
CREATE TABLE invoice_lines (
  invoice_id INTEGER NOT NULL REFERENCES invoices(id),
  line_no INTEGER NOT NULL,
  booking_id TEXT REFERENCES bookings(id),
  description TEXT NOT NULL,
  quantity REAL NOT NULL,
  unit_price REAL NOT NULL,
  PRIMARY KEY (invoice_id, line_no)
);
CREATE TABLE payments (
  id INTEGER PRIMARY KEY,
  invoice_id INTEGER NOT NULL REFERENCES invoices(id),
  amount REAL NOT NULL,
  method TEXT NOT NULL,
  paid_at TEXT NOT NULL,
  processor_ref TEXT,
  receipt BLOB
);
"""

# Secondary indexes, created after the data. 13 in all; none on bookings.tenant_id (deliberate).
INDEXES = """
CREATE UNIQUE INDEX users_email ON users(lower(email));
CREATE INDEX login_events_user ON login_events(user_id, at);
CREATE INDEX customers_tenant ON customers(tenant_id);
CREATE INDEX customers_referred_by ON customers(referred_by) WHERE referred_by IS NOT NULL;
CREATE INDEX attachments_customer ON attachments(customer_id);
CREATE INDEX bookings_customer ON bookings(customer_id);
CREATE INDEX bookings_starts_at ON bookings(starts_at);
CREATE INDEX booking_notes_booking ON booking_notes(booking_id);
CREATE UNIQUE INDEX invoices_number ON invoices(tenant_id, number);
CREATE INDEX invoices_customer ON invoices(customer_id);
CREATE INDEX invoices_tenant_issued ON invoices(tenant_id, issued_on);
CREATE INDEX invoice_lines_booking ON invoice_lines(booking_id);
CREATE INDEX payments_invoice ON payments(invoice_id);
"""

PLANS = [
    (1, "free", "Free", 0.0, 3, None),
    (2, "starter", "Starter", 19.0, 10, '{"sms":false,"api":false}'),
    (3, "team", "Team", 49.5, 50, '{"sms":true,"api":false}'),
    (4, "business", "Business", 149.0, 250, '{"sms":true,"api":true,"sso":false}'),
    (5, "enterprise", "Enterprise", 999.99, None, '{"sms":true,"api":true,"sso":true}'),
    (6, "legacy-2019", "Legacy (2019)", 9.99, 5, "{}"),
]
REGIONS = ["eu-west", "eu-central", "us-east", "us-west", "ap-south", "sa-east"]
WORDS = (
    "the customer asked to move the appointment because of traffic and would like a reminder "
    "by sms please call back before noon invoice was sent twice refund approved partial "
    "deposit paid at the desk allergies noted in file bring own equipment parking validated "
    "first visit referred by a friend prefers morning slots room two projector broken "
    "follow-up needed late cancellation fee waived VIP do not double book wheelchair access "
    "café résumé naïve Zürich São Paulo Łódź Ærø 東京 😀 ✔ — “quoted” 'single' O'Neil; "
    "DROP TABLE bookings; -- not really \\ backslash %percent _underscore"
).split()
FIRST = ["Maria", "John", "Wei", "Fatima", "Olga", "Kenji", "Amara", "Lucas", "Priya", "Mateo",
         "Chloé", "Björn", "Nkechi", "Ahmed", "Sofia", "Hiroshi", "Zoe", "Ivan", "Aisha", "Liam"]
LAST = ["Smith", "García", "Müller", "Kowalski", "Nguyen", "Okafor", "Rossi", "Ivanova",
        "Tanaka", "O'Connor", "Silva", "Haddad", "Johansson", "Dubois", "Kim", "Patel"]
RESOURCES = ["Court 1", "Court 2", "Room A", "Room B", "Chair 3", "Desk 12", "Studio", "Bay 7",
             "Lane 4", "Van #2", "Table for 4", "Suite 101"]
STATUSES = ["confirmed"] * 6 + ["completed"] * 8 + ["cancelled", "no_show", "pending"]
CANCEL = ["customer request", "weather", "staff sick", "double booked", "payment failed"]
NOTE_KINDS = ["internal", "internal", "customer", "system", "followup"]
MIMES = [("pdf", "application/pdf"), ("png", "image/png"), ("jpg", "image/jpeg"),
         ("txt", "text/plain")]
METHODS = ["card", "card", "card", "cash", "transfer", "voucher"]
AGENTS = ["Mozilla/5.0 (Macintosh; Intel Mac OS X 13_4) AppleWebKit/605.1.15 Safari/605.1.15",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/118.0 Safari/537.36",
          "okhttp/4.10.0", "MobileApp/3.2.1 (iPhone; iOS 17.0)", None]

T0 = 1_640_995_200  # 2022-01-01T00:00:00Z
DAY = 86_400


def days_table(n=1200):
    """ISO dates from 2022-01-01, precomputed (formatting dates per row is slow)."""
    return [time.strftime("%Y-%m-%d", time.gmtime(T0 + d * DAY)) for d in range(n)]


def mid_tenant_of(counts):
    """(tenant id, count) at rank MID_RANK by bookings count (ties: smaller id first)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[min(MID_RANK, len(ranked)) - 1]


def print_mid_tenant(path):
    if not os.path.exists(path):
        sys.exit(f"gen_saas: {path} does not exist")
    # Read-write (but only read): a read-only connection would leave -wal and -shm files behind.
    conn = sqlite3.connect(path)
    counts = dict(conn.execute("SELECT tenant_id, count(*) FROM bookings GROUP BY tenant_id"))
    conn.close()
    print(mid_tenant_of(counts)[0])


def generate(path, size_mb, seed):
    rng = random.Random(seed)
    rand = rng.random
    randint = rng.randint
    randbits = rng.getrandbits
    randbytes = rng.randbytes
    choice = rng.choice
    UUID = uuid.UUID

    def uid():
        return str(UUID(int=randbits(128), version=4))

    days = days_table()
    n_days = len(days)
    text = " ".join(rng.choice(WORDS) for _ in range(40_000))
    text_len = len(text)

    def snippet(n):
        start = randint(0, text_len - n - 1)
        return text[start:start + n]

    n_bookings = max(1000, round(BOOKINGS_PER_MB * size_mb))
    n_customers = max(N_TENANTS * 2, round(CUSTOMERS_PER_MB * size_mb))
    n_users = max(50, round(USERS_PER_MB * size_mb))
    n_logins = max(100, round(LOGINS_PER_MB * size_mb))

    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-400000;"
        "PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=OFF;"
    )
    conn.executescript(SCHEMA)
    conn.execute("BEGIN")
    rows = {}

    def insert(table, sql, data):
        conn.executemany(sql, data)
        rows[table] = rows.get(table, 0) + len(data)

    # --- global: plans, users, login events
    insert("plans", "INSERT INTO plans VALUES (?,?,?,?,?,?)", PLANS)
    batch = []
    for i in range(1, n_users + 1):
        f, l = choice(FIRST), choice(LAST)
        batch.append((
            i,
            f"{f}.{l}.{i}@example.{('com', 'org', 'io')[i % 3]}".replace("'", "").lower(),
            f"{f} {l}",
            randbytes(32),
            1 if i % 97 == 0 else 0,
            None if rand() < 0.15 else T0 + rand() * 700 * DAY,
        ))
        if len(batch) >= BATCH:
            insert("users", "INSERT INTO users VALUES (?,?,?,?,?,?)", batch)
            batch = []
    insert("users", "INSERT INTO users VALUES (?,?,?,?,?,?)", batch)

    # --- tenants: Zipf weights, assigned to tenants in random order
    tenant_ids = [uid() for _ in range(N_TENANTS)]
    weights = [1.0 / (r + 1) ** ZIPF_S for r in range(N_TENANTS)]
    rng.shuffle(weights)
    cum = list(accumulate(weights))
    total_w = cum[-1]

    def pick_tenant():
        return bisect_right(cum, rand() * total_w)

    batch, settings = [], []
    for i, t in enumerate(tenant_ids):
        d = randint(0, 300)
        batch.append((
            t,
            f"{choice(LAST)} {choice(['Fitness', 'Dental', 'Tennis Club', 'Salon', 'Co-work', 'Clinic'])} #{i}",
            f"t{i:03d}-{t[:6]}",
            randint(1, len(PLANS)),
            choice(REGIONS),
            f"{days[d]}T{randint(0, 23):02d}:{randint(0, 59):02d}:00Z",
            None if rand() < 0.7 else days[d + 30],
            None if rand() < 0.3 else '{"locale":"%s","week_starts":%d}'
            % (choice(["en", "fr", "de", "pt-BR", "ja"]), randint(0, 1)),
        ))
        for k in rng.sample(["currency", "timezone", "reminder_hours", "logo_url", "tax_rate",
                             "cancellation_policy", "sms_sender", "booking_horizon_days",
                             "webhook_url", "brand_color", "invoice_footer", "locale"],
                            randint(2, 12)):
            settings.append((t, k, None if rand() < 0.05 else snippet(randint(2, 80)),
                             T0 + rand() * 600 * DAY))
    insert("tenants", "INSERT INTO tenants VALUES (?,?,?,?,?,?,?,?)", batch)
    insert("tenant_settings", "INSERT INTO tenant_settings VALUES (?,?,?,?)", settings)

    # --- customers (+ attachments), interleaved across tenants; keep ids per tenant
    cust_of = [[] for _ in range(N_TENANTS)]
    batch, att = [], []
    sql_c = "INSERT INTO customers VALUES (?,?,?,?,?,?,?,?,?)"
    sql_a = "INSERT INTO attachments VALUES (?,?,?,?,?)"
    for cid in range(1, n_customers + 1):
        ti = cid - 1 if cid <= N_TENANTS else pick_tenant()  # every tenant has a customer
        mine = cust_of[ti]
        f, l = choice(FIRST), choice(LAST)
        batch.append((
            cid,
            tenant_ids[ti],
            None if rand() < 0.6 else f"CRM-{randbits(40):010x}",
            f"{f} {l}",
            None if rand() < 0.25 else f"{f}.{l}{cid}@mail.test".lower(),
            None if rand() < 0.4 else f"+{randint(1, 99)} {randint(100, 999)} {randint(1000000, 9999999)}",
            0.0 if rand() < 0.7 else round((rand() - 0.3) * 500, 2),
            mine[randint(0, len(mine) - 1)] if mine and rand() < 0.1 else None,
            f"{days[randint(0, n_days - 1)]} {randint(0, 23):02d}:{randint(0, 59):02d}:{randint(0, 59):02d}",
        ))
        mine.append(cid)
        if rand() < P_ATTACH:
            for _ in range(randint(1, 3)):
                ext, mime = choice(MIMES)
                n = randint(150, 900)
                att.append((uid(), cid, f"scan_{randbits(24):06x}.{ext}", mime,
                            b"%PDF-1.4\n" * 4 + randbytes(n) if ext == "pdf" else randbytes(n)))
        if len(batch) >= BATCH:
            insert("customers", sql_c, batch)
            insert("attachments", sql_a, att)
            batch, att = [], []
    insert("customers", sql_c, batch)
    insert("attachments", sql_a, att)

    # --- bookings, notes, invoices, lines, payments: streamed in rounds of BATCH bookings
    sql_b = "INSERT INTO bookings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    sql_n = "INSERT INTO booking_notes (booking_id, author_id, kind, body, created_at) VALUES (?,?,?,?,?)"
    sql_i = "INSERT INTO invoices VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    sql_l = "INSERT INTO invoice_lines VALUES (?,?,?,?,?,?)"
    sql_p = "INSERT INTO payments VALUES (?,?,?,?,?,?,?)"
    counts = [0] * N_TENANTS
    inv_no = [0] * N_TENANTS
    inv_id = 0
    pay_id = 0
    b_rows, n_rows, i_rows, l_rows, p_rows = [], [], [], [], []
    for k in range(n_bookings):
        ti = pick_tenant()
        counts[ti] += 1
        tid = tenant_ids[ti]
        mine = cust_of[ti]
        cust = None if rand() < 0.05 else mine[randint(0, len(mine) - 1)]
        bid = uid()
        status = choice(STATUSES)
        day = randint(0, n_days - 1)
        price = None if rand() < 0.08 else round(5 + rand() * 195, 2)
        b_rows.append((
            bid,
            tid,
            cust,
            None if rand() < 0.3 else randint(1, n_users),
            choice(RESOURCES),
            status,
            f"{days[day]}T{randint(6, 21):02d}:{(0, 15, 30, 45)[randint(0, 3)]:02d}:00Z",
            (15, 30, 45, 60, 90, 120)[randint(0, 5)],
            price,
            "EUR" if ti % 3 else "USD",
            choice(CANCEL) if status == "cancelled" else None,
            None if rand() < 0.55 else
            '{"source":"%s","party":%d,"tags":["%s"]}' % (
                choice(["web", "app", "phone", "walk-in"]), randint(1, 8), choice(WORDS)),
        ))
        if rand() < P_NOTES:
            n = 1
            while n < 6 and rand() < 0.55:
                n += 1
            for _ in range(n):
                # Mostly short, sometimes a long paste.
                ln = randint(8, 120) if rand() < 0.96 else randint(120, 1500)
                n_rows.append((bid, None if rand() < 0.2 else randint(1, n_users),
                               choice(NOTE_KINDS), snippet(ln),
                               T0 + (day + rand()) * DAY))
        if cust is not None and rand() < P_INVOICE:
            inv_id += 1
            inv_no[ti] += 1
            subtotal = 0.0
            for ln in range(1, randint(1, 5) + 1):
                q = float(randint(1, 4)) if rand() < 0.9 else round(rand() * 3, 3)
                up = round(1 + rand() * 120, 2)
                subtotal += q * up
                l_rows.append((inv_id, ln, bid if ln == 1 else (None if rand() < 0.7 else bid),
                               snippet(randint(10, 60)), q, up))
            tax = round(subtotal * 0.2, 2)
            total = round(subtotal + tax, 2)
            paid = rand() < P_PAYMENT
            i_rows.append((
                inv_id, tid, cust, f"INV-{inv_no[ti]:06d}", days[day],
                None if rand() < 0.2 else days[min(day + 30, n_days - 1)],
                "paid" if paid else choice(["open", "overdue", "void"]),
                round(subtotal, 2), tax, total,
                None if rand() < 0.1 else randbytes(32),
            ))
            if paid:
                parts = 1 if rand() < 0.85 else 2
                for _ in range(parts):
                    pay_id += 1
                    p_rows.append((
                        pay_id, inv_id, round(total / parts, 2), choice(METHODS),
                        f"{days[min(day + randint(0, 40), n_days - 1)]}T12:00:00Z",
                        None if rand() < 0.3 else f"ch_{randbits(96):024x}",
                        randbytes(randint(200, 600)) if rand() < P_RECEIPT else None,
                    ))
        if len(b_rows) >= BATCH or k == n_bookings - 1:
            insert("bookings", sql_b, b_rows)
            insert("booking_notes", sql_n, n_rows)
            insert("invoices", sql_i, i_rows)
            insert("invoice_lines", sql_l, l_rows)
            insert("payments", sql_p, p_rows)
            b_rows, n_rows, i_rows, l_rows, p_rows = [], [], [], [], []

    # --- login events: global, a large table nobody's tenant owns
    batch = []
    sql_e = "INSERT INTO login_events (user_id, at, ip, user_agent, success) VALUES (?,?,?,?,?)"
    for i in range(n_logins):
        batch.append((
            randint(1, n_users),
            T0 + (i / n_logins) * 700 * DAY,
            f"{randint(1, 223)}.{randint(0, 255)}.{randint(0, 255)}.{randint(1, 254)}"
            if rand() < 0.8 else f"2001:db8::{randbits(16):x}:{randbits(16):x}",
            choice(AGENTS),
            0 if rand() < 0.04 else 1,
        ))
        if len(batch) >= BATCH:
            insert("login_events", sql_e, batch)
            batch = []
    insert("login_events", sql_e, batch)

    for stmt in INDEXES.split(";"):
        if stmt.strip():
            conn.execute(stmt)
    conn.execute("COMMIT")

    # Switch to WAL, write through it once, and checkpoint so the main file is self-contained.
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        sys.exit(f"gen_saas: could not switch to WAL (got {mode})")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("UPDATE tenant_settings SET updated_at = updated_at + 1 WHERE key = 'locale'")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()

    mid, mid_n = mid_tenant_of(dict(zip(tenant_ids, counts)))
    return rows, mid, mid_n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="database to create (must not exist)")
    ap.add_argument("--size", type=float, default=800, help="approximate size in MB (default 800)")
    ap.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    ap.add_argument("--print-mid-tenant", metavar="PATH",
                    help="print the id of the mid-sized tenant of an existing database and exit")
    a = ap.parse_args()
    if a.print_mid_tenant:
        print_mid_tenant(a.print_mid_tenant)
        return
    if not a.out:
        ap.error("--out is required")
    if a.size <= 0:
        ap.error("--size must be positive")
    for p in (a.out, a.out + "-wal", a.out + "-journal"):
        if os.path.lexists(p):
            sys.exit(f"gen_saas: {p} already exists; refusing to overwrite")
    t = time.monotonic()
    rows, mid, mid_n = generate(a.out, a.size, a.seed)
    secs = time.monotonic() - t
    size = os.path.getsize(a.out)
    print(f"{a.out}: {size / 1e6:.1f} MB, {N_TENANTS} tenants, {sum(rows.values())} rows "
          f"in {secs:.1f}s; mid-sized tenant (rank {MID_RANK}) {mid} with {mid_n} bookings")
    print(f"MID_TENANT={mid}")


if __name__ == "__main__":
    main()
