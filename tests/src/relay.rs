//! A relay between the stock `pulsar` crate and pulsar-lite, with fault injection.
//!
//! pulsar-lite leaves the optional magic and CRC32C out of the MESSAGE frames it sends, and the
//! `pulsar` crate reads those six bytes whether they are there or not, so it drops the
//! connection on every message. The relay sits between the two: client→broker bytes pass
//! unchanged, broker→client frames are read whole and MESSAGE frames get the checksum
//! ([`frame::rewrite_broker_frame`]); lookup answers are pointed at the relay so that the client
//! never connects to the broker directly.
//!
//! pulsar-lite does not answer GET_TOPICS_OF_NAMESPACE, which a `topics_pattern` consumer
//! needs. The relay answers it in the broker's stead, listing every topic a client of the relay
//! has produced to or subscribed to: it sends the broker a PING instead and puts the answer in
//! the place of the next PONG, so that it goes to the client on the client's own connection.
//!
//! Plain threads, two per connection: the `pulsar` client opens one connection per broker
//! address, so a test has a handful. Reads and writes are buffered, and the broker→client side
//! flushes only when it has nothing more to read, so many small frames leave in one write.

pub mod frame;
mod receipt_hold;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    io::{self, BufReader, BufWriter, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Condvar, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

pub use self::frame::Delivery;
use self::{
    frame::{ClientFrame, Rewrite},
    receipt_hold::ReceiptHold,
};

/// Buffer size of each direction.
const BUFFER: usize = 256 << 10;

/// How long the relay waits for the broker to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A relay listening on a loopback port, forwarding to one broker. Stops, closing every
/// connection, when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the relay's threads share.
#[derive(Debug)]
struct Shared {
    broker: SocketAddr,
    /// `pulsar://127.0.0.1:PORT` of the relay, written into lookup answers.
    url: String,
    /// The `pulsar+ssl://` URL of a TLS front to the relay, also written into lookup answers.
    tls_url: OnceLock<String>,
    stop: AtomicBool,
    refuse: AtomicBool,
    /// Set while broker→client frames are held back; the flag is the fast path of `pause`.
    paused: AtomicBool,
    /// Pause once this many MESSAGE frames have passed (0: never).
    pause_at_message: AtomicU64,
    pause: Mutex<bool>,
    resumed: Condvar,
    connections: Mutex<HashMap<u64, Connection>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    frames: AtomicU64,
    checksums_inserted: AtomicU64,
    lookups_redirected: AtomicU64,
    receipts: AtomicU64,
    /// The authentication of each client CONNECT seen, in order.
    connect_auths: Mutex<Vec<ConnectAuth>>,
    /// Every topic a client produced to or subscribed to.
    topics: Mutex<BTreeSet<String>>,
    namespaces_listed: AtomicU64,
    /// Set by [`Relay::record_deliveries`]; then every MESSAGE frame is kept in `deliveries`.
    recording: AtomicBool,
    deliveries: Mutex<Vec<Delivery>>,
    receipt_hold: ReceiptHold,
    /// Topics whose PRODUCER requests the relay refuses as invalid names, in the broker's stead.
    invalid_topics: Mutex<BTreeSet<String>>,
}

/// Answers of the relay's own, each waiting for the PONG whose place it takes.
type Answers = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// The authentication method name and data a client connected with.
pub type ConnectAuth = (Option<String>, Option<Vec<u8>>);

/// What a relay has done so far, for tests that check it was in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Client connections relayed (refused ones not counted).
    pub connections: u64,
    /// Frames passed from the broker to clients.
    pub frames: u64,
    /// MESSAGE frames that got magic and checksum.
    pub checksums_inserted: u64,
    /// Lookup responses pointed at the relay.
    pub lookups_redirected: u64,
    /// Send receipts passed to clients.
    pub receipts: u64,
    /// GET_TOPICS_OF_NAMESPACE requests the relay answered.
    pub namespaces_listed: u64,
}

/// The two sockets of one relayed connection (clones of the ones the pump threads use), and the
/// broker→client writer, which held receipts are written through when let go.
#[derive(Debug)]
struct Connection {
    client: TcpStream,
    broker: TcpStream,
    cut: Arc<AtomicBool>,
    to_client: ClientWriter,
}

