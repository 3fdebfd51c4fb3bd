//! Running an example plugin end to end over its sample input in `examples/`, three ways:
//! `pfn run`, a worker on embedded topics, and a worker on Pulsar. Each way checks the same
//! expectations exactly: the outputs in order, what was published to each topic, and which
//! inputs were dead-lettered.

use std::{collections::BTreeMap, fs, path::PathBuf, time::Duration};

use serde_json::Value;

use crate::{
    broker::TestBroker,
    fixtures::{plugin, scratch, sha256_of, workspace_root},
    pfn_cli::{pfn, texts},
    pulsar_client::{Outgoing, PulsarPeer},
    pulsar_functions::IDLE,
    relay::Relay,
    worker::RunningWorker,
};

/// One example plugin and what its sample input must come to.
#[derive(Debug, Clone)]
pub struct UseCase {
    /// The plugin's package name, e.g. `threshold-alert`.
    pub plugin: &'static str,
    /// The sample input in `examples/`: raw lines, or JSON envelopes when `envelopes`.
    pub input: &'static str,
    pub envelopes: bool,
    /// The spec's `[user_config]` table, in TOML.
    pub user_config: &'static str,
    /// The same values for `pfn run --user-config KEY=VALUE`, as JSON text.
    pub run_config: &'static [(&'static str, &'static str)],
    /// State entries to load with `putstate` before the input (workers only).
    pub state: &'static [(&'static str, &'static str)],
    pub outputs: &'static [&'static str],
    /// The outputs of `pfn run`, when they differ (it has no state loaded).
    pub run_outputs: Option<&'static [&'static str]>,
    /// Published messages: topic and payload, in order per topic.
    pub published: &'static [(&'static str, &'static str)],
    /// The payloads of the inputs that must be dead-lettered.
    pub dead_letters: &'static [&'static str],
}

/// One input line of a sample, as a message.
#[derive(Debug, Clone)]
struct Input {
    payload: String,
    key: Option<String>,
    event_time: Option<u64>,
    line: String,
}

impl UseCase {
    fn input_path(&self) -> PathBuf {
        workspace_root().join("examples").join(self.input)
    }

    fn inputs(&self) -> Vec<Input> {
        let text = fs::read_to_string(self.input_path()).expect("sample input");
        text.lines()
            .map(|line| {
                if !self.envelopes {
                    return Input { payload: line.to_owned(), key: None, event_time: None, line: line.to_owned() };
                }
                let envelope: Value = serde_json::from_str(line).expect("an envelope");
                Input {
                    payload: envelope["value"].as_str().expect("a string value").to_owned(),
                    key: envelope["key"].as_str().map(str::to_owned),
                    event_time: envelope["event_time"].as_u64(),
                    line: line.to_owned(),
                }
            })
            .collect()
    }

    fn library(&self) -> PathBuf {
        plugin(&self.plugin.replace('-', "_"))
    }

    fn published_by_topic(&self) -> BTreeMap<&'static str, Vec<&'static str>> {
        let mut by_topic: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (topic, payload) in self.published {
            by_topic.entry(topic).or_default().push(payload);
        }
        by_topic
    }

    fn spec(&self, output: &str) -> String {
        format!(
            "name = \"{}\"\nplugin = \"{}\"\ninputs = [\"{}-in\"]\noutput = \"{output}\"\nmax_message_retries = 0\n\
             subscription_position = \"earliest\"\n[user_config]\n{}\n",
            self.plugin, self.plugin, self.plugin, self.user_config
        )
    }

    fn fqfn(&self) -> String {
        format!("public/default/{}", self.plugin)
    }

