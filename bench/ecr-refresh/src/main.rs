//! One background-refresh cycle of many ECR credentials over a few AWS identities,
//! against moto_server, beside a plain aws-sdk-ecr client making the same calls.
//!
//!   ecr-refresh-bench regkeeper --endpoint URL [--credentials 10000] [--identities 100]
//!                               [--initial login|resolve] [--resolve-sample N]
//!   ecr-refresh-bench plain     --endpoint URL [--calls 100] [--concurrency 8]
//!                               [--identities 100]
//!   ecr-refresh-bench relay     --target MOTO_URL
//!
//! Each run prints one JSON object on stdout. Provider calls are counted by a relay
//! in front of moto (see `Relay`): with `--counter HOST:PORT` the relay is a `relay`
//! process whose data port is `--endpoint`; without it, a thread in this process in
//! front of `--endpoint`. Peak RSS is the kernel's VmHWM of this process.
//! `bench/ecr-refresh.sh` runs every mode in fresh processes and prints the table.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_ecr::config::Region;
use base64::Engine;
use regkeeper::clock::ManualClock;
use regkeeper::config::{Config, Overrides};
use regkeeper::service::registry_tokens::{self, CycleReport};
use regkeeper::service::{credentials, identity, resolve};
use regkeeper_wire as wire;
use serde_json::json;

const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const REGION: &str = "us-east-1";
/// moto checks no signature; this only has to look like a secret key.
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ADMIN_TOKEN: &str = "rk_bench_bootstrap_admin_token_0123456789";
const HOUR_MS: i64 = 3_600_000;
/// The background refresher's period (`service::lease_worker::PASS_INTERVAL`).
const REFRESHER_INTERVAL_MS: i64 = 5_000;
/// The X-Amz-Target of GetAuthorizationToken, as it appears in each request's headers.
const GET_AUTHORIZATION_TOKEN: &[u8] =
    b"AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
/// Every HTTP/1.1 request line ends so (request bodies here are `{}`).
const REQUEST_LINE_END: &[u8] = b" HTTP/1.1\r\n";

/// The access key id of identity `index`: 20 upper-case alphanumerics, as moto wants.
fn access_key_id(index: usize) -> String {
    format!("AKIABENCH{index:011}")
}

// --- Counting relay ----------------------------------------------------------------

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    requests: AtomicU64,
    get_authorization_token: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct Snapshot {
    connections: u64,
    requests: u64,
    get_authorization_token: u64,
}

impl Counts {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections: self.connections.load(Ordering::SeqCst),
            requests: self.requests.load(Ordering::SeqCst),
            get_authorization_token: self.get_authorization_token.load(Ordering::SeqCst),
        }
    }
}

impl std::ops::Sub for Snapshot {
    type Output = Snapshot;
    fn sub(self, before: Snapshot) -> Snapshot {
        Snapshot {
            connections: self.connections - before.connections,
            requests: self.requests - before.requests,
            get_authorization_token: self.get_authorization_token - before.get_authorization_token,
        }
    }
}

impl Snapshot {
    fn json(self) -> serde_json::Value {
        json!({
            "get_authorization_token": self.get_authorization_token,
            "http_requests": self.requests,
            "connections": self.connections,
        })
    }
}

/// Counts the occurrences of `needle` in a byte stream fed in arbitrary chunks: the
/// last `needle.len() - 1` bytes are carried over, so a match split across two reads
/// is still found once (neither needle overlaps itself, so none is found twice).
struct StreamMatcher {
    needle: &'static [u8],
    carry: Vec<u8>,
}