/// The buffered broker→client side of a connection, written one whole frame at a time.
type ClientWriter = Arc<Mutex<BufWriter<TcpStream>>>;

impl Relay {
    /// Starts relaying from a fresh loopback port to `broker`.
    pub fn start(broker: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            broker,
            url: format!("pulsar://{addr}"),
            tls_url: OnceLock::new(),
            stop: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            pause_at_message: AtomicU64::new(0),
            pause: Mutex::new(false),
            resumed: Condvar::new(),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            checksums_inserted: AtomicU64::new(0),
            lookups_redirected: AtomicU64::new(0),
            receipts: AtomicU64::new(0),
            connect_auths: Mutex::new(Vec::new()),
            topics: Mutex::new(BTreeSet::new()),
            namespaces_listed: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            deliveries: Mutex::new(Vec::new()),
            receipt_hold: ReceiptHold::default(),
            invalid_topics: Mutex::new(BTreeSet::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new().name("relay-accept".into()).spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(Self { addr, shared, acceptor: Some(acceptor) })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service URL for a `pulsar` client: `pulsar://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// The broker this relay forwards to.
    pub fn broker(&self) -> SocketAddr {
        self.shared.broker
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections().len()
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> RelayStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RelayStats {
            connections: load(&self.shared.accepted),
            frames: load(&self.shared.frames),
            checksums_inserted: load(&self.shared.checksums_inserted),
            lookups_redirected: load(&self.shared.lookups_redirected),
            receipts: load(&self.shared.receipts),
            namespaces_listed: load(&self.shared.namespaces_listed),
        }
    }

    /// Closes every current connection, both sides at once, as a network fault would. New
    /// connections are relayed again (unless [`Relay::refuse`] is set).
    pub fn cut_all(&self) {
        self.shared.cut_all();
    }

    /// Holds back broker→client frames while `paused` (receipts, messages, pongs alike), as a
    /// stalled network would; client→broker bytes still flow. Held frames are delivered, in
    /// order, when unpaused.
    pub fn set_paused(&self, paused: bool) {
        self.shared.set_paused(paused);
    }

    /// The authentication each client connection sent in its CONNECT, in order.
    pub fn connect_auths(&self) -> Vec<ConnectAuth> {
        self.shared.connect_auths.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Pauses (as [`Relay::set_paused`]) right after the `count`th MESSAGE frame since the relay
    /// started has passed, so that a test can stop the traffic at an exact point. Counted are
    /// the frames that got a checksum inserted: every MESSAGE frame pulsar-lite sends.
    pub fn pause_after_messages(&self, count: u64) {
        self.shared.pause_at_message.store(count, Ordering::SeqCst);
    }

    /// Gives lookup answers `tls_url` (a TLS front to this relay: see [`crate::tls`]) as their
    /// TLS broker URL, so that `pulsar+ssl://` clients come back through it. Set once; a
    /// second call changes nothing.
    pub fn answer_lookups_over_tls(&self, tls_url: &str) {
        let _ = self.shared.tls_url.set(tls_url.to_owned());
    }

    /// Keeps, from now on, every MESSAGE frame the broker sends (see [`Relay::deliveries`]).
    pub fn record_deliveries(&self) {
        self.shared.recording.store(true, Ordering::SeqCst);
    }

    /// The MESSAGE frames passed to clients since [`Relay::record_deliveries`], in the order the
    /// relay passed them on (which, for one connection, is the order the broker sent them).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// While `refuse` is set, new connections are accepted and closed at once, before any byte,
    /// as a broker that is down; open connections are not affected.
    pub fn refuse(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Holds back the send receipts of `topic`'s producers (its full name, as producers name
    /// it), while every other frame passes; `None` holds nothing. Receipts held until now are
    /// let go, in order, before any later one.
    pub fn hold_receipts(&self, topic: Option<&str>) {
        let released = self.shared.receipt_hold.set(topic.map(str::to_owned));
        for (connection, frame) in &released.frames {
            let writer = self.shared.connections().get(connection).map(|c| Arc::clone(&c.to_client));
            let Some(writer) = writer else { continue };
            let mut writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if writer.write_all(frame).and_then(|()| writer.flush()).is_ok() {
                self.shared.receipts.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Answers every PRODUCER request for `topic` with Pulsar's InvalidTopicName error, as a
    /// broker does for a name it cannot accept (pulsar-lite accepts any name, then never
    /// acknowledges what is sent to an invalid one).
    pub fn refuse_producers_for(&self, topic: &str) {
        self.shared.invalid_topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(topic.to_owned());
    }

    /// How many receipts [`Relay::hold_receipts`] holds now.
    pub fn held_receipts(&self) -> usize {
        self.shared.receipt_hold.held()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.set_paused(false);
        // Wakes the acceptor up from `accept`; it sees `stop` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.shared.cut_all();
    }
}

impl Shared {
    fn connections(&self) -> MutexGuard<'_, HashMap<u64, Connection>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cut_all(&self) {
        let cut: Vec<Connection> = self.connections().drain().map(|(_, c)| c).collect();
        for connection in &cut {
            connection.cut.store(true, Ordering::SeqCst);
            let _ = connection.client.shutdown(Shutdown::Both);
            let _ = connection.broker.shutdown(Shutdown::Both);
        }
        // Pumps waiting in a pause see their `cut` flag.
        let _guard = self.pause.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.resumed.notify_all();
    }

    /// Removes and shuts down connection `id`, if it is still there.
    fn close(&self, id: u64) {
        if let Some(connection) = self.connections().remove(&id) {
            let _ = connection.client.shutdown(Shutdown::Both);
            let _ = connection.broker.shutdown(Shutdown::Both);
        }
    }

    /// The answer to a GET_TOPICS_OF_NAMESPACE: the known topics of `namespace`.
    fn topics_of(&self, request_id: u64, namespace: &str, persistent_only: bool) -> Vec<u8> {
        let topics = self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let in_namespace = |topic: &&String| {
            let path = topic.split_once("://").map_or(topic.as_str(), |(scheme, path)| {
                if persistent_only && scheme != "persistent" { "" } else { path }
            });
            path.strip_prefix(namespace).is_some_and(|rest| rest.starts_with('/'))
        };
        let listed = topics.iter().filter(in_namespace).cloned().collect();
        self.namespaces_listed.fetch_add(1, Ordering::Relaxed);
        frame::topics_of_namespace_answer(request_id, listed)
    }

    fn set_paused(&self, paused: bool) {
        let mut guard = self.pause.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = paused;
        self.paused.store(paused, Ordering::SeqCst);
        self.resumed.notify_all();
    }

    /// Blocks while paused, unless the connection is cut or the relay stops.
    fn wait_while_paused(&self, cut: &AtomicBool) {
        let mut guard = self.pause.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while *guard && !cut.load(Ordering::SeqCst) && !self.stop.load(Ordering::SeqCst) {
            guard = self.resumed.wait(guard).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.refuse.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        // A broker that is down closes the client's connection, as connecting to it would fail.
        let Ok(broker) = TcpStream::connect_timeout(&shared.broker, CONNECT_TIMEOUT) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        if let Err(e) = relay_connection(client, broker, shared) {
            eprintln!("relay: could not start relaying a connection: {e}");
        }
    }
}

/// Registers one connection and starts its two pump threads.
fn relay_connection(client: TcpStream, broker: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    client.set_nodelay(true)?;
    broker.set_nodelay(true)?;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let cut = Arc::new(AtomicBool::new(false));
    let to_client: ClientWriter = Arc::new(Mutex::new(BufWriter::with_capacity(BUFFER, client.try_clone()?)));
    let entry = Connection {
        client: client.try_clone()?,
        broker: broker.try_clone()?,
        cut: Arc::clone(&cut),
        to_client: Arc::clone(&to_client),
    };
    let (up_client, up_broker) = (client.try_clone()?, broker.try_clone()?);
    shared.connections().insert(id, entry);
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    let answers = Answers::default();

    let up = {
        let (shared, answers) = (Arc::clone(shared), Arc::clone(&answers));
        move || {
            let _ = pump_up(id, up_client, up_broker, &shared, &answers);
            shared.close(id);
        }
    };
    let down = {
        let shared = Arc::clone(shared);
        move || {
            if let Err(e) = pump_down(id, broker, &to_client, &shared, &cut, &answers)
                && !cut.load(Ordering::SeqCst)
                && e.kind() == io::ErrorKind::InvalidData
            {
                eprintln!("relay: connection {id}: broker sent a frame the relay cannot read: {e}");
            }
            shared.close(id);
        }
    };
    let spawned = thread::Builder::new()
        .name(format!("relay-up-{id}"))
        .spawn(up)
        .and_then(|_| thread::Builder::new().name(format!("relay-down-{id}")).spawn(down));
    if spawned.is_err() {
        shared.close(id);
    }
    spawned.map(drop)
}

/// Client→broker: whole frames, passed on unchanged and flushed when no more input is
/// buffered, except a GET_TOPICS_OF_NAMESPACE, which the relay answers (see the module's doc).
/// A CONNECT has its authentication noted; topics named in PRODUCER and SUBSCRIBE are noted.
fn pump_up(id: u64, client: TcpStream, broker: TcpStream, shared: &Shared, answers: &Answers) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(BUFFER, client);
    let mut writer = BufWriter::with_capacity(BUFFER, broker);
    let mut buf = Vec::with_capacity(4096);
    let mut first = true;
    while frame::read_frame(&mut reader, &mut buf)? {
        if std::mem::take(&mut first)
            && let Some(auth) = frame::connect_auth(&buf)
        {
            shared.connect_auths.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(auth);
        }
        match frame::inspect_client_frame(&buf)? {
            ClientFrame::Other => {}
            ClientFrame::NamesTopic(topic) => {
                shared.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(topic);
            }
            ClientFrame::Producer { producer_id, request_id, topic } => {
                if shared.invalid_topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&topic) {
                    let answer = frame::invalid_topic_answer(request_id, &topic);
                    answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push_back(answer);
                    buf = frame::ping();
                } else {
                    shared.receipt_hold.note_producer(id, producer_id, topic.clone());
                    shared.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(topic);
                }
            }
            ClientFrame::TopicsOfNamespace { request_id, namespace, persistent_only } => {
                let answer = shared.topics_of(request_id, &namespace, persistent_only);
                answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push_back(answer);
                buf = frame::ping();
            }
        }
        writer.write_all(&buf)?;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
    writer.flush()
}

/// Broker→client: whole frames, rewritten by [`frame::rewrite_broker_frame`] (a PONG may give
/// its place to one of the relay's `answers`), flushed when no more input is buffered.
fn pump_down(
    id: u64,
    broker: TcpStream,
    to_client: &Mutex<BufWriter<TcpStream>>,
    shared: &Shared,
    cut: &AtomicBool,
    answers: &Answers,
) -> io::Result<()> {
    let writer = || to_client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut reader = BufReader::with_capacity(BUFFER, broker);
    let mut buf = Vec::with_capacity(4096);
    while frame::read_frame(&mut reader, &mut buf)? {
        let (mut pause_after, mut receipt) = (false, false);
        match frame::rewrite_broker_frame(&mut buf, &shared.url, shared.tls_url.get().map(String::as_str))? {
            Rewrite::Unchanged => {}
            Rewrite::ChecksumInserted => {
                let passed = shared.checksums_inserted.fetch_add(1, Ordering::SeqCst) + 1;
                pause_after = passed == shared.pause_at_message.load(Ordering::SeqCst);
                if shared.recording.load(Ordering::Relaxed)
                    && let Some(delivery) = frame::delivery(&buf)
                {
                    shared.deliveries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(delivery);
                }
            }
            Rewrite::LookupRedirected => {
                shared.lookups_redirected.fetch_add(1, Ordering::Relaxed);
            }
            Rewrite::Receipt => receipt = true,
            Rewrite::Pong => {
                if let Some(answer) = answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop_front() {
                    buf = answer;
                }
            }
        }
        shared.frames.fetch_add(1, Ordering::Relaxed);
        if shared.paused.load(Ordering::SeqCst) {
            writer().flush()?;
            shared.wait_while_paused(cut);
            if cut.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        if receipt && let Some(producer_id) = frame::receipt_producer(&buf) {
            match shared.receipt_hold.pass(id, producer_id, std::mem::take(&mut buf)) {
                Some(passed) => buf = passed,
                None => continue,
            }
        }
        let mut writer = writer();
        writer.write_all(&buf)?;
        if receipt {
            // Counted once on its way to the client, not while held back.
            shared.receipts.fetch_add(1, Ordering::SeqCst);
        }
        if pause_after {
            writer.flush()?;
            shared.set_paused(true);
        } else if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
    writer().flush()
}
