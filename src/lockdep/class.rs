//! Lock classes: the unit the ordering rules are about.
//!
//! A class is the source location where a lock (or work queue, or spawned
//! task) was created, or an explicit name. Classes are interned once in a
//! process-wide table, so the hot path handles small integer ids and never
//! strings; a declared nesting level (subclass) is a class of its own.

use std::borrow::Cow;
use std::panic::Location;
use std::sync::{Mutex, MutexGuard, OnceLock};

use rustc_hash::FxHashMap;

use crate::vocab::{ClassId, Site};
pub(crate) use crate::vocab::{ClassKind, LockClass};

/// Longest class name kept; longer names are cut (on a character boundary).
pub(crate) const MAX_NAME_LEN: usize = 200;

/// Highest nesting level (subclass) that can be declared, as in lockdep.
pub const MAX_NESTING_LEVEL: u8 = 7;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Site(&'static str, u32, u32),
    Named(Cow<'static, str>),
}

#[derive(Default)]
struct Table {
    classes: Vec<LockClass>,
    keys: Vec<Key>,
    index: FxHashMap<(Key, ClassKind, u8), ClassId>,
    /// Source files of sites given as strings (tokio's instrumentation),
    /// kept once each for the life of the process.
    files: rustc_hash::FxHashSet<&'static str>,
}

fn table() -> MutexGuard<'static, Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    // A panic while holding the table cannot leave it inconsistent (inserts
    // are a push then a map insert), so a poisoned table is still usable.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn intern(
    key: Key,
    kind: ClassKind,
    subclass: u8,
    site: Site,
    type_name: Option<&'static str>,
) -> ClassId {
    let mut table = table();
    let lookup = (key, kind, subclass);
    if let Some(&id) = table.index.get(&lookup) {
        return id;
    }
    let type_name = match (&lookup.0, type_name) {
        (Key::Site(..), Some(type_name)) => Some(Cow::Owned(short_type_name(type_name))),
        _ => None,
    };
    let name = match &lookup.0 {
        Key::Site(..) => Cow::Owned(site.to_string()),
        Key::Named(name) => name.clone(),
    };
    let id = table.classes.len() as ClassId;
    table.classes.push(LockClass {
        name,
        created_at: site,
        kind,
        subclass,
        type_name,
    });
    table.keys.push(lookup.0.clone());
    table.index.insert(lookup, id);
    id
}

/// The class every lock has with the `detect` feature off: none (nothing is
/// interned, `describe` gives `None`).
#[cfg(not(feature = "detect"))]
pub(crate) const NO_CLASS: ClassId = ClassId::MAX;

/// The class of a lock created at `site` with no explicit name.
pub(crate) fn for_site(site: &'static Location<'static>, kind: ClassKind) -> ClassId {
    for_site_typed(site, kind, None)
}

/// As [`for_site`], remembering the type of the lock (`type_name::<T>()`)
/// if the class is new.
pub(crate) fn for_site_typed(
    site: &'static Location<'static>,
    kind: ClassKind,
    type_name: Option<&'static str>,
) -> ClassId {
    #[cfg(not(feature = "detect"))]
    {
        let _ = (site, kind, type_name);
        NO_CLASS
    }
    #[cfg(feature = "detect")]
    intern(
        Key::Site(site.file(), site.line(), site.column()),
        kind,
        0,
        Site::from(site),
        type_name,
    )
}

/// The class of a lock created at `file:line:column` given as strings (by
/// tokio's instrumentation, which has no `Location` to give): the same class
/// as a wrapper created at that site. Each file name is kept once.
pub(crate) fn for_site_parts(file: &str, line: u32, column: u32, kind: ClassKind) -> ClassId {
    #[cfg(not(feature = "detect"))]
    {
        let _ = (file, line, column, kind);
        NO_CLASS
    }
    #[cfg(feature = "detect")]
    {
        let file: &'static str = {
            let mut table = table();
            match table.files.get(file) {
                Some(&kept) => kept,
                None => {
                    let kept: &'static str = Box::leak(file.to_owned().into_boxed_str());
                    table.files.insert(kept);
                    kept
                }
            }
        };
        intern(
            Key::Site(file, line, column),
            kind,
            0,
            Site::new(file, line, column),
            None,
        )
    }
}

