//! Parity with `tokio::sync`: `async_lockdep::sync` has every item of it,
//! with tokio's signatures, trait impls and auto traits, so that swapping a
//! `use tokio::sync::...` line for `use async_lockdep::sync::...` never
//! breaks a build. A missing or different item is a compile error here.
//!
//! - `surface!` expands one body of code written against tokio's API twice:
//!   once with `use tokio::sync::*`, once with `use async_lockdep::sync::*`.
//!   The body coerces methods to fn pointers of tokio's exact types (with
//!   tokio's order of generic parameters in turbofish), and runs every
//!   method; both expansions run, so the behaviour is compared too.
//! - `same_auto_traits!` asserts at compile time that each wrapper type is
//!   `Send`, `Sync`, `Unpin`, `UnwindSafe` and `RefUnwindSafe` exactly when
//!   tokio's is, for data types with every combination of those traits.
//! - The last tests check that mapped, downgraded, split and merged guards
//!   and permits still report to the detector, and release what they hold.

use std::sync::Arc;

use async_lockdep::sync::{
    Mutex, MutexGuard, OwnedMappedMutexGuard, OwnedMutexGuard, OwnedRwLockWriteGuard,
    OwnedSemaphorePermit, RwLock, RwLockWriteGuard, Semaphore,
};
use async_lockdep::{test_guard, Access, Detector, ReportKind};

