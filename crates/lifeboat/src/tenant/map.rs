//! Tenancy: which rows of a multi-tenant database belong to which tenant, discovered from the
//! schema and overridable in the config. A table is
//! - the **tenant table** itself (`tenants`: a tenant's own row);
//! - **direct**: it has the tenant column (`tenant_id`), or a foreign key to the tenant table;
//! - **through parents**: foreign keys lead, one hop or more, to a table that belongs to a tenant
//!   (bookings → classes). With several such keys, a row belongs to the tenant if **any** of them
//!   leads to the tenant's rows; the map reports these tables as having several paths;
//! - **global**: no path (users, plans). Global rows that a tenant's rows reference are carried
//!   along in exports, marked as referenced;
//! - **excluded** by the config.
//!
//! A self-reference (a comment's parent comment) is not a path by itself: such a table belongs to
//! a tenant only through another key.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};
use lifeboat_sql::quote_ident;

/// `tenancy = { … }` on a `[[database]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenancyConfig {
    #[serde(default = "default_table")]
    pub table: String,
    #[serde(default = "default_column")]
    pub column: String,
    /// Tables left out of tenant exports and restores.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Links the schema does not declare: `"child.column" = "parent"` (the parent's primary key)
    /// for missing or polymorphic foreign keys.
    #[serde(default)]
    pub links: BTreeMap<String, String>,
}

fn default_table() -> String {
    "tenants".into()
}

fn default_column() -> String {
    "tenant_id".into()
}

impl Default for TenancyConfig {
    fn default() -> Self {
        TenancyConfig {
            table: default_table(),
            column: default_column(),
            exclude: Vec::new(),
            links: BTreeMap::new(),
        }
    }
}

/// A foreign key: `columns` of the child reference `parent_columns` of `parent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
    /// Declared in the config rather than the schema.
    pub from_config: bool,
}

/// How a table's rows belong to a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ownership {
    Tenant { key: String },
    Direct { column: String, nullable: bool },
    Parents { links: Vec<Link>, depth: usize },
    Global,
    Excluded,
}

/// For an owned child table (name, alias, depth): the schema to read its rows in, and the
/// condition on them that makes them count (None: none can).
pub(super) type OwnedRows<'a> = dyn Fn(&str, &str, usize) -> Option<(String, String)> + 'a;

/// The map for a whole database.
#[derive(Debug, Clone, Serialize)]
pub struct TenancyMap {
    pub tenant_table: String,
    pub tenant_key: String,
    pub tables: BTreeMap<String, Ownership>,
    /// Foreign keys of every table (declared and configured), for global references.
    #[serde(skip)]
    pub links: BTreeMap<String, Vec<Link>>,
}

fn schema_err(e: rusqlite::Error) -> Error {
    Error::sqlite(Kind::Database, "tenancy: read schema", e)
}

