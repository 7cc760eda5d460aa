//! The demo generator: a realistic multi-tenant studio database shaped like the platform in the
//! runbook (tenants, users shared across tenants, members, locations, classes, bookings scoped
//! only through classes, payments with blob receipts, waivers, audit logs), with skewed tenant
//! sizes and awkward strings. The demo command and the benchmarks both use it.

use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection};

/// Rough bytes of database per booking and its share of the other tables; calibrated so that
/// `size_mb` lands near the requested size.
const BYTES_PER_UNIT: u64 = 560;

pub const SCHEMA: &str = r#"
CREATE TABLE tenants (
  id TEXT PRIMARY KEY, slug TEXT NOT NULL UNIQUE, name TEXT NOT NULL, plan TEXT NOT NULL,
  settings TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE users (
  id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, profile TEXT,
  created_at INTEGER NOT NULL);
CREATE TABLE tenant_members (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
  user_id TEXT NOT NULL REFERENCES users(id), role TEXT NOT NULL, joined_at INTEGER NOT NULL,
  UNIQUE (tenant_id, user_id));
CREATE TABLE locations (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), name TEXT NOT NULL,
  address TEXT, timezone TEXT NOT NULL);
CREATE TABLE classes (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
  location_id TEXT REFERENCES locations(id), instructor_id TEXT REFERENCES users(id),
  title TEXT NOT NULL, description TEXT, starts_at INTEGER NOT NULL, capacity INTEGER NOT NULL,
  price_cents INTEGER NOT NULL, metadata TEXT);
CREATE TABLE bookings (
  id TEXT PRIMARY KEY, class_id TEXT NOT NULL REFERENCES classes(id),
  member_id TEXT NOT NULL REFERENCES tenant_members(id), status TEXT NOT NULL,
  checked_in INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
CREATE TABLE payments (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
  member_id TEXT REFERENCES tenant_members(id), amount_cents INTEGER NOT NULL,
  currency TEXT NOT NULL, receipt BLOB, created_at INTEGER NOT NULL);
CREATE TABLE waivers (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
  member_id TEXT NOT NULL REFERENCES tenant_members(id), body TEXT NOT NULL, signature BLOB,
  signed_at INTEGER NOT NULL);
CREATE TABLE audit_logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT REFERENCES tenants(id),
  actor_id TEXT REFERENCES users(id), action TEXT NOT NULL, details TEXT, at INTEGER NOT NULL);
"#;

/// Indexes, trigger and view come after the data, as a restore tool would load them.
pub const SCHEMA_AFTER: &str = r#"
CREATE INDEX tenant_members_user ON tenant_members(user_id);
CREATE INDEX classes_tenant ON classes(tenant_id, starts_at);
CREATE INDEX bookings_class ON bookings(class_id);
CREATE INDEX bookings_member ON bookings(member_id);
CREATE INDEX payments_tenant ON payments(tenant_id, created_at);
CREATE INDEX audit_logs_tenant ON audit_logs(tenant_id, at);
CREATE TRIGGER bookings_audit AFTER INSERT ON bookings BEGIN
  INSERT INTO audit_logs (tenant_id, actor_id, action, details, at)
  SELECT c.tenant_id, NULL, 'booking.created', json_object('booking', NEW.id), NEW.created_at
  FROM classes c WHERE c.id = NEW.class_id;
END;
CREATE VIEW class_occupancy AS
  SELECT c.id AS class_id, c.tenant_id, c.capacity, count(b.id) AS booked
  FROM classes c LEFT JOIN bookings b ON b.class_id = c.id GROUP BY c.id;
"#;

const FIRST: [&str; 12] = [
    "Ana",
    "Zoë",
    "O'Brien",
    "José",
    "Łukasz",
    "Mei",
    "Chloé",
    "Søren",
    "Aarav",
    "Nguyễn",
    "Dr. \"Doc\"",
    "Kai",
];
const TITLES: [&str; 8] = [
    "Vinyasa Flow 🧘",
    "Power Pilates",
    "Barre; Burn",
    "Spin -- Intervals",
    "Yin/Restore",
    "HIIT 'til you drop",
    "Aerial Silks ✨",
    "Mat 101 /* beginners */",
];