macro_rules! surface {
    ($name:ident: $($sync:ident)::+) => {
        #[allow(dead_code, clippy::type_complexity)]
        pub mod $name {
            use std::fmt::{Debug, Display};
            use std::sync::Arc;

            use $($sync)::+ as facade;
            use $($sync)::+::{
                broadcast, mpsc, oneshot, watch, AcquireError, Barrier, BarrierWaitResult,
                MappedMutexGuard, Mutex, MutexGuard, Notify, OnceCell, OwnedMappedMutexGuard,
                OwnedMutexGuard, OwnedRwLockMappedWriteGuard, OwnedRwLockReadGuard,
                OwnedRwLockWriteGuard, OwnedSemaphorePermit, RwLock, RwLockMappedWriteGuard,
                RwLockReadGuard, RwLockWriteGuard, Semaphore, SemaphorePermit, SetError, SetOnce,
                SetOnceError, TryAcquireError, TryLockError,
            };

            type P = (u8, String);
            type MapMut = fn(&mut P) -> &mut u8;
            type TryMapMut = fn(&mut P) -> Option<&mut u8>;
            type MapRef = fn(&P) -> &u8;
            type TryMapRef = fn(&P) -> Option<&u8>;
            type MapMutU8 = fn(&mut u8) -> &mut u8;
            type TryMapMutU8 = fn(&mut u8) -> Option<&mut u8>;
            type MapRefU8 = fn(&u8) -> &u8;
            type TryMapRefU8 = fn(&u8) -> Option<&u8>;

            /// Every method that a fn pointer can name, at tokio's exact type.
            pub fn signatures() {
                // Mutex
                let _: fn(P) -> Mutex<P> = Mutex::new;
                let _: fn(P) -> Mutex<P> = Mutex::const_new;
                let _: fn(Mutex<P>) -> P = Mutex::into_inner;
                let _: for<'a> fn(&'a mut Mutex<P>) -> &'a mut P = Mutex::get_mut;
                let _: for<'a> fn(&'a Mutex<P>) -> MutexGuard<'a, P> = Mutex::blocking_lock;
                let _: for<'a> fn(&'a Mutex<P>) -> Result<MutexGuard<'a, P>, TryLockError> =
                    Mutex::try_lock;
                let _: fn(Arc<Mutex<P>>) -> OwnedMutexGuard<P> = Mutex::blocking_lock_owned;
                let _: fn(Arc<Mutex<P>>) -> Result<OwnedMutexGuard<P>, TryLockError> =
                    Mutex::try_lock_owned;
                let _: fn(P) -> Mutex<P> = <Mutex<P> as From<P>>::from;
                let _: fn() -> Mutex<P> = <Mutex<P> as Default>::default;
                let _: fn(MutexGuard<'static, P>, MapMut) -> MappedMutexGuard<'static, u8> =
                    MutexGuard::map::<u8, MapMut>;
                let _: fn(
                    MutexGuard<'static, P>,
                    TryMapMut,
                ) -> Result<MappedMutexGuard<'static, u8>, MutexGuard<'static, P>> =
                    MutexGuard::try_map::<u8, TryMapMut>;
                let _: for<'g> fn(&'g MutexGuard<'static, P>) -> &'static Mutex<P> =
                    MutexGuard::mutex;
                let _: fn(MappedMutexGuard<'static, u8>, MapMutU8) -> MappedMutexGuard<'static, u8> =
                    MappedMutexGuard::map::<u8, MapMutU8>;
                let _: fn(
                    MappedMutexGuard<'static, u8>,
                    TryMapMutU8,
                ) -> Result<MappedMutexGuard<'static, u8>, MappedMutexGuard<'static, u8>> =
                    MappedMutexGuard::try_map::<u8, TryMapMutU8>;
                let _: fn(OwnedMutexGuard<P>, MapMut) -> OwnedMappedMutexGuard<P, u8> =
                    OwnedMutexGuard::map::<u8, MapMut>;
                let _: fn(
                    OwnedMutexGuard<P>,
                    TryMapMut,
                ) -> Result<OwnedMappedMutexGuard<P, u8>, OwnedMutexGuard<P>> =
                    OwnedMutexGuard::try_map::<u8, TryMapMut>;
                let _: for<'g> fn(&'g OwnedMutexGuard<P>) -> &'g Arc<Mutex<P>> =
                    OwnedMutexGuard::mutex;
                let _: fn(OwnedMappedMutexGuard<P, u8>, MapMutU8) -> OwnedMappedMutexGuard<P, u8> =
                    OwnedMappedMutexGuard::map::<u8, MapMutU8>;
                let _: fn(
                    OwnedMappedMutexGuard<P, u8>,
                    TryMapMutU8,
                ) -> Result<OwnedMappedMutexGuard<P, u8>, OwnedMappedMutexGuard<P, u8>> =
                    OwnedMappedMutexGuard::try_map::<u8, TryMapMutU8>;

                // RwLock
                let _: fn(P) -> RwLock<P> = RwLock::new;
                let _: fn(P, u32) -> RwLock<P> = RwLock::with_max_readers;
                let _: fn(P) -> RwLock<P> = RwLock::const_new;
                let _: fn(P, u32) -> RwLock<P> = RwLock::const_with_max_readers;
                let _: fn(RwLock<P>) -> P = RwLock::into_inner;
                let _: for<'a> fn(&'a mut RwLock<P>) -> &'a mut P = RwLock::get_mut;
                let _: for<'a> fn(&'a RwLock<P>) -> RwLockReadGuard<'a, P> = RwLock::blocking_read;
                let _: for<'a> fn(&'a RwLock<P>) -> RwLockWriteGuard<'a, P> =
                    RwLock::blocking_write;
                let _: for<'a> fn(&'a RwLock<P>) -> Result<RwLockReadGuard<'a, P>, TryLockError> =
                    RwLock::try_read;
                let _: for<'a> fn(&'a RwLock<P>) -> Result<RwLockWriteGuard<'a, P>, TryLockError> =
                    RwLock::try_write;
                let _: fn(Arc<RwLock<P>>) -> Result<OwnedRwLockReadGuard<P>, TryLockError> =
                    RwLock::try_read_owned;
                let _: fn(Arc<RwLock<P>>) -> Result<OwnedRwLockWriteGuard<P>, TryLockError> =
                    RwLock::try_write_owned;
                let _: fn(P) -> RwLock<P> = <RwLock<P> as From<P>>::from;
                let _: fn() -> RwLock<P> = <RwLock<P> as Default>::default;
                let _: fn(RwLockReadGuard<'static, P>, MapRef) -> RwLockReadGuard<'static, u8> =
                    RwLockReadGuard::map::<MapRef, u8>;
                let _: fn(
                    RwLockReadGuard<'static, P>,
                    TryMapRef,
                ) -> Result<RwLockReadGuard<'static, u8>, RwLockReadGuard<'static, P>> =
                    RwLockReadGuard::try_map::<TryMapRef, u8>;
                let _: fn(RwLockWriteGuard<'static, P>, MapMut) -> RwLockMappedWriteGuard<'static, u8> =
                    RwLockWriteGuard::map::<MapMut, u8>;
                let _: fn(
                    RwLockWriteGuard<'static, P>,
                    TryMapMut,
                ) -> Result<RwLockMappedWriteGuard<'static, u8>, RwLockWriteGuard<'static, P>> =
                    RwLockWriteGuard::try_map::<TryMapMut, u8>;
                let _: fn(RwLockWriteGuard<'static, P>, MapRef) -> RwLockReadGuard<'static, u8> =
                    RwLockWriteGuard::downgrade_map::<MapRef, u8>;
                let _: fn(
                    RwLockWriteGuard<'static, P>,
                    TryMapRef,
                ) -> Result<RwLockReadGuard<'static, u8>, RwLockWriteGuard<'static, P>> =
                    RwLockWriteGuard::try_downgrade_map::<TryMapRef, u8>;
                let _: fn(RwLockWriteGuard<'static, P>) -> RwLockMappedWriteGuard<'static, P> =
                    RwLockWriteGuard::into_mapped;
                let _: fn(RwLockWriteGuard<'static, P>) -> RwLockReadGuard<'static, P> =
                    RwLockWriteGuard::downgrade;
                let _: fn(
                    RwLockMappedWriteGuard<'static, u8>,
                    MapMutU8,
                ) -> RwLockMappedWriteGuard<'static, u8> =
                    RwLockMappedWriteGuard::map::<MapMutU8, u8>;
                let _: fn(
                    RwLockMappedWriteGuard<'static, u8>,
                    TryMapMutU8,
                ) -> Result<RwLockMappedWriteGuard<'static, u8>, RwLockMappedWriteGuard<'static, u8>> =
                    RwLockMappedWriteGuard::try_map::<TryMapMutU8, u8>;
                let _: fn(OwnedRwLockReadGuard<P>, MapRef) -> OwnedRwLockReadGuard<P, u8> =
                    OwnedRwLockReadGuard::map::<MapRef, u8>;
                let _: fn(
                    OwnedRwLockReadGuard<P>,
                    TryMapRef,
                ) -> Result<OwnedRwLockReadGuard<P, u8>, OwnedRwLockReadGuard<P>> =
                    OwnedRwLockReadGuard::try_map::<TryMapRef, u8>;
                let _: fn(OwnedRwLockReadGuard<P, u8>, MapRefU8) -> OwnedRwLockReadGuard<P, u8> =
                    OwnedRwLockReadGuard::map::<MapRefU8, u8>;
                let _: fn(
                    OwnedRwLockReadGuard<P, u8>,
                    TryMapRefU8,
                ) -> Result<OwnedRwLockReadGuard<P, u8>, OwnedRwLockReadGuard<P, u8>> =
                    OwnedRwLockReadGuard::try_map::<TryMapRefU8, u8>;
                let _: for<'g> fn(&'g OwnedRwLockReadGuard<P, u8>) -> &'g Arc<RwLock<P>> =
                    OwnedRwLockReadGuard::rwlock;
                let _: fn(OwnedRwLockWriteGuard<P>, MapMut) -> OwnedRwLockMappedWriteGuard<P, u8> =
                    OwnedRwLockWriteGuard::map::<MapMut, u8>;
                let _: fn(
                    OwnedRwLockWriteGuard<P>,
                    TryMapMut,
                ) -> Result<OwnedRwLockMappedWriteGuard<P, u8>, OwnedRwLockWriteGuard<P>> =
                    OwnedRwLockWriteGuard::try_map::<TryMapMut, u8>;
                let _: fn(OwnedRwLockWriteGuard<P>, MapRef) -> OwnedRwLockReadGuard<P, u8> =
                    OwnedRwLockWriteGuard::downgrade_map::<MapRef, u8>;
                let _: fn(
                    OwnedRwLockWriteGuard<P>,
                    TryMapRef,
                ) -> Result<OwnedRwLockReadGuard<P, u8>, OwnedRwLockWriteGuard<P>> =
                    OwnedRwLockWriteGuard::try_downgrade_map::<TryMapRef, u8>;
                let _: fn(OwnedRwLockWriteGuard<P>) -> OwnedRwLockMappedWriteGuard<P> =
                    OwnedRwLockWriteGuard::into_mapped;
                let _: fn(OwnedRwLockWriteGuard<P>) -> OwnedRwLockReadGuard<P> =
                    OwnedRwLockWriteGuard::downgrade;
                let _: for<'g> fn(&'g OwnedRwLockWriteGuard<P>) -> &'g Arc<RwLock<P>> =
                    OwnedRwLockWriteGuard::rwlock;
                let _: fn(
                    OwnedRwLockMappedWriteGuard<P, u8>,
                    MapMutU8,
                ) -> OwnedRwLockMappedWriteGuard<P, u8> =
                    OwnedRwLockMappedWriteGuard::map::<MapMutU8, u8>;
                let _: fn(
                    OwnedRwLockMappedWriteGuard<P, u8>,
                    TryMapMutU8,
                ) -> Result<OwnedRwLockMappedWriteGuard<P, u8>, OwnedRwLockMappedWriteGuard<P, u8>> =
                    OwnedRwLockMappedWriteGuard::try_map::<TryMapMutU8, u8>;
                let _: for<'g> fn(&'g OwnedRwLockMappedWriteGuard<P, u8>) -> &'g Arc<RwLock<P>> =
                    OwnedRwLockMappedWriteGuard::rwlock;

                // Semaphore
                let _: usize = Semaphore::MAX_PERMITS;
                let _: fn(usize) -> Semaphore = Semaphore::new;
                let _: fn(usize) -> Semaphore = Semaphore::const_new;
                let _: fn(&Semaphore) -> usize = Semaphore::available_permits;
                let _: fn(&Semaphore, usize) = Semaphore::add_permits;
                let _: fn(&Semaphore, usize) -> usize = Semaphore::forget_permits;
                let _: fn(&Semaphore) = Semaphore::close;
                let _: fn(&Semaphore) -> bool = Semaphore::is_closed;
                let _: for<'a> fn(&'a Semaphore) -> Result<SemaphorePermit<'a>, TryAcquireError> =
                    Semaphore::try_acquire;
                let _: for<'a> fn(
                    &'a Semaphore,
                    u32,
                ) -> Result<SemaphorePermit<'a>, TryAcquireError> = Semaphore::try_acquire_many;
                let _: for<'a> fn(&'a Semaphore) -> Result<SemaphorePermit<'a>, AcquireError> =
                    Semaphore::blocking_acquire;
                let _: for<'a> fn(&'a Semaphore, u32) -> Result<SemaphorePermit<'a>, AcquireError> =
                    Semaphore::blocking_acquire_many;
                let _: fn(Arc<Semaphore>) -> Result<OwnedSemaphorePermit, TryAcquireError> =
                    Semaphore::try_acquire_owned;
                let _: fn(Arc<Semaphore>, u32) -> Result<OwnedSemaphorePermit, TryAcquireError> =
                    Semaphore::try_acquire_many_owned;
                let _: fn(Arc<Semaphore>) -> Result<OwnedSemaphorePermit, AcquireError> =
                    Semaphore::blocking_acquire_owned;
                let _: fn(Arc<Semaphore>, u32) -> Result<OwnedSemaphorePermit, AcquireError> =
                    Semaphore::blocking_acquire_many_owned;
                let _: fn(SemaphorePermit<'static>) = SemaphorePermit::forget;
                let _: for<'p> fn(&'p mut SemaphorePermit<'static>, SemaphorePermit<'static>) =
                    SemaphorePermit::merge;
                let _: for<'p> fn(
                    &'p mut SemaphorePermit<'static>,
                    usize,
                ) -> Option<SemaphorePermit<'static>> = SemaphorePermit::split;
                let _: for<'p> fn(&'p SemaphorePermit<'static>) -> &'p Semaphore =
                    SemaphorePermit::semaphore;
                let _: fn(&SemaphorePermit<'static>) -> usize = SemaphorePermit::num_permits;
                let _: fn(OwnedSemaphorePermit) = OwnedSemaphorePermit::forget;
                let _: fn(&mut OwnedSemaphorePermit, OwnedSemaphorePermit) =
                    OwnedSemaphorePermit::merge;
                let _: fn(&mut OwnedSemaphorePermit, usize) -> Option<OwnedSemaphorePermit> =
                    OwnedSemaphorePermit::split;
                let _: for<'p> fn(&'p OwnedSemaphorePermit) -> &'p Arc<Semaphore> =
                    OwnedSemaphorePermit::semaphore;
                let _: fn(&OwnedSemaphorePermit) -> usize = OwnedSemaphorePermit::num_permits;

                // tokio's own items, by name.
                let _: fn() -> Notify = Notify::new;
                let _: fn(usize) -> Barrier = Barrier::new;
                let _: fn(&BarrierWaitResult) -> bool = BarrierWaitResult::is_leader;
                let _: fn() -> OnceCell<u8> = OnceCell::new;
                let _: fn() -> SetOnce<u8> = SetOnce::new;
                let _: Option<(SetError<u8>, SetOnceError<u8>)> = None;
                let _: Option<(facade::futures::Notified<'static>, facade::futures::OwnedNotified)> =
                    None;
                let _: fn() -> (oneshot::Sender<u8>, oneshot::Receiver<u8>) = oneshot::channel;
                let _: Option<(oneshot::error::RecvError, oneshot::error::TryRecvError)> = None;
                let _: fn(u8) -> (watch::Sender<u8>, watch::Receiver<u8>) = watch::channel;
                let _: Option<(watch::Ref<'static, u8>, watch::error::RecvError)> = None;
                let _: fn(usize) -> (broadcast::Sender<u8>, broadcast::Receiver<u8>) =
                    broadcast::channel;
                let _: Option<(broadcast::WeakSender<u8>, broadcast::error::TryRecvError)> = None;
                let _: fn(usize) -> (mpsc::Sender<u8>, mpsc::Receiver<u8>) = mpsc::channel;
                let _: fn() -> (mpsc::UnboundedSender<u8>, mpsc::UnboundedReceiver<u8>) =
                    mpsc::unbounded_channel;
                let _: Option<(
                    mpsc::WeakSender<u8>,
                    mpsc::WeakUnboundedSender<u8>,
                    mpsc::Permit<'static, u8>,
                    mpsc::OwnedPermit<u8>,
                    mpsc::PermitIterator<'static, u8>,
                )> = None;
                let _: Option<(
                    mpsc::error::SendError<u8>,
                    mpsc::error::TrySendError<u8>,
                    mpsc::error::TryRecvError,
                    mpsc::error::SendTimeoutError<u8>,
                )> = None;
            }

            /// Trait impls of tokio's, required by name.
            fn debug_display<G: Debug + Display>(_: &G) {}
            fn debug<G: Debug>(_: &G) {}
            fn send<G: Send>(_: &G) {}
            fn error<E: std::error::Error>(_: &E) {}

            /// Generic code with tokio's bounds only: owned guards of data
            /// that is not `'static`, and of unsized data.
            pub struct Holders<'a, T: ?Sized> {
                pub mutex: OwnedMutexGuard<T>,
                pub mapped: OwnedMappedMutexGuard<T, str>,
                pub read: OwnedRwLockReadGuard<T>,
                pub read_part: OwnedRwLockReadGuard<T, [u8]>,
                pub write: OwnedRwLockWriteGuard<T>,
                pub write_part: OwnedRwLockMappedWriteGuard<T, &'a str>,
            }

            pub async fn lock_generic<T: ?Sized>(m: Arc<Mutex<T>>) -> OwnedMutexGuard<T> {
                m.lock_owned().await
            }

            pub async fn read_generic<T: ?Sized>(l: Arc<RwLock<T>>) -> OwnedRwLockReadGuard<T> {
                l.read_owned().await
            }

            pub async fn write_generic<T: ?Sized>(l: Arc<RwLock<T>>) -> OwnedRwLockWriteGuard<T> {
                l.write_owned().await
            }

            /// Runs every method, asserting tokio's results.
            pub async fn exercise() {
                mutex().await;
                rwlock().await;
                semaphore().await;
                borrowed_data().await;
                others().await;
            }

            async fn mutex() {
                let m = Mutex::new((1u8, String::from("a")));
                debug(&m);
                {
                    let g = m.lock().await;
                    debug_display(&g.1);
                    assert!(std::ptr::eq(MutexGuard::mutex(&g), &m));
                    let mut part = MutexGuard::map(g, |p| &mut p.1);
                    debug_display(&part);
                    part.push('b');
                    let part = MappedMutexGuard::map(part, |s| s);
                    let part = MappedMutexGuard::try_map(part, |_| None::<&mut u8>).unwrap_err();
                    let mut part = MappedMutexGuard::try_map(part, |s: &mut String| Some(s)).unwrap();
                    part.push('c');
                    assert!(m.try_lock().is_err());
                }
                let g = m.try_lock().unwrap();
                let g = MutexGuard::try_map(g, |_| None::<&mut u8>).unwrap_err();
                let mut n = MutexGuard::try_map(g, |p| Some(&mut p.0)).unwrap();
                *n += 1;
                drop(n);
                assert_eq!(*m.lock().await, (2, String::from("abc")));
                let e = m.try_lock().map(|_| ());
                assert!(e.is_ok());

                let m = Arc::new(Mutex::from((1u8, String::from("x"))));
                send(&m.lock());
                send(&m.clone().lock_owned());
                let g = m.clone().lock_owned().await;
                debug(&g);
                assert!(Arc::ptr_eq(OwnedMutexGuard::mutex(&g), &m));
                let err = m.clone().try_lock_owned().map(|_| ()).unwrap_err();
                debug_display(&err);
                error(&err);
                let g = OwnedMutexGuard::try_map(g, |_| None::<&mut u8>).unwrap_err();
                let s = OwnedMutexGuard::map(g, |p| &mut p.1);
                let mut s = OwnedMappedMutexGuard::map(s, |s| s);
                debug_display(&s);
                s.push('y');
                let s = OwnedMappedMutexGuard::try_map(s, |_| None::<&mut u8>).unwrap_err();
                let s: OwnedMappedMutexGuard<P, String> =
                    OwnedMappedMutexGuard::try_map(s, |s: &mut String| Some(s)).unwrap();
                assert!(m.try_lock().is_err());
                drop(s);
                let mut n = OwnedMutexGuard::try_map(m.clone().lock_owned().await, |p| Some(&mut p.0))
                    .unwrap();
                *n += 1;
                drop(n);
                assert_eq!(*m.lock().await, (2, String::from("xy")));

                let blocking = m.clone();
                tokio::task::spawn_blocking(move || {
                    blocking.blocking_lock().0 += 1;
                    blocking.clone().blocking_lock_owned().0 += 1;
                })
                .await
                .unwrap();
                let mut m = Arc::try_unwrap(m).unwrap();
                m.get_mut().0 += 1;
                assert_eq!(m.into_inner(), (5, String::from("xy")));
                let d: Mutex<u8> = Mutex::default();
                assert_eq!(d.into_inner(), 0);
                static STATIC: Mutex<u8> = Mutex::const_new(3);
                assert_eq!(*STATIC.lock().await, 3);
            }

            async fn rwlock() {
                let l = RwLock::with_max_readers((1u8, String::from("a")), 8);
                debug(&l);
                {
                    let r = l.read().await;
                    debug_display(&r.1);
                    let r = RwLockReadGuard::try_map(r, |_| None::<&u8>).unwrap_err();
                    let r = RwLockReadGuard::map(r, |p| &p.1);
                    debug_display(&r);
                    let r = RwLockReadGuard::try_map(r, |s| s.get(0..1)).unwrap();
                    assert_eq!(&*r, "a");
                    assert!(l.try_write().is_err());
                }
                {
                    let w = l.write().await;
                    let w = RwLockWriteGuard::try_map(w, |_| None::<&mut u8>).unwrap_err();
                    let w = RwLockWriteGuard::try_downgrade_map(w, |_| None::<&u8>).unwrap_err();
                    let mut w = RwLockWriteGuard::into_mapped(w);
                    debug_display(&w.0);
                    w.0 += 1;
                    let mut w = RwLockMappedWriteGuard::map(w, |p| &mut p.1);
                    w.push('b');
                    let w = RwLockMappedWriteGuard::try_map(w, |_| None::<&mut u8>).unwrap_err();
                    let w = RwLockMappedWriteGuard::try_map(w, |s| s.as_mut_str().get_mut(0..1))
                        .unwrap();
                    debug_display(&w);
                    assert!(l.try_read().is_err());
                }
                {
                    let w = l.try_write().unwrap();
                    let r = RwLockWriteGuard::downgrade_map(w, |p| &p.0);
                    assert_eq!(*r, 2);
                    assert!(l.try_read().is_ok());
                    assert!(l.try_write().is_err());
                }
                {
                    let w = l.write().await;
                    let r = RwLockWriteGuard::try_downgrade_map(w, |p| Some(&p.1)).unwrap();
                    assert_eq!(*r, "ab");
                    assert!(l.try_write().is_err());
                }
                {
                    let mut w = RwLockWriteGuard::map(l.write().await, |p| &mut p.0);
                    *w += 1;
                    let w = l.try_write().map(|_| ()).unwrap_err();
                    debug_display(&w);
                }
                let r = l.write().await.downgrade();
                assert_eq!(r.0, 3);
                drop(r);

                let l = Arc::new(RwLock::from((1u8, String::from("a"))));
                send(&l.read());
                send(&l.write());
                send(&l.clone().read_owned());
                send(&l.clone().write_owned());
                let r = l.clone().read_owned().await;
                debug_display(&r.1);
                assert!(Arc::ptr_eq(OwnedRwLockReadGuard::rwlock(&r), &l));
                let r = OwnedRwLockReadGuard::try_map(r, |_| None::<&u8>).unwrap_err();
                let r: OwnedRwLockReadGuard<P, String> = OwnedRwLockReadGuard::map(r, |p| &p.1);
                let r: OwnedRwLockReadGuard<P, str> =
                    OwnedRwLockReadGuard::try_map(r, |s| s.get(0..1)).unwrap();
                debug_display(&r);
                assert!(Arc::ptr_eq(OwnedRwLockReadGuard::rwlock(&r), &l));
                assert!(l.clone().try_write_owned().is_err());
                drop(r);

                let w = l.clone().write_owned().await;
                debug(&w);
                assert!(Arc::ptr_eq(OwnedRwLockWriteGuard::rwlock(&w), &l));
                let w = OwnedRwLockWriteGuard::try_map(w, |_| None::<&mut u8>).unwrap_err();
                let w = OwnedRwLockWriteGuard::try_downgrade_map(w, |_| None::<&u8>).unwrap_err();
                let mut w = OwnedRwLockWriteGuard::into_mapped(w);
                w.0 += 1;
                let w = OwnedRwLockMappedWriteGuard::map(w, |p| &mut p.1);
                let w = OwnedRwLockMappedWriteGuard::try_map(w, |_| None::<&mut u8>).unwrap_err();
                let mut w: OwnedRwLockMappedWriteGuard<P, String> =
                    OwnedRwLockMappedWriteGuard::try_map(w, |s: &mut String| Some(s)).unwrap();
                debug_display(&w);
                w.push('b');
                assert!(Arc::ptr_eq(OwnedRwLockMappedWriteGuard::rwlock(&w), &l));
                assert!(l.clone().try_read_owned().is_err());
                drop(w);

                let w = l.clone().try_write_owned().unwrap();
                let mut w = OwnedRwLockWriteGuard::map(w, |p| &mut p.0);
                *w += 1;
                drop(w);
                let w = l.clone().write_owned().await;
                let r = OwnedRwLockWriteGuard::downgrade_map(w, |p| &p.1);
                assert_eq!(*r, "ab");
                assert!(l.clone().try_read_owned().is_ok());
                assert!(l.clone().try_write_owned().is_err());
                drop(r);
                let w = l.clone().write_owned().await;
                let r = OwnedRwLockWriteGuard::try_downgrade_map(w, |p| Some(&p.0)).unwrap();
                assert_eq!(*r, 3);
                drop(r);
                let r = l.clone().write_owned().await.downgrade();
                assert_eq!(r.0, 3);
                assert!(l.clone().try_write_owned().is_err());
                drop(r);

                let blocking = l.clone();
                tokio::task::spawn_blocking(move || {
                    blocking.blocking_write().0 += 1;
                    assert_eq!(blocking.blocking_read().0, 4);
                })
                .await
                .unwrap();
                let mut l = Arc::try_unwrap(l).unwrap();
                l.get_mut().0 += 1;
                assert_eq!(l.into_inner(), (5, String::from("ab")));
                let d: RwLock<u8> = RwLock::default();
                assert_eq!(d.into_inner(), 0);
                static STATIC: RwLock<u8> = RwLock::const_new(3);
                static BOUNDED: RwLock<u8> = RwLock::const_with_max_readers(4, 2);
                assert_eq!(*STATIC.read().await + *BOUNDED.read().await, 7);
            }

            async fn semaphore() {
                assert_eq!(Semaphore::MAX_PERMITS, usize::MAX >> 3);
                let s = Semaphore::new(4);
                debug(&s);
                send(&s.acquire());
                let mut p = s.acquire_many(3).await.unwrap();
                debug(&p);
                assert!(std::ptr::eq(p.semaphore(), &s));
                let q = p.split(2).unwrap();
                assert!(p.split(5).is_none());
                assert_eq!((p.num_permits(), q.num_permits()), (1, 2));
                let one = s.try_acquire().unwrap();
                assert!(s.try_acquire().is_err());
                p.merge(q);
                p.merge(one);
                assert_eq!(p.num_permits(), 4);
                assert_eq!(s.available_permits(), 0);
                let e = s.try_acquire_many(1).map(|_| ()).unwrap_err();
                debug_display(&e);
                error(&e);
                drop(p);
                s.acquire().await.unwrap().forget();
                assert_eq!(s.available_permits(), 3);
                s.add_permits(1);
                assert_eq!(s.forget_permits(2), 2);
                s.close();
                assert!(s.is_closed());
                let e = s.acquire().await.map(|_| ()).unwrap_err();
                debug_display(&e);
                error(&e);

                let s = Arc::new(Semaphore::new(4));
                send(&s.clone().acquire_owned());
                let mut p = s.clone().acquire_many_owned(3).await.unwrap();
                debug(&p);
                assert!(Arc::ptr_eq(p.semaphore(), &s));
                let q = p.split(2).unwrap();
                assert!(p.split(5).is_none());
                let one = s.clone().try_acquire_owned().unwrap();
                assert!(s.clone().try_acquire_many_owned(1).is_err());
                p.merge(q);
                p.merge(one);
                assert_eq!(p.num_permits(), 4);
                drop(p);
                s.clone().acquire_owned().await.unwrap().forget();
                assert_eq!(s.available_permits(), 3);

                let blocking = s.clone();
                tokio::task::spawn_blocking(move || {
                    // One at a time: waiting for a permit while holding one
                    // would be a pool exhaustion report.
                    assert_eq!(blocking.blocking_acquire().unwrap().num_permits(), 1);
                    assert_eq!(blocking.blocking_acquire_many(2).unwrap().num_permits(), 2);
                    let r = blocking.clone().blocking_acquire_owned().unwrap();
                    assert_eq!(r.num_permits(), 1);
                    drop(r);
                    let p = blocking.clone().blocking_acquire_many_owned(3).unwrap();
                    assert_eq!(blocking.available_permits(), 0);
                    drop(p);
                    blocking.close();
                    assert!(blocking.blocking_acquire().is_err());
                    assert!(blocking.clone().blocking_acquire_many_owned(1).is_err());
                })
                .await
                .unwrap();
                static STATIC: Semaphore = Semaphore::const_new(1);
                assert_eq!(STATIC.acquire().await.unwrap().num_permits(), 1);
            }

            /// Owned guards of borrowed and unsized data: no `'static` asked.
            async fn borrowed_data() {
                let text = String::from("borrowed");
                let m = Arc::new(Mutex::new(text.as_str()));
                let g = lock_generic(m.clone()).await;
                assert_eq!(*g, "borrowed");
                drop(g);
                let l = Arc::new(RwLock::new(text.as_str()));
                assert_eq!(*read_generic(l.clone()).await, "borrowed");
                *write_generic(l.clone()).await = "changed";
                assert_eq!(*l.read().await, "changed");

                let bytes: Arc<Mutex<[u8]>> = Arc::new(Mutex::new([1u8, 2, 3]));
                let mut g = lock_generic(bytes.clone()).await;
                g[0] = 9;
                let tail = OwnedMutexGuard::map(g, |b| &mut b[1..]);
                assert_eq!(&*tail, &[2, 3]);
                drop(tail);
                assert_eq!(&*bytes.lock().await, &[9, 2, 3]);
                let bytes: Arc<RwLock<[u8]>> = Arc::new(RwLock::new([1u8, 2, 3]));
                write_generic(bytes.clone()).await[2] = 7;
                let r = OwnedRwLockReadGuard::map(read_generic(bytes.clone()).await, |b| &b[2..]);
                assert_eq!(&*r, &[7]);
            }

            async fn others() {
                let notify = Arc::new(Notify::new());
                let notified = notify.clone().notified_owned();
                notify.notify_one();
                notified.await;
                let barrier = Barrier::new(1);
                assert!(barrier.wait().await.is_leader());
                let (tx, rx) = oneshot::channel();
                tx.send(1u8).unwrap();
                assert_eq!(rx.await.unwrap(), 1);
                let (tx, rx) = watch::channel(1u8);
                tx.send(2).unwrap();
                assert_eq!(*rx.borrow(), 2);
                let (tx, mut rx) = broadcast::channel(1);
                tx.send(3u8).unwrap();
                assert_eq!(rx.recv().await.unwrap(), 3);
                let cell = OnceCell::new();
                assert_eq!(*cell.get_or_init(|| async { 4u8 }).await, 4);
                let once = SetOnce::new();
                once.set(5u8).unwrap();
                assert_eq!(*once.wait().await, 5);
                let (tx, mut rx) = mpsc::channel(1);
                tx.send(6u8).await.unwrap();
                assert_eq!(rx.recv().await, Some(6));
                let (tx, mut rx) = mpsc::unbounded_channel();
                tx.send(7u8).unwrap();
                assert_eq!(rx.recv().await, Some(7));
            }
        }
    };
}

