//! A global allocator that counts the allocations made by each thread, so a test can prove a
//! hot path allocates nothing while other threads (simulators, writers) allocate freely.
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;`.
//!
//! Threads the test does not run itself (the loop's bus workers) are counted through a
//! [`ThreadWatch`]: each thread that calls [`ThreadWatch::enlist_this_thread`] (e.g. as the
//! workers' setup) adds its allocations to that watch's total.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct CountingAlloc;

/// A total of the allocations of the threads enlisted in it. One per test (a `static`), so
/// tests running side by side do not count each other's threads.
pub struct ThreadWatch(AtomicU64);

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static WATCH: Cell<Option<&'static ThreadWatch>> = const { Cell::new(None) };
}

fn count_one() {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    if let Ok(Some(watch)) = WATCH.try_with(Cell::get) {
        watch.0.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (and reallocations) made so far by the calling thread.
pub fn allocations_on_this_thread() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

impl ThreadWatch {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// From now on, the calling thread's allocations count in this watch.
    pub fn enlist_this_thread(&'static self) {
        WATCH.with(|w| w.set(Some(self)));
    }

    /// Allocations made so far by the enlisted threads, together.
    pub fn allocations(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
