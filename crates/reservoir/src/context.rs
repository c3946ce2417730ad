//! Per-task stacks of reusable connections (GINO's context; SQLAlchemy's
//! "threadlocal" strategy), one registry per engine. "The current task" is
//! the tokio task, or the thread outside one (a `block_on` body), so it works
//! with no set-up, and a spawned task starts with an empty stack.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};

use smallvec::SmallVec;

use crate::connection::Link;

/// Identifies the current task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TaskKey {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl TaskKey {
    pub fn current() -> TaskKey {
        match tokio::task::try_id() {
            Some(id) => TaskKey::Task(id),
            None => TaskKey::Thread(std::thread::current().id()),
        }
    }
}

/// The stacks of every task that holds a reusable connection of one engine.
/// An entry lives exactly as long as its root connection, so a task that
/// ends (dropping its connections) leaves nothing behind. Every checkout
/// passes through here twice, so the map uses a fast hasher (keys are task
/// ids, not attacker input) and a task's stack holds two entries inline
/// before it allocates (a task rarely holds more than one or two reusable
/// connections: a transaction joins the one it has).
#[derive(Default)]
pub(crate) struct Contexts {
    stacks: Mutex<Stacks>,
    /// Entries over all stacks: lets the common case (no task holds a
    /// reusable connection) skip the lock.
    entries: AtomicUsize,
}

type Stacks = HashMap<TaskKey, SmallVec<[Weak<Link>; 2]>, foldhash::fast::RandomState>;

impl Contexts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stacks> {
        self.stacks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest live reusable connection of the current task.
    pub fn top(&self) -> Option<Arc<Link>> {
        if self.entries.load(SeqCst) == 0 {
            return None;
        }
        let stacks = self.lock();
        let stack = stacks.get(&TaskKey::current())?;
        stack
            .iter()
            .rev()
            .find_map(Weak::upgrade)
            .filter(|link| !link.is_released())
    }

    /// Puts a root connection on the current task's stack.
    pub fn push(&self, link: &Arc<Link>) -> TaskKey {
        let key = TaskKey::current();
        self.lock().entry(key).or_default().push(Arc::downgrade(link));
        self.entries.fetch_add(1, SeqCst);
        key
    }

    /// Takes a root connection off the stack it was pushed on.
    pub fn remove(&self, key: TaskKey, link: &Arc<Link>) {
        let mut stacks = self.lock();
        if let Entry::Occupied(mut stack) = stacks.entry(key) {
            let target = Arc::as_ptr(link);
            if let Some(pos) = stack.get().iter().rposition(|w| std::ptr::eq(w.as_ptr(), target)) {
                stack.get_mut().remove(pos);
                self.entries.fetch_sub(1, SeqCst);
            }
            if stack.get().is_empty() {
                stack.remove();
            }
        }
    }

    /// How many tasks hold a stack right now.
    pub fn tasks(&self) -> usize {
        self.lock().len()
    }
}
