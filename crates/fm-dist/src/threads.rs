//! How many threads `fm` may compute with: the user's setting (`--threads N`, else
//! `OMP_NUM_THREADS`), or measured. This crate holds the setting and sizes its own helper
//! threads by it ([`helpers`]); `fm_train::threads` measures libtorch's.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Who chooses the number of threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadSetting {
    /// Measured: libtorch's before each phase and during training (`fm_train::threads`), our
    /// own helpers as [`helpers`] says.
    Auto,
    /// The user's count: used as given, never changed.
    Fixed(usize),
}

impl ThreadSetting {
    /// The setting from a `--threads` flag and the `OMP_NUM_THREADS` environment variable: the
    /// flag wins, then the variable (libtorch's own convention), else [`ThreadSetting::Auto`].
    ///
    /// # Errors
    /// A flag of 0, or a variable that is not a positive whole number (one line naming it).
    pub fn resolve(flag: Option<usize>, omp_num_threads: Option<&str>) -> Result<Self, String> {
        match (flag, omp_num_threads.map(str::trim).filter(|v| !v.is_empty())) {
            (Some(0), _) => Err("--threads must be at least 1".into()),
            (Some(n), _) => Ok(Self::Fixed(n)),
            // OpenMP's list form (`4,2`: per nesting level) gives the outer level's count.
            (None, Some(v)) => match v.split(',').next().unwrap_or("").trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(Self::Fixed(n)),
                _ => Err(format!("OMP_NUM_THREADS={v:?} is not a positive whole number (unset it to let fm choose, or give --threads N)")),
            },
            (None, None) => Ok(Self::Auto),
        }
    }

    /// [`Self::resolve`] with the process's `OMP_NUM_THREADS`.
    ///
    /// # Errors
    /// As [`Self::resolve`].
    pub fn from_env(flag: Option<usize>) -> Result<Self, String> {
        Self::resolve(flag, std::env::var("OMP_NUM_THREADS").ok().as_deref())
    }
}

/// The process's setting: 0 is [`ThreadSetting::Auto`], `n` is `Fixed(n)`.
static SETTING: AtomicUsize = AtomicUsize::new(0);

/// Makes `setting` the process's (`fm_train::threads::set` also applies it to libtorch).
pub fn set(setting: ThreadSetting) {
    SETTING.store(
        match setting {
            ThreadSetting::Auto => 0,
            ThreadSetting::Fixed(n) => n,
        },
        Ordering::SeqCst,
    );
}

/// The process's setting ([`ThreadSetting::Auto`] unless [`set`] said otherwise).
pub fn setting() -> ThreadSetting {
    match SETTING.load(Ordering::SeqCst) {
        0 => ThreadSetting::Auto,
        n => ThreadSetting::Fixed(n),
    }
}

/// The cores this process may use (its affinity and cgroup quota; 1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Helper threads for our own parallel work (W2's assignments, say): the user's count, else
/// every core. Work split into a queue of small jobs loses nothing when a core is taken (the
/// other threads take its jobs), unlike libtorch's fixed split.
pub fn helpers() -> usize {
    match setting() {
        ThreadSetting::Fixed(n) => n,
        ThreadSetting::Auto => cores(),
    }
}

/// Runs `job(i)` for `i` in `0..n` on [`helpers`] threads (rayon's work stealing: a thread on
/// a core another process holds takes fewer jobs, so nothing waits for it) and returns the
/// results in order. One helper runs the jobs on the calling thread.
pub fn map_jobs<T: Send>(n: usize, job: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    use rayon::prelude::*;
    let threads = helpers().min(n.max(1));
    let pool = (threads > 1).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok()).flatten();
    match pool {
        Some(pool) => pool.install(|| (0..n).into_par_iter().map(&job).collect()),
        None => (0..n).map(job).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_setting_wins() {
        assert_eq!(ThreadSetting::resolve(Some(3), Some("1")), Ok(ThreadSetting::Fixed(3)));
        assert_eq!(ThreadSetting::resolve(None, Some(" 2 ")), Ok(ThreadSetting::Fixed(2)));
        assert_eq!(ThreadSetting::resolve(None, None), Ok(ThreadSetting::Auto));
        assert_eq!(ThreadSetting::resolve(None, Some("")), Ok(ThreadSetting::Auto));
        assert_eq!(ThreadSetting::resolve(None, Some("4,2")), Ok(ThreadSetting::Fixed(4)));
        assert!(ThreadSetting::resolve(Some(0), None).is_err());
        assert!(ThreadSetting::resolve(None, Some("0")).is_err());
        assert!(ThreadSetting::resolve(None, Some("two")).unwrap_err().contains("OMP_NUM_THREADS"));
    }

    #[test]
    fn jobs_come_back_in_order() {
        assert_eq!(map_jobs(10, |i| i * i), (0..10).map(|i| i * i).collect::<Vec<_>>());
        assert!(map_jobs(0, |i| i).is_empty());
    }
}
