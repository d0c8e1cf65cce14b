//! How the store thread tells a consumer that does not wait on the completion channel that
//! completions are there: the logic core on a reactor's thread (`serve` with one reactor,
//! the default) waits in the reactor's `epoll_wait` or `io_uring_enter`, not on the channel,
//! so the store wakes the reactor through a callback the caller gives, once per batch of
//! completions (a commit's acks together), never per completion. The store knows nothing of
//! what it wakes.

use std::sync::Arc;

/// Called by the store thread after it has sent a batch's completions; by default nothing
/// (the logic core on a thread of its own waits on the channel itself).
#[derive(Clone, Default)]
pub struct CompletionWake(Option<Arc<dyn Fn() + Send + Sync>>);

impl CompletionWake {
    /// `wake` is called after each batch's completions are on the channel. It must not block
    /// (it runs on the store thread, between commits).
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> CompletionWake {
        CompletionWake(Some(Arc::new(wake)))
    }

    pub(crate) fn wake(&self) {
        if let Some(wake) = &self.0 {
            wake();
        }
    }
}

impl std::fmt::Debug for CompletionWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "CompletionWake(set)",
            None => "CompletionWake(none)",
        })
    }
}
