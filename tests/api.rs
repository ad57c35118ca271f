//! API shape: statics with `const_new`, `Send`/`Sync` of the public types and
//! futures (so a swap from tokio's types compiles where tokio's did).

mod common;

use std::sync::Arc;

use async_lockdep::{
    test_guard, Detector, Mutex, MutexGuard, OwnedMutexGuard, OwnedRwLockReadGuard,
    OwnedRwLockWriteGuard, OwnedSemaphorePermit, ReportKind, RwLock, RwLockReadGuard,
    RwLockWriteGuard, Semaphore, SemaphorePermit, WorkQueue,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>(_: &T) {}

#[test]
fn public_types_are_send_and_sync_like_tokios() {
    send_sync::<Mutex<Vec<u8>>>();
    send_sync::<MutexGuard<'static, Vec<u8>>>();
    send_sync::<OwnedMutexGuard<Vec<u8>>>();
    send_sync::<RwLock<Vec<u8>>>();
    send_sync::<RwLockReadGuard<'static, Vec<u8>>>();
    send_sync::<RwLockWriteGuard<'static, Vec<u8>>>();
    send_sync::<OwnedRwLockReadGuard<Vec<u8>>>();
    send_sync::<OwnedRwLockWriteGuard<Vec<u8>>>();
    send_sync::<Semaphore>();
    send_sync::<SemaphorePermit<'static>>();
    send_sync::<OwnedSemaphorePermit>();
    send_sync::<WorkQueue>();
    send_sync::<Detector>();
}

#[tokio::test]
async fn lock_futures_are_send() {
    let m = Arc::new(Mutex::new(0));
    let r = Arc::new(RwLock::new(0));
    let s = Arc::new(Semaphore::new(1));
    send(&m.lock());
    send(&m.clone().lock_owned());
    send(&r.read());
    send(&r.write());
    send(&r.clone().read_owned());
    send(&s.acquire());
    send(&s.clone().acquire_owned());
}

static CACHE: Mutex<Vec<u32>> = Mutex::const_new(Vec::new());
static CONFIG: RwLock<u32> = RwLock::const_new(1);
static LIMIT: Semaphore = Semaphore::const_new(2);

#[tokio::test]
async fn const_new_statics_get_their_class_at_first_use_and_report() {
    let lockdep = test_guard();
    {
        let _c = CONFIG.read().await;
        CACHE.lock().await.push(1); // config -> cache
    }
    {
        let _permit = LIMIT.acquire().await.unwrap();
        let _c = CACHE.lock().await; // limit -> cache
    }
    {
        let _cache = CACHE.lock().await;
        let _c = CONFIG.write().await; // cache -> config: closes the cycle
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    let names = reports[0].class_names();
    assert!(names[0].starts_with(&format!("{}:", file!())), "{names:?}");
    assert_eq!(names.len(), 2);
    assert_ne!(names[0], names[1]);
    // Unnamed statics show their type, as locks made with `new` do.
    let text = reports[0].to_string();
    assert!(text.contains("` (Mutex<Vec<u32>>)"), "{text}");
    assert!(text.contains("` (RwLock<u32>)"), "{text}");
}

#[tokio::test]
async fn owned_guards_work_with_inline_locks() {
    let _lockdep = test_guard();
    let m = Arc::new(Mutex::new(String::from("a")));
    let mut g = m.clone().lock_owned().await;
    g.push('b');
    let handle = tokio::spawn(async move {
        g.push('c');
        drop(g);
    });
    handle.await.unwrap();
    assert_eq!(*m.lock().await, "abc");
    let r = Arc::new(RwLock::new(1));
    let w = r.clone().write_owned().await;
    let read = w.downgrade();
    assert_eq!(*read, 1);
    assert!(r.clone().try_write_owned().is_err());
    drop(read);
    assert!(r.clone().try_read_owned().is_ok());
    let s = Arc::new(Semaphore::new(1));
    let p = s.clone().acquire_owned().await.unwrap();
    assert!(s.clone().try_acquire_owned().is_err());
    drop(p);
    let p = s.clone().try_acquire_owned().unwrap();
    assert_eq!(p.num_permits(), 1);
    drop(s); // the permit keeps the semaphore alive
    drop(p);
    let m = Arc::try_unwrap(m).unwrap();
    assert_eq!(m.into_inner(), "abc");
}

#[test]
fn blocking_lock_owned_and_guard_accessors() {
    let detector = Detector::new();
    let _default = detector.set_default();
    let m = Arc::new(Mutex::with_class("blocking-owned", 1));
    let g = m.clone().blocking_lock_owned();
    assert!(Arc::ptr_eq(OwnedMutexGuard::mutex(&g), &m));
    assert_eq!(detector.held_locks().len(), 1);
    let other = std::thread::spawn(move || drop(g)); // released from another thread
    other.join().unwrap();
    assert_eq!(detector.status().contexts_holding_locks, 0);
    let r = Arc::new(RwLock::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let w = r.clone().write_owned().await;
        assert!(Arc::ptr_eq(OwnedRwLockWriteGuard::rwlock(&w), &r));
        let read = w.downgrade();
        assert!(Arc::ptr_eq(OwnedRwLockReadGuard::rwlock(&read), &r));
    });
    assert!(detector.reports().is_empty());
}

/// `blocking_lock` inside a runtime panics as tokio's does, with or without a
/// detector, and leaves nothing held or waiting behind.
#[tokio::test]
async fn blocking_lock_inside_a_runtime_panics_like_tokios_and_leaves_nothing() {
    let lockdep = test_guard();
    let m = Mutex::new(0);
    let r = RwLock::new(0);
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(m.blocking_lock())));
    assert!(outcome.is_err(), "tokio refuses to block inside a runtime");
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(r.blocking_read())));
    assert!(outcome.is_err());
    let status = lockdep.detector().status();
    assert_eq!(
        (status.contexts_holding_locks, status.contexts_waiting),
        (0, 0)
    );
    assert!(m.try_lock().is_ok());
}

/// `Status` shows the chain cache: a nesting validated once is cached, so
/// taking it again adds no chain.
#[test]
fn status_counts_cached_chains() {
    if common::own_process() {
        return;
    }
    let detector = Detector::builder().build();
    detector.enable();
    let before = detector.status();
    let (outer, inner) = (
        Mutex::with_class("status-outer", ()),
        Mutex::with_class("status-inner", ()),
    );
    for _ in 0..3 {
        let _outer = outer.blocking_lock();
        let _inner = inner.blocking_lock();
    }
    let after = detector.status();
    assert_eq!(after.cached_chains, before.cached_chains + 1, "{after:?}");
    assert!(!after.chain_cache_full);
}
