//! Renders the client configuration files of mounted connectors (docs/rendered-files.md): the configurations of
//! the connectors' classes, written as Go `text/template` templates with sprig functions, merged
//! with the built-in files (`http.proxy`, `.env`, `ca.crt`, …).
//!
//! [`render`] is pure (input → file name → bytes); the CSI driver and `connectors render` do the
//! I/O. The template engine is [`template`].
#![forbid(unsafe_code)]

mod builtin;
mod render;
pub mod template;

pub use render::{RenderConnector, RenderError, RenderRequest, parse_configuration_names, render};
