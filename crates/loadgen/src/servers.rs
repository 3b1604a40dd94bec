//! The server side of a benchmark run: one `p2p-server`, or several
//! instances serving one user base from one PostgreSQL database (SPEC §9).
//! Sessions are spread over the instances round-robin; the sender of every
//! broadcast is on the first. CPU, RSS and descriptors are summed over the
//! instances (the database's own CPU is [`crate::dbstats`]'s business).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::server_proc::{users_csv, ServerOpts, ServerProc, StartError};

/// The instances of one run, all killed on drop.
pub struct Servers {
    procs: Vec<ServerProc>,
    database: Option<String>,
    bin: PathBuf,
}

impl Servers {
    /// Starts `instances` servers with `opts`, one after the other (with
    /// `opts.database`, the first stores the cluster's TLS identity and the
    /// others load it: one fingerprint). More than one needs a database.
    pub fn start(opts: &ServerOpts, instances: usize) -> Result<Servers, StartError> {
        if instances != 1 && opts.database.is_none() {
            return Err(StartError::Cluster(format!(
                "{instances} instances need --database (they share the accounts and broadcasts)"
            )));
        }
        let mut procs = Vec::with_capacity(instances);
        for _ in 0..instances {
            procs.push(ServerProc::start(opts)?);
        }
        if procs.iter().any(|p| p.fingerprint != procs[0].fingerprint) {
            return Err(StartError::Cluster(
                "the instances present different certificates (SPEC §9: one identity)".into(),
            ));
        }
        Ok(Servers {
            procs,
            database: opts.database.clone(),
            bin: opts
                .bin
                .clone()
                .unwrap_or_else(|| p2p_testkit::bin("p2p-server")),
        })
    }

    /// The instances, in start order.
    pub fn instances(&self) -> &[ServerProc] {
        &self.procs
    }

    /// The instance session number `i` uses (round-robin).
    pub fn for_session(&self, i: usize) -> &ServerProc {
        &self.procs[i % self.procs.len()]
    }

    /// The database URL, if the instances share one.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The one fingerprint every instance presents.
    pub fn fingerprint(&self) -> &str {
        &self.procs[0].fingerprint
    }

    /// Registers `n` accounts (`load0000`, ...; cheap argon2id hashes): in
    /// the one server's `users.csv`, or with `p2p-server user import` into
    /// the database (one transaction). Returns the names.
    pub fn register(&self, n: usize) -> Result<Vec<String>, StartError> {
        let Some(url) = &self.database else {
            return self.procs[0].register(n);
        };
        let (names, text) = users_csv(n).map_err(StartError::Data)?;
        let file = self.procs[0].data_dir().join("import.csv");
        std::fs::write(&file, text).map_err(StartError::Data)?;
        let out = Command::new(&self.bin)
            .args(["--database", url, "user", "import"])
            .arg(&file)
            .output()
            .map_err(|source| StartError::Spawn {
                program: self.bin.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(StartError::Import(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(names)
    }

    /// CPU time of all instances so far.
    pub fn cpu(&self) -> std::io::Result<Duration> {
        self.procs.iter().map(ServerProc::cpu).sum()
    }

    /// Resident set of all instances now, bytes.
    pub fn rss_bytes(&self) -> std::io::Result<u64> {
        self.procs
            .iter()
            .map(|p| Ok(p.stats()?.rss_kib * 1024))
            .sum()
    }

    /// Open descriptors of all instances.
    pub fn fds(&self) -> std::io::Result<usize> {
        self.procs.iter().map(ServerProc::fds).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several instances without a shared database would be several
    /// unrelated servers: refused before any is started.
    #[test]
    fn several_instances_need_a_database() {
        let opts = ServerOpts::for_sessions(10, 1);
        match Servers::start(&opts, 2) {
            Err(StartError::Cluster(m)) => assert!(m.contains("--database"), "{m}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("started two instances without a database"),
        }
    }
}