/// Discover the tenancy map of the database behind `conn`.
pub fn discover(conn: &Connection, cfg: &TenancyConfig) -> Result<TenancyMap> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(schema_err)?;
    let find = |name: &str| {
        tables
            .iter()
            .find(|t| t.eq_ignore_ascii_case(name))
            .cloned()
    };
    let tenant_table = find(&cfg.table).ok_or_else(|| {
        Error::new(
            Kind::Config,
            format!(
                "tenancy: the tenant table {:?} does not exist (set tenancy.table)",
                cfg.table
            ),
        )
    })?;
    let tenant_key = primary_key(conn, &tenant_table)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Error::new(
                Kind::Config,
                format!("tenancy: table {tenant_table} has no primary key"),
            )
        })?;

    let mut columns: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new(); // (name, notnull)
    let mut links: BTreeMap<String, Vec<Link>> = BTreeMap::new();
    for t in &tables {
        let cols: Vec<(String, bool)> = conn
            .prepare(&format!(
                "SELECT name, \"notnull\" FROM pragma_table_info({})",
                sql_str(t)
            ))
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))?
                    .collect()
            })
            .map_err(schema_err)?;
        columns.insert(t.clone(), cols);
        links.insert(t.clone(), foreign_keys(conn, t, &tables)?);
    }
    for (from, parent) in &cfg.links {
        let (table, column) = from.split_once('.').ok_or_else(|| {
            Error::new(
                Kind::Config,
                format!("tenancy.links: {from:?} must be \"table.column\""),
            )
        })?;
        let table = find(table)
            .ok_or_else(|| Error::new(Kind::Config, format!("tenancy.links: no table {table}")))?;
        let parent = find(parent)
            .ok_or_else(|| Error::new(Kind::Config, format!("tenancy.links: no table {parent}")))?;
        let pk = primary_key(conn, &parent)?;
        links.get_mut(&table).expect("known table").push(Link {
            columns: vec![column.to_string()],
            parent,
            parent_columns: pk,
            from_config: true,
        });
    }

    let excluded: BTreeSet<String> = cfg.exclude.iter().filter_map(|e| find(e)).collect();
    let mut map: BTreeMap<String, Ownership> = BTreeMap::new();
    map.insert(
        tenant_table.clone(),
        Ownership::Tenant {
            key: tenant_key.clone(),
        },
    );
    for t in &tables {
        if *t == tenant_table {
            continue;
        }
        if excluded.contains(t) {
            map.insert(t.clone(), Ownership::Excluded);
            continue;
        }
        if let Some((c, notnull)) = columns[t]
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(&cfg.column))
        {
            map.insert(
                t.clone(),
                Ownership::Direct {
                    column: c.clone(),
                    nullable: !notnull,
                },
            );
            continue;
        }
        // A foreign key straight to the tenant table counts as the tenant column.
        if let Some(l) = links[t]
            .iter()
            .find(|l| l.parent == tenant_table && l.columns.len() == 1)
        {
            let notnull = columns[t].iter().any(|(c, nn)| *c == l.columns[0] && *nn);
            map.insert(
                t.clone(),
                Ownership::Direct {
                    column: l.columns[0].clone(),
                    nullable: !notnull,
                },
            );
        }
    }
    // Through parents, to a fixpoint: depth grows by one hop per round.
    for depth in 1..=tables.len() {
        let mut found = Vec::new();
        for t in &tables {
            if map.contains_key(t) {
                continue;
            }
            let owned: Vec<Link> = links[t]
                .iter()
                .filter(|l| l.parent != *t && matches!(map.get(&l.parent), Some(o) if owns(o)))
                .cloned()
                .collect();
            if !owned.is_empty() {
                found.push((
                    t.clone(),
                    Ownership::Parents {
                        links: owned,
                        depth,
                    },
                ));
            }
        }
        if found.is_empty() {
            break;
        }
        map.extend(found);
    }
    for t in &tables {
        map.entry(t.clone()).or_insert(Ownership::Global);
    }
    Ok(TenancyMap {
        tenant_table,
        tenant_key,
        tables: map,
        links,
    })
}

fn owns(o: &Ownership) -> bool {
    matches!(
        o,
        Ownership::Tenant { .. } | Ownership::Direct { .. } | Ownership::Parents { .. }
    )
}

/// `alias."a"` or, for several columns, the row value `(alias."a", alias."b")`.
pub(super) fn tuple(alias: &str, columns: &[String]) -> String {
    match columns {
        [one] => format!("{alias}.{}", quote_ident(one)),
        many => format!("({})", list(alias, many)),
    }
}

/// `alias."a", alias."b"`
pub(super) fn list(alias: &str, columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("{alias}.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string literal for table-valued pragma arguments.
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Primary key columns in order (`rowid` for a table without one).
pub fn primary_key(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut pk: Vec<(i64, String)> = conn
        .prepare(&format!(
            "SELECT pk, name FROM pragma_table_info({}) WHERE pk > 0",
            sql_str(table)
        ))
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(schema_err)?;
    pk.sort();
    if pk.is_empty() {
        return Ok(vec!["rowid".into()]);
    }
    Ok(pk.into_iter().map(|(_, n)| n).collect())
}

/// One column of a foreign key: (seq, parent table, child column, parent column).
type FkColumn = (i64, String, String, Option<String>);

fn foreign_keys(conn: &Connection, table: &str, tables: &[String]) -> Result<Vec<Link>> {
    // (id, seq, parent, from, to)
    let rows: Vec<(i64, i64, String, String, Option<String>)> = conn
        .prepare(&format!(
            "SELECT id, seq, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list({})",
            sql_str(table)
        ))
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        })
        .map_err(schema_err)?;
    let mut by_id: BTreeMap<i64, Vec<FkColumn>> = BTreeMap::new();
    for (id, seq, parent, from, to) in rows {
        by_id.entry(id).or_default().push((seq, parent, from, to));
    }
    let mut links = Vec::new();
    for (_, mut cols) in by_id {
        cols.sort();
        let Some(parent) = tables
            .iter()
            .find(|t| t.eq_ignore_ascii_case(&cols[0].1))
            .cloned()
        else {
            continue; // a key to a table that does not exist
        };
        let parent_columns = if cols.iter().all(|c| c.3.is_some()) {
            cols.iter()
                .map(|c| c.3.clone().unwrap_or_default())
                .collect()
        } else {
            primary_key(conn, &parent)? // `REFERENCES parent` with no columns: its primary key
        };
        links.push(Link {
            columns: cols.iter().map(|c| c.2.clone()).collect(),
            parent,
            parent_columns,
            from_config: false,
        });
    }
    Ok(links)
}

