//! Bad scenarios: each mistake is reported with its line, column and key.

use fleetstorm::scenario::{self, Format};

/// A minimal valid fleet, for cases that break something else.
const FLEET: &str = "[[fleets]]\nname = \"f1\"\ndevices = 10\n";

struct Case {
    what: &'static str,
    text: String,
    format: Format,
    line: u32,
    column: u32,
    key: Option<&'static str>,
    message: &'static str,
}

fn toml(
    what: &'static str,
    text: &str,
    line: u32,
    column: u32,
    key: Option<&'static str>,
    message: &'static str,
) -> Case {
    Case { what, text: text.to_string(), format: Format::Toml, line, column, key, message }
}

fn cases() -> Vec<Case> {
    vec![
        toml("syntax error", "fleets = [ { name = \"f1\" devices = 1 } ]", 1, 26, None, "missing comma"),
        toml("unknown top-level key", &format!("nmae = \"x\"\n{FLEET}"), 1, 1, Some("nmae"), "unknown field `nmae`"),
        toml(
            "unknown fleet key",
            &format!("{FLEET}devicez = 3\n"),
            4,
            1,
            Some("fleets[0].devicez"),
            "unknown field `devicez`",
        ),
        toml(
            "wrong type",
            "[[fleets]]\nname = \"f1\"\ndevices = \"ten\"\n",
            3,
            11,
            Some("fleets[0].devices"),
            "expected a whole number of devices",
        ),
        toml(
            "zero devices",
            "[[fleets]]\nname = \"f1\"\ndevices = 0\n",
            3,
            11,
            Some("fleets[0].devices"),
            "devices is 0",
        ),
        toml(
            "negative devices",
            "[[fleets]]\nname = \"f1\"\ndevices = -5\n",
            3,
            11,
            Some("fleets[0].devices"),
            "devices is -5",
        ),
        toml("missing devices", "[[fleets]]\nname = \"f1\"\n", 1, 1, Some("fleets[0]"), "missing field `devices`"),
        toml(
            "invalid fleet name",
            "[[fleets]]\nname = \"f_-1\"\ndevices = 1\n",
            2,
            8,
            Some("fleets[0].name"),
            "\"f_-1\" is not a valid fleet name",
        ),
        toml(
            "template yields invalid names",
            &format!("{FLEET}device_name = \"cam.{{index}}\"\n"),
            4,
            15,
            Some("fleets[0].device_name"),
            "device 0 would be named \"cam.0\"",
        ),
        toml(
            "template with unknown placeholder",
            &format!("{FLEET}device_name = \"cam-{{id}}\"\n"),
            4,
            15,
            Some("fleets[0].device_name"),
            "unknown placeholder `{id}`",
        ),
        toml(
            "template without index",
            &format!("{FLEET}device_name = \"cam\"\n"),
            1,
            1,
            Some("fleets[0]"),
            "`{index}` is missing",
        ),
        toml(
            "template too long for the last device",
            "[[fleets]]\nname = \"f1\"\ndevices = 100000\ndevice_name = \"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefgh{index}\"\n",
            1,
            1,
            Some("fleets[0]"),
            "device 99999 would be named",
        ),
        toml(
            "negative weight",
            &format!("{FLEET}agent_versions = {{ \"1.0\" = -1.0 }}\n"),
            4,
            18,
            Some("fleets[0].agent_versions"),
            "weights must be finite and at least 0",
        ),
        toml(
            "all weights zero",
            &format!("{FLEET}agent_versions = {{ \"1.0\" = 0 }}\n"),
            4,
            18,
            Some("fleets[0].agent_versions"),
            "every weight is 0",
        ),
        toml(
            "invalid version",
            &format!("{FLEET}agent_versions = {{ \"1.0-rc1\" = 1 }}\n"),
            4,
            18,
            Some("fleets[0].agent_versions"),
            "not a valid version",
        ),
        toml(
            "metric min above max",
            &format!("{FLEET}[[fleets.agent_metrics]]\nname = \"cpu-load\"\nmin = 10\nmax = 5\n"),
            4,
            1,
            Some("fleets[0].agent_metrics[0]"),
            "min (10) is greater than max (5)",
        ),
        toml(
            "short metric name",
            &format!("{FLEET}[[fleets.agent_metrics]]\nname = \"cpu\"\nmin = 0\nmax = 5\n"),
            5,
            8,
            Some("fleets[0].agent_metrics[0].name"),
            "length 3, minimum 4",
        ),
        toml(
            "model share above one",
            &format!("{FLEET}[[fleets.models]]\nname = \"resnet\"\nversions = \"1\"\nshare = 1.5\n"),
            4,
            1,
            Some("fleets[0].models[0]"),
            "share is 1.5",
        ),
        toml("duplicate fleet names", &format!("{FLEET}{FLEET}"), 1, 1, Some("fleets"), "already used by fleets[0]"),
        toml("no fleets", "fleets = []\n", 1, 10, Some("fleets"), "no fleets"),
        toml("bad duration", &format!("duration = \"5 parsecs\"\n{FLEET}"), 1, 12, Some("duration"), "not a duration"),
        toml("zero duration", &format!("duration = \"0s\"\n{FLEET}"), 1, 12, Some("duration"), "must be above 0"),
        toml(
            "interval and rate",
            &format!("{FLEET}interval = \"1s\"\nrate = \"10/s\"\n"),
            1,
            1,
            Some("fleets[0]"),
            "not both",
        ),
        toml("bad rate", &format!("{FLEET}rate = \"fast\"\n"), 4, 8, Some("fleets[0].rate"), "not a rate"),
        toml("jitter of 100%", &format!("{FLEET}jitter = \"100%\"\n"), 1, 1, Some("fleets[0]"), "below 100%"),
        toml(
            "synchronized ramp",
            &format!("{FLEET}start = \"synchronized\"\nramp_up = \"10s\"\n"),
            1,
            1,
            Some("fleets[0]"),
            "ramp_up contradicts",
        ),
        toml(
            "unknown start",
            &format!("{FLEET}start = \"eventually\"\n"),
            4,
            9,
            Some("fleets[0].start"),
            "unknown variant",
        ),
        toml(
            "bad connections",
            "[target]\nconnections = \"lots\"\n[[fleets]]\nname = \"f1\"\ndevices = 1\n",
            2,
            15,
            Some("target.connections"),
            "unknown connection mode",
        ),
        toml(
            "empty pool",
            "[target]\nconnections = { pool = 0 }\n[[fleets]]\nname = \"f1\"\ndevices = 1\n",
            2,
            15,
            Some("target.connections"),
            "at least 1",
        ),
        toml(
            "unknown URL scheme",
            "[target]\nurl = \"ftp://x\"\n[[fleets]]\nname = \"f1\"\ndevices = 1\n",
            2,
            7,
            Some("target.url"),
            "https://host:port",
        ),
        toml(
            "missing env var",
            "[target]\nheaders = { \"x-api-key\" = \"${env:FLEETSTORM_TEST_UNSET_VAR}\" }\n[[fleets]]\nname = \"f1\"\ndevices = 1\n",
            1,
            1,
            Some("target"),
            "FLEETSTORM_TEST_UNSET_VAR is not set",
        ),
        toml(
            "unknown target key",
            "[target]\nurll = \"builtin\"\n[[fleets]]\nname = \"f1\"\ndevices = 1\n",
            2,
            1,
            Some("target.urll"),
            "unknown field `urll`",
        ),
        Case {
            what: "JSON unknown key",
            text: "{\"fleets\": [{\"name\": \"f1\",\n \"devices\": 10, \"bogus\": 1}]}".into(),
            format: Format::Json,
            line: 2,
            column: 23,
            key: Some("fleets[0].bogus"),
            message: "unknown field `bogus`",
        },
        Case {
            what: "JSON zero devices",
            text: "{\"fleets\": [{\"name\": \"f1\",\n \"devices\": 0}]}".into(),
            format: Format::Json,
            line: 2,
            column: 13,
            key: Some("fleets[0].devices"),
            message: "devices is 0",
        },
    ]
}

