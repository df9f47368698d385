//! [`ApiServerThread`]: a [`TestApiServer`] on a thread of its own, for tests that block.
//!
//! The server's listener is driven by the actix system it was started on; a test that polls
//! child processes with `std::thread::sleep` on that system's thread would starve it (every
//! request would wait for the test). Here the server runs on its own system, and the async
//! control calls (`stop`, `restart`) are sent to it and waited for.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::time::Duration;

use super::TestApiServer;

type Task = Box<dyn FnOnce(TestApiServer) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// How long a control call may take before the test fails.
const CONTROL_DEADLINE: Duration = Duration::from_secs(30);

pub struct ApiServerThread {
    api: TestApiServer,
    tasks: Option<tokio::sync::mpsc::UnboundedSender<Task>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServerThread {
    /// Call from a plain `#[test]`, not from inside an actix system.
    pub fn start() -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (tasks, mut queue) = tokio::sync::mpsc::unbounded_channel::<Task>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let api = TestApiServer::start().await;
                let _ = ready_tx.send(api.clone());
                while let Some(task) = queue.recv().await {
                    task(api.clone()).await;
                }
                api.stop().await;
            });
        });
        let api = ready_rx
            .recv_timeout(CONTROL_DEADLINE)
            .expect("the test API server thread started");
        Self {
            api,
            tasks: Some(tasks),
            thread: Some(thread),
        }
    }

    fn run<F>(&self, task: impl FnOnce(TestApiServer) -> F + Send + 'static)
    where
        F: Future<Output = ()> + 'static,
    {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let task: Task = Box::new(move |api| {
            Box::pin(async move {
                task(api).await;
                let _ = done_tx.send(());
            })
        });
        if let Some(tasks) = &self.tasks {
            tasks
                .send(task)
                .expect("the test API server thread is running");
        }
        done_rx
            .recv_timeout(CONTROL_DEADLINE)
            .expect("the test API server thread ran the control call");
    }

    /// Stops listening (connections are refused); state and port are kept for `restart`.
    pub fn stop(&self) {
        self.run(|api| async move { api.stop().await });
    }

    pub fn restart(&self) {
        self.run(|api| async move { api.restart().await });
    }
}

impl Deref for ApiServerThread {
    type Target = TestApiServer;

    fn deref(&self) -> &TestApiServer {
        &self.api
    }
}

impl Drop for ApiServerThread {
    fn drop(&mut self) {
        // Closing the queue ends the server's loop; it stops and the thread ends.
        self.tasks.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
