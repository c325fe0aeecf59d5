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
            "unknown device profile",
            &format!("{FLEET}profile = \"sagemaker\"\n"),
            4,
            11,
            Some("fleets[0].profile"),
            "unknown variant `sagemaker`, expected one of `sagemaker-edge`, `thingsboard`, `hono`, `azure-iot-hub`, `aws-iot-shadow`, `custom`",
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
            "custom body template that is not JSON",
            "[[fleets]]\nname = \"f1\"\ndevices = 2\nprofile = \"custom\"\n[fleets.custom]\npath = \"/p\"\n\
             body = '{\"id\": \"${device.name}\"}'\n",
            7,
            8,
            Some("fleets[0].custom.body"),
            "custom.body: the body would not be JSON",
        ),
        toml(
            "custom profile without templates",
            "[[fleets]]\nname = \"f1\"\ndevices = 2\nprofile = \"custom\"\n",
            1,
            1,
            Some("fleets[0]"),
            "needs a [fleets.custom] table",
        ),
        toml(
            "device_name and identities",
            "[[fleets]]\nname = \"f1\"\nidentities = \"d.csv\"\ndevice_name = \"d-{index}\"\n",
            1,
            1,
            Some("fleets[0]"),
            "give device_name or identities, not both",
        ),
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
        // The second fleet's name, not the first fleet's header.
        toml(
            "duplicate fleet names",
            &format!("{FLEET}{FLEET}"),
            5,
            8,
            Some("fleets[1].name"),
            "already used by fleets[0]",
        ),
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
        // Errors about a whole fleet other than the first: at its own
        // [[fleets]] header (or object), not the first one's.
        toml(
            "contradiction in the second fleet",
            &format!("name = \"x\"\n\n{FLEET}\n\n\n[[fleets]]\nname = \"f2\"\ndevices = 10\ninterval = \"10s\"\nrate = \"5/s\"\n"),
            9,
            1,
            Some("fleets[1]"),
            "give interval or rate, not both",
        ),
        toml(
            "a third fleet's missing device count",
            &format!("{FLEET}[[fleets]]\nname = \"f2\"\ndevices = 3\n[[fleets]]\nname = \"f3\"\n"),
            7,
            1,
            Some("fleets[2]"),
            "missing field `devices`",
        ),
        toml(
            "the second model of the second fleet",
            &format!(
                "{FLEET}[[fleets]]\nname = \"f2\"\ndevices = 3\n[[fleets.models]]\nname = \"aaaa\"\nversions = \"1\"\n\
                 [[fleets.models]]\nname = \"bbbb\"\nversions = \"1\"\nshare = 2.0\n"
            ),
            10,
            1,
            Some("fleets[1].models[1]"),
            "share is 2",
        ),
        toml(
            "an inline array of fleets",
            "fleets = [\n  { name = \"f1\", devices = 1 },\n  { name = \"f2\", devices = 1, start = \"synchronized\", ramp_up = \"1s\" },\n]\n",
            3,
            3,
            Some("fleets[1]"),
            "drop one of them",
        ),
        toml(
            "the second fleet's event after the run",
            &format!("duration = \"1m\"\n{FLEET}[[fleets]]\nname = \"f2\"\ndevices = 1\n[[fleets.events]]\nat = \"5m\"\nkind = \"restart\"\n"),
            8,
            1,
            Some("fleets[1].events[0]"),
            "fleet \"f2\": events[0] (restart) starts at 5m",
        ),
        Case {
            what: "JSON contradiction in the second fleet",
            text: "{\"fleets\": [\n {\"name\": \"f1\", \"devices\": 10},\n {\"name\": \"f2\", \"devices\": 10, \"interval\": \"10s\", \"rate\": \"5/s\"}\n]}".into(),
            format: Format::Json,
            line: 3,
            column: 2,
            key: Some("fleets[1]"),
            message: "give interval or rate, not both",
        },
        Case {
            what: "JSON missing field in the second fleet",
            // Brackets and an escaped quote in a string before it.
            text: "{\"target\": {\"headers\": {\"x-a\": \"}]\\\"{[\"}},\n \"fleets\": [{\"name\": \"f1\", \"devices\": 1},\n  {\"name\": \"f2\"}]}".into(),
            format: Format::Json,
            line: 3,
            column: 3,
            key: Some("fleets[1]"),
            message: "missing field `devices`",
        },
        Case {
            what: "JSON duplicate fleet names",
            text: "{\"fleets\": [{\"name\": \"f1\", \"devices\": 1},\n {\"devices\": 2, \"name\": \"f1\"}]}".into(),
            format: Format::Json,
            line: 2,
            column: 25,
            key: Some("fleets[1].name"),
            message: "already used by fleets[0]",
        },
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
fn a_bad_identities_file_is_named_at_the_fleet_s_identities_key_with_its_own_line_and_column() {
    let dir = super::util::TempDir::new("scenario-identities");
    let secret = "s3cret-tok";
    let cases = [
        (
            "thingsboard",
            "a.csv",
            format!("name,token\nmeter-1,{secret}\nmeter 2,{secret}2\n"),
            ":3: column `name`: \"meter 2\"",
        ),
        ("hono", "b.csv", "name,token\nsensor-1,x\n".to_string(), ": no `tenant` column, which the hono profile needs"),
        (
            "azure-iot-hub",
            "c.jsonl",
            "{\"name\":\"cam-1\",\"key\":\"!!\"}\n".to_string(),
            ": device \"cam-1\": column `key`: the device key is not base64",
        ),
        ("thingsboard", "missing.csv", String::new(), "missing.csv: No such file"),
    ];
    for (profile, file, text, want) in cases {
        let path = dir.path(file);
        if !text.is_empty() {
            std::fs::write(&path, text).unwrap();
        }
        let scenario =
            format!("[[fleets]]\nname = \"f1\"\nprofile = \"{profile}\"\nidentities = \"{}\"\n", path.display());
        let err = scenario::parse(&scenario, Format::Toml, "bad.toml", "bad").expect_err(file);
        assert_eq!(
            (err.line, err.column, err.key.as_deref()),
            (Some(4), Some(14), Some("fleets[0].identities")),
            "{err}"
        );
        assert!(err.message.contains(want) && err.message.starts_with("fleet \"f1\": "), "{file}: {err}");
        assert!(!err.to_string().contains(secret), "a credential in {err}");
    }
    // More devices than the file lists.
    let path = dir.path("a.csv");
    std::fs::write(&path, "name,token\nmeter-1,t1\nmeter-2,t2\n").unwrap();
    let scenario = format!(
        "[[fleets]]\nname = \"f1\"\nprofile = \"thingsboard\"\ndevices = 3\nidentities = \"{}\"\n",
        path.display()
    );
    let err = scenario::parse(&scenario, Format::Toml, "bad.toml", "bad").unwrap_err();
    assert!(err.message.contains("devices = 3, but") && err.message.contains("lists 2"), "{err}");
    // Fewer is a fleet of the first rows; none, the whole file.
    let fewer = scenario.replace("devices = 3", "devices = 1");
    let s = scenario::parse(&fewer, Format::Toml, "s.toml", "s").unwrap();
    assert_eq!(s.fleets[0].devices, 1);
    let all = scenario.replace("devices = 3\n", "");
    assert_eq!(scenario::parse(&all, Format::Toml, "s.toml", "s").unwrap().fleets[0].devices, 2);
    // A scenario file's identities are found beside it.
    let file = dir.write("s.toml", "[[fleets]]\nname = \"f1\"\nprofile = \"thingsboard\"\nidentities = \"a.csv\"\n");
    assert_eq!(scenario::load(std::path::Path::new(&file)).unwrap().fleets[0].devices, 2);
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

const TWO_FLEETS_TOML: &str = r#"duration = "1m"
[target]
headers = { "x-a" = "}]\"{[" }
[[fleets]]
name = "f1"
devices = 10
[[fleets.models]]
name = "detector"
versions = { "3.1" = 1.0 }
[[fleets.events]]
at = "10s"
kind = "rollout"
model = "detector"
version = "3.2"
[[fleets]]
name = "f2"
devices = 5
interval = "10s"
"#;

const TWO_FLEETS_JSON: &str = r#"{"duration": "1m", "target": {"headers": {"x-a": "}]\"{["}},
 "fleets": [{"name": "f1", "devices": 10, "models": [{"name": "detector", "versions": {"3.1": 1.0}}],
   "events": [{"at": "10s", "kind": "rollout", "model": "detector", "version": "3.2"}]},
  {"name": "f2", "devices": 5, "interval": "10s"}]}"#;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

    /// Placing an error reads the text a second time; whatever the text,
    /// that never panics and the place is within it.
    #[test]
    fn mangled_scenarios_are_refused_with_a_place_in_the_text(
        json in proptest::bool::ANY,
        edits in proptest::collection::vec(
            (proptest::sample::select(vec!["{", "}", "[", "]", "\"", "\\", ",", ":", "=", "\n", "[[fleets]]\n", "0", ""]),
             proptest::prelude::any::<proptest::sample::Index>(), 0usize..3),
            1..4,
        ),
    ) {
        let (base, format) = if json { (TWO_FLEETS_JSON, Format::Json) } else { (TWO_FLEETS_TOML, Format::Toml) };
        let mut text = base.to_string();
        for (insert, at, delete) in edits {
            let at = at.index(text.len() + 1);
            let end = (at + delete).min(text.len());
            text.replace_range(at..end, insert);
        }
        if let Err(e) = scenario::parse(&text, format, "m", "m") {
            let shown = e.to_string();
            if let (Some(line), Some(column)) = (e.line, e.column) {
                // The end of the text counts (an unclosed string), on the line after a last newline.
                let on = text.split('\n').nth(line as usize - 1);
                proptest::prop_assert!(on.is_some(), "line {} of {:?}: {}", line, text, shown);
                proptest::prop_assert!(column as usize <= on.unwrap().chars().count() + 1, "{}", shown);
            }
        }
    }
}
