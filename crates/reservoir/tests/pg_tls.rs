//! TLS against the local PostgreSQL, reconfigured for the test with a
//! certificate authority it generates. Its own test binary: it changes the
//! server's certificate (and puts the previous one back at the end), so it
//! runs only when `RESERVOIR_DISRUPTIVE_TESTS=1` (`.ci/run` sets it).
#![cfg(feature = "postgres")]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use reservoir::{Engine, Error, ErrorKind};

const SERVER: &str = "postgres@localhost:5432/test";

/// A CA (written to `ca.pem`) and a server certificate for "localhost" only,
/// signed by it; a second, unrelated CA in `other-ca.pem`.
struct Pki {
    dir: PathBuf,
    server_cert: String,
    server_key: String,
}

impl Pki {
    fn generate() -> Pki {
        let dir = std::env::temp_dir().join(format!("reservoir-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_pem, issuer) = certificate_authority();
        std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
        std::fs::write(dir.join("other-ca.pem"), certificate_authority().0).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Pki {
            dir,
            server_cert: cert.pem(),
            server_key: key.serialize_pem(),
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

fn certificate_authority() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

async fn admin() -> Engine {
    Engine::builder(format!("postgres://{SERVER}?sslmode=disable"))
        .build()
        .await
        .unwrap()
}

/// Has the server write `pem` into its data directory (so the server owns
/// the file, and it survives a restart), readable only by the server (as it
/// demands of a key; needs this process to run as root or the server's user).
async fn server_file(admin: &Engine, name: &str, pem: &str) -> String {
    let dir: String = admin.fetch_scalar("SHOW data_directory", ()).await.unwrap();
    let path = format!("{dir}/{name}");
    // PEM has no quotes or backslashes: each line is one row of COPY's text.
    let lines: Vec<String> = pem.lines().map(|l| format!("'{l}'")).collect();
    let sql = format!("COPY (SELECT unnest(ARRAY[{}])) TO '{path}'", lines.join(","));
    admin.execute(sql.as_str(), ()).await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod 600 {path} (run the test as root or the server's user): {e}"));
    path
}

async fn set_server_certificate(admin: &Engine, cert: &str, key: &str) {
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{cert}'"),
        format!("ALTER SYSTEM SET ssl_key_file = '{key}'"),
        "ALTER SYSTEM SET ssl = on".to_string(),
    ] {
        admin.execute(sql.as_str(), ()).await.unwrap();
    }
    reload(admin).await;
}

async fn restore_server_certificate(admin: &Engine) {
    for sql in [
        "ALTER SYSTEM RESET ssl_cert_file",
        "ALTER SYSTEM RESET ssl_key_file",
        "ALTER SYSTEM RESET ssl",
    ] {
        admin.execute(sql, ()).await.unwrap();
    }
    reload(admin).await;
}

async fn reload(admin: &Engine) {
    let reloaded: bool = admin.fetch_scalar("SELECT pg_reload_conf()", ()).await.unwrap();
    assert!(reloaded);
}

async fn connect(url: &str) -> Result<Engine, Error> {
    let engine = Engine::builder(url).pool_size(1).build().await?;
    engine.fetch_scalar::<i32>("SELECT 1", ()).await?;
    Ok(engine)
}

/// Whether the engine's connection is encrypted, as the server sees it.
async fn encrypted(engine: &Engine) -> bool {
    engine
        .fetch_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", ())
        .await
        .unwrap()
}

/// The server picks up a reloaded certificate for new connections shortly
/// after the signal: retry until ours is served.
async fn wait_for_certificate(url: &str) -> Engine {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect(url).await {
            Ok(engine) => return engine,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the server never served the test certificate: {e}"),
        }
    }
}

async fn refused(url: &str, expect: &str) {
    let err = connect(url)
        .await
        .err()
        .unwrap_or_else(|| panic!("{url} connected"));
    assert_eq!(err.kind(), &ErrorKind::Connect, "{err}");
    assert!(err.to_string().contains(expect), "{url}: {err}");
}

async fn sslmodes(pki: &Pki) {
    let ca = pki.path("ca.pem");
    let full = format!("postgres://{SERVER}?sslmode=verify-full&sslrootcert={ca}");
    let engine = wait_for_certificate(&full).await;
    assert!(encrypted(&engine).await, "verify-full is encrypted");
    engine.close().await;

    // The certificate names "localhost", not 127.0.0.1.
    let by_ip = format!("postgres://postgres@127.0.0.1:5432/test?sslrootcert={ca}");
    refused(&format!("{by_ip}&sslmode=verify-full"), "certificate").await;
    let engine = connect(&format!("{by_ip}&sslmode=verify-ca")).await.unwrap();
    assert!(encrypted(&engine).await, "verify-ca skips only the name check");
    engine.close().await;

    // A certificate from another authority is refused.
    let other = pki.path("other-ca.pem");
    refused(
        &format!("postgres://{SERVER}?sslmode=verify-ca&sslrootcert={other}"),
        "certificate",
    )
    .await;
    // `require` with that root checks the chain too (libpq's rule)...
    refused(
        &format!("postgres://{SERVER}?sslmode=require&sslrootcert={other}"),
        "certificate",
    )
    .await;
    // ...and without one only encrypts, as does the default `prefer`.
    for url in [
        format!("postgres://{SERVER}?sslmode=require"),
        format!("postgres://{SERVER}"),
    ] {
        let engine = connect(&url).await.unwrap();
        assert!(encrypted(&engine).await, "{url} is encrypted");
        engine.close().await;
    }
    let engine = connect(&format!("postgres://{SERVER}?sslmode=disable"))
        .await
        .unwrap();
    assert!(!encrypted(&engine).await, "disable is not encrypted");
    engine.close().await;
}

/// `close_with(interrupt)` sends its cancel request over TLS too.
async fn cancel_over_tls(pki: &Pki) {
    let url = format!(
        "postgres://{SERVER}?sslmode=verify-full&sslrootcert={}",
        pki.path("ca.pem")
    );
    let engine = connect(&url).await.unwrap();
    let sleeper = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.execute("SELECT pg_sleep(30)", ()).await })
    };
    while engine.status().in_use == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    engine
        .close_with(reservoir::CloseOptions {
            force: false,
            interrupt: true,
        })
        .await;
    let err = sleeper.await.unwrap().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), &ErrorKind::Interrupted, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_a_server_with_a_test_authority() {
    if !common::disruptive_allowed("turning TLS on in the local PostgreSQL") {
        return;
    }
    let pki = Pki::generate();
    let admin = admin().await;
    let cert = server_file(&admin, "reservoir_test_server.crt", &pki.server_cert).await;
    let key = server_file(&admin, "reservoir_test_server.key", &pki.server_key).await;
    set_server_certificate(&admin, &cert, &key).await;
    let outcome = std::panic::AssertUnwindSafe(async {
        sslmodes(&pki).await;
        cancel_over_tls(&pki).await;
    })
    .catch_unwind()
    .await;
    restore_server_certificate(&admin).await;
    admin.close().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn bad_tls_settings_are_refused_when_the_engine_is_built() {
    let err = Engine::builder(format!("postgres://{SERVER}?sslmode=verify-everything"))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Url, "{err}");
    assert!(err.to_string().contains("verify-everything"), "{err}");

    let missing = Path::new("/nonexistent/root.pem").display().to_string();
    let err = Engine::builder(format!(
        "postgres://{SERVER}?sslmode=verify-full&sslrootcert={missing}"
    ))
    .build()
    .await
    .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("/nonexistent/root.pem"), "{err}");
}
