//! `baton init`: a commented, working config for a well-known identity provider.
//!
//! Each preset writes what its provider documents: the issuer's form, the audience its tokens
//! carry, the algorithms it signs with, where its keys are, and a mapping of the claims worth
//! keeping. The output is a starting point that `baton check` accepts as it is; its comments
//! say what to change. Nothing here touches the network.

use std::fmt::Write as _;

use jsonwebtoken::Algorithm;

/// A provider preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Auth0: `https://{domain}/`, RS256, the tenant's JWKS.
    Auth0,
    /// Amazon Cognito user pools: `https://cognito-idp.{region}.amazonaws.com/{pool}`.
    Cognito,
    /// Supabase Auth: `https://{ref}.supabase.co/auth/v1`, audience `authenticated`.
    Supabase,
    /// Keycloak: `https://{host}/realms/{realm}`.
    Keycloak,
    /// Google Sign-In ID tokens: `https://accounts.google.com`, audience the OAuth client id.
    Google,
    /// Firebase Authentication ID tokens: `https://securetoken.google.com/{project}`.
    Firebase,
    /// GitHub Actions' OIDC tokens for workflow jobs.
    GithubActions,
    /// Kubernetes projected service-account tokens (workload identity for pods).
    Kubernetes,
    /// Any OpenID Connect provider, its keys from discovery.
    GenericOidc,
}

/// Every preset, by its name on the command line.
pub const PRESETS: [(&str, Preset); 9] = [
    ("auth0", Preset::Auth0),
    ("cognito", Preset::Cognito),
    ("supabase", Preset::Supabase),
    ("keycloak", Preset::Keycloak),
    ("google", Preset::Google),
    ("firebase", Preset::Firebase),
    ("github-actions", Preset::GithubActions),
    ("kubernetes", Preset::Kubernetes),
    ("generic-oidc", Preset::GenericOidc),
];

/// What the command line gave.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// `--issuer`: the IdP's issuer URL.
    pub issuer: Option<String>,
    /// `--audience`: the audience its tokens carry (an API identifier, a client id, a
    /// project id).
    pub audience: Option<String>,
    /// `--domain`: the provider's domain (an Auth0 tenant, a Supabase project).
    pub domain: Option<String>,
    /// `--service`: the token provider's service (default `app`).
    pub service: Option<String>,
}

/// The signing key the config names, as written in `[[keys]]`.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Its id.
    pub id: String,
    /// Its private key's file, relative to the config.
    pub file: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
}

/// The command line lacks what a preset needs, or gave something it cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// An unknown `--preset`.
    #[error("unknown preset {0:?}; expected one of: {names}", names = preset_names())]
    UnknownPreset(String),
    /// Required flags are missing.
    #[error("--preset {preset} needs {flags}")]
    Missing {
        /// The preset.
        preset: &'static str,
        /// The missing flags, with what each is.
        flags: String,
    },
    /// A flag's value cannot be used.
    #[error("{flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
}

/// The IdP section of a preset, before it is written out.
struct IdpSection {
    /// Comment lines above `[[idps]]`.
    about: Vec<String>,
    issuer: String,
    audience: Option<String>,
    algorithms: &'static [&'static str],
    /// `jwks_url`, or `None` for `discovery = true`.
    jwks_url: Option<String>,
    /// `(target, source)` pairs of the IdP's mapping.
    mapping: Vec<(&'static str, &'static str)>,
    /// A CEL condition, written active.
    condition: Option<String>,
    /// A CEL condition, written commented out as a suggestion.
    suggested_condition: Option<String>,
}

impl Preset {
    /// Parses a `--preset` name.
    pub fn parse(name: &str) -> Result<Self, InitError> {
        PRESETS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, preset)| *preset)
            .ok_or_else(|| InitError::UnknownPreset(name.to_owned()))
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        PRESETS
            .iter()
            .find(|(_, preset)| *preset == self)
            .map_or("?", |(name, _)| name)
    }
}

fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The config file `preset` writes for `options`, signing with `key`.
pub fn render(preset: Preset, options: &InitOptions, key: &KeyEntry) -> Result<String, InitError> {
    let idp = idp_section(preset, options)?;
    let service = options.service.as_deref().unwrap_or("app");
    if !crate::config::valid_service(service) {
        return Err(InitError::Invalid {
            flag: "--service",
            reason: "letters, digits, `-` and `_` only".to_owned(),
        });
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# baton config for {} (written by `baton init --preset {}`).",
        preset_title(preset),
        preset.name()
    );
    out.push_str(
        "# Check it with `baton check --config <this file>`, run it with `baton serve --config …`.\n\
         # The README's \"Configuration reference\" explains every key.\n\n",
    );
    out.push_str(
        "[server]\n\
         # The `iss` of the tokens baton mints: a URL you control (apps verify it).\n\
         issuer = \"https://baton.example.com\"\n\n",
    );
    let _ = write!(
        out,
        "[proxy]\n\
         # baton in front of your app: requests with a valid {title} token reach the app with\n\
         # baton's token instead. Point `upstream` at the app (host:port).\n\
         listen = \"0.0.0.0:8080\"\n\
         upstream = \"127.0.0.1:3000\"\n\
         service = \"{service}\"\n\n",
        title = preset_title(preset)
    );
    let _ = write!(
        out,
        "# The key baton signs its tokens with (made by `baton init`, mode 0600; keep it secret).\n\
         # Apps verify baton's tokens with the public half, published at /.well-known/jwks.json.\n\
         [[keys]]\n\
         id = {id}\n\
         algorithm = \"{alg}\"\n\
         private_key_file = {file}\n\n",
        id = quote(&key.id),
        alg = crate::algorithm::name(key.algorithm),
        file = quote(&key.file),
    );
    for line in &idp.about {
        let _ = writeln!(out, "# {line}");
    }
    out.push_str("[[idps]]\n");
    let _ = writeln!(out, "issuer = {}", quote(&idp.issuer));
    if let Some(audience) = &idp.audience {
        let _ = writeln!(out, "audience = {}", quote(audience));
    }
    let algorithms: Vec<String> = idp.algorithms.iter().map(|a| quote(a)).collect();
    let _ = writeln!(out, "algorithms = [{}]", algorithms.join(", "));
    match &idp.jwks_url {
        Some(url) => {
            let _ = writeln!(out, "jwks_url = {}", quote(url));
        }
        None => out.push_str("# The keys' URL comes from the issuer's OpenID discovery document.\ndiscovery = true\n"),
    }
    if let Some(condition) = &idp.condition {
        let _ = writeln!(out, "condition = {}", quote(condition));
    }
    if let Some(condition) = &idp.suggested_condition {
        let _ = writeln!(
            out,
            "# Who may exchange at all (CEL over the verified claims), e.g.:\n# condition = {}",
            quote(condition)
        );
    }
    out.push_str("# Claims kept from the IdP's token: `target.$ = JSONPath into its claims`.\n[idps.mapping]\n");
    for (target, source) in &idp.mapping {
        let _ = writeln!(out, "{} = {}", quote(&format!("{target}.$")), quote(source));
    }
    let _ = write!(
        out,
        "\n# The token baton mints for `{service}`: its claims, from the IdP mapping's output.\n\
         [[token_providers]]\n\
         service = \"{service}\"\n\
         key = {id}\n\
         ttl = \"15m\"\n\
         [token_providers.mapping]\n",
        id = quote(&key.id),
    );
    for (target, _) in &idp.mapping {
        let _ = writeln!(
            out,
            "{} = {}",
            quote(&format!("{target}.$")),
            quote(&format!("$.{target}"))
        );
    }
    Ok(out)
}

fn preset_title(preset: Preset) -> &'static str {
    match preset {
        Preset::Auth0 => "Auth0",
        Preset::Cognito => "Amazon Cognito",
        Preset::Supabase => "Supabase Auth",
        Preset::Keycloak => "Keycloak",
        Preset::Google => "Google Sign-In",
        Preset::Firebase => "Firebase Authentication",
        Preset::GithubActions => "GitHub Actions OIDC",
        Preset::Kubernetes => "Kubernetes service accounts",
        Preset::GenericOidc => "an OpenID Connect provider",
    }
}

