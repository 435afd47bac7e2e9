//! The `condition` keys of `[[idps]]` and `[[token_providers]]`: CEL compiled at load, so a
//! condition that cannot run is a config error (with its place), never a refusal at run time.

use super::{Loader, Place};
use crate::policy::{Condition, Scope};

impl Loader<'_> {
    /// Compiles the `condition` of the entry at `place` for `scope`. `Err` when it does not
    /// compile (the error is recorded at `{place}.condition`); `Ok(None)` when there is none.
    pub(super) fn condition(
        &mut self,
        source: Option<&str>,
        scope: Scope,
        place: &Place,
    ) -> Result<Option<Condition>, ()> {
        let Some(source) = source else {
            return Ok(None);
        };
        Condition::compile(source, scope).map(Some).map_err(|e| {
            self.error(
                Some(place),
                &format!("{}.condition", place.path),
                &e.to_string(),
            );
        })
    }
}

#[cfg(test)]
mod tests;
