//! Per-task stacks of reusable connections (GINO's context; SQLAlchemy's
//! "threadlocal" strategy), one registry per engine. "The current task" is
//! the innermost [`scoped`] future around the caller if there is one, else
//! the tokio task, or the thread outside one (a `block_on` body), so it
//! works with no set-up, and a spawned task starts with an empty stack.
//! A scope is what makes connectionless statements join a context (see
//! `Engine::scope`): two scopes joined in one task are two contexts.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};

use crate::connection::Link;

tokio::task_local! {
    /// The scope the current future runs in (see [`scoped`]).
    static SCOPE: u64;
}

/// Numbers the scopes.
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);

/// Runs `future` in a scope of its own: a context of its own, which only
/// the futures it polls see (not other futures of the same task).
pub(crate) fn scoped<F: Future>(future: F) -> impl Future<Output = F::Output> {
    SCOPE.scope(NEXT_SCOPE.fetch_add(1, SeqCst), future)
}

/// Whether the caller runs inside a scope.
pub(crate) fn in_scope() -> bool {
    SCOPE.try_with(|_| ()).is_ok()
}

/// Identifies the current task (or scope).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TaskKey {
    Scope(u64),
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl TaskKey {
    pub fn current() -> TaskKey {
        if let Ok(scope) = SCOPE.try_with(|s| *s) {
            return TaskKey::Scope(scope);
        }
        match tokio::task::try_id() {
            Some(id) => TaskKey::Task(id),
            None => TaskKey::Thread(std::thread::current().id()),
        }
    }
}

/// The stacks of every task that holds a reusable connection of one engine.
/// An entry lives exactly as long as its root connection, so a task that
/// ends (dropping its connections) leaves nothing behind.
///
/// Every checkout passes through here twice, from every worker thread, so
/// the entries are split over shards by task (each on its own cache line,
/// so that tasks on different workers rarely touch the same lock). A shard
/// holds few entries, kept in push order, so a task's stack is its entries
/// in that order, and a linear scan beats hashing.
pub(crate) struct Contexts {
    shards: [Shard; SHARDS],
}

const SHARDS: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Shard {
    entries: Mutex<Vec<(TaskKey, Weak<Link>)>>,
    /// How many entries: lets the common case (the task holds no reusable
    /// connection) skip the lock. Only the task itself adds its entries,
    /// so a zero it reads cannot hide one of its own.
    len: AtomicUsize,
}

impl Shard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(TaskKey, Weak<Link>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for Contexts {
    fn default() -> Self {
        Contexts {
            shards: std::array::from_fn(|_| Shard::default()),
        }
    }
}

impl Contexts {
    fn shard(&self, key: TaskKey) -> &Shard {
        let hash = foldhash::fast::FixedState::default().hash_one(key);
        &self.shards[(hash as usize) % SHARDS]
    }

    /// The newest live reusable connection of the current task.
    pub fn top(&self) -> Option<Arc<Link>> {
        let key = TaskKey::current();
        let shard = self.shard(key);
        if shard.len.load(SeqCst) == 0 {
            return None;
        }
        let entries = shard.lock();
        entries
            .iter()
            .rev()
            .filter(|(k, _)| *k == key)
            .find_map(|(_, link)| link.upgrade())
            .filter(|link| !link.is_released())
    }

    /// Puts a root connection on the current task's stack.
    pub fn push(&self, link: &Arc<Link>) -> TaskKey {
        let key = TaskKey::current();
        let shard = self.shard(key);
        shard.lock().push((key, Arc::downgrade(link)));
        shard.len.fetch_add(1, SeqCst);
        key
    }

    /// Takes a root connection off the stack it was pushed on.
    pub fn remove(&self, key: TaskKey, link: &Arc<Link>) {
        let shard = self.shard(key);
        let mut entries = shard.lock();
        let target = Arc::as_ptr(link);
        if let Some(pos) = entries
            .iter()
            .rposition(|(k, w)| *k == key && std::ptr::eq(w.as_ptr(), target))
        {
            entries.remove(pos);
            shard.len.fetch_sub(1, SeqCst);
        }
    }

    /// How many tasks hold a stack right now.
    pub fn tasks(&self) -> usize {
        let mut distinct: Vec<TaskKey> = Vec::new();
        for shard in &self.shards {
            for (key, _) in shard.lock().iter() {
                if !distinct.contains(key) {
                    distinct.push(*key);
                }
            }
        }
        distinct.len()
    }
}
