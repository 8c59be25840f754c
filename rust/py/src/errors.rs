//! The Python exception hierarchy is defined once, in `openk/errors.py`; the bindings raise those
//! classes. Each binding module maps its core layer's error enum onto them.

#![allow(dead_code)] // classes are used as the binding modules grow

pyo3::import_exception!(openk.errors, OpenKError);
pyo3::import_exception!(openk.errors, ProtocolError);
pyo3::import_exception!(openk.errors, MotorError);
pyo3::import_exception!(openk.errors, BusTimeoutError);
pyo3::import_exception!(openk.errors, PortError);
pyo3::import_exception!(openk.errors, ConfigError);
pyo3::import_exception!(openk.errors, CalibrationError);
pyo3::import_exception!(openk.errors, DatasetError);
pyo3::import_exception!(openk.errors, HubError);