impl StreamMatcher {
    fn new(needle: &'static [u8]) -> Self {
        Self {
            needle,
            carry: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) -> u64 {
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(data);
        let mut found = 0;
        let mut at = 0;
        while at + self.needle.len() <= window.len() {
            if &window[at..at + self.needle.len()] == self.needle {
                found += 1;
                at += self.needle.len();
            } else {
                at += 1;
            }
        }
        let keep = (self.needle.len() - 1).min(window.len());
        self.carry = window[window.len() - keep..].to_vec();
        found
    }
}

/// A TCP relay in front of moto (like the one in tests/it/token_refresh.rs) that
/// counts what the client sends: connections, HTTP requests (request lines) and
/// GetAuthorizationToken calls (their X-Amz-Target header). Counting the requests
/// themselves, not connections, stays right whatever the SDK does with keep-alive.
/// A request is counted before it is forwarded, so by the time its answer reaches
/// the SDK the count already includes it.
struct Relay {
    port: u16,
    counts: Arc<Counts>,
}

impl Relay {
    fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay bind");
        let port = listener.local_addr().expect("relay address").port();
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let counts = Arc::clone(&shared);
                pipe(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    Some(counts),
                );
                pipe(server, client, None);
            }
        });
        Self { port, counts }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counts: Option<Arc<Counts>>) {
    std::thread::spawn(move || {
        let mut calls = StreamMatcher::new(GET_AUTHORIZATION_TOKEN);
        let mut requests = StreamMatcher::new(REQUEST_LINE_END);
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read) = from.read(&mut buffer) {
            if read == 0 {
                break;
            }
            if let Some(counts) = &counts {
                let chunk = &buffer[..read];
                counts
                    .requests
                    .fetch_add(requests.feed(chunk), Ordering::SeqCst);
                counts
                    .get_authorization_token
                    .fetch_add(calls.feed(chunk), Ordering::SeqCst);
            }
            if to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// Where the counts come from: a relay process of its own (`relay` mode, so its
/// threads' CPU time and memory are not charged to the process measured), or, when no
/// `--counter` is given, a relay thread in this process in front of `--endpoint`.
enum Counter {
    InProcess(Relay),
    Process { url: String, control: String },
}

impl Counter {
    fn new(endpoint: &str, control: Option<&str>) -> Self {
        match control {
            Some(control) => Self::Process {
                url: endpoint.trim_end_matches('/').to_owned(),
                control: control.to_owned(),
            },
            None => Self::InProcess(Relay::start(
                endpoint
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned(),
            )),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::InProcess(relay) => relay.url(),
            Self::Process { url, .. } => url.clone(),
        }
    }

    fn snapshot(&self) -> Snapshot {
        match self {
            Self::InProcess(relay) => relay.counts.snapshot(),
            Self::Process { control, .. } => {
                let mut text = String::new();
                TcpStream::connect(control)
                    .and_then(|mut stream| stream.read_to_string(&mut text))
                    .expect("reading the relay's counts");
                let value: serde_json::Value =
                    serde_json::from_str(&text).expect("relay counts are JSON");
                let field = |name: &str| value[name].as_u64().expect("relay count");
                Snapshot {
                    connections: field("connections"),
                    requests: field("http_requests"),
                    get_authorization_token: field("get_authorization_token"),
                }
            }
        }
    }
}

/// `relay` mode: a counting relay in front of `target`, and a control port that
/// answers every connection with the counts so far (JSON) and closes.
fn run_relay(target: &str) -> ! {
    let relay = Relay::start(
        target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned(),
    );
    let control = TcpListener::bind("127.0.0.1:0").expect("control bind");
    println!(
        "{}",
        json!({
            "endpoint": relay.url(),
            "control": control.local_addr().expect("control address").to_string(),
        })
    );
    std::io::stdout().flush().ok();
    for mut stream in control.incoming().flatten() {
        let _ = stream.write_all(relay.counts.snapshot().json().to_string().as_bytes());
    }
    std::process::exit(1)
}

// --- Memory ----------------------------------------------------------------------

/// A `/proc/self/status` field in KiB (VmHWM: peak resident set; VmRSS: current).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak of one phase can be read.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time (user + system) this process has used, in ms, from `/proc/self/stat`
/// (USER_HZ is 100 on Linux, so 10 ms resolution). It includes the relay's threads,
/// the same in every mode.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) * 10.0
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

// --- regkeeper -------------------------------------------------------------------

fn ecr_input(index: usize, identities: usize) -> wire::CredentialInput {
    wire::CredentialInput {
        name: Some(format!("ecr-{index:05}")),
        registry: Some(REGISTRY.into()),
        path_prefix: Some(format!("team-{index:05}")),
        username: Some(access_key_id(index % identities)),
        password: Some(wire::Sensitive::new(SECRET_ACCESS_KEY)),
        verify: Some(false),
        ..Default::default()
    }
}

async fn run_regkeeper(
    endpoint: &str,
    counter: Option<&str>,
    count: usize,
    identities: usize,
    initial_by_resolve: bool,
    resolve_sample: usize,
) -> Result<serde_json::Value, String> {
    let run_started = Instant::now();
    let relay = Counter::new(endpoint, counter);
    let directory = std::env::temp_dir().join(format!(
        "regkeeper-ecr-refresh-bench-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&directory);
    let variables: HashMap<&str, String> = HashMap::from([
        (
            "REGKEEPER_DATA_DIR",
            directory.join("data").display().to_string(),
        ),
        ("REGKEEPER_BOOTSTRAP_TOKEN", ADMIN_TOKEN.to_owned()),
        ("AWS_ENDPOINT_URL", relay.url()),
    ]);
    let config = Config::load(
        None,
        &|name| variables.get(name).cloned(),
        &Overrides::default(),
    )
    .map_err(|error| format!("config: {error}"))?;
    let start = 1_800_000_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let app = regkeeper::serve::build_app(config, clock.clone())
        .await
        .map_err(|error| format!("build_app: {error:#}"))?;
    identity::bootstrap(&app)
        .await
        .map_err(|error| format!("bootstrap: {error}"))?;
    let admin = identity::authenticate(&app, ADMIN_TOKEN)
        .await
        .map_err(|error| format!("authenticate: {error}"))?;

    // Setup: the credentials, none verified (verification is not what is measured).
    let phase = Instant::now();
    let mut created = Vec::with_capacity(count);
    for index in 0..count {
        created.push(
            credentials::create(&app, &admin, None, ecr_input(index, identities))
                .await
                .map_err(|error| format!("creating credential {index}: {error}"))?,
        );
    }
    let create_ms = millis(phase.elapsed());

    // Initial cycle: each credential is used once, which mints one token per identity
    // and links every credential to its identity's token. By default through
    // `registry_tokens::login_for`, which is what a resolve calls once it has picked the
    // credential: a resolve itself reads every credential of the workspace to pick
    // one, so 10,000 resolves in one workspace take quadratic time (see README).
    let before = relay.snapshot();
    let phase = Instant::now();
    for (index, credential) in created.iter().enumerate() {
        let login = if initial_by_resolve {
            let image = format!("{REGISTRY}/team-{index:05}/app:1");
            resolve::resolve(
                &app,
                &admin,
                None,
                resolve::Request {
                    image: Some(&image),
                    ..Default::default()
                },
            )
                .await
                .map_err(|error| format!("resolving {image}: {error}"))?
                .login
        } else {
            registry_tokens::login_for(&app, credential)
                .await
                .map_err(|error| format!("login for {}: {error}", credential.name))?
        };
        if login.issued_at != start {
            return Err(format!(
                "{}: token not minted at the start",
                credential.name
            ));
        }
    }
    let initial_ms = millis(phase.elapsed());
    let initial_calls = relay.snapshot() - before;

    // The refresh cycle, past every refresh point (8 h ± 36 min of a 12 h token).
    clock.advance(9 * HOUR_MS);
    let setup_peak_kib = status_kib("VmHWM");
    let phase_peak_reset = reset_peak_rss();
    let rss_before_refresh_kib = status_kib("VmRSS");
    let before = relay.snapshot();
    let cpu_before = cpu_ms();
    let phase = Instant::now();
    let mut total = CycleReport::default();
    let mut cycles = 0;
    let mut refresher_clock_ms = 0;
    loop {
        let report = registry_tokens::refresh_cycle(&app, "bench-replica")
            .await
            .map_err(|error| format!("refresh cycle: {error}"))?;
        cycles += 1;
        if report.leased == 0 {
            break;
        }
        total.leased += report.leased;
        total.refreshed += report.refreshed;
        total.failed += report.failed;
        total.dropped += report.dropped;
        total.deferred += report.deferred;
        if report.deferred > 0 {
            // The provider rate limit (a token bucket on the injected clock) put some
            // off: the background refresher runs its next cycle one interval later.
            clock.advance(REFRESHER_INTERVAL_MS);
            refresher_clock_ms += REFRESHER_INTERVAL_MS;
        }
    }
    let refresh_ms = millis(phase.elapsed());
    let refresh_cpu_ms = cpu_ms() - cpu_before;
    let refresh_calls = relay.snapshot() - before;
    let refresh_peak_kib = status_kib("VmHWM");

    // Check: one refreshed token per identity, and every identity's credentials are
    // served the refreshed token from memory without another provider call.
    let before = relay.snapshot();
    let refresh_started_at = start + 9 * HOUR_MS;
    for credential in created.iter().take(identities) {
        let login = registry_tokens::login_for(&app, credential)
            .await
            .map_err(|error| format!("login for {} after refresh: {error}", credential.name))?;
        if login.issued_at < refresh_started_at {
            return Err(format!("{} was not refreshed", credential.name));
        }
    }
    let after_calls = relay.snapshot() - before;
    if total.refreshed != identities || total.failed != 0 || total.dropped != 0 {
        return Err(format!(
            "refresh cycles: leased {}, refreshed {}, failed {}, dropped {}, deferred {} (expected {identities} refreshed)",
            total.leased, total.refreshed, total.failed, total.dropped, total.deferred
        ));
    }
    if after_calls.get_authorization_token != 0 {
        return Err("serving refreshed tokens called the provider again".into());
    }
    let whole_ms = millis(run_started.elapsed());

    // Not part of the cycle: what one resolve costs with this many credentials in the
    // workspace (tokens are cached, so no provider call), on a spread sample.
    let resolve_sample = if resolve_sample > 0 {
        let before = relay.snapshot();
        let peak_reset = reset_peak_rss();
        let phase = Instant::now();
        for k in 0..resolve_sample {
            let index = k * count / resolve_sample;
            let image = format!("{REGISTRY}/team-{index:05}/app:1");
            let resolution = resolve::resolve(
                &app,
                &admin,
                None,
                resolve::Request {
                    image: Some(&image),
                    ..Default::default()
                },
            )
                .await
                .map_err(|error| format!("resolving {image}: {error}"))?;
            if resolution.credential.name != format!("ecr-{index:05}") {
                return Err(format!(
                    "{image} resolved to {}",
                    resolution.credential.name
                ));
            }
        }
        let elapsed = millis(phase.elapsed());
        let calls = relay.snapshot() - before;
        json!({
            "resolves": resolve_sample,
            "ms_per_resolve": elapsed / resolve_sample as f64,
            "calls": calls.json(),
            "peak_rss_kib": if peak_reset { serde_json::Value::from(status_kib("VmHWM")) } else { serde_json::Value::Null },
        })
    } else {
        serde_json::Value::Null
    };
    let _ = std::fs::remove_dir_all(&directory);
    Ok(json!({
        "mode": "regkeeper",
        "credentials": count,
        "identities": identities,
        "concurrency": registry_tokens::CONCURRENCY,
        "cycle_batch": registry_tokens::CYCLE_BATCH,
        "initial_by": if initial_by_resolve { "resolve" } else { "login_for" },
        "create_ms": create_ms,
        "initial_ms": initial_ms,
        "initial_calls": initial_calls.json(),
        "refresh_ms": refresh_ms,
        "refresh_cpu_ms": refresh_cpu_ms,
        "refresh_cycles": cycles,
        "refresh_report": {
            "leased": total.leased,
            "refreshed": total.refreshed,
            "failed": total.failed,
            "dropped": total.dropped,
            "deferred_by_rate_limit": total.deferred,
        },
        "refresher_clock_ms": refresher_clock_ms,
        "refresh_calls": refresh_calls.json(),
        "whole_ms": whole_ms,
        "setup_peak_rss_kib": setup_peak_kib,
        "rss_before_refresh_kib": rss_before_refresh_kib,
        "refresh_peak_rss_kib": if phase_peak_reset { serde_json::Value::from(refresh_peak_kib) } else { serde_json::Value::Null },
        "peak_rss_kib": setup_peak_kib.max(refresh_peak_kib),
        "resolve_sample": resolve_sample,
    }))
}

// --- plain client ----------------------------------------------------------------

async fn run_plain(
    endpoint: &str,
    counter: Option<&str>,
    calls: usize,
    concurrency: usize,
    identities: usize,
) -> Result<serde_json::Value, String> {
    let run_started = Instant::now();
    let relay = Counter::new(endpoint, counter);
    let before = relay.snapshot();
    let cpu_before = cpu_ms();
    let phase = Instant::now();
    // One SDK configuration (so one HTTP client and connection pool), with the same
    // retry and timeout settings as regkeeper's ECR provider, and one ECR client per
    // identity carrying its keys.
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(relay.url())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access_key_id(0),
            SECRET_ACCESS_KEY,
            None,
            None,
            "plain",
        )))
        .load()
        .await;
    let clients: Arc<Vec<aws_sdk_ecr::Client>> = Arc::new(
        (0..identities)
            .map(|index| {
                let config = aws_sdk_ecr::config::Builder::from(&base)
                    .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                        access_key_id(index),
                        SECRET_ACCESS_KEY,
                        None,
                        None,
                        "plain",
                    )))
                    .build();
                aws_sdk_ecr::Client::from_conf(config)
            })
            .collect(),
    );
    // Bounded like regkeeper's refresh_cycle: a semaphore permit per call in flight.
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for call in 0..calls {
        // Reap finished calls as we go, so 10,000 results are not held at once.
        while let Some(result) = tasks.try_join_next() {
            result.map_err(|error| error.to_string())??;
        }
        let clients = Arc::clone(&clients);
        let permit = Arc::clone(&semaphore)
            .acquire_owned()
            .await
            .expect("semaphore open");
        tasks.spawn(async move {
            let answer = clients[call % clients.len()]
                .get_authorization_token()
                .send()
                .await
                .map_err(|error| format!("GetAuthorizationToken: {error:?}"));
            drop(permit);
            let answer = answer?;
            let token = answer
                .authorization_data()
                .first()
                .and_then(|data| data.authorization_token())
                .ok_or("no authorization token")?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .map_err(|_| "token is not base64")?;
            if !decoded.contains(&b':') {
                return Err("token is not USER:PASSWORD".to_owned());
            }
            Ok::<(), String>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.map_err(|error| error.to_string())??;
    }
    let calls_ms = millis(phase.elapsed());
    let calls_cpu_ms = cpu_ms() - cpu_before;
    let made = relay.snapshot() - before;
    if made.get_authorization_token != calls as u64 {
        return Err(format!(
            "the relay counted {} GetAuthorizationToken calls, expected {calls}",
            made.get_authorization_token
        ));
    }
    Ok(json!({
        "mode": "plain",
        "calls_requested": calls,
        "identities": identities,
        "concurrency": concurrency,
        "calls_ms": calls_ms,
        "calls_cpu_ms": calls_cpu_ms,
        "calls": made.json(),
        "whole_ms": millis(run_started.elapsed()),
        "peak_rss_kib": status_kib("VmHWM"),
    }))
}

// --- main ------------------------------------------------------------------------

fn usage() -> ! {
    eprintln!(
        "usage: ecr-refresh-bench regkeeper --endpoint URL [--credentials N] [--identities N] [--initial login|resolve] [--resolve-sample N]\n       ecr-refresh-bench plain --endpoint URL [--calls N] [--concurrency N] [--identities N]\n       ecr-refresh-bench relay --target MOTO_URL\n(regkeeper and plain take --counter HOST:PORT, a relay's control port; without it they run a relay in-process in front of --endpoint)"
    );
    std::process::exit(2)
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = arguments.first().cloned() else {
        usage()
    };
    let mut options: HashMap<String, String> = HashMap::new();
    for pair in arguments[1..].chunks(2) {
        match pair {
            [key, value] if key.starts_with("--") => {
                options.insert(key.trim_start_matches("--").to_owned(), value.clone());
            }
            _ => usage(),
        }
    }
    let number = |key: &str, default: usize| -> usize {
        options.get(key).map_or(default, |value| {
            value.parse().unwrap_or_else(|_| {
                eprintln!("--{key}: `{value}` is not a number");
                std::process::exit(2)
            })
        })
    };
    if mode == "relay" {
        let Some(target) = options.get("target") else {
            usage()
        };
        run_relay(target)
    }
    let Some(endpoint) = options.get("endpoint").cloned() else {
        usage()
    };
    let counter = options.get("counter").cloned();
    let identities = number("identities", 100);
    // Two workers, as in tests/it/token_refresh.rs and as many as this machine has.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match mode.as_str() {
        "regkeeper" => {
            let by_resolve = match options.get("initial").map(String::as_str) {
                Some("resolve") => true,
                None | Some("login") => false,
                Some(_) => usage(),
            };
            runtime.block_on(run_regkeeper(
                &endpoint,
                counter.as_deref(),
                number("credentials", 10_000),
                identities,
                by_resolve,
                number("resolve-sample", 0),
            ))
        }
        "plain" => runtime.block_on(run_plain(
            &endpoint,
            counter.as_deref(),
            number("calls", 100),
            number("concurrency", 8),
            identities,
        )),
        _ => usage(),
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(error) => {
            eprintln!("ecr-refresh-bench {mode}: {error}");
            std::process::exit(1);
        }
    }
}
