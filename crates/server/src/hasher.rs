//! argon2id on a fixed set of threads, each reusing one working buffer.
//!
//! argon2's default parameters need 19 MiB of working memory per check.
//! Allocating it per check (what `PasswordVerifier` does) left each
//! check's 19 MiB in the resident set: glibc raises its mmap threshold
//! after the first free of a big block and then serves the next ones from
//! per-thread arenas it never trims, so a spray of wrong passwords grew the
//! server to over 400 MiB for good (`MALLOC_ARENA_MAX` does not help). Here
//! each of a fixed number of threads owns one buffer for its whole life and
//! hands it to `hash_password_into_with_memory`, so argon2 memory is at
//! most threads × 19 MiB however many checks run.
//!
//! The PHC strings are the same as `argon2`'s own `PasswordHasher` and
//! `PasswordVerifier` produce and accept (tests check both directions).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Most argon2 working memory one thread may keep, in 1 KiB blocks
/// (256 MiB): a `users.csv` hash asking for more is treated as not matching
/// rather than letting one account pin a huge buffer.
pub(crate) const MAX_BLOCKS: usize = 256 * 1024;

/// Salt length of new hashes (argon2's recommendation).
const SALT_LEN: usize = 16;

/// A hashing thread's reusable working memory.
#[derive(Default)]
pub(crate) struct Memory(Vec<Block>);

impl Memory {
    /// The first `n` blocks, growing the buffer once if needed (it never
    /// shrinks: the same parameters come back on the next check).
    fn blocks(&mut self, n: usize) -> Option<&mut [Block]> {
        if n > MAX_BLOCKS {
            return None;
        }
        if self.0.len() < n {
            self.0.resize(n, Block::default());
        }
        self.0.get_mut(..n)
    }
}

/// Why a hash could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    /// argon2 refused the input or parameters.
    #[error("argon2: {0}")]
    Argon2(#[from] argon2::Error),
    /// The PHC string could not be assembled.
    #[error("password hash: {0}")]
    Phc(#[from] argon2::password_hash::Error),
    /// A PHC field could not be assembled.
    #[error("password hash field: {0}")]
    Field(#[from] argon2::password_hash::phc::Error),
    /// A hashing thread is gone (it panicked, or the pool shut down).
    #[error("hashing thread gone")]
    Gone,
}

fn phc_string(params: &Params, salt: Salt, output: Output) -> Result<String, HashError> {
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt),
        hash: Some(output),
    }
    .to_string())
}

/// Hashes `password` with argon2id, default parameters and a fresh salt.
pub(crate) fn hash(mem: &mut Memory, password: &[u8]) -> Result<String, HashError> {
    let params = Params::default();
    let salt = Salt::new(&rand::random::<[u8; SALT_LEN]>())?;
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    let blocks = mem
        .blocks(params.block_count())
        .ok_or(argon2::Error::MemoryTooMuch)?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, blocks)?;
    phc_string(&params, salt, Output::new(&out)?)
}

/// Checks `password` against a PHC string; anything unparsable is a
/// mismatch. The comparison is constant-time (`Output`'s `PartialEq`).
pub(crate) fn verify(mem: &mut Memory, password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let Some(blocks) = mem.blocks(params.block_count()) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, blocks)
        .ok()
        .and_then(|()| Output::new(&out).ok())
        .is_some_and(|got| got == *expected)
}

/// A well-formed hash that no password matches (random salt and output,
/// default parameters): checked when the user does not exist, so that "no
/// such user" costs the same argon2 work as "wrong password".
pub(crate) fn decoy() -> String {
    let params = Params::default();
    let salt = Salt::new(&rand::random::<[u8; SALT_LEN]>()).expect("16 bytes is a valid salt");
    let output = Output::new(&rand::random::<[u8; 32]>()).expect("32 bytes is a valid output");
    phc_string(&params, salt, output).expect("default parameters encode")
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// A fixed set of hashing threads. Dropping the pool ends them once the
/// queued work is done.
pub(crate) struct HashPool {
    jobs: SyncSender<Job>,
}

impl HashPool {
    /// Starts `threads` hashing threads (at least one). Memory is allocated
    /// on each thread's first job.
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        // Callers bound outstanding work (the login semaphore), so the
        // channel only needs room for one job per thread.
        let (jobs, rx) = sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(HashPool { jobs })
    }

    /// Runs `work` on a hashing thread with that thread's memory.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |mem| {
            let _ = tx.send(work(mem));
        });
        let jobs = self.jobs.clone();
        // `send` blocks only while every thread is busy and the channel is
        // full, which the callers' semaphore prevents; still keep it off the
        // async threads.
        tokio::task::spawn_blocking(move || jobs.send(job))
            .await
            .map_err(|_| HashError::Gone)?
            .map_err(|_| HashError::Gone)?;
        rx.await.map_err(|_| HashError::Gone)
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    let mut mem = Memory::default();
    loop {
        // The lock is held only while waiting for the next job; a poisoned
        // lock (impossible: nothing panics while holding it) ends the thread.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panic inside argon2 must not take the thread (and its share of
        // the pool) with it; the caller sees its answer channel dropped.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut mem)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[test]
    fn same_phc_strings_as_the_argon2_crate() {
        let mut mem = Memory::default();
        let ours = hash(&mut mem, b"correct horse").unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", ours.as_str())
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong horse", ours.as_str())
            .is_err());
        let theirs = Argon2::default()
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert!(verify(&mut mem, b"correct horse", &theirs));
        assert!(!verify(&mut mem, b"wrong horse", &theirs));
        // Other parameters are honoured (the buffer grows, then is reused).
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert!(verify(&mut mem, b"pw", &small));
        assert!(!verify(&mut mem, b"px", &small));
    }

    #[test]
    fn garbage_and_the_decoy_never_match() {
        let mut mem = Memory::default();
        for phc in [
            "",
            "$argon2id$",
            "not a hash",
            "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$AAAA",
        ] {
            assert!(!verify(&mut mem, b"pw", phc), "{phc}");
        }
        let decoy = decoy();
        assert!(PasswordHash::new(&decoy).is_ok(), "{decoy}");
        assert!(!verify(&mut mem, b"", &decoy));
        assert!(!verify(&mut mem, b"anything", &decoy));
    }

    #[tokio::test]
    async fn the_pool_runs_work_and_survives_a_panic() {
        let pool = HashPool::new(1).unwrap();
        assert!(pool.run(|_| -> () { panic!("boom") }).await.is_err());
        let phc = pool.run(|mem| hash(mem, b"pw")).await.unwrap().unwrap();
        assert!(pool.run(move |mem| verify(mem, b"pw", &phc)).await.unwrap());
    }
}
