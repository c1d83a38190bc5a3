//! Transactional email (issue 17).

pub mod kinds;
pub mod templates;
