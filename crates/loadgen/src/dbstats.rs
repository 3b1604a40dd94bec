//! What the shared database does during a run (SPEC §9 figures): the
//! statements the instances send (each one a round trip: tokio-postgres
//! sends one statement at a time per connection), read from
//! `pg_stat_statements` when the server preloads it (`scripts/bench-cluster.sh`
//! starts PostgreSQL so), and the CPU of the database's processes, read from
//! `/proc` (the database runs on this machine in every benchmark here).

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// Marks the queries the tool itself sends (pg_stat_statements keeps the
/// comment), so the counts leave them out.
const OWN: &str = "%p2p-load stats%";

/// A connection to the run's database, for its statistics.
pub struct DbStats {
    client: Client,
    /// Whether `pg_stat_statements` is there (preloaded and created).
    statements: bool,
}

/// Statements executed since the last [`DbStats::reset`], per query text.
#[derive(Debug, Clone, Default)]
pub struct Statements {
    /// (normalised query, calls), most called first.
    pub by_query: Vec<(String, i64)>,
}

impl Statements {
    /// All calls.
    pub fn total(&self) -> i64 {
        self.by_query.iter().map(|(_, c)| c).sum()
    }
}

impl DbStats {
    /// Connects to `url` and creates `pg_stat_statements` if the server
    /// preloads it (otherwise statement counts are `None`).
    pub async fn connect(url: &str) -> Result<DbStats, String> {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| format!("database statistics: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("p2p-load: statistics connection: {e}");
            }
        });
        let statements = client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .is_ok()
            && client
                .simple_query("SELECT 1 FROM pg_stat_statements LIMIT 1 /* p2p-load stats */")
                .await
                .is_ok();
        Ok(DbStats { client, statements })
    }

    /// Whether statements are counted.
    pub fn counts_statements(&self) -> bool {
        self.statements
    }

    /// Forgets the statements counted so far (every database's).
    pub async fn reset(&self) -> Result<(), String> {
        if self.statements {
            self.client
                .batch_execute("SELECT pg_stat_statements_reset() /* p2p-load stats */")
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The statements this database ran since the last reset, the tool's
    /// own left out; `None` without `pg_stat_statements`.
    pub async fn statements(&self) -> Result<Option<Statements>, String> {
        if !self.statements {
            return Ok(None);
        }
        let rows = self
            .client
            .query(
                "SELECT query, calls FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND query NOT LIKE $1
                 ORDER BY calls DESC, query /* p2p-load stats */",
                &[&OWN],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(Statements {
            by_query: rows
                .iter()
                .map(|r| (one_line(r.get(0)), r.get(1)))
                .collect(),
        }))
    }

    /// Sessions online in the whole cluster (presence rows).
    pub async fn online(&self) -> Result<i64, String> {
        let row = self
            .client
            .query_one("SELECT count(*) FROM presence /* p2p-load stats */", &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }

    /// Sessions online per instance (presence rows), most first.
    pub async fn online_per_instance(&self) -> Result<Vec<i64>, String> {
        let rows = self
            .client
            .query(
                "SELECT count(*) FROM presence GROUP BY instance_id ORDER BY 1 DESC
                 /* p2p-load stats */",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// CPU time so far of each process of the database server (backends
    /// and background workers), by pid.
    pub async fn cpu(&self) -> Result<HashMap<u32, Duration>, String> {
        let rows = self
            .client
            .query("SELECT pid FROM pg_stat_activity /* p2p-load stats */", &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let pid = r.get::<_, i32>(0) as u32;
                Some((pid, crate::spray::proc_stats(pid).ok()?.cpu))
            })
            .collect())
    }
}

/// CPU the database used between two [`DbStats::cpu`] readings: processes
/// started in between count from zero, those gone are lost (short-lived:
/// a pooled server keeps its connections).
pub fn cpu_between(before: &HashMap<u32, Duration>, after: &HashMap<u32, Duration>) -> Duration {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or_default()))
        .sum()
}

fn one_line(q: String) -> String {
    q.split_whitespace().collect::<Vec<_>>().join(" ")
}
