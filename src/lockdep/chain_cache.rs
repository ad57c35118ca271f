//! Validated chains: lockdep's chain cache. A context's held classes are
//! hashed incrementally into a chain key (`held::chain_after`); a chain
//! validated once is never validated again, so a lock whose chain was seen
//! costs one probe here and never touches the graph's mutex.

use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free, insert-only set of validated chain hashes (open addressing,
/// linear probing). When full, lookups miss and the slow path runs: slower,
/// never wrong.
pub(crate) struct ChainCache {
    slots: Box<[AtomicU64]>,
}

const PROBES: usize = 8;

impl ChainCache {
    pub(crate) fn new(size: usize) -> ChainCache {
        ChainCache {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    pub(crate) fn contains(&self, chain: u64) -> bool {
        let chain = chain.max(1);
        let mask = self.slots.len() - 1;
        for i in 0..PROBES {
            match self.slots[(chain as usize).wrapping_add(i) & mask].load(Ordering::Acquire) {
                0 => return false,
                found if found == chain => return true,
                _ => {}
            }
        }
        false
    }

    pub(crate) fn insert(&self, chain: u64) {
        let chain = chain.max(1);
        let mask = self.slots.len() - 1;
        for i in 0..PROBES {
            let slot = &self.slots[(chain as usize).wrapping_add(i) & mask];
            match slot.compare_exchange(0, chain, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(found) if found == chain => return,
                Err(_) => {}
            }
        }
    }
}
