//! Global rows a tenant needs: the rows of global tables (users, plans …) that the tenant's rows
//! point at, directly, through other global rows, or through their own table (a referenced
//! user's manager), as SQL conditions for exports and tenant restores.

use lifeboat_sql::quote_ident;

use crate::tenant::map::{list, tuple, Link, OwnedRows, Ownership, TenancyMap};

impl TenancyMap {
    /// SQL condition selecting the rows of global `table` that the tenant's rows (or other
    /// referenced global rows, transitively) point at; None when nothing of the tenant's can.
    pub fn referenced_condition(&self, table: &str, alias: &str) -> Option<String> {
        self.referenced_in("", table, alias)
    }

    /// [`TenancyMap::referenced_condition`] with tables qualified by `schema`.
    pub fn referenced_in(&self, schema: &str, table: &str, alias: &str) -> Option<String> {
        self.referenced_depth(schema, table, alias, 0)
    }

    fn referenced_depth(
        &self,
        schema: &str,
        table: &str,
        alias: &str,
        depth: usize,
    ) -> Option<String> {
        self.referenced_by(table, alias, depth, schema, &|child, c, depth| {
            self.condition_depth(schema, child, c, 10 + depth)
                .map(|cond| (schema.to_string(), cond))
        })
    }

    /// Rows of global `table` that rows of other tables reference: a global child counts when
    /// its own rows are referenced (transitively, in `globals`); an owned child's rows are
    /// chosen by `owned(child, alias, depth)`, which gives the schema to read them in and the
    /// condition on them (None: the child cannot reference any).
    fn referenced_by(
        &self,
        table: &str,
        alias: &str,
        depth: usize,
        globals: &str,
        owned: &OwnedRows<'_>,
    ) -> Option<String> {
        if depth > 5 || !matches!(self.tables.get(table), Some(Ownership::Global)) {
            return None;
        }
        let mut parts = Vec::new();
        // Per outside link: the parent columns it points at, and the SELECT of its values.
        let mut sources: Vec<(&[String], String)> = Vec::new();
        for (child, links) in &self.links {
            for l in links
                .iter()
                .filter(|l| l.parent == table && *child != table)
            {
                let c = format!("r{depth}");
                let found = match self.tables.get(child)? {
                    Ownership::Global => self
                        .referenced_by(child, &c, depth + 1, globals, owned)
                        .map(|cond| (globals.to_string(), cond)),
                    Ownership::Excluded => None,
                    _ => owned(child, &c, depth),
                };
                let Some((schema, cond)) = found else {
                    continue;
                };
                let select = format!(
                    "SELECT {} FROM {schema}{} {c} WHERE {cond}",
                    list(&c, &l.columns),
                    quote_ident(child),
                );
                parts.push(format!("{} IN ({select})", tuple(alias, &l.parent_columns)));
                sources.push((&l.parent_columns, select));
            }
        }
        if parts.is_empty() {
            return None;
        }
        if let Some(closed) = self.follow_self_links(table, alias, depth, globals, &sources) {
            return Some(closed);
        }
        Some(format!("({})", parts.join(" OR ")))
    }

    /// Rows of global `table` referenced through its own rows too (a manager of a referenced
    /// user, the parent of a referenced org …), transitively: a recursive query from the rows
    /// `sources` select. None when `table` has no link to itself, or when its links point at
    /// different columns (then only the directly referenced rows are found).
    fn follow_self_links(
        &self,
        table: &str,
        alias: &str,
        depth: usize,
        globals: &str,
        sources: &[(&[String], String)],
    ) -> Option<String> {
        let own: Vec<&Link> = self
            .links
            .get(table)?
            .iter()
            .filter(|l| l.parent == table)
            .collect();
        let key = &own.first()?.parent_columns;
        let same = sources.iter().all(|(p, _)| *p == key.as_slice())
            && own.iter().all(|l| &l.parent_columns == key);
        if !same {
            return None;
        }
        let names: Vec<String> = (0..key.len()).map(|i| format!("k{i}")).collect();
        let (reach, row) = (format!("q{depth}"), format!("s{depth}"));
        let start: Vec<&str> = sources.iter().map(|(_, select)| select.as_str()).collect();
        let steps: Vec<String> = own
            .iter()
            .map(|l| {
                format!(
                    "SELECT {} FROM {globals}{} {row} JOIN {reach} ON {} = {}",
                    list(&row, &l.columns),
                    quote_ident(table),
                    tuple(&row, key),
                    tuple(&reach, &names),
                )
            })
            .collect();
        Some(format!(
            "({} IN (WITH RECURSIVE {reach}({cols}) AS ({} UNION {}) SELECT {cols} FROM {reach}))",
            tuple(alias, key),
            start.join(" UNION "),
            steps.join(" UNION "),
            cols = names.join(", "),
        ))
    }

    /// Rows of global `table` (in schema `globals`) that the tenant's rows reference, where
    /// `copies` holds just the tenant's rows of every owned table; global rows referenced by
    /// referenced global rows count too, transitively.
    pub fn referenced_from_copies(
        &self,
        table: &str,
        alias: &str,
        copies: &str,
        globals: &str,
    ) -> Option<String> {
        // The copies hold only the tenant's rows: all of them count.
        self.referenced_by(table, alias, 0, globals, &|_, _, _| {
            Some((copies.to_string(), "1".to_string()))
        })
    }
}
