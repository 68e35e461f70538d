//! A global allocator that keeps fuzz inputs from sizing allocations.
//!
//! Install it in a binary with `#[global_allocator] static A: GuardedAlloc = GuardedAlloc;`.
//! While a thread runs inside [`guarded`], every request of that thread is compared with the
//! limit: the largest one is recorded (so a test can assert that a lying header was refused
//! before anything was allocated), and one above the limit is a bug. An allocator cannot unwind,
//! so that bug is reported from here (the target and its input, saved to a file, see
//! `report_oversized`) and the process aborts. Other threads are never affected.
//!
//! libtorch's own allocations bypass Rust's allocator; the fuzzer watches the resident set for them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// [`System`], with the per-thread request limit of [`guarded`].
pub struct GuardedAlloc;

thread_local! {
    /// The request limit in bytes of this thread; 0 while not guarded.
    static LIMIT: Cell<usize> = const { Cell::new(0) };
    /// The largest request of this thread since [`guarded`] began.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

#[inline]
fn check(size: usize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let limit = LIMIT.try_with(Cell::get).unwrap_or(0);
    if limit == 0 {
        return;
    }
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    if size > limit {
        // Unguard first: reporting allocates (a little).
        let _ = LIMIT.try_with(|l| l.set(0));
        super::report_oversized(size, limit);
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` with every allocation request of this thread limited to `limit` bytes (see the
/// [module documentation](self)); returns its result and the largest request it made.
pub fn guarded<R>(limit: usize, f: impl FnOnce() -> R) -> (R, usize) {
    assert!(limit > 0, "a zero limit means unguarded");
    /// Restores the enclosing guard, also when `f` unwinds.
    struct Restore(usize, usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            LIMIT.with(|l| l.set(self.0));
            LARGEST.with(|l| l.set(self.1.max(l.get())));
        }
    }
    let restore = Restore(LIMIT.with(|l| l.replace(limit)), LARGEST.with(|l| l.replace(0)));
    let r = f();
    let largest = LARGEST.with(Cell::get);
    drop(restore);
    (r, largest)
}

/// Whether [`GuardedAlloc`] is the global allocator of this program (without it [`guarded`]
/// sees nothing, and the fuzzer cannot tell an unbounded allocation).
pub fn installed() -> bool {
    guarded(usize::MAX, || drop(std::hint::black_box(Box::new(std::hint::black_box(7u64))))).1 > 0
}
