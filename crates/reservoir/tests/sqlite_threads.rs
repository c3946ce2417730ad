//! Alone in its own test binary: it counts the process's SQLite worker
//! threads, which tests running beside it would change.

use std::time::Duration;

use reservoir::Engine;

#[tokio::test]
async fn dropping_the_engine_stops_its_worker_threads() {
    fn sqlite_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.trim() == "reservoir-sqlit")
            .count()
    }
    let before = sqlite_threads();
    let engine = Engine::builder("sqlite::memory:")
        .min_size(3)
        .build()
        .await
        .unwrap();
    // A thread names itself as it starts, just after it is spawned.
    for _ in 0..100 {
        if sqlite_threads() >= before + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        sqlite_threads() >= before + 3,
        "{} worker threads",
        sqlite_threads()
    );
    drop(engine);
    for _ in 0..100 {
        if sqlite_threads() <= before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("worker threads still running: {}", sqlite_threads());
}
