//! The one task guard: a background task that lives exactly as long as its
//! owner (the server's probes and watchers, TLS's accept loop), so no task
//! outlives the server that started it.

/// Aborts its task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Spawns `task` on the current runtime, guarded.
    pub(crate) fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(task))
    }

    /// Guards a task already spawned.
    pub(crate) fn guard(task: tokio::task::JoinHandle<()>) -> AbortOnDrop {
        AbortOnDrop(task)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
