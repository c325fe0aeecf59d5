//! fleetstorm's integration tests, in one binary (it links once).

mod cli_sample;
mod generator_props;
mod scenario_errors;
mod sdk;
mod serve;
mod util;
mod validator_table;
