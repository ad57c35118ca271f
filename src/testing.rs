//! Making tests fail on possible deadlocks.

use std::fmt;

use tracing_core::dispatcher::DefaultGuard;

use crate::layer::Detector;
use crate::report::render_all;

/// Installs a fresh [`Detector`] for the calling test and fails the test if
/// its code creates a possible deadlock.
///
/// Call it on the first line of a `#[tokio::test]`. The detector is the
/// thread's default dispatcher until the guard drops; locks and queues created
/// meanwhile report to it from any thread (so multi-thread runtimes work).
/// When the guard is dropped at the end of the test, it panics with every
/// report unless the test is already panicking. [`TestGuard::check`] does the
/// same on demand.
///
/// Each test gets its own detector: two tests in one binary, running in
/// parallel, do not see each other's dependencies.
///
/// # Examples
///
/// ```should_panic
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     let _lockdep = async_lockdep::test_guard();
///     let a = async_lockdep::Mutex::with_class("a", ());
///     let b = async_lockdep::Mutex::with_class("b", ());
///     {
///         let _a = a.lock().await;
///         let _b = b.lock().await;
///     }
///     let _b = b.lock().await;
///     let _a = a.lock().await; // b -> a closes a cycle: the test fails
/// }
/// ```
#[track_caller]
pub fn test_guard() -> TestGuard {
    let detector = Detector::new();
    let default = detector.set_default();
    TestGuard {
        detector,
        _default: default,
    }
}

/// Returned by [`test_guard`]: panics on drop if a possible deadlock was found.
#[must_use = "the test is only checked when the guard is dropped at its end"]
pub struct TestGuard {
    detector: Detector,
    _default: DefaultGuard,
}

impl TestGuard {
    /// The detector installed for this test.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Returns the reports found so far and forgets them, for tests that
    /// expect a report and assert what it says.
    pub fn take_reports(&self) -> Vec<crate::Report> {
        self.detector.take_reports()
    }

    /// Panics with every report found so far, if there is any.
    #[track_caller]
    pub fn check(&self) {
        self.detector.assert_no_cycles();
    }
}

impl fmt::Debug for TestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestGuard")
            .field("detector", &self.detector)
            .finish()
    }
}

impl Drop for TestGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let reports = self.detector.reports();
        if !reports.is_empty() {
            panic!(
                "async-lockdep: {} possible deadlock(s) found in this test:\n{}",
                reports.len(),
                render_all(&reports)
            );
        }
    }
}
