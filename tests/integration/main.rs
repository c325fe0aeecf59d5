//! fleetstorm's integration tests, in one binary (it links once). One
//! line per module: what it holds.

// Scenario files, plans and samples.
mod bad_scenarios; // the corpus of broken scenario files, each refused with its place
mod cli_sample; // `fleetstorm sample` through the built binary
mod generator_props; // random fleet settings: every body passes the validator
mod plan; // `validate`'s plan equals the run's counts
mod scenario_errors; // each mistake reported with its line, column and key
mod validator_table; // the validator against a table of invalid bodies

// Runs end to end.
mod dynamics; // retries, outages, surges and rollouts against serve
mod fault_matrix; // a target that misbehaves in every way a backend can
mod mqtt; // MQTT fleets against mosquitto and its own subscriber
mod run; // `fleetstorm run` on loopback against the in-process backend
mod run_says; // what a run says is what happened (first errors, early stops)
mod shards; // sharded runs add up to the single run
mod transport; // HTTPS, HTTP/2, source addresses, SigV4 on the wire
mod verdicts; // the generator's and the pool's verdicts cannot mislead

// What a run's outputs say, and the gates on them.
mod compare; // `fleetstorm compare` as a CI gate
mod gate_readings; // how thresholds read: abort conditions not triggered, counted apart
mod gates; // every kind of threshold judged on a real run
mod mqtt_outputs; // an MQTT run's sessions in every output, and compare
mod outputs; // outputs never destroy what they point at
mod reports; // every rendering of a report, checked by what consumes it

// Capacity.
mod capacity; // the search against serve with a known capacity
mod capacity_refused; // a step refused before it ran says so

// The reference backend, and the vendors' own code.
mod cli_serve; // `fleetstorm serve` as a process: address, answers, signals
mod mqtt_serve; // serve's MQTT listener: builtin runs, logins, paho-mqtt and MQTT.js
mod profiles; // device profiles against the vendors' own code
mod sdk; // serve against the AWS SDK for Python
mod serve; // serve in-process through real clients

// Live outputs and the command line.
mod dashboard; // the live dashboard in headless Chromium
mod listeners; // fleetstorm's own listeners at a run's end and beyond loopback
mod otlp; // OTLP export to a receiver that decodes it
mod shell; // completions, man page, the shell user's view

// Secrets and security.
mod secrets; // no value from the environment leaves the machine
mod security; // planted secrets never reach an output; serve's guards

// Helpers.
mod pki; // a throwaway PKI for the TLS tests
mod util; // ports held, processes killed, pages fetched