/// The flags a preset needs that the command line lacks, as one error.
fn require(
    preset: Preset,
    missing: &[(&'static str, bool, &'static str)],
) -> Result<(), InitError> {
    let flags: Vec<String> = missing
        .iter()
        .filter(|(_, present, _)| !present)
        .map(|(flag, _, what)| format!("{flag} ({what})"))
        .collect();
    if flags.is_empty() {
        Ok(())
    } else {
        Err(InitError::Missing {
            preset: preset.name(),
            flags: flags.join(" and "),
        })
    }
}

/// An `https://` URL without a trailing `/`, or the error naming `flag`.
fn https_url(flag: &'static str, value: &str) -> Result<String, InitError> {
    let url = url::Url::parse(value).map_err(|e| InitError::Invalid {
        flag,
        reason: format!("not a URL: {e}"),
    })?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(InitError::Invalid {
            flag,
            reason: "an https:// URL (baton fetches keys over https only)".to_owned(),
        });
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// A bare host name (`tenant.eu.auth0.com`), or the error naming `--domain`.
fn domain(value: &str) -> Result<String, InitError> {
    let host = value
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if valid {
        Ok(host)
    } else {
        Err(InitError::Invalid {
            flag: "--domain",
            reason: "a host name, e.g. `example.eu.auth0.com`".to_owned(),
        })
    }
}

fn idp_section(preset: Preset, options: &InitOptions) -> Result<IdpSection, InitError> {
    let issuer = options.issuer.as_deref();
    let audience = options.audience.as_deref();
    let domain_flag = options.domain.as_deref();
    let section = match preset {
        Preset::Auth0 => {
            require(
                preset,
                &[
                    (
                        "--domain",
                        domain_flag.is_some(),
                        "your tenant's domain, e.g. example.eu.auth0.com, or a custom domain",
                    ),
                    (
                        "--audience",
                        audience.is_some(),
                        "the API identifier the access tokens are for",
                    ),
                ],
            )?;
            let host = domain(domain_flag.unwrap_or_default())?;
            IdpSection {
                about: vec![
                    "Auth0 access tokens for your API (Applications > APIs: its Identifier is the"
                        .into(),
                    "audience). Auth0's issuer ends with `/`; its keys are the tenant's JWKS."
                        .into(),
                ],
                issuer: format!("https://{host}/"),
                audience: audience.map(str::to_owned),
                algorithms: &["RS256"],
                jwks_url: Some(format!("https://{host}/.well-known/jwks.json")),
                mapping: vec![
                    ("sub", "$.sub"),
                    ("scope", "$.scope"),
                    ("permissions", "$.permissions"),
                ],
                condition: None,
                suggested_condition: Some("'read:data' in claims.permissions".to_owned()),
            }
        }
        Preset::Cognito => {
            require(
                preset,
                &[
                    (
                        "--issuer",
                        issuer.is_some(),
                        "https://cognito-idp.<region>.amazonaws.com/<user pool id>",
                    ),
                    ("--audience", audience.is_some(), "the app client id"),
                ],
            )?;
            let issuer = https_url("--issuer", issuer.unwrap_or_default())?;
            let client = audience.unwrap_or_default();
            IdpSection {
                about: vec![
                    "Amazon Cognito user pool access tokens. They carry no `aud`: the app client is".into(),
                    "their `client_id` claim, checked by the condition (with `token_use`, so an ID".into(),
                    "token is not taken for an access token).".into(),
                ],
                jwks_url: Some(format!("{issuer}/.well-known/jwks.json")),
                issuer,
                audience: None,
                algorithms: &["RS256"],
                mapping: vec![("sub", "$.sub"), ("username", "$.username"), ("groups", "$['cognito:groups']"), ("scope", "$.scope")],
                condition: Some(format!(
                    "claims.token_use == \"access\" && claims.client_id == {}",
                    cel_string(client)
                )),
                suggested_condition: None,
            }
        }
        Preset::Supabase => {
            require(
                preset,
                &[(
                    "--domain",
                    domain_flag.is_some() || issuer.is_some(),
                    "your project's domain, <ref>.supabase.co (or --issuer https://<ref>.supabase.co/auth/v1)",
                )],
            )?;
            let issuer = match issuer {
                Some(issuer) => https_url("--issuer", issuer)?,
                None => format!(
                    "https://{}/auth/v1",
                    domain(domain_flag.unwrap_or_default())?
                ),
            };
            IdpSection {
                about: vec![
                    "Supabase Auth access tokens, signed with the project's asymmetric JWT signing".into(),
                    "keys (Project Settings > JWT Keys). A project still on the legacy HS256 secret:".into(),
                    "replace jwks_url with `key_env = \"SUPABASE_JWT_SECRET\"` and algorithms = [\"HS256\"].".into(),
                ],
                jwks_url: Some(format!("{issuer}/.well-known/jwks.json")),
                issuer,
                audience: Some(audience.unwrap_or("authenticated").to_owned()),
                algorithms: &["ES256", "RS256"],
                mapping: vec![("sub", "$.sub"), ("email", "$.email"), ("role", "$.role"), ("aal", "$.aal")],
                condition: None,
                suggested_condition: Some("claims.role == \"authenticated\"".to_owned()),
            }
        }
        Preset::Keycloak => {
            require(
                preset,
                &[
                    (
                        "--issuer",
                        issuer.is_some(),
                        "https://<host>/realms/<realm>",
                    ),
                    (
                        "--audience",
                        audience.is_some(),
                        "the client id an audience mapper puts in `aud`",
                    ),
                ],
            )?;
            let issuer = https_url("--issuer", issuer.unwrap_or_default())?;
            IdpSection {
                about: vec![
                    "Keycloak access tokens of one realm. Keycloak puts a client in `aud` only with an".into(),
                    "audience mapper (Client scopes > Mappers > Audience) on the calling client.".into(),
                ],
                jwks_url: Some(format!("{issuer}/protocol/openid-connect/certs")),
                issuer,
                audience: audience.map(str::to_owned),
                algorithms: &["RS256"],
                mapping: vec![("sub", "$.sub"), ("username", "$.preferred_username"), ("roles", "$.realm_access.roles"), ("scope", "$.scope")],
                condition: None,
                suggested_condition: Some("'app-user' in claims.realm_access.roles".to_owned()),
            }
        }
        Preset::Google => {
            require(
                preset,
                &[(
                    "--audience",
                    audience.is_some(),
                    "your OAuth client id, <n>-<id>.apps.googleusercontent.com",
                )],
            )?;
            IdpSection {
                about: vec![
                    "Google Sign-In ID tokens for your OAuth client. The condition keeps verified".into(),
                    "addresses only; add `&& claims.hd == \"example.com\"` for one Workspace domain.".into(),
                ],
                issuer: "https://accounts.google.com".to_owned(),
                audience: audience.map(str::to_owned),
                algorithms: &["RS256"],
                jwks_url: Some("https://www.googleapis.com/oauth2/v3/certs".to_owned()),
                mapping: vec![("sub", "$.sub"), ("email", "$.email"), ("name", "$.name"), ("hd", "$.hd")],
                condition: Some("claims.email_verified == true".to_owned()),
                suggested_condition: None,
            }
        }
        Preset::Firebase => {
            require(
                preset,
                &[("--audience", audience.is_some(), "your Firebase project id")],
            )?;
            let project = audience.unwrap_or_default();
            IdpSection {
                about: vec![
                    "Firebase Authentication ID tokens of one project: its id is the audience and the".into(),
                    "end of the issuer; the keys are Google's securetoken service account's.".into(),
                ],
                issuer: format!("https://securetoken.google.com/{project}"),
                audience: Some(project.to_owned()),
                algorithms: &["RS256"],
                jwks_url: Some(
                    "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
                        .to_owned(),
                ),
                mapping: vec![("sub", "$.sub"), ("email", "$.email"), ("sign_in_provider", "$.firebase.sign_in_provider")],
                condition: None,
                suggested_condition: Some("claims.email_verified == true".to_owned()),
            }
        }
        Preset::GithubActions => {
            require(
                preset,
                &[(
                    "--audience",
                    audience.is_some(),
                    "the audience the workflow asks for (core.getIDToken(audience)); GitHub's default is https://github.com/<owner>",
                )],
            )?;
            IdpSection {
                about: vec![
                    "GitHub Actions OIDC tokens of workflow jobs (`permissions: id-token: write`)."
                        .into(),
                    "Without a condition any repository's workflow could exchange: keep one."
                        .into(),
                ],
                issuer: "https://token.actions.githubusercontent.com".to_owned(),
                audience: audience.map(str::to_owned),
                algorithms: &["RS256"],
                jwks_url: Some(
                    "https://token.actions.githubusercontent.com/.well-known/jwks".to_owned(),
                ),
                mapping: vec![
                    ("sub", "$.sub"),
                    ("repository", "$.repository"),
                    ("ref", "$.ref"),
                    ("workflow", "$.workflow"),
                    ("environment", "$.environment"),
                ],
                // The owner of GitHub's default audience, else a placeholder to replace.
                condition: Some(format!(
                    "claims.repository_owner == {} && claims.ref == \"refs/heads/main\"",
                    cel_string(github_owner(audience.unwrap_or_default()).unwrap_or("your-org"))
                )),
                suggested_condition: None,
            }
        }
        Preset::Kubernetes => {
            require(
                preset,
                &[
                    (
                        "--issuer",
                        issuer.is_some(),
                        "the cluster's service-account issuer (`kubectl get --raw /.well-known/openid-configuration`)",
                    ),
                    (
                        "--audience",
                        audience.is_some(),
                        "the audience of the projected token (serviceAccountToken.audience)",
                    ),
                ],
            )?;
            IdpSection {
                about: vec![
                    "Kubernetes projected service-account tokens: pods prove who they are with the"
                        .into(),
                    "token the kubelet mounts (a projected volume with its own audience). The keys"
                        .into(),
                    "come from the issuer's discovery (EKS, GKE and AKS publish it; a self-run"
                        .into(),
                    "cluster must serve it without authentication).".into(),
                ],
                issuer: https_url("--issuer", issuer.unwrap_or_default())?,
                audience: audience.map(str::to_owned),
                algorithms: &["RS256", "ES256"],
                jwks_url: None,
                mapping: vec![
                    ("sub", "$.sub"),
                    ("namespace", "$['kubernetes.io'].namespace"),
                    ("service_account", "$['kubernetes.io'].serviceaccount.name"),
                ],
                condition: None,
                suggested_condition: Some(
                    "claims['kubernetes.io'].namespace == \"production\"".to_owned(),
                ),
            }
        }
        Preset::GenericOidc => {
            require(
                preset,
                &[
                    ("--issuer", issuer.is_some(), "the provider's issuer URL"),
                    (
                        "--audience",
                        audience.is_some(),
                        "the audience its tokens carry",
                    ),
                ],
            )?;
            IdpSection {
                about: vec![
                    "An OpenID Connect provider: its keys from {issuer}/.well-known/openid-configuration.".into(),
                    "Narrow `algorithms` to what it signs with.".into(),
                ],
                issuer: https_url("--issuer", issuer.unwrap_or_default())?,
                audience: audience.map(str::to_owned),
                algorithms: &["RS256", "ES256"],
                jwks_url: None,
                mapping: vec![("sub", "$.sub"), ("email", "$.email")],
                condition: None,
                suggested_condition: None,
            }
        }
    };
    Ok(section)
}

/// The owner in GitHub's default audience, `https://github.com/<owner>`.
fn github_owner(audience: &str) -> Option<&str> {
    audience
        .strip_prefix("https://github.com/")
        .map(|owner| owner.trim_end_matches('/'))
        .filter(|owner| !owner.is_empty() && !owner.contains('/'))
}

/// A TOML basic string.
fn quote(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// A CEL string literal (JSON's escaping is CEL's for these characters).
fn cel_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

#[cfg(test)]
mod tests;
