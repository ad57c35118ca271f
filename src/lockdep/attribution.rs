//! Which test a report belongs to: the tests with a live guard, the test
//! of the calling context (its thread, or its runtime), the test that made a
//! lock, and the dependencies each test learned (for the run's store).

use std::sync::Arc;

use super::{lock_ignoring_poison, Engine, TestKey};
use crate::report::Report;
use crate::vocab::ClassId;

thread_local! {
    /// The test whose body runs on this thread (set by `test_guard`).
    static CURRENT_TEST: std::cell::Cell<Option<TestKey>> = const { std::cell::Cell::new(None) };
}

/// Most live lock instances whose creating test is remembered.
pub(super) const MAX_CREATED_REMEMBERED: usize = 1 << 20;

/// Per-test options and the reports attributed to a test.
pub(crate) struct TestRecord {
    /// Tells a record from a later one in the same slab slot.
    pub(super) serial: u64,
    /// The test's name (its thread's name), for reports.
    pub(super) name: Arc<str>,
    /// Where its guard was made, for messages.
    pub(super) created_at: Option<&'static std::panic::Location<'static>>,
    /// The runtime the test's body runs on, when it was created in one.
    pub(super) runtime: Option<tokio::runtime::Id>,
    pub(super) panic_on_report: bool,
    pub(super) panic_on_deadlock: bool,
    pub(super) watchdog: bool,
    pub(super) reports: Vec<Report>,
    pub(super) dropped: usize,
    /// Its guard ran its check: reports decided later fail it no more.
    pub(super) checked: bool,
    /// The class dependencies first seen in this test (for the run's store).
    pub(super) own: Vec<(ClassId, ClassId, u64)>,
}

/// Most dependencies remembered per test for the cross-process check.
pub(super) const MAX_OWN_DEPENDENCIES: usize = 4096;

#[derive(Default)]
pub(super) struct Tests {
    pub(super) records: slab::Slab<TestRecord>,
    pub(super) next_serial: u64,
}

impl Tests {
    /// The keys of the registered tests that `keep` selects.
    pub(super) fn keys(&self, keep: impl Fn(&TestRecord) -> bool) -> Vec<TestKey> {
        self.records
            .iter()
            .filter(|(_, r)| keep(r))
            .map(|(slot, r)| TestKey {
                slot,
                serial: r.serial,
            })
            .collect()
    }

    pub(super) fn get(&self, key: TestKey) -> Option<&TestRecord> {
        self.records
            .get(key.slot)
            .filter(|r| r.serial == key.serial)
    }

    pub(super) fn get_mut(&mut self, key: TestKey) -> Option<&mut TestRecord> {
        self.records
            .get_mut(key.slot)
            .filter(|r| r.serial == key.serial)
    }
}

/// The test the calling context belongs to, if known: the test running on
/// this thread, else the test whose runtime this is. A test registered
/// outside a runtime learns its runtime when its thread is seen inside one.
pub(super) fn current_test(tests: &mut Tests) -> Option<TestKey> {
    let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
    if let Some(key) = CURRENT_TEST.try_with(std::cell::Cell::get).ok().flatten() {
        if let Some(record) = tests.get_mut(key) {
            if record.runtime.is_none() {
                record.runtime = runtime;
            }
            return Some(key);
        }
    }
    let runtime = runtime?;
    tests
        .keys(|r| r.runtime == Some(runtime))
        .into_iter()
        .next()
}

/// The test registered on the calling thread (its body runs here), if any.
pub(super) fn test_of_this_thread() -> Option<TestKey> {
    CURRENT_TEST.try_with(std::cell::Cell::get).ok().flatten()
}

/// Options a test asks for (see [`crate::DetectorBuilder::test_guard`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TestOptions {
    pub(crate) panic_on_report: bool,
    pub(crate) panic_on_deadlock: bool,
    /// The test asked for the watchdog: long waits it cannot be told apart
    /// from are attributed to it.
    pub(crate) watchdog: bool,
    /// Where the guard was made.
    pub(crate) created_at: Option<&'static std::panic::Location<'static>>,
}