/// The class of a lock (a work queue) created at `site` with no explicit
/// class but a label: the class is the site, shown as `label` if new.
pub(crate) fn for_site_labeled(
    site: &'static Location<'static>,
    kind: ClassKind,
    label: &str,
) -> ClassId {
    if !cfg!(feature = "detect") {
        return for_site(site, kind);
    }
    let id = for_site(site, kind);
    let label = clean_name(Cow::Owned(label.to_string()));
    if let Some(class) = table().classes.get_mut(id as usize) {
        if class.name == class.created_at.to_string() && class.subclass == 0 {
            class.name = label;
        }
    }
    id
}

/// `alloc::vec::Vec<u8>` as `Vec<u8>`: each path keeps its last segment.
fn short_type_name(full: &str) -> String {
    let mut short = String::with_capacity(full.len());
    let mut segment_start = 0;
    for (i, c) in full.char_indices() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            continue;
        }
        push_last_segment(&mut short, &full[segment_start..i]);
        short.push(c);
        segment_start = i + c.len_utf8();
    }
    push_last_segment(&mut short, &full[segment_start..]);
    short
}

fn push_last_segment(out: &mut String, path: &str) {
    out.push_str(path.rsplit("::").next().unwrap_or(path));
}

/// The class with an explicit name; `site` is remembered if the class is new.
pub(crate) fn named(
    name: impl Into<Cow<'static, str>>,
    kind: ClassKind,
    site: &'static Location<'static>,
) -> ClassId {
    #[cfg(not(feature = "detect"))]
    {
        drop(name);
        let _ = (kind, site);
        NO_CLASS
    }
    #[cfg(feature = "detect")]
    intern(
        Key::Named(clean_name(name.into())),
        kind,
        0,
        Site::from(site),
        None,
    )
}

/// The class for nesting level `subclass` of `base` (the base itself for 0).
pub(crate) fn nested(base: ClassId, subclass: u8) -> ClassId {
    if subclass == 0 {
        return base;
    }
    let subclass = subclass.min(MAX_NESTING_LEVEL);
    let (key, kind, site, type_name) = {
        let table = table();
        let Some(class) = table.classes.get(base as usize) else {
            return base;
        };
        (
            table.keys[base as usize].clone(),
            class.kind,
            class.created_at.clone(),
            class.type_name.clone(),
        )
    };
    let id = intern(key, kind, subclass, site, None);
    if let Some(class) = table().classes.get_mut(id as usize) {
        if class.type_name.is_none() {
            class.type_name = type_name;
        }
    }
    id
}

/// The class of a `oneshot` reply made at `site` and carrying `type_name`:
/// one class per creation site *and* type, so that a generic request helper
/// (`ask::<T>()`) gives the replies of different types (usually different
/// actors) classes of their own. Named `` `file:line:column <path::to::T>` ``.
pub(crate) fn for_site_and_type(
    site: &'static Location<'static>,
    kind: ClassKind,
    type_name: &'static str,
) -> ClassId {
    #[cfg(not(feature = "detect"))]
    {
        let _ = (site, kind, type_name);
        NO_CLASS
    }
    #[cfg(feature = "detect")]
    {
        // The full type: two actors' `Reply` types are two classes (also
        // in the run's store, which knows classes by name).
        let name = format!("{} <{}>", Site::from(site), type_name);
        intern(
            Key::Named(Cow::Owned(name)),
            kind,
            0,
            Site::from(site),
            None,
        )
    }
}

