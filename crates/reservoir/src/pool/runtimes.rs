//! Which tokio runtime a connection's sockets belong to, and whether that
//! runtime still runs.
//!
//! A socket is registered with the reactor of the runtime it was opened
//! on, and is dead once that runtime shuts down (each `#[tokio::test]` has
//! a runtime of its own; a pool in a `static` outlives them). Such a
//! connection cannot be told from a live one without using it, so the pool
//! remembers, per connection, a token that lives exactly as long as its
//! runtime (held by a task that never ends there), and replaces the
//! connection unused once the token is gone.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::runtime::{Handle, Id};

/// Lives as long as the runtime whose task holds it.
pub(crate) type RuntimeToken = Weak<()>;

/// One token per runtime connections were opened on.
#[derive(Default)]
pub(crate) struct Runtimes {
    tokens: Mutex<Vec<(Id, RuntimeToken)>>,
}

impl Runtimes {
    /// The current runtime's token (`None` outside a runtime). Called when
    /// a connection is opened, not per checkout.
    pub(crate) fn current(&self) -> Option<RuntimeToken> {
        let handle = Handle::try_current().ok()?;
        let id = handle.id();
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        // A finished runtime's id may be given to a new one: drop dead tokens first.
        tokens.retain(|(_, token)| is_alive(token));
        if let Some((_, token)) = tokens.iter().find(|(of, _)| *of == id) {
            return Some(token.clone());
        }
        let owner = Arc::new(());
        let token = Arc::downgrade(&owner);
        handle.spawn(async move {
            let _owner = owner;
            std::future::pending::<()>().await
        });
        tokens.push((id, token.clone()));
        Some(token)
    }
}

/// Whether the runtime `token` stands for still runs.
pub(crate) fn is_alive(token: &RuntimeToken) -> bool {
    token.strong_count() > 0
}
