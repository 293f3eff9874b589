//! Handles: what a C caller holds is an id, not an address. Each live engine or sequence is in
//! a registry behind an `Arc`; an entry point looks its handle up (a closed, never opened or
//! wrong-kind handle is [`TF_ERR_HANDLE`], not a read of freed memory) and keeps its own
//! `Arc` for the call, so closing a handle on another thread never frees what a running call
//! uses. Ids are never reused.

use super::{Error, Result, TF_ERR_HANDLE, TF_ERR_NULL};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Ids for every kind of handle from one counter, so no engine id is ever a sequence id.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// The live handles of one kind.
pub struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    pub const fn new(kind: &'static str) -> Self {
        Registry {
            kind,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // the map is never left half-changed: a panic while it is locked cannot break it
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `v` and returns its handle.
    pub fn insert<H>(&self, v: Arc<T>) -> *mut H {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.map().insert(id, v);
        std::ptr::without_provenance_mut(id)
    }

    /// What `handle` refers to, while it is open.
    pub fn get<H>(&self, handle: *const H) -> Result<Arc<T>> {
        self.map()
            .get(&handle.addr())
            .cloned()
            .ok_or_else(|| self.not_open(handle.addr()))
    }

    /// Closes `handle`; what it referred to is dropped once no call uses it.
    pub fn remove<H>(&self, handle: *const H) -> Result<Arc<T>> {
        self.map()
            .remove(&handle.addr())
            .ok_or_else(|| self.not_open(handle.addr()))
    }

    fn not_open(&self, id: usize) -> Error {
        if id == 0 {
            return Error::new(TF_ERR_NULL, format!("the {} handle is NULL", self.kind));
        }
        Error::new(
            TF_ERR_HANDLE,
            format!(
                "{id:#x} is not an open {} handle (closed already, or never opened)",
                self.kind
            ),
        )
    }
}