/// The class of the messages of the channel class `base` (what `recv`
/// waits for and a send signals): the channel's name with ` messages`, or
/// its creation site with the kind `Messages`.
pub(crate) fn messages_of(base: ClassId) -> ClassId {
    let (key, site, type_name) = {
        let table = table();
        let Some(class) = table.classes.get(base as usize) else {
            return base;
        };
        (
            table.keys[base as usize].clone(),
            class.created_at.clone(),
            class.type_name.clone(),
        )
    };
    let key = match key {
        Key::Named(name) => Key::Named(Cow::Owned(format!("{name} messages"))),
        site_key => site_key,
    };
    let id = intern(key, ClassKind::Messages, 0, site, None);
    if let Some(class) = table().classes.get_mut(id as usize) {
        if class.type_name.is_none() {
            class.type_name = type_name;
        }
    }
    id
}

/// Empty names become `<unnamed>`; very long names are cut.
fn clean_name(name: Cow<'static, str>) -> Cow<'static, str> {
    if name.is_empty() {
        return Cow::Borrowed("<unnamed>");
    }
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let mut end = MAX_NAME_LEN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", &name[..end]))
}

/// The description of a class, for reports.
pub(crate) fn lookup(id: ClassId) -> Option<LockClass> {
    table().classes.get(id as usize).cloned()
}

/// The kind of a class (Mutex if unknown, which cannot happen for interned ids).
pub(crate) fn kind_of(id: ClassId) -> ClassKind {
    table()
        .classes
        .get(id as usize)
        .map_or(ClassKind::Mutex, |c| c.kind)
}

/// The class of a lock, shown with where this instance was created.
pub(crate) fn describe_instance(class: ClassId, created: &'static Location<'static>) -> LockClass {
    let mut described = describe(class);
    // A lock seen through tokio's instrumentation has no `Location`: its
    // class keeps where it was created.
    if !std::ptr::eq(created, crate::vocab::unknown_site()) {
        described.created_at = created.into();
    }
    described
}

pub(crate) fn describe(class: ClassId) -> LockClass {
    lookup(class).unwrap_or_else(|| LockClass {
        name: "<unknown>".into(),
        created_at: Location::caller().into(),
        kind: ClassKind::Mutex,
        subclass: 0,
        type_name: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_site_same_class_and_names_are_interned() {
        let site = Location::caller();
        let a = for_site(site, ClassKind::Mutex);
        assert_eq!(a, for_site(site, ClassKind::Mutex));
        assert_ne!(a, for_site(site, ClassKind::RwLock));
        let j = named("journal-test", ClassKind::Mutex, site);
        assert_eq!(
            j,
            named(String::from("journal-test"), ClassKind::Mutex, site)
        );
        let nested = nested(j, 1);
        assert_ne!(nested, j);
        assert_eq!(lookup(nested).unwrap().subclass, 1);
        assert_eq!(lookup(nested).unwrap().name, "journal-test");
        assert_eq!(self::nested(a, 2), self::nested(a, 2));
        assert_eq!(
            lookup(self::nested(a, 200)).unwrap().subclass,
            MAX_NESTING_LEVEL
        );
    }

    #[test]
    fn type_names_lose_their_module_paths() {
        assert_eq!(
            short_type_name("async_lockdep::sync::mutex::Mutex<alloc::vec::Vec<u8>>"),
            "Mutex<Vec<u8>>"
        );
        assert_eq!(
            short_type_name("Mutex<(u64, std::string::String)>"),
            "Mutex<(u64, String)>"
        );
    }

    #[test]
    fn bad_names_are_cleaned() {
        let site = Location::caller();
        let empty = lookup(named("", ClassKind::Mutex, site)).unwrap();
        assert_eq!(empty.name, "<unnamed>");
        let long = lookup(named("é".repeat(500), ClassKind::Mutex, site)).unwrap();
        assert!(long.name.len() <= MAX_NAME_LEN + 3);
        assert!(long.name.ends_with("..."));
    }
}