surface!(with_tokio: tokio::sync);
surface!(with_lockdep: async_lockdep::sync);

#[test]
fn signatures_are_tokios() {
    with_tokio::signatures();
    with_lockdep::signatures();
}

#[tokio::test]
async fn tokios_code_runs_the_same_with_tokio() {
    with_tokio::exercise().await;
}

#[tokio::test]
async fn tokios_code_runs_the_same_with_the_wrappers() {
    let _lockdep = test_guard();
    with_lockdep::exercise().await;
}

/// Whether a concrete type implements a trait, as a constant: the inherent
/// constant applies when the bound holds, the trait's default otherwise.
macro_rules! implements {
    ($ty:ty: $($bound:tt)+) => {{
        #[allow(dead_code)]
        trait Fallback {
            const YES: bool = false;
        }
        impl<X: ?Sized> Fallback for X {}
        struct Probe<X: ?Sized>(std::marker::PhantomData<X>);
        #[allow(dead_code)]
        impl<X: ?Sized + $($bound)+> Probe<X> {
            const YES: bool = true;
        }
        <Probe<$ty>>::YES
    }};
}

macro_rules! same_auto_traits {
    ($ours:ty, $theirs:ty) => {
        const _: () = {
            use std::panic::{RefUnwindSafe, UnwindSafe};
            assert!(
        implements!($ours: Send) == implements!($theirs: Send),
                concat!("Send differs from tokio's: ", stringify!($ours))
            );
            assert!(
        implements!($ours: Sync) == implements!($theirs: Sync),
                concat!("Sync differs from tokio's: ", stringify!($ours))
            );
            assert!(
        implements!($ours: Unpin) == implements!($theirs: Unpin),
                concat!("Unpin differs from tokio's: ", stringify!($ours))
            );
            assert!(
        implements!($ours: UnwindSafe) == implements!($theirs: UnwindSafe),
                concat!("UnwindSafe differs from tokio's: ", stringify!($ours))
            );
            assert!(
        implements!($ours: RefUnwindSafe) == implements!($theirs: RefUnwindSafe),
                concat!("RefUnwindSafe differs from tokio's: ", stringify!($ours))
            );
        };
    };
}

