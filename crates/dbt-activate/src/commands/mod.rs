//! One file per command.

pub mod debug;
pub mod exposures;
pub mod history;
pub mod ls;
pub mod reset;
pub mod run;
pub mod serve;
pub mod validate;
