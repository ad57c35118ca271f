//! A library that makes plain tokio locks: their classes are the lines here.

use std::sync::Arc;

/// Two locks a library hands out; their classes are the lines below.
pub struct Pair {
    pub left: Arc<tokio::sync::Mutex<u32>>,
    pub right: Arc<tokio::sync::Mutex<u32>>,
}

/// The line of `left`'s creation (below).
pub const LEFT_LINE: u32 = 16;

pub fn pair() -> Pair {
    Pair {
        left: Arc::new(tokio::sync::Mutex::new(0)),
        right: Arc::new(tokio::sync::Mutex::new(0)),
    }
}