    /// `pfn run` over the sample: outputs, published file and dead letters.
    pub fn check_pfn_run(&self) {
        let dir = scratch();
        let output = dir.path().join("out.txt");
        let library = self.library();
        let mut command = pfn(dir.path());
        command.args(["run", "--sha256", &sha256_of(&library).to_string(), "--plugin"]).arg(&library);
        command.arg("--input").arg(self.input_path()).arg("--output").arg(&output);
        if self.envelopes {
            command.args(["--input-format", "json"]);
        }
        for (key, value) in self.run_config {
            command.arg("--user-config").arg(format!("{key}={value}"));
        }
        let run = command.output().expect("pfn run");
        assert!(run.status.success(), "{:?}", texts(&run));
        let outputs = fs::read_to_string(&output).expect("outputs");
        let expected = self.run_outputs.unwrap_or(self.outputs);
        assert_eq!(outputs.lines().collect::<Vec<_>>(), expected, "{}: pfn run outputs", self.plugin);
        let published = fs::read_to_string(dir.path().join("out.published.jsonl")).unwrap_or_default();
        let mut by_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in published.lines() {
            let line: Value = serde_json::from_str(line).expect("a published line");
            let topic = line["topic"].as_str().expect("a topic").to_owned();
            by_topic.entry(topic).or_default().push(line["value"].as_str().expect("a text value").to_owned());
        }
        assert_eq!(by_topic, owned(&self.published_by_topic()), "{}: pfn run published", self.plugin);
        let letters = fs::read_to_string(dir.path().join("out.dead-letter.jsonl")).unwrap_or_default();
        let letters: Vec<String> = letters
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).expect("a dead letter")["value"].as_str().unwrap_or("").to_owned()
            })
            .collect();
        let inputs = self.inputs();
        let expected_letters: Vec<String> = self.dead_letter_lines(&inputs, |input| input.line.clone());
        assert_eq!(letters, expected_letters, "{}: pfn run dead letters", self.plugin);
    }

    /// The dead-lettered inputs, as `shown`.
    fn dead_letter_lines(&self, inputs: &[Input], shown: impl Fn(&Input) -> String) -> Vec<String> {
        inputs.iter().filter(|input| self.dead_letters.contains(&input.payload.as_str())).map(shown).collect()
    }

    /// A worker on embedded topics, fed and read with `pfn topics`.
    pub fn check_embedded_worker(&self) {
        let dir = scratch();
        let output = format!("{}-out", self.plugin);
        let spec = self.spec(&output);
        let library = self.library();
        let file = library.file_name().and_then(|name| name.to_str()).expect("a file name").to_owned();
        let worker = RunningWorker::start(dir.path(), &[("case.toml", &spec)], &[(&library, &file)], &[]);
        let fqfn = self.fqfn();
        worker.wait_until("the function runs", |worker| worker.function(&fqfn)["state"] == "running");
        for (key, value) in self.state {
            let put = worker.pfn().args(["functions", "putstate", &fqfn, "--key", key, "--value", value]).output();
            assert!(put.expect("putstate").status.success());
        }
        let topics: Vec<String> = [output.clone(), format!("{output}-DLQ")]
            .into_iter()
            .chain(self.published_by_topic().keys().map(|topic| (*topic).to_owned()))
            .collect();
        for topic in &topics {
            worker.create_subscription(topic, "check");
        }
        let inputs = self.inputs();
        let lines: String = inputs.iter().map(|input| format!("{}\n", input.line)).collect();
        worker.produce(&format!("{}-in", self.plugin), lines.as_bytes(), self.envelopes);
        worker.wait_until("every input settled", |worker| worker.total(&fqfn, "acked_total") == inputs.len() as u64);
        let read = |topic: &str| -> Vec<String> {
            let mut command = worker.pfn();
            command.args(["topics", "consume", topic, "-s", "check", "--idle-timeout-ms", "500", "--count", "1000"]);
            let read = command.output().expect("pfn topics consume");
            String::from_utf8(read.stdout).expect("utf-8").lines().map(str::to_owned).collect()
        };
        assert_eq!(read(&output), self.outputs, "{}: embedded outputs", self.plugin);
        for (topic, expected) in self.published_by_topic() {
            assert_eq!(read(topic), expected, "{}: embedded topic {topic}", self.plugin);
        }
        let expected_letters = self.dead_letter_lines(&inputs, |input| input.payload.clone());
        assert_eq!(read(&format!("{output}-DLQ")), expected_letters, "{}: embedded dead letters", self.plugin);
        let (exit, log) = worker.terminate();
        assert!(exit.success(), "{log}");
    }

    /// A worker on a Pulsar broker, fed and read by a Pulsar client.
    pub fn check_pulsar_worker(&self) {
        let broker = TestBroker::start();
        let relay = Relay::start(broker.addr()).expect("relay");
        let peer = PulsarPeer::connect(&relay.url());
        let full = |topic: &str| format!("persistent://public/default/{topic}");
        let output = full(&format!("{}-out", self.plugin));
        let input = full(&format!("{}-in", self.plugin));
        let mut reader = peer.subscribe(&output, "check");
        let mut letters = peer.subscribe(&format!("{output}-DLQ"), "check");
        let mut published: Vec<_> = self
            .published_by_topic()
            .into_iter()
            .map(|(topic, expected)| (peer.subscribe(&full(topic), "check"), expected))
            .collect();
        let dir = scratch();
        let library = self.library();
        let file = library.file_name().and_then(|name| name.to_str()).expect("a file name").to_owned();
        let args = ["--pulsar-url", &relay.url()];
        let worker =
            RunningWorker::start(dir.path(), &[("case.toml", &self.spec(&output))], &[(&library, &file)], &args);
        let fqfn = self.fqfn();
        worker.wait_until("the function runs", |worker| worker.function(&fqfn)["state"] == "running");
        for (key, value) in self.state {
            let put = worker.pfn().args(["functions", "putstate", &fqfn, "--key", key, "--value", value]).output();
            assert!(put.expect("putstate").status.success());
        }
        let inputs = self.inputs();
        peer.produce(
            &input,
            inputs.iter().map(|input| Outgoing {
                key: input.key.clone(),
                event_time: input.event_time,
                ..Outgoing::text(input.payload.clone())
            }),
        );
        let texts = |received: Vec<crate::pulsar_client::Received>| -> Vec<String> {
            received.iter().map(|m| m.text()).collect()
        };
        let mut outputs = texts(reader.receive(self.outputs.len(), IDLE));
        outputs.extend(texts(reader.receive(1, Duration::from_secs(1))));
        assert_eq!(outputs, self.outputs, "{}: Pulsar outputs", self.plugin);
        for (consumer, expected) in &mut published {
            let mut got = texts(consumer.receive(expected.len(), IDLE));
            got.extend(texts(consumer.receive(1, Duration::from_millis(500))));
            assert_eq!(got, *expected, "{}: Pulsar published", self.plugin);
        }
        let expected_letters = self.dead_letter_lines(&inputs, |input| input.payload.clone());
        let mut got_letters = texts(letters.receive(expected_letters.len(), IDLE));
        got_letters.extend(texts(letters.receive(1, Duration::from_millis(500))));
        assert_eq!(got_letters, expected_letters, "{}: Pulsar dead letters", self.plugin);
        let (exit, log) = worker.terminate();
        assert!(exit.success(), "{log}");
    }
}

fn owned(by_topic: &BTreeMap<&str, Vec<&str>>) -> BTreeMap<String, Vec<String>> {
    by_topic
        .iter()
        .map(|(topic, payloads)| ((*topic).to_owned(), payloads.iter().map(|p| (*p).to_owned()).collect()))
        .collect()
}
