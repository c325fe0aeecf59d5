//! fleetstorm's integration tests, in one binary (it links once).

mod bad_scenarios;
mod capacity;
mod cli_sample;
mod cli_serve;
mod compare;
mod dashboard;
mod dynamics;
mod fault_matrix;
mod gates;
mod generator_props;
mod outputs;
mod pki;
mod plan;
mod profiles;
mod reports;
mod run;
mod scenario_errors;
mod sdk;
mod security;
mod serve;
mod shards;
mod shell;
mod transport;
mod util;
mod validator_table;
mod verdicts;