impl Engine {
    /// Registers a test running on the calling thread.
    pub(crate) fn register_test(&self, name: Arc<str>, options: TestOptions) -> TestKey {
        let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
        let mut tests = lock_ignoring_poison(&self.tests);
        tests.next_serial += 1;
        let serial = tests.next_serial;
        let slot = tests.records.insert(TestRecord {
            serial,
            name,
            created_at: options.created_at,
            runtime,
            panic_on_report: options.panic_on_report,
            panic_on_deadlock: options.panic_on_deadlock,
            watchdog: options.watchdog,
            reports: Vec::new(),
            dropped: 0,
            own: Vec::new(),
            checked: false,
        });
        let key = TestKey { slot, serial };
        let _ = CURRENT_TEST.try_with(|c| c.set(Some(key)));
        key
    }

    /// Takes the reports attributed to the test `key` so far, and how many
    /// more were not kept (the report limit).
    pub(crate) fn take_test_reports(&self, key: TestKey) -> (Vec<Report>, usize) {
        let mut tests = lock_ignoring_poison(&self.tests);
        match tests.get_mut(key) {
            Some(record) => (
                std::mem::take(&mut record.reports),
                std::mem::take(&mut record.dropped),
            ),
            None => (Vec::new(), 0),
        }
    }

    /// The guard of test `key` runs its check: reports decided from now on
    /// (undecided waits given up at teardown) fail it no more.
    pub(crate) fn mark_checked(&self, key: TestKey) {
        if let Some(record) = lock_ignoring_poison(&self.tests).get_mut(key) {
            record.checked = true;
        }
    }

    /// Forgets the test `key`; returns the reports attributed to it since
    /// they were last taken.
    pub(crate) fn unregister_test(&self, key: TestKey) -> (Vec<Report>, usize) {
        let _ = CURRENT_TEST.try_with(|c| {
            if c.get() == Some(key) {
                c.set(None);
            }
        });
        let mut tests = lock_ignoring_poison(&self.tests);
        if tests.get(key).is_none() {
            return (Vec::new(), 0);
        }
        let record = tests.records.remove(key.slot);
        (record.reports, record.dropped)
    }

    /// Whether test `key` is registered and its guard has not run its check.
    pub(super) fn test_running(&self, key: TestKey) -> bool {
        lock_ignoring_poison(&self.tests)
            .get(key)
            .is_some_and(|r| !r.checked)
    }

    /// The class dependencies the test `key` added, for the run's store.
    pub(crate) fn test_dependencies(&self, key: TestKey) -> Vec<(ClassId, ClassId, u64)> {
        lock_ignoring_poison(&self.tests)
            .get(key)
            .map(|r| r.own.clone())
            .unwrap_or_default()
    }

    /// The name of the test the calling context belongs to, if known.
    pub(super) fn current_test_name(&self) -> Option<Arc<str>> {
        let mut tests = lock_ignoring_poison(&self.tests);
        let key = current_test(&mut tests)?;
        tests.get(key).map(|r| Arc::clone(&r.name))
    }

    /// The test a report about waiting for lock instance `lock` belongs to:
    /// the calling context's, else the test that created the lock.
    pub(super) fn test_of(&self, lock: u64) -> Option<TestKey> {
        let mut tests = lock_ignoring_poison(&self.tests);
        current_test(&mut tests).or_else(|| {
            lock_ignoring_poison(&self.created_by)
                .get(&lock)
                .copied()
                .filter(|key| tests.get(*key).is_some())
        })
    }

    /// A lock instance was made: remembers the test registered on this
    /// thread, if any, as its creator. Returns whether it did.
    pub(crate) fn note_creation(&self, instance: u64) -> bool {
        let Some(key) = CURRENT_TEST.try_with(std::cell::Cell::get).ok().flatten() else {
            return false;
        };
        let mut created_by = lock_ignoring_poison(&self.created_by);
        if created_by.len() >= MAX_CREATED_REMEMBERED {
            return false;
        }
        created_by.insert(instance, key);
        true
    }

    /// A lock instance noted by [`Engine::note_creation`] or
    /// [`Engine::note_reader_cap`] is gone.
    pub(crate) fn forget_creation(&self, instance: u64) {
        lock_ignoring_poison(&self.created_by).remove(&instance);
        lock_ignoring_poison(&self.reader_caps).remove(&instance);
    }

    /// The test the calling context belongs to, when a watchdog runs (long
    /// waits are reported from the watchdog's thread, which cannot tell).
    pub(crate) fn test_for_watchdog(&self) -> Option<TestKey> {
        if !super::waits::watchdog_running() {
            return None;
        }
        current_test(&mut lock_ignoring_poison(&self.tests))
    }
}