/// Data types with each combination of `Send` and `Sync` (and of the unwind
/// traits), sized and not.
mod data {
    pub use std::cell::Cell;
    pub use std::rc::Rc;
    pub struct SyncOnly(std::marker::PhantomData<*const ()>);
    // SAFETY: no data, a marker for the auto-trait checks only.
    unsafe impl Sync for SyncOnly {}
}
use data::*;

macro_rules! each_data {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback!($($args)* [u8]);
        $callback!($($args)* [Cell<u8>]);
        $callback!($($args)* [SyncOnly]);
        $callback!($($args)* [Rc<u8>]);
        $callback!($($args)* [&'static mut u8]);
        $callback!($($args)* [[u8]]);
    };
}

macro_rules! one_param {
    ($ty:ident [$t:ty]) => {
        same_auto_traits!(async_lockdep::sync::$ty<$t>, tokio::sync::$ty<$t>);
    };
}

macro_rules! borrowed_param {
    ($ty:ident [$t:ty]) => {
        same_auto_traits!(
            async_lockdep::sync::$ty<'static, $t>,
            tokio::sync::$ty<'static, $t>
        );
    };
}

macro_rules! two_params {
    (@u $ty:ident [$t:ty] [$u:ty]) => {
        same_auto_traits!(async_lockdep::sync::$ty<$t, $u>, tokio::sync::$ty<$t, $u>);
    };
    ($ty:ident [$t:ty]) => {
        each_data!(two_params!(@u $ty [$t]));
    };
}

each_data!(one_param!(Mutex));
each_data!(one_param!(RwLock));
each_data!(one_param!(OwnedMutexGuard));
each_data!(one_param!(OwnedRwLockWriteGuard));
each_data!(one_param!(OwnedRwLockReadGuard));
each_data!(one_param!(OwnedRwLockMappedWriteGuard));
each_data!(one_param!(OwnedMappedMutexGuard));
each_data!(borrowed_param!(MutexGuard));
each_data!(borrowed_param!(MappedMutexGuard));
each_data!(borrowed_param!(RwLockReadGuard));
each_data!(borrowed_param!(RwLockWriteGuard));
each_data!(borrowed_param!(RwLockMappedWriteGuard));
each_data!(two_params!(OwnedMappedMutexGuard));
each_data!(two_params!(OwnedRwLockReadGuard));
each_data!(two_params!(OwnedRwLockMappedWriteGuard));
same_auto_traits!(async_lockdep::sync::Semaphore, tokio::sync::Semaphore);
same_auto_traits!(
    async_lockdep::sync::SemaphorePermit<'static>,
    tokio::sync::SemaphorePermit<'static>
);
same_auto_traits!(
    async_lockdep::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit
);

// The items that are tokio's own are the same types.
const _: fn(tokio::sync::TryLockError) -> async_lockdep::sync::TryLockError = |e| e;
const _: fn(tokio::sync::AcquireError) -> async_lockdep::sync::AcquireError = |e| e;
const _: fn(tokio::sync::TryAcquireError) -> async_lockdep::sync::TryAcquireError = |e| e;
same_auto_traits!(async_lockdep::sync::Notify, tokio::sync::Notify);
same_auto_traits!(async_lockdep::sync::Barrier, tokio::sync::Barrier);
// `oneshot` is ours (its reply is an event), with tokio's auto traits.
same_auto_traits!(
    async_lockdep::oneshot::Sender<u8>,
    tokio::sync::oneshot::Sender<u8>
);
same_auto_traits!(
    async_lockdep::oneshot::Receiver<u8>,
    tokio::sync::oneshot::Receiver<u8>
);
same_auto_traits!(
    async_lockdep::mpsc::Receiver<u8>,
    tokio::sync::mpsc::Receiver<u8>
);
same_auto_traits!(
    async_lockdep::mpsc::Sender<u8>,
    tokio::sync::mpsc::Sender<u8>
);
same_auto_traits!(
    async_lockdep::mpsc::UnboundedReceiver<u8>,
    tokio::sync::mpsc::UnboundedReceiver<u8>
);
const _: fn(async_lockdep::oneshot::Sender<u8>) -> async_lockdep::sync::oneshot::Sender<u8> = |s| s;

// The flat re-exports are the same types as the facade's.
const _: fn(
    async_lockdep::OwnedMappedMutexGuard<u8>,
) -> async_lockdep::sync::OwnedMappedMutexGuard<u8> = |g| g;
const _: fn(
    async_lockdep::OwnedRwLockMappedWriteGuard<u8>,
) -> async_lockdep::sync::OwnedRwLockMappedWriteGuard<u8> = |g| g;
const _: fn(async_lockdep::mpsc::Sender<u8>) -> async_lockdep::sync::mpsc::Sender<u8> = |s| s;

fn held(detector: &Detector) -> Vec<String> {
    detector
        .held_locks()
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

#[tokio::test]
async fn a_mapped_guard_holds_its_lock_for_the_detector_until_dropped() {
    let lockdep = test_guard();
    let a = Mutex::with_class("parity-map-a", (0u8, 0u8));
    let b = Mutex::with_class("parity-map-b", ());
    {
        let second = MutexGuard::map(a.lock().await, |p| &mut p.1);
        assert_eq!(held(lockdep.detector()), ["parity-map-a"]);
        let _b = b.lock().await; // a -> b, through the mapped guard
        drop(second);
        assert_eq!(held(lockdep.detector()), ["parity-map-b"]);
    }
    assert!(held(lockdep.detector()).is_empty(), "no phantom hold");
    {
        let _b = b.lock().await;
        let _a = a.lock().await; // b -> a: closes the cycle
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].kind, ReportKind::CircularDependency);
    assert_eq!(reports[0].class_names(), ["parity-map-b", "parity-map-a"]);
}

#[tokio::test]
async fn an_owned_mapped_guard_keeps_its_hold_and_releases_it() {
    let lockdep = test_guard();
    let a = Arc::new(Mutex::with_class("parity-owned-map-a", (0u8, 0u8)));
    let b = Mutex::with_class("parity-owned-map-b", ());
    let part = OwnedMutexGuard::map(a.clone().lock_owned().await, |p| &mut p.0);
    let part = OwnedMappedMutexGuard::try_map(part, |n| n.checked_add(0).map(|_| n)).unwrap();
    assert_eq!(held(lockdep.detector()), ["parity-owned-map-a"]);
    drop(b.lock().await); // a -> b, committed when `part` drops here
    drop(part);
    assert!(held(lockdep.detector()).is_empty(), "no phantom hold");

    // Moved to another task and dropped there: released there.
    let part = OwnedMutexGuard::map(a.clone().lock_owned().await, |p| &mut p.1);
    assert_eq!(held(lockdep.detector()), ["parity-owned-map-a"]);
    tokio::spawn(async move { drop(part) }).await.unwrap();
    assert!(held(lockdep.detector()).is_empty(), "no phantom hold");
    assert!(a.try_lock().is_ok());
    {
        let _b = b.lock().await;
        drop(a.lock().await); // b -> a
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(
        reports[0].class_names(),
        ["parity-owned-map-b", "parity-owned-map-a"]
    );
}

#[tokio::test]
async fn a_downgrade_map_holds_the_lock_for_reading() {
    let lockdep = test_guard();
    let config = Arc::new(RwLock::with_class("parity-downgrade-rw", (1u8, 2u8)));
    let state = Mutex::with_class("parity-downgrade-m", ());
    {
        let read = RwLockWriteGuard::downgrade_map(config.write().await, |c| &c.0);
        assert_eq!(held(lockdep.detector()), ["parity-downgrade-rw"]);
        drop(state.lock().await); // rw (read) -> m
        drop(read);
    }
    {
        let w = config.clone().write_owned().await;
        let read = OwnedRwLockWriteGuard::try_downgrade_map(w, |c| Some(&c.1)).unwrap();
        assert_eq!(*read, 2);
        drop(state.lock().await);
        drop(read);
    }
    assert!(held(lockdep.detector()).is_empty(), "no phantom hold");
    {
        let _m = state.lock().await;
        drop(config.write().await); // m -> rw (write)
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(
        reports[0].class_names(),
        ["parity-downgrade-m", "parity-downgrade-rw"]
    );
    // The earlier dependency was recorded while the lock was held to read.
    assert_eq!(reports[0].dependencies[1].held_as, Access::Read);
}

#[tokio::test]
async fn split_permits_hold_the_semaphore_until_the_last_part_drops() {
    let lockdep = test_guard();
    let pool = Semaphore::with_class("parity-split-sem", 4);
    let state = Mutex::with_class("parity-split-m", ());
    let mut whole = pool.acquire_many(3).await.unwrap();
    let part = whole.split(1).unwrap();
    let other = whole.split(1).unwrap();
    drop(whole);
    assert_eq!(held(lockdep.detector()), ["parity-split-sem"]);
    drop(other);
    drop(state.lock().await); // sem -> m, through the last part
    assert_eq!(held(lockdep.detector()), ["parity-split-sem"]);
    drop(part);
    assert!(held(lockdep.detector()).is_empty(), "no phantom hold");
    assert_eq!(pool.available_permits(), 4);

    let mut merged = pool.acquire().await.unwrap();
    merged.merge(pool.try_acquire().unwrap()); // waiting here would be a pool exhaustion
    assert_eq!(merged.num_permits(), 2);
    assert_eq!(held(lockdep.detector()), ["parity-split-sem"]);
    let split = merged.split(1).unwrap();
    merged.merge(split);
    drop(merged);
    assert!(held(lockdep.detector()).is_empty(), "no phantom hold");
    {
        let _m = state.lock().await;
        drop(pool.acquire().await.unwrap()); // m -> sem
    }
    let reports = lockdep.take_reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(
        reports[0].class_names(),
        ["parity-split-m", "parity-split-sem"]
    );
}

#[tokio::test]
async fn owned_split_permits_move_and_release_their_shared_hold() {
    let lockdep = test_guard();
    let pool = Arc::new(Semaphore::with_class("parity-owned-split", 2));
    let mut first: OwnedSemaphorePermit = pool.clone().acquire_many_owned(2).await.unwrap();
    let second = first.split(1).unwrap();
    assert!(Arc::ptr_eq(second.semaphore(), &pool));
    tokio::spawn(async move { drop(second) }).await.unwrap();
    assert_eq!(held(lockdep.detector()), ["parity-owned-split"]);
    let mut other = pool.clone().try_acquire_owned().unwrap();
    other.merge(first);
    assert_eq!(other.num_permits(), 2);
    assert_eq!(held(lockdep.detector()), ["parity-owned-split"]);
    other.forget();
    assert_eq!(
        held(lockdep.detector()),
        ["parity-owned-split"],
        "forgotten: held until given back"
    );
    assert_eq!(pool.available_permits(), 0);
    pool.add_permits(2);
    assert!(held(lockdep.detector()).is_empty(), "no phantom hold");
    assert!(lockdep.take_reports().is_empty());
}

#[test]
#[should_panic(expected = "merging permits from different semaphore instances")]
fn merging_permits_of_two_semaphores_panics_as_tokio() {
    let (a, b) = (Semaphore::new(1), Semaphore::new(1));
    let mut p = a.try_acquire().unwrap();
    p.merge(b.try_acquire().unwrap());
}

#[test]
fn blocking_acquire_records_the_wait_and_a_closed_semaphore_leaves_nothing_held() {
    let lockdep = test_guard();
    let pool = Arc::new(Semaphore::with_class("parity-blocking-sem", 1));
    let state = Mutex::with_class("parity-blocking-m", ());
    {
        let _m = state.blocking_lock();
        let permit = pool.blocking_acquire().unwrap(); // m -> sem
        assert_eq!(
            held(lockdep.detector()),
            ["parity-blocking-m", "parity-blocking-sem"]
        );
        drop(permit);
    }
    pool.close();
    assert!(pool.clone().blocking_acquire_owned().is_err());
    assert!(held(lockdep.detector()).is_empty(), "no phantom hold");
    assert!(lockdep.take_reports().is_empty());
}

/// `Debug` prints what tokio's prints (the class is in reports only).
#[test]
fn debug_output_is_tokios() {
    let ours = async_lockdep::Mutex::new(5u8);
    let theirs = tokio::sync::Mutex::new(5u8);
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    assert_eq!(format!("{ours:?}"), "Mutex { data: 5 }");
    let ours = async_lockdep::RwLock::new(5u8);
    let theirs = tokio::sync::RwLock::new(5u8);
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
}

/// tokio's "inside a runtime" panic of the blocking methods points at the
/// caller's line, not into this crate.
#[tokio::test]
async fn blocking_methods_inside_a_runtime_panic_at_the_callers_line() {
    fn location_of(f: impl FnOnce()) -> String {
        let seen = Arc::new(std::sync::Mutex::new(String::new()));
        let s = seen.clone();
        let me = std::thread::current().id();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() != me {
                return; // another test's panic
            }
            if let Some(at) = info.location() {
                *s.lock().unwrap() = format!("{}:{}", at.file(), at.line());
            }
        }));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        std::panic::set_hook(previous);
        assert!(outcome.is_err(), "it panics inside a runtime");
        let at = seen.lock().unwrap().clone();
        at
    }
    let m = Mutex::new(0u8);
    let line = line!() + 1;
    let at = location_of(|| drop(m.blocking_lock()));
    assert_eq!(at, format!("{}:{line}", file!()));
    let l = async_lockdep::RwLock::new(0u8);
    let line = line!() + 1;
    let at = location_of(|| drop(l.blocking_read()));
    assert_eq!(at, format!("{}:{line}", file!()));
    let line = line!() + 1;
    let at = location_of(|| drop(l.blocking_write()));
    assert_eq!(at, format!("{}:{line}", file!()));
}

