//! `echo(true)` logs every statement at INFO; parameter values and passwords
//! never appear in any log line. Alone in its binary: it installs a global
//! tracing subscriber.

use std::sync::{Arc, Mutex};

use reservoir::{Engine, params};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn echo_logs_statements_without_values_or_passwords() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let engine = Engine::builder("sqlite::memory:")
        .echo(true)
        .build()
        .await
        .unwrap();
    engine.execute("CREATE TABLE secrets (v TEXT)", ()).await.unwrap();
    engine
        .execute("INSERT INTO secrets VALUES (:v)", params! {"v" => "s3cr3t-value"})
        .await
        .unwrap();
    #[cfg(feature = "postgres")]
    {
        let url = "postgres://postgres:hunter2-password@127.0.0.1:5432/test";
        let pg = Engine::builder(url).echo(true).build().await.unwrap();
        pg.fetch_one("SELECT $1::text", ("another-s3cr3t",))
            .await
            .unwrap();
        let shown = format!("{pg:?} {}", pg.url());
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("INSERT INTO secrets VALUES (?)"),
        "the statement is logged: {log}"
    );
    assert!(log.contains(" INFO "), "at INFO: {log}");
    assert!(!log.contains("s3cr3t"), "no parameter value in the log: {log}");
    assert!(!log.contains("hunter2"), "no password in the log: {log}");
}
