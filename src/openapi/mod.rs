//! OpenAPI: reading the documents `validate` policies point at ([`document`]), and exporting
//! the running configuration as an OpenAPI 3.1 document ([`export`]).
//!
//! Config time and admin time only: nothing here runs on a worker's request path.

pub mod document;
pub mod export;
