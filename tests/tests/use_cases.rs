//! The example plugins, each over its sample input in `examples/`, through `pfn run` and through
//! a worker on embedded topics and on Pulsar, with every output, published message and dead
//! letter checked exactly.

use pfn_tests::use_case::UseCase;

const WORD_COUNT: UseCase = UseCase {
    plugin: "word-count",
    input: "words.txt",
    envelopes: false,
    user_config: "",
    run_config: &[],
    state: &[],
    outputs: &[
        r#"{"brown":1,"fox":1,"quick":1,"the":1}"#,
        r#"{"dog":1,"jumps":1,"lazy":1,"over":1,"the":2}"#,
        r#"{"dog":2,"fox":2,"runs":1,"sleeps":1,"the":4}"#,
    ],
    run_outputs: None,
    published: &[],
    dead_letters: &[],
};

const ETL: UseCase = UseCase {
    plugin: "etl",
    input: "etl-records.txt",
    envelopes: false,
    user_config: "",
    run_config: &[],
    state: &[],
    outputs: &[
        r#"{"amount":12.5,"id":"o-1","name":"Ada Lovelace","time":"2025-11-27T00:00:00Z"}"#,
        r#"{"amount":7.0,"id":"o-2","name":"Grace Hopper","time":"2025-11-27T08:30:00Z"}"#,
        r#"{"amount":0.5,"id":"o-3","name":"Hopper, Grace","time":"2025-11-27T08:00:00Z"}"#,
    ],
    run_outputs: None,
    published: &[],
    dead_letters: &["o-4,Linus,lots,2025-11-27"],
};

const ENRICH: UseCase = UseCase {
    plugin: "enrich",
    input: "orders-to-enrich.jsonl",
    envelopes: false,
    user_config: "fields = { region = \"eu\" }",
    run_config: &[("fields", r#"{"region":"eu"}"#)],
    state: &[("lookup/ada", r#"{"tier":"gold"}"#), ("lookup/grace", r#"{"tier":"silver"}"#)],
    outputs: &[
        r#"{"amount":12.5,"customer":"ada","details":{"tier":"gold"},"order":"o-1","region":"eu"}"#,
        r#"{"amount":7,"customer":"grace","details":{"tier":"silver"},"order":"o-2","region":"eu"}"#,
        r#"{"amount":3,"customer":"linus","details":null,"order":"o-3","region":"eu"}"#,
    ],
    run_outputs: Some(&[
        r#"{"amount":12.5,"customer":"ada","details":null,"order":"o-1","region":"eu"}"#,
        r#"{"amount":7,"customer":"grace","details":null,"order":"o-2","region":"eu"}"#,
        r#"{"amount":3,"customer":"linus","details":null,"order":"o-3","region":"eu"}"#,
    ]),
    published: &[],
    dead_letters: &[r#"{"order":"o-4","amount":1}"#],
};

const FILTER: UseCase = UseCase {
    plugin: "filter",
    input: "readings.jsonl",
    envelopes: false,
    user_config: "rules = [{ field = \"temp\", op = \"gt\", value = 30 }, \
                  { field = \"site\", op = \"contains\", value = \"north\" }]",
    run_config: &[(
        "rules",
        r#"[{"field":"temp","op":"gt","value":30},{"field":"site","op":"contains","value":"north"}]"#,
    )],
    state: &[],
    outputs: &[r#"{"sensor":"s1","site":"north","temp":31.5}"#, r#"{"sensor":"s3","site":"north-east","temp":30.5}"#],
    run_outputs: None,
    published: &[],
    dead_letters: &[],
};

const ROUTER: UseCase = UseCase {
    plugin: "router",
    input: "events.jsonl",
    envelopes: true,
    user_config: "default_topic = \"other\"\nroutes = [{ field = \"type\", equals = \"payment\", topic = \"payments\" }, \
                  { field = \"type\", equals = \"refund\", topic = \"refunds\" }]",
    run_config: &[
        ("default_topic", "other"),
        (
            "routes",
            r#"[{"field":"type","equals":"payment","topic":"payments"},{"field":"type","equals":"refund","topic":"refunds"}]"#,
        ),
    ],
    state: &[],
    outputs: &[],
    run_outputs: None,
    published: &[
        ("payments", r#"{"type":"payment","amount":5}"#),
        ("refunds", r#"{"type":"refund","amount":2}"#),
        ("other", r#"{"type":"login","user":"ada"}"#),
        ("payments", r#"{"type":"payment","amount":9}"#),
    ],
    dead_letters: &["not json"],
};

const THRESHOLD_ALERT: UseCase = UseCase {
    plugin: "threshold-alert",
    input: "temperatures.jsonl",
    envelopes: true,
    user_config: "threshold = 30\nwindow_ms = 60000",
    run_config: &[("threshold", "30"), ("window_ms", "60000")],
    state: &[],
    outputs: &[
        r#"{"key":"s1","aggregate":"average","value":30.5,"threshold":30.0,"time_ms":1764201610000}"#,
        r#"{"key":"s1","aggregate":"average","value":32.5,"threshold":30.0,"time_ms":1764201710000}"#,
    ],
    run_outputs: None,
    published: &[],
    dead_letters: &[],
};

macro_rules! use_case_tests {
    ($($name:ident: $case:expr,)*) => {
        mod pfn_run {
            use super::*;
            $(#[test] fn $name() { $case.check_pfn_run(); })*
        }
        mod embedded_worker {
            use super::*;
            $(#[test] fn $name() { $case.check_embedded_worker(); })*
        }
        mod pulsar_worker {
            use super::*;
            $(#[test] fn $name() { $case.check_pulsar_worker(); })*
        }
    };
}

use_case_tests! {
    word_count: WORD_COUNT,
    etl: ETL,
    enrich: ENRICH,
    filter: FILTER,
    router: ROUTER,
    threshold_alert: THRESHOLD_ALERT,
}
