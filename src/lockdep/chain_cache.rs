//! Validated chains: lockdep's chain cache. A context's held classes are
//! hashed incrementally into a chain key (`held::chain_after`); a chain
//! validated once is never validated again, so a lock whose chain was seen
//! costs one probe here and never touches the graph's mutex.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A lock-free, insert-only set of validated chain hashes: open-addressing
/// tables with linear probing. When the newest table has no free slot near
/// a chain's hash, a table twice as large is added (tables are never moved,
/// so lookups stay lock-free); after the last one, inserts are dropped and
/// the cache says it is full (`Status::chain_cache_full`): lookups of new
/// chains then miss and the slow path runs, slower but never wrong.
pub(crate) struct ChainCache {
    tables: [OnceLock<Box<[AtomicU64]>>; LEVELS],
    /// How many tables exist (the first `levels` of `tables`).
    levels: AtomicUsize,
    first_size: usize,
    len: AtomicUsize,
    full: AtomicBool,
}

const PROBES: usize = 8;

/// Tables of `size`, `2 * size`, ...: 16 384 slots first, 8 Mi slots (64
/// MiB) for the last with the engine's default.
const LEVELS: usize = 10;

impl ChainCache {
    /// A cache whose first table has `size` slots (a power of two).
    pub(crate) fn new(size: usize) -> ChainCache {
        let size = size.max(PROBES).next_power_of_two();
        let cache = ChainCache {
            tables: std::array::from_fn(|_| OnceLock::new()),
            levels: AtomicUsize::new(1),
            first_size: size,
            len: AtomicUsize::new(0),
            full: AtomicBool::new(false),
        };
        let _ = cache.tables[0].set(table(size));
        cache
    }

    #[inline]
    pub(crate) fn contains(&self, chain: u64) -> bool {
        let chain = chain.max(1);
        if self.tables[0]
            .get()
            .is_some_and(|first| probe(first, chain))
        {
            return true; // the common case: one table, found
        }
        let levels = self.levels.load(Ordering::Acquire);
        levels > 1
            && self.tables[1..levels.min(LEVELS)]
                .iter()
                .filter_map(OnceLock::get)
                .any(|slots| probe(slots, chain))
    }

    pub(crate) fn insert(&self, chain: u64) {
        let chain = chain.max(1);
        if self.contains(chain) {
            return;
        }
        let mut level = self.levels.load(Ordering::Acquire).clamp(1, LEVELS) - 1;
        loop {
            let slots = self.tables[level].get_or_init(|| table(self.first_size << level));
            match place(slots, chain) {
                Placed::New => {
                    self.len.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Placed::Present => return,
                Placed::NoRoom if level + 1 < LEVELS => {
                    level += 1;
                    self.tables[level].get_or_init(|| table(self.first_size << level));
                    self.levels.fetch_max(level + 1, Ordering::AcqRel);
                }
                Placed::NoRoom => {
                    self.full.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// How many chains are cached.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether a chain could not be cached for want of room.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }
}

fn table(size: usize) -> Box<[AtomicU64]> {
    (0..size).map(|_| AtomicU64::new(0)).collect()
}

#[inline]
fn probe(slots: &[AtomicU64], chain: u64) -> bool {
    let mask = slots.len() - 1;
    for i in 0..PROBES {
        match slots[(chain as usize).wrapping_add(i) & mask].load(Ordering::Acquire) {
            0 => return false,
            found if found == chain => return true,
            _ => {}
        }
    }
    false
}

enum Placed {
    New,
    Present,
    NoRoom,
}

fn place(slots: &[AtomicU64], chain: u64) -> Placed {
    let mask = slots.len() - 1;
    for i in 0..PROBES {
        let slot = &slots[(chain as usize).wrapping_add(i) & mask];
        match slot.compare_exchange(0, chain, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Placed::New,
            Err(found) if found == chain => return Placed::Present,
            Err(_) => {}
        }
    }
    Placed::NoRoom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_past_its_first_table_and_keeps_every_chain() {
        let cache = ChainCache::new(16);
        let chains: Vec<u64> = (1..=2_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        for &chain in &chains {
            cache.insert(chain);
        }
        assert!(cache.levels.load(Ordering::Relaxed) > 1);
        assert!(!cache.is_full());
        assert_eq!(cache.len(), chains.len());
        assert!(chains.iter().all(|&c| cache.contains(c)));
        assert!(!cache.contains(12345));
    }

    #[test]
    fn says_when_it_is_full_and_stays_correct() {
        let cache = ChainCache::new(8);
        // 8 + 16 + ... + 4096 slots in all: more chains than that cannot fit.
        for chain in 1..=10_000u64 {
            cache.insert(chain.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        assert!(cache.is_full());
        assert!(cache.len() < 10_000);
        assert!(!cache.contains(7));
    }
}
