//! `[[token_providers]]`: what baton mints for each service, and its client credentials.

use std::sync::Arc;

use super::keys::SecretFrom;
use super::spec::{ClientSpec, TokenProviderSpec};
use super::{Loader, Place, ServerConfig};
use crate::mapping::quote_key;
use crate::mint::keys::SigningKey;
use crate::mint::{
    ClientCredential, DEFAULT_TTL, Profile, REGISTERED_CLAIMS, STATEBACKED_AUDIENCE, TokenProvider,
};
use crate::policy::Scope;

impl Loader<'_> {
    pub(super) fn provider(
        &mut self,
        spec: TokenProviderSpec,
        place: &Place,
        keys: &[Arc<SigningKey>],
        server: &ServerConfig,
        idp_names: &[String],
    ) -> Option<TokenProvider> {
        let at = Some(place);
        let path = &place.path;
        let errors_before = self.errors.len();
        if !valid_service(&spec.service) {
            self.error(
                at,
                &format!("{path}.service"),
                &format!("{:?} must match ^[a-zA-Z0-9_-]{{1,128}}$", spec.service),
            );
        }
        let key = keys.iter().find(|k| k.id() == spec.key);
        match key {
            None => self.error(
                at,
                &format!("{path}.key"),
                &format!("no [[keys]] entry has id {:?}", spec.key),
            ),
            Some(k) if k.is_retired() => self.error(
                at,
                &format!("{path}.key"),
                &format!("key {:?} is retired and no longer signs", spec.key),
            ),
            Some(_) => {}
        }
        let profile = match spec.profile.as_deref() {
            None | Some("statebacked") => Profile::StateBacked,
            Some("access_token") => Profile::AccessToken,
            Some(other) => {
                self.error(
                    at,
                    &format!("{path}.profile"),
                    &format!(
                        "unknown profile {other:?}; expected \"statebacked\" or \"access_token\""
                    ),
                );
                Profile::StateBacked
            }
        };
        let ttl = self.duration(spec.ttl.as_ref(), DEFAULT_TTL, place, "ttl");
        if ttl.as_secs() == 0 {
            self.error(
                at,
                &format!("{path}.ttl"),
                "a lifetime of at least one second",
            );
        }
        let mapping = self.mapping(&spec.mapping, place);
        if profile == Profile::AccessToken {
            for key in spec.mapping.keys() {
                let output = key.strip_suffix(crate::mapping::PATH_SUFFIX).unwrap_or(key);
                if REGISTERED_CLAIMS.contains(&output) {
                    self.error(
                        at,
                        &format!("{path}.mapping.{}", quote_key(key)),
                        &format!(
                            "`{output}` is set by baton on access tokens; the mapping may not produce it"
                        ),
                    );
                }
            }
        }
        let condition = self.condition(spec.condition.as_deref(), Scope::Provider, place);
        if self.errors.len() > errors_before {
            return None;
        }
        let clients = self.clients(&spec.clients, place, idp_names);
        let audience = spec.audience.unwrap_or_else(|| match profile {
            Profile::StateBacked => STATEBACKED_AUDIENCE.to_owned(),
            Profile::AccessToken => spec.service.clone(),
        });
        let mut provider = TokenProvider::new(
            spec.service,
            Arc::clone(key?),
            mapping?,
            ttl,
            profile,
            audience,
            server.issuer.clone(),
        );
        provider.clients = clients?;
        provider.condition = condition.ok()?;
        provider.delegation = spec.delegation.unwrap_or(false);
        Some(provider)
    }

    fn clients(
        &mut self,
        specs: &[ClientSpec],
        place: &Place,
        idp_names: &[String],
    ) -> Option<Vec<ClientCredential>> {
        let mut clients = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let client_place = Place {
                path: format!("{}.clients[{i}]", place.path),
                span: place.span.clone(),
            };
            if spec.id.is_empty() || spec.id.contains(':') {
                self.error(
                    Some(&client_place),
                    &format!("{}.id", client_place.path),
                    "a non-empty client id without `:`",
                );
            }
            let (field, secret) = self.one_secret(
                &client_place,
                &[
                    ("secret_env", spec.secret_env.as_deref(), SecretFrom::Env),
                    ("secret_file", spec.secret_file.as_deref(), SecretFrom::File),
                    ("secret", spec.secret.as_deref(), SecretFrom::Inline),
                ],
            )?;
            if field == "secret" {
                self.warnings.push(format!(
                    "{}: the client secret is inline in the file; use secret_env or secret_file outside demos",
                    client_place.path
                ));
            }
            let idps = self.client_idps(spec.idps.as_deref(), &client_place, idp_names);
            clients.push(ClientCredential {
                id: spec.id.clone(),
                secret,
                idps: idps?,
            });
        }
        self.duplicates(
            clients.iter().map(|c| c.id.clone()),
            &format!("{}.clients", place.path),
            "client id",
        );
        Some(clients)
    }
}

impl Loader<'_> {
    /// A client's `idps`: each must name an IdP of the configuration. An empty list is an
    /// error: such a client could exchange nothing, which is a mistake more often than a
    /// way to switch a client off (remove it, or its secret, for that).
    fn client_idps(
        &mut self,
        names: Option<&[String]>,
        place: &Place,
        idp_names: &[String],
    ) -> Option<Option<Vec<Arc<str>>>> {
        let Some(names) = names else {
            return Some(None);
        };
        let path = format!("{}.idps", place.path);
        if names.is_empty() {
            self.error(
                Some(place),
                &path,
                "name at least one IdP, or leave idps out to allow every IdP",
            );
            return None;
        }
        let errors_before = self.errors.len();
        for (i, name) in names.iter().enumerate() {
            if !idp_names.contains(name) {
                self.error(
                    Some(place),
                    &format!("{path}[{i}]"),
                    &format!(
                        "no [[idps]] entry is named {name:?} (an IdP's name is its `name`, else \
                         its issuer, else its audience)"
                    ),
                );
            }
        }
        (self.errors.len() == errors_before)
            .then(|| Some(names.iter().map(|name| Arc::from(name.as_str())).collect()))
    }
}

/// Whether `service` matches `^[a-zA-Z0-9_-]{1,128}$`.
pub fn valid_service(service: &str) -> bool {
    (1..=128).contains(&service.len())
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
