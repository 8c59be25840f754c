//! The loop's telemetry as a typed, frozen Python object: durations in nanoseconds (`_ns`,
//! ints), rates in Hz, counts as ints, per-motor counters and per-bus round times as dicts.
//! `to_dict()` is the episode-metadata form; Python converts units only to display them.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use openk_core::control::{RoundSummary, TelemetryReport};

/// Round-trip times of one bus, ns.
#[pyclass(module = "openk._core", frozen, eq, get_all, skip_from_py_object)]
#[derive(Clone, PartialEq)]
pub struct BusRoundStats {
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    max_ns: u64,
}

impl From<&RoundSummary> for BusRoundStats {
    fn from(r: &RoundSummary) -> Self {
        Self {
            p50_ns: r.p50_ns,
            p99_ns: r.p99_ns,
            p999_ns: r.p999_ns,
            max_ns: r.max_ns,
        }
    }
}

#[pymethods]
impl BusRoundStats {
    #[new]
    #[pyo3(signature = (*, p50_ns=0, p99_ns=0, p999_ns=0, max_ns=0))]
    fn new(p50_ns: u64, p99_ns: u64, p999_ns: u64, max_ns: u64) -> Self {
        Self {
            p50_ns,
            p99_ns,
            p999_ns,
            max_ns,
        }
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("p50_ns", self.p50_ns)?;
        d.set_item("p99_ns", self.p99_ns)?;
        d.set_item("p999_ns", self.p999_ns)?;
        d.set_item("max_ns", self.max_ns)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "BusRoundStats(p50_ns={}, p99_ns={}, p999_ns={}, max_ns={})",
            self.p50_ns, self.p99_ns, self.p999_ns, self.max_ns
        )
    }
}

/// `LoopTelemetry` from its list of scalar fields (name: type = constructor default), written
/// once: the struct, the conversion from the core's report, the constructor's keyword
/// arguments and `to_dict` all follow the list. The per-part maps and `realtime` come last.
macro_rules! loop_telemetry {
    ($($field:ident: $ty:ty = $default:tt),* $(,)?) => {
        /// The control loop's report of a run or an episode.
        #[pyclass(module = "openk._core", frozen, eq, get_all, skip_from_py_object)]
        #[derive(Clone, PartialEq)]
        pub struct LoopTelemetry {
            $($field: $ty,)*
            bus_round: BTreeMap<String, BusRoundStats>,
            bus_errors: BTreeMap<String, u64>,
            bus_retries: BTreeMap<String, u64>,
            realtime: String,
        }

        impl From<&TelemetryReport> for LoopTelemetry {
            fn from(r: &TelemetryReport) -> Self {
                Self {
                    $($field: r.$field,)*
                    bus_round: r
                        .bus_round
                        .iter()
                        .map(|(k, v)| (k.clone(), v.into()))
                        .collect(),
                    bus_errors: r.bus_errors.clone(),
                    bus_retries: r.bus_retries.clone(),
                    realtime: r.realtime.clone(),
                }
            }
        }

        #[pymethods]
        impl LoopTelemetry {
            /// Every field can be given (tests and fakes build reports); the rest are zero or
            /// empty.
            #[new]
            #[pyo3(signature = (*, $($field = $default,)* bus_round=None, bus_errors=None, bus_retries=None, realtime=""))]
            #[allow(clippy::too_many_arguments)]
            fn new(
                $($field: $ty,)*
                bus_round: Option<BTreeMap<String, PyRef<'_, BusRoundStats>>>,
                bus_errors: Option<BTreeMap<String, u64>>,
                bus_retries: Option<BTreeMap<String, u64>>,
                realtime: &str,
            ) -> Self {
                Self {
                    $($field,)*
                    bus_round: bus_round
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.clone()))
                        .collect(),
                    bus_errors: bus_errors.unwrap_or_default(),
                    bus_retries: bus_retries.unwrap_or_default(),
                    realtime: realtime.to_owned(),
                }
            }

            /// Bus errors of every motor together.
            #[getter]
            fn bus_errors_total(&self) -> u64 {
                self.bus_errors.values().sum()
            }

            /// The report as plain JSON-able values, same names and units (episode metadata).
            fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let d = PyDict::new(py);
                $(d.set_item(stringify!($field), self.$field)?;)*
                let rounds = PyDict::new(py);
                for (part, r) in &self.bus_round {
                    rounds.set_item(part, r.to_dict(py)?)?;
                }
                d.set_item("bus_round", rounds)?;
                d.set_item("bus_errors", &self.bus_errors)?;
                d.set_item("bus_retries", &self.bus_retries)?;
                d.set_item("realtime", &self.realtime)?;
                Ok(d)
            }

            fn __repr__(&self) -> String {
                format!(
                    "LoopTelemetry(ticks={}, achieved_hz={:.1}, target_hz={:.1}, \
                     lateness_p99_ns={}, overruns={}, rows={}, bus_errors_total={})",
                    self.ticks,
                    self.achieved_hz,
                    self.target_hz,
                    self.lateness_p99_ns,
                    self.overruns,
                    self.rows,
                    self.bus_errors_total()
                )
            }
        }
    };
}

loop_telemetry! {
    ticks: u64 = 0,
    overruns: u64 = 0,
    rows: u64 = 0,
    rows_dropped: u64 = 0,
    rows_repeated: u64 = 0,
    late_actions: u64 = 0,
    target_hz: f64 = 0.0,
    achieved_hz: f64 = 0.0,
    duration_ns: u64 = 0,
    lateness_p50_ns: u64 = 0,
    lateness_p99_ns: u64 = 0,
    lateness_p999_ns: u64 = 0,
    lateness_max_ns: u64 = 0,
    busy_p50_ns: u64 = 0,
    busy_p99_ns: u64 = 0,
    busy_max_ns: u64 = 0,
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LoopTelemetry>()?;
    m.add_class::<BusRoundStats>()?;
    Ok(())
}