impl TenancyMap {
    /// SQL condition selecting the tenant's rows of `table` (aliased `alias`), with `?1` the
    /// tenant id; None for global and excluded tables.
    pub fn condition(&self, table: &str, alias: &str) -> Option<String> {
        self.condition_in("", table, alias)
    }

    /// [`TenancyMap::condition`] with the tables it joins qualified by `schema` (e.g. `bk.`
    /// for an attached backup; empty for unqualified).
    pub fn condition_in(&self, schema: &str, table: &str, alias: &str) -> Option<String> {
        self.condition_depth(schema, table, alias, 0)
    }

    pub(super) fn condition_depth(
        &self,
        schema: &str,
        table: &str,
        alias: &str,
        depth: usize,
    ) -> Option<String> {
        match self.tables.get(table)? {
            Ownership::Tenant { key } => Some(format!("{alias}.{} = ?1", quote_ident(key))),
            Ownership::Direct { column, .. } => {
                Some(format!("{alias}.{} = ?1", quote_ident(column)))
            }
            Ownership::Parents { links, .. } => {
                let parts: Vec<String> = links
                    .iter()
                    .filter_map(|l| {
                        let p = format!("p{depth}");
                        let inner = self.condition_depth(schema, &l.parent, &p, depth + 1)?;
                        // `key IN (subquery)`: SQLite runs the subquery once and drives from
                        // the child's index on the key (a correlated EXISTS scans every row).
                        Some(format!(
                            "{} IN (SELECT {} FROM {schema}{} {p} WHERE {inner})",
                            tuple(alias, &l.columns),
                            list(&p, &l.parent_columns),
                            quote_ident(&l.parent),
                        ))
                    })
                    .collect();
                (!parts.is_empty()).then(|| format!("({})", parts.join(" OR ")))
            }
            Ownership::Global | Ownership::Excluded => None,
        }
    }

    /// The tenant's rows of `table`, for when the tenant's rows of every parent table are
    /// already copied into `parents` (a schema prefix such as `main.`, holding nothing else):
    /// direct tables test their tenant column, tables through parents test their keys against
    /// those copies. Copying parents first, each source table is then read once, instead of
    /// once per descendant as the nested [`TenancyMap::condition`] would.
    pub fn condition_from_copies(&self, table: &str, alias: &str, parents: &str) -> Option<String> {
        match self.tables.get(table)? {
            Ownership::Parents { links, .. } => {
                let parts: Vec<String> = links
                    .iter()
                    .map(|l| {
                        format!(
                            "{} IN (SELECT {} FROM {parents}{} p)",
                            tuple(alias, &l.columns),
                            list("p", &l.parent_columns),
                            quote_ident(&l.parent),
                        )
                    })
                    .collect();
                Some(format!("({})", parts.join(" OR ")))
            }
            _ => self.condition(table, alias),
        }
    }

    /// The tables that belong to tenants, parents before children.
    pub fn owned_parents_first(&self) -> Vec<String> {
        let mut owned: Vec<(usize, String)> = self
            .tables
            .iter()
            .filter_map(|(t, o)| match o {
                Ownership::Tenant { .. } => Some((0, t.clone())),
                Ownership::Direct { .. } => Some((1, t.clone())),
                Ownership::Parents { depth, .. } => Some((1 + depth, t.clone())),
                _ => None,
            })
            .collect();
        owned.sort();
        owned.into_iter().map(|(_, t)| t).collect()
    }

    /// One line per table for humans.
    pub fn describe(&self, table: &str) -> String {
        match &self.tables[table] {
            Ownership::Tenant { key } => format!("tenant table (key {key})"),
            Ownership::Direct { column, nullable } => {
                format!(
                    "direct ({column}{})",
                    if *nullable {
                        ", nullable: NULL rows are global"
                    } else {
                        ""
                    }
                )
            }
            Ownership::Parents { links, depth } => {
                let paths: Vec<String> = links
                    .iter()
                    .map(|l| {
                        format!(
                            "{} -> {}{}",
                            l.columns.join("+"),
                            l.parent,
                            if l.from_config { " (config)" } else { "" }
                        )
                    })
                    .collect();
                let many = if links.len() > 1 {
                    "; several paths: any one makes a row the tenant's"
                } else {
                    ""
                };
                format!(
                    "through parents, {depth} hop(s): {}{many}",
                    paths.join(", ")
                )
            }
            Ownership::Global => "global".into(),
            Ownership::Excluded => "excluded by config".into(),
        }
    }
}