#[tokio::test]
async fn try_reserve_many_try_reserve_owned_and_weak_counts_are_tokios() {
    let (tx, mut rx) = async_lockdep::mpsc::channel::<u8>(2);
    let permits = tx.try_reserve_many(2).unwrap();
    assert!(tx.try_reserve_many(1).is_err(), "full");
    drop(permits);
    let permit = tx.clone().try_reserve_owned().unwrap();
    permit.send(7);
    assert_eq!(rx.recv().await, Some(7));
    let weak = tx.downgrade();
    assert_eq!((weak.strong_count(), weak.weak_count()), (1, 1));
}

/// `reserve_owned` → `OwnedPermit::send` gives this crate's sender back
/// (tokio-util's `PollSender` keeps the sender it gets back).
#[tokio::test]
async fn an_owned_permit_gives_our_sender_back() {
    let (tx, mut rx) = async_lockdep::mpsc::channel::<u8>(1);
    let permit: async_lockdep::mpsc::OwnedPermit<u8> = tx.reserve_owned().await.unwrap();
    let tx: async_lockdep::mpsc::Sender<u8> = permit.send(3);
    assert_eq!(rx.recv().await, Some(3));
    let permit = tx.try_reserve_owned().unwrap();
    let tx: async_lockdep::mpsc::Sender<u8> = permit.release();
    assert_eq!(tx.capacity(), 1);
}
