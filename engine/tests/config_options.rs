//! The option tables (`config::options`) against the loader, the printer and the documentation:
//! every option loads at its documented default to the model's default, every option is known to
//! the loader, every time value is bounded with its location, and `docs/configuration.md` holds
//! exactly what `cohortd --config-reference` prints.

use std::path::Path;

use cohort_engine::config::options::{self, Opt, Shown};
use cohort_engine::config::{self, Cluster, MsgcServer};

/// A value to write for option `o` when it has no default.
fn sample<T>(o: &Opt<T>) -> String {
    match (o.default, o.kind) {
        ("-", "address") => "\"10.1.2.3\"".into(),
        ("-", "path") => "\"/etc/cohort/key\"".into(),
        ("-", "list") => "[ n1 = \"10.1.2.3\" ]".into(),
        ("-", _) => "\"word\"".into(),
        ("the five journals", _) => "[ mainlog = \"/var/log/x\" ]".into(),
        (d, _) => d.into(),
    }
}

fn load(text: &str) -> config::Loaded {
    config::load_str(Path::new("t.conf"), text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn every_option_loads_at_its_default_and_is_known() {
    for o in options::CLUSTER {
        let text = format!("cluster {{ {} = {} }}", o.name, sample(o));
        let l = load(&text);
        assert!(l.ignored.is_empty(), "{}: {:?}", o.name, l.ignored);
        if o.default != "-" && o.kind != "list" {
            assert_eq!(
                (o.get)(&l.config.cluster),
                (o.get)(&Cluster::default()),
                "{}: the table's default is the model's",
                o.name
            );
        }
    }
    for o in options::MSGC_SERVER {
        let text = format!("msgc_server {{ {} = {} }}", o.name, sample(o));
        let l = load(&text);
        assert!(l.ignored.is_empty(), "{}: {:?}", o.name, l.ignored);
        if o.default != "-" && o.kind != "list" {
            assert_eq!(
                (o.get)(&l.config.msgc_server),
                (o.get)(&MsgcServer::default()),
                "{}: the table's default is the model's",
                o.name
            );
        }
    }
}

#[test]
fn every_time_value_is_bounded_where_it_is_written() {
    for o in options::CLUSTER.iter().filter(|o| o.kind == "seconds") {
        for bad in ["86401", "-1", "1e20"] {
            let text = format!("cluster {{\n  {} = {bad}\n}}\n", o.name);
            let e = config::load_str(Path::new("t.conf"), &text)
                .err()
                .unwrap_or_else(|| panic!("{} = {bad} loads", o.name));
            let e = e.to_string();
            assert!(
                e.starts_with(&format!("t.conf:2:{}:", o.name.len() + 6)),
                "{e}"
            );
            assert!(e.contains(o.name), "{e}");
        }
    }
    for o in options::MSGC_SERVER.iter().filter(|o| o.kind == "seconds") {
        let text = format!("msgc_server {{\n  {} = 86401\n}}\n", o.name);
        let e = config::load_str(Path::new("t.conf"), &text)
            .err()
            .unwrap_or_else(|| panic!("{} = 86401 loads", o.name));
        assert!(e.to_string().starts_with("t.conf:2:"), "{e}");
    }
}

#[test]
fn a_misspelt_option_is_suggested_from_the_table() {
    let l = load("cluster { view_balanse_interval = 3 }");
    assert_eq!(l.ignored.len(), 1);
    assert!(
        l.ignored[0]
            .reason
            .contains("did you mean 'view_balance_interval'"),
        "{:?}",
        l.ignored
    );
}

/// What `docs/configuration.md` holds between `<!-- options:SCOPE:begin -->` and its end marker.
fn documented(doc: &str, scope: &str) -> String {
    let begin = format!("<!-- options:{scope}:begin -->\n");
    let end = format!("<!-- options:{scope}:end -->");
    let a = doc
        .find(&begin)
        .map(|i| i + begin.len())
        .expect("begin marker");
    let b = doc.find(&end).expect("end marker");
    doc[a..b].to_string()
}

#[test]
fn the_documentation_is_the_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let reference = options::reference();
    for (scope, _, _) in options::catalogue() {
        let documented = documented(&doc, scope);
        assert!(
            !documented.is_empty() && reference.contains(&documented),
            "{scope}: regenerate with `cohortd --config-reference`"
        );
    }
    assert_eq!(
        documented(&doc, "cluster"),
        options::reference_table("cluster", options::CLUSTER)
    );
}

/// The scopes beside `cluster` and `msgc_server`: each option loads (nothing of it is reported as
/// the MTA's) and a misspelling is suggested from its own table.
#[test]
fn binding_listener_logger_and_logs_options_load_from_their_tables() {
    for o in options::BINDING {
        let text = format!(
            "Binding \"b\" {{ {} = {} }}",
            o.name,
            match o.kind {
                "address" => "\"10.1.2.3\"",
                "boolean" => "true",
                _ => "\"node1\"",
            }
        );
        let l = config::load_str(Path::new("t.conf"), &text);
        // Enable_Duravip alone needs a Bind_Address and a Topology: refused, with its location.
        match l {
            Ok(l) => assert!(l.ignored.is_empty(), "{}: {:?}", o.name, l.ignored),
            Err(e) => assert!(e.to_string().starts_with("t.conf:1:"), "{e}"),
        }
    }
    for o in options::LOGGER {
        let l = load(&format!(
            "ec_logger {{ {} = \"jlog:///var/log/x=>m\" }}",
            o.name
        ));
        assert!(l.ignored.is_empty(), "{}", o.name);
        let out = &l.config.loggers[0].outputs[0];
        assert_eq!(out.log, o.name);
        assert!(matches!(out.destination, config::Destination::Journal(_)));
        assert_eq!(
            (o.get)(&l.config.loggers[0]),
            Shown::Value("\"jlog:///var/log/x=>m\"".into())
        );
    }
    for o in options::LOGS {
        let l = load(&format!("Logs {{ {} = {} }}", o.name, o.default));
        assert!(l.ignored.is_empty(), "{}", o.name);
        let m = l.config.manager_logs.expect("Logs");
        assert_eq!(
            (o.get)(&m),
            (o.get)(&config::ManagerLogs::default()),
            "{}: the table's default is the model's",
            o.name
        );
    }
    let l = load("Binding \"b\" { Bind_Adress = \"10.1.2.3\" }\nLogs { max_opne = 3 }");
    let reasons: Vec<&str> = l.ignored.iter().map(|i| i.reason.as_str()).collect();
    assert!(
        reasons[0].contains("did you mean 'Bind_Address'"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("did you mean 'max_open'"),
        "{reasons:?}"
    );
    // The MTA's own options stay the MTA's.
    let l = load("Binding \"b\" { Context = [ x = y ] }");
    assert!(!l.ignored[0].reason.contains("did you mean"));
}

#[test]
fn the_printer_writes_every_option_of_the_table() {
    let text = config::render(&config::Config::default());
    for o in options::CLUSTER
        .iter()
        .chain(options::CLUSTER.iter().take(0))
    {
        if (o.get)(&Cluster::default()) != Shown::Absent {
            assert!(text.contains(&format!("  {} = ", o.name)), "{}", o.name);
        }
    }
    for o in options::MSGC_SERVER {
        if (o.get)(&MsgcServer::default()) != Shown::Absent {
            assert!(text.contains(&format!("  {} = ", o.name)), "{}", o.name);
        }
    }
}
