//! A real PgBouncer (Debian's package) in transaction mode in front of the
//! test PostgreSQL, started once per test process on a free port and stopped
//! when the process exits.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Server connections PgBouncer opens to PostgreSQL: few, so the clients'
/// transactions really do move between server sessions.
pub const SERVER_CONNECTIONS: usize = 2;

struct Bouncer {
    port: u16,
    /// Its stdin is the watchdog's: the pipe closes when this process ends.
    _watchdog: Child,
}

/// The port of this process's PgBouncer, started on first use.
pub fn port() -> u16 {
    static BOUNCER: OnceLock<Bouncer> = OnceLock::new();
    BOUNCER.get_or_init(start).port
}

fn start() -> Bouncer {
    let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("pgbouncer is not installed (apt-get install pgbouncer)");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("reservoir-pgbouncer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // PgBouncer refuses to run as root: it runs as `postgres`, which must
    // read these files and write its log here.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let users = dir.join("users.txt");
    std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
    let ini = dir.join("pgbouncer.ini");
    let log = dir.join("pgbouncer.log");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n\
             test = host=127.0.0.1 port=5432 dbname=test\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             default_pool_size = {SERVER_CONNECTIONS}\n\
             max_client_conn = 500\n\
             server_tls_sslmode = disable\n\
             logfile = {log}\n",
            users = users.display(),
            log = log.display()
        ),
    )
    .unwrap();
    for file in [&users, &ini] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // The watchdog runs PgBouncer and stops it when its stdin (held by this
    // process, never written) reaches end of file: when this process exits.
    let as_postgres = if is_root() {
        "setpriv --reuid postgres --regid postgres --clear-groups "
    } else {
        ""
    };
    let script = format!(
        "{as_postgres}{binary} {ini} & p=$!; cat >/dev/null; kill $p; sleep 0.2; rm -rf {dir}",
        ini = ini.display(),
        dir = dir.display()
    );
    let mut watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgbouncer");
    let _ = watchdog.stdin.as_mut().map(|s| s.flush());
    wait_until_listening(port, &log);
    Bouncer {
        port,
        _watchdog: watchdog,
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A free port below the kernel's ephemeral range (32768 and up): a port
/// handed out by `bind(0)` and released can be taken as the source port of
/// an outgoing connection before PgBouncer binds it.
fn free_port() -> u16 {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (start..30_000)
        .chain(20_000..start)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port for pgbouncer")
}

/// Waits until PgBouncer's own log says it listens on `port` and the port
/// answers (a connect alone could reach something else).
fn wait_until_listening(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let said = format!("listening on 127.0.0.1:{port}");
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(&said) && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pgbouncer did not start listening on port {port}; its log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
