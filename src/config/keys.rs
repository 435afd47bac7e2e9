//! `[[keys]]`, the signing keys, and the reading of secrets (`*_env`, `*_file`, inline)
//! that every section shares.

use super::spec::KeySpec;
use super::{Loader, Place};
use crate::algorithm;
use crate::mint::keys::SigningKey;
use crate::secret::Secret;

impl Loader<'_> {
    pub(super) fn key(&mut self, spec: KeySpec, place: &Place) -> Option<SigningKey> {
        let at = Some(place);
        if spec.id.is_empty() {
            self.error(
                at,
                &format!("{}.id", place.path),
                "a non-empty key id, e.g. \"sbk_main\"",
            );
        }
        let alg = match algorithm::parse(&spec.algorithm) {
            Ok(alg) => alg,
            Err(e) => {
                self.error(at, &format!("{}.algorithm", place.path), &e);
                return None;
            }
        };
        let secret = self.one_secret(
            place,
            &[
                ("secret_env", spec.secret_env.as_deref(), SecretFrom::Env),
                ("secret_file", spec.secret_file.as_deref(), SecretFrom::File),
                ("secret", spec.secret.as_deref(), SecretFrom::Inline),
                (
                    "private_key_env",
                    spec.private_key_env.as_deref(),
                    SecretFrom::Env,
                ),
                (
                    "private_key_file",
                    spec.private_key_file.as_deref(),
                    SecretFrom::File,
                ),
            ],
        )?;
        let (field, material) = secret;
        let is_secret_field = field.starts_with("secret");
        let loaded = match (algorithm::is_hmac(alg), is_secret_field) {
            (true, true) => SigningKey::hmac(&spec.id, alg, &material),
            (false, false) => SigningKey::from_private_pem(&spec.id, alg, material.expose()),
            (true, false) => {
                self.error(
                    at,
                    &format!("{}.{field}", place.path),
                    &format!(
                        "{} is HMAC: give secret_env or secret_file, not a private key",
                        spec.algorithm
                    ),
                );
                return None;
            }
            (false, true) => {
                self.error(
                    at,
                    &format!("{}.{field}", place.path),
                    &format!(
                        "{} needs a private key: give private_key_file or private_key_env",
                        spec.algorithm
                    ),
                );
                return None;
            }
        };
        if field == "secret" && !place.is_api() {
            self.warnings.push(format!(
                "{}: the secret is inline in the file; use secret_env or secret_file outside demos",
                place.path
            ));
        }
        match loaded {
            Ok(key) => Some(if spec.retired { key.retire() } else { key }),
            Err(e) => {
                self.error(at, &format!("{}.{field}", place.path), &e.0);
                None
            }
        }
    }

    /// Reads the one secret among `sources` that is set, when one is (none is no error; an
    /// empty one is).
    pub(super) fn optional_secret(
        &mut self,
        place: &Place,
        sources: &[(&'static str, Option<&str>, SecretFrom)],
    ) -> Option<(&'static str, Secret)> {
        if sources.iter().all(|(_, value, _)| value.is_none()) {
            return None;
        }
        let (field, secret) = self.one_secret(place, sources)?;
        if secret.expose().is_empty() {
            self.error(Some(place), &format!("{}.{field}", place.path), "is empty");
            return None;
        }
        Some((field, secret))
    }

    /// Reads the one secret among `sources` that is set. Errors when none or several are.
    pub(super) fn one_secret(
        &mut self,
        place: &Place,
        sources: &[(&'static str, Option<&str>, SecretFrom)],
    ) -> Option<(&'static str, Secret)> {
        let set: Vec<_> = sources.iter().filter(|(_, v, _)| v.is_some()).collect();
        let names: Vec<&str> = sources.iter().map(|(n, _, _)| *n).collect();
        match set.as_slice() {
            [] => {
                self.error(
                    Some(place),
                    &place.path,
                    &format!("no key material: set one of {}", names.join(", ")),
                );
                None
            }
            [(field, Some(value), from)] => {
                let path = format!("{}.{field}", place.path);
                let read = match from {
                    SecretFrom::Env => (self.env)(value)
                        .map(|v| Secret::new(v.into_bytes()))
                        .ok_or_else(|| format!("environment variable {value} is not set")),
                    SecretFrom::File => {
                        let file = self.resolve(value);
                        std::fs::read(&file)
                            .map(|bytes| Secret::new(trim_trailing_newline(bytes)))
                            .map_err(|e| format!("cannot read {}: {e}", file.display()))
                    }
                    SecretFrom::Inline => Ok(Secret::new(value.as_bytes())),
                };
                match read {
                    Ok(secret) => Some((field, secret)),
                    Err(e) => {
                        self.error(Some(place), &path, &e);
                        None
                    }
                }
            }
            several => {
                let given: Vec<&str> = several.iter().map(|(n, _, _)| *n).collect();
                self.error(
                    Some(place),
                    &place.path,
                    &format!(
                        "several key sources ({}); set exactly one",
                        given.join(", ")
                    ),
                );
                None
            }
        }
    }
}

pub(super) enum SecretFrom {
    Env,
    File,
    Inline,
}

fn trim_trailing_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    bytes
}
