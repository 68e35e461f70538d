//! The thread policy's decisions (`fm_train::threads`): a user's count always wins; otherwise
//! the count is measured on the work itself, so that it follows the work's size.

use fm_train::threads::{self, ThreadSetting};
use std::time::{Duration, Instant};

/// A stand-in for a unit of libtorch work of `size` (in ms at one thread): split over the
/// current thread count, plus a fixed cost per thread (the split's synchronisation).
fn work(size: f64) -> Result<(), String> {
    let n = tch::get_num_threads().max(1) as f64;
    let ms = size / n + 0.4 * n;
    let until = Instant::now() + Duration::from_secs_f64(ms / 1e3);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    Ok(())
}

#[test]
fn a_users_count_wins_and_auto_follows_the_works_size() {
    // The setting is process-wide: one test sets it, and puts Auto back.
    threads::set(ThreadSetting::Fixed(1));
    let mut calls = 0;
    assert_eq!(
        threads::choose(|| -> Result<(), String> {
            calls += 1;
            Ok(())
        }),
        Ok(1)
    );
    assert_eq!(calls, 0, "a fixed count is not measured");
    assert_eq!(tch::get_num_threads(), 1);
    assert_eq!(threads::helpers(), 1);
    threads::set(ThreadSetting::Auto);
    if threads::cores() < 2 {
        return; // one core: nothing to choose
    }
    // Small work: the per-thread cost dominates, one thread wins.
    assert_eq!(threads::choose(|| work(0.2)), Ok(1));
    // Large work: splitting it wins.
    assert!(threads::choose(|| work(8.0)).unwrap() > 1);
}