#[test]
fn each_mistake_names_its_place() {
    let cases = cases();
    assert!(cases.len() >= 10);
    for c in cases {
        let err = scenario::parse(&c.text, c.format, "bad.toml", "bad").expect_err(c.what);
        assert_eq!((err.line, err.column), (Some(c.line), Some(c.column)), "{}: {err}", c.what);
        assert_eq!(err.key.as_deref(), c.key, "{}: {err}", c.what);
        assert!(err.message.contains(c.message), "{}: got {:?}, want {:?}", c.what, err.message, c.message);
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("bad.toml:{}:{}: ", c.line, c.column)), "{}: {shown}", c.what);
        assert!(
            shown.contains(c.text.lines().nth(c.line as usize - 1).unwrap()),
            "{}: quotes the line: {shown}",
            c.what
        );
    }
}

#[test]
fn the_quickstart_scenario_loads() {
    let s = scenario::load(&super::util::root().join("scenarios/quickstart.toml")).unwrap();
    assert_eq!(s.name, "quickstart");
    assert_eq!(s.seed, Some(7));
    assert_eq!(s.fleets.len(), 2);
    assert!(s.fleets.iter().map(|f| f.devices).sum::<u64>() >= 2000);
}

#[test]
fn toml_and_json_give_the_same_scenario() {
    let toml_text = "name = \"x\"\nseed = 3\n[[fleets]]\nname = \"f1\"\ndevices = 5\nagent_versions = { \"1.0\" = 2, \"2.0\" = 1 }\n";
    let json_text =
        r#"{"name": "x", "seed": 3, "fleets": [{"name": "f1", "devices": 5, "agent_versions": {"1.0": 2, "2.0": 1}}]}"#;
    let a = scenario::parse(toml_text, Format::Toml, "a", "a").unwrap();
    let b = scenario::parse(json_text, Format::Json, "b", "b").unwrap();
    assert_eq!(format!("{:?}", a.fleets), format!("{:?}", b.fleets));
}