/// What the generator made.
#[derive(Debug, Clone)]
pub struct Generated {
    pub tenants: usize,
    pub rows: u64,
    pub bytes: u64,
}

struct Gen {
    rng: SmallRng,
}

impl Gen {
    fn uuid(&mut self) -> String {
        let v: u128 = self.rng.gen();
        let h = format!("{v:032x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.rng.gen_range(0..xs.len())]
    }
    fn blob(&mut self, n: usize) -> Vec<u8> {
        // Half random, half repetitive: receipts compress like real documents do.
        let mut b = vec![0u8; n];
        self.rng.fill(&mut b[..n / 2]);
        for (i, x) in b[n / 2..].iter_mut().enumerate() {
            *x = b"RECEIPT-LINE:"[i % 13];
        }
        b
    }
}

/// Generate the demo database at `path` (which must not exist), about `size_mb` megabytes.
pub fn generate(path: &Path, size_mb: u64, seed: u64) -> rusqlite::Result<Generated> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-32000;",
    )?;
    conn.execute_batch(SCHEMA)?;
    let mut g = Gen {
        rng: SmallRng::seed_from_u64(seed),
    };
    let units = (size_mb * 1_000_000 / BYTES_PER_UNIT).max(200);
    let n_tenants = (size_mb / 4).clamp(10, 200) as usize;
    // Zipf-like skew: the first tenant is ~10x the tenth.
    let weights: Vec<f64> = (0..n_tenants)
        .map(|i| 1.0 / ((i + 1) as f64).powf(1.0))
        .collect();
    let total_w: f64 = weights.iter().sum();
    let mut rows = 0u64;
    let t0 = 1_700_000_000i64;

    let tx = conn.transaction()?;
    {
        let mut ins_tenant = tx.prepare("INSERT INTO tenants VALUES (?,?,?,?,?,?)")?;
        let mut ins_user = tx.prepare("INSERT INTO users VALUES (?,?,?,?,?)")?;
        let mut ins_member = tx.prepare("INSERT INTO tenant_members VALUES (?,?,?,?,?)")?;
        let mut ins_loc = tx.prepare("INSERT INTO locations VALUES (?,?,?,?,?)")?;
        let mut ins_class = tx.prepare("INSERT INTO classes VALUES (?,?,?,?,?,?,?,?,?,?)")?;
        let mut ins_booking = tx.prepare("INSERT INTO bookings VALUES (?,?,?,?,?,?)")?;
        let mut ins_payment = tx.prepare("INSERT INTO payments VALUES (?,?,?,?,?,?,?)")?;
        let mut ins_waiver = tx.prepare("INSERT INTO waivers VALUES (?,?,?,?,?,?)")?;
        let mut ins_audit = tx.prepare(
            "INSERT INTO audit_logs (tenant_id, actor_id, action, details, at) VALUES (?,?,?,?,?)",
        )?;

        // Users are global; members of several tenants share one user row.
        let n_users = (units / 25).max(20) as usize;
        let mut users = Vec::with_capacity(n_users);
        for i in 0..n_users {
            let id = g.uuid();
            let name = format!("{} {}", g.pick(&FIRST), i);
            let profile = format!(
                "{{\"bio\":\"Line one\\nline \\\"two\\\"\",\"tags\":[\"yoga\",\"{}\"],\"i\":{i}}}",
                g.pick(&FIRST).replace('"', "\\\"")
            );
            ins_user.execute(params![
                id,
                format!("user{i}@example.com"),
                name,
                profile,
                t0 + i as i64
            ])?;
            users.push(id);
        }
        rows += n_users as u64;

        for (ti, w) in weights.iter().enumerate() {
            let share = (units as f64 * w / total_w) as u64;
            let tenant = g.uuid();
            let settings = format!(
                "{{\"timezone\":\"Europe/Paris\",\"welcome\":\"Bienvenue chez Studio {ti} 🧘\\nNamasté\",\"quote\":\"it's \\\"great\\\"\"}}"
            );
            ins_tenant.execute(params![
                tenant,
                format!("studio-{ti}"),
                format!("Studio {ti} — {}'s place", g.pick(&FIRST)),
                ["free", "pro", "enterprise"][ti % 3],
                settings,
                t0 + ti as i64 * 86_400
            ])?;
            rows += 1;

            let n_locations = (1 + share / 5_000).min(20);
            let mut locations = Vec::new();
            for l in 0..n_locations {
                let id = g.uuid();
                ins_loc.execute(params![
                    id,
                    tenant,
                    format!("Room {l}"),
                    format!("{l} Rue de l'Église\nParis"),
                    "Europe/Paris"
                ])?;
                locations.push(id);
            }
            rows += n_locations;

            let n_members = (share / 20).max(3) as usize;
            let mut members = Vec::with_capacity(n_members);
            let base = g.rng.gen_range(0..n_users);
            for m in 0..n_members {
                let id = g.uuid();
                let user = &users[(base + m * 7) % n_users];
                let role = if m == 0 {
                    "owner"
                } else if m % 40 == 0 {
                    "instructor"
                } else {
                    "student"
                };
                match ins_member.execute(params![id, tenant, user, role, t0 + m as i64]) {
                    Ok(_) => members.push(id),
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::ConstraintViolation => {}
                    Err(e) => return Err(e),
                }
            }
            rows += members.len() as u64;
            for m in &members {
                let sig = g.blob(256);
                ins_waiver.execute(params![
                    g.uuid(),
                    tenant,
                    m,
                    "I accept the risks.\r\nSigned; \"with\" care -- /* not a comment */",
                    sig,
                    t0
                ])?;
            }
            rows += members.len() as u64;

            let n_classes = (share / 15).max(1);
            let mut classes = Vec::with_capacity(n_classes as usize);
            for c in 0..n_classes {
                let id = g.uuid();
                let title = g.pick(&TITLES);
                let price: i64 = g.rng.gen_range(500..5_000);
                ins_class.execute(params![
                    id,
                    tenant,
                    locations[c as usize % locations.len()],
                    users[g.rng.gen_range(0..n_users)],
                    title,
                    format!("Bring a mat.\nLevel: {}\tTeacher says \"breathe\"", c % 3),
                    t0 + c as i64 * 3_600,
                    g.rng.gen_range(8..40) as i64,
                    price,
                    format!(
                        "{{\"tags\":[\"{}\"],\"room\":{}}}",
                        title.replace('"', ""),
                        c % 9
                    )
                ])?;
                classes.push(id);
            }
            rows += n_classes;

            for b in 0..share {
                let class = &classes[g.rng.gen_range(0..classes.len())];
                let member = &members[g.rng.gen_range(0..members.len())];
                let status = ["booked", "cancelled", "attended", "no_show"][(b % 4) as usize];
                ins_booking.execute(params![
                    g.uuid(),
                    class,
                    member,
                    status,
                    (b % 3 == 0) as i64,
                    t0 + b as i64 * 60
                ])?;
                if b % 4 == 0 {
                    let receipt = g.blob(300);
                    ins_payment.execute(params![
                        g.uuid(),
                        tenant,
                        member,
                        g.rng.gen_range(500i64..20_000),
                        "EUR",
                        receipt,
                        t0 + b as i64 * 60
                    ])?;
                    rows += 1;
                }
                if b % 3 == 0 {
                    ins_audit.execute(params![
                        tenant,
                        users[g.rng.gen_range(0..n_users)],
                        "booking.updated",
                        format!("{{\"booking\":{b},\"note\":\"it's fine\\n✓\"}}"),
                        t0 + b as i64 * 60
                    ])?;
                    rows += 1;
                }
            }
            rows += share;
        }
        // Platform-level audit rows have no tenant.
        for i in 0..50 {
            ins_audit.execute(params![
                Option::<String>::None,
                users[i % n_users],
                "platform.config",
                "{}",
                t0
            ])?;
        }
        rows += 50;
    }
    tx.execute_batch(SCHEMA_AFTER)?;
    tx.commit()?;
    let bytes = conn.query_row(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64;
    conn.execute_batch("PRAGMA journal_mode=DELETE;")?;
    Ok(Generated {
        tenants: n_tenants,
        rows,
        bytes,
    })
}
